"""The accounts domain: username rules, SCRAM credentials and password checks.

Every way of managing users (CLI, REST, portal) and every way of signing in goes
through :class:`AccountService`. Passwords are turned into SCRAM verifiers at once
and never stored; the PBKDF2 work runs in worker threads so the event loop never
stalls on it.
"""

from __future__ import annotations

import asyncio
import functools
import hashlib
import hmac
import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.pbkdf2 import PBKDF2HMAC
from precis_i18n import get_profile
from scramp import ScramException
from scramp.utils import saslprep

from chinwag.network.events import UNAPPLIED, EventLog, resource_mark
from chinwag.store.accounts import (
    AccountExists,
    AccountRecord,
    AccountRepository,
    NewAccount,
    NoSuchAccount,
    StoredScram,
)
from chinwag.store.models import MAX_USERNAME_BYTES

__all__ = [
    "MAX_CHOSEN_PASSWORD",
    "MECHANISMS",
    "MIN_CHOSEN_PASSWORD",
    "AccountExists",
    "AccountRecord",
    "AccountService",
    "ImportRejected",
    "InvalidPassword",
    "InvalidUsername",
    "NoSuchAccount",
    "RowProblem",
    "StoredScram",
    "UserRow",
    "check_chosen_password",
    "derive_credentials",
    "derive_matching",
    "derive_replacement",
    "normalize_username",
    "password_matches",
]

MECHANISMS = ("SCRAM-SHA-1", "SCRAM-SHA-256")
DEFAULT_ITERATIONS = 4096
MIN_CHOSEN_PASSWORD = 8
MAX_CHOSEN_PASSWORD = 1024
"""Characters of a password that users choose themselves (on the web, over XMPP); an
operator's command may set any password."""
SALT_BYTES = 32
_HASHES: dict[str, type[hashes.HashAlgorithm]] = {
    "SCRAM-SHA-1": hashes.SHA1,
    "SCRAM-SHA-256": hashes.SHA256,
}
VERIFY_MECHANISM = "SCRAM-SHA-256"
FORBIDDEN_LOCALPART_CHARS = frozenset("\"&'/:<>@")  # RFC 7622 section 3.3.1

_USERNAME_PROFILE = get_profile("UsernameCaseMapped")
_PRECIS_REASONS = {
    "empty": "it is empty",
    "spaces": "it contains a space",
    "controls": "it contains a control character",
    "symbols": "it contains the symbol {char}",
    "punctuation": "it contains the punctuation mark {char}",
    "has_compat": "it contains {char}, a compatibility variant of another character",
    "unassigned": "it contains {char}, which Unicode has not assigned",
    "bidi_rule": "it mixes right-to-left and left-to-right text",
}
# Fixed salt for the decoy derivation that hides whether a username exists.
_DECOY = StoredScram(VERIFY_MECHANISM, b"chinwag-decoy-salt", b"", b"", DEFAULT_ITERATIONS)


class InvalidUsername(ValueError):
    pass


class InvalidPassword(ValueError):
    pass


@dataclass(frozen=True)
class UserRow:
    """One user of a bulk import."""

    name: str
    password: str
    full_name: str | None = None


@dataclass(frozen=True, order=True)
class RowProblem:
    index: int
    """Position of the row in the import, from 0."""
    message: str


class ImportRejected(Exception):
    """Some rows of an import are bad, so none of them was imported."""

    def __init__(self, problems: Sequence[RowProblem]) -> None:
        self.problems = sorted(problems)
        super().__init__(f"{len(self.problems)} bad rows; nothing imported")


@functools.lru_cache(maxsize=16384)
def normalize_username(name: str) -> str:
    """The RFC 7622 localpart form of ``name``; raises InvalidUsername saying why not.
    Cached: PRECIS is slow, and every sign-in asks for its name more than once."""
    try:
        username = _USERNAME_PROFILE.enforce(name)
    except UnicodeEncodeError as error:
        raise InvalidUsername(
            f"{name!r} is not a valid username: {_precis_reason(error)}"
        ) from None
    forbidden = sorted(FORBIDDEN_LOCALPART_CHARS.intersection(username))
    if forbidden:
        listed = ", ".join(repr(char) for char in forbidden)
        raise InvalidUsername(f"{name!r} is not a valid username: it contains {listed}")
    if len(username.encode()) > MAX_USERNAME_BYTES:
        raise InvalidUsername(
            f"{name[:20]!r}... is not a valid username: it is longer than "
            f"{MAX_USERNAME_BYTES} bytes"
        )
    return username


def _precis_reason(error: UnicodeEncodeError) -> str:
    kind = error.reason.removeprefix("DISALLOWED/")
    char = error.object[error.start : error.end]
    shown = " ".join(f"{c!r} (U+{ord(c):04X})" for c in char)
    template = _PRECIS_REASONS.get(kind, "it contains the disallowed character {char}")
    return template.format(char=shown)


def derive_credentials(password: str, iterations: int = DEFAULT_ITERATIONS) -> list[StoredScram]:
    """SCRAM verifiers of ``password`` for every mechanism offered; CPU-heavy (PBKDF2)."""
    _check_password(password)
    try:
        return [_derive(mechanism, password, iterations) for mechanism in MECHANISMS]
    except ScramException as error:
        raise InvalidPassword(f"the password is not usable: {error.args[0]}") from None


def _check_password(password: str) -> None:
    if not password:
        raise InvalidPassword("the password is empty")


def check_chosen_password(password: str) -> None:
    """Raise InvalidPassword, saying why, unless ``password`` is long enough for a user to
    choose, and short enough for its SASLprep to stay cheap."""
    _check_password(password)
    if len(password) < MIN_CHOSEN_PASSWORD:
        raise InvalidPassword(f"the password is shorter than {MIN_CHOSEN_PASSWORD} characters")
    if len(password) > MAX_CHOSEN_PASSWORD:
        raise InvalidPassword(f"the password is longer than {MAX_CHOSEN_PASSWORD} characters")


def _checked_row(row: UserRow) -> str:
    """The row's normalised username, once its cheap checks pass."""
    username = normalize_username(row.name)
    _check_password(row.password)
    return username


def _derive(
    mechanism: str, password: str, iterations: int, salt: bytes | None = None
) -> StoredScram:
    """RFC 5802's SaltedPassword -> (StoredKey, ServerKey) chain, as scramp computes it.

    PBKDF2 comes from cryptography rather than scramp's hashlib: its OpenSSL build
    derives about three times faster, and every PLAIN sign-in pays for one.
    """
    algorithm = _HASHES[mechanism]()
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    pbkdf2 = PBKDF2HMAC(algorithm, algorithm.digest_size, salt, iterations)
    salted_password = pbkdf2.derive(_prepared(password))
    client_key = hmac.digest(salted_password, b"Client Key", algorithm.name)
    server_key = hmac.digest(salted_password, b"Server Key", algorithm.name)
    stored_key = hashlib.new(algorithm.name, client_key).digest()
    return StoredScram(mechanism, salt, stored_key, server_key, iterations)


def _prepared(password: str) -> bytes:
    """SASLprep (RFC 4013) of ``password``, in UTF-8. SASLprep leaves printable ASCII as
    it is, so most passwords skip scramp's character-by-character table walk (~20 µs,
    holding the GIL that the event loop waits for)."""
    if password.isascii() and password.isprintable():
        return password.encode()
    return saslprep(password).encode()


def derive_replacement(password: str, old: Sequence[StoredScram]) -> list[StoredScram]:
    """SCRAM verifiers of a new ``password`` with the salts and iteration counts of the
    ``old`` ones (fresh for a mechanism without one): the account's app passwords share
    those, and so still sign in with SCRAM. CPU-heavy (PBKDF2)."""
    _check_password(password)
    kept = {scram.mechanism: scram for scram in old}
    try:
        return [
            _derive(mechanism, password, kept[mechanism].iterations, kept[mechanism].salt)
            if mechanism in kept
            else _derive(mechanism, password, DEFAULT_ITERATIONS)
            for mechanism in MECHANISMS
        ]
    except ScramException as error:
        raise InvalidPassword(f"the password is not usable: {error.args[0]}") from None


def derive_matching(password: str, model: StoredScram) -> StoredScram:
    """The verifier of ``password`` with ``model``'s mechanism, salt and iteration count.

    Verifiers that share a salt can all be checked in one SCRAM exchange, whose
    server-first message names a single salt. CPU-heavy (PBKDF2).
    """
    _check_password(password)
    try:
        return _derive(model.mechanism, password, model.iterations, model.salt)
    except ScramException as error:
        raise InvalidPassword(f"the password is not usable: {error.args[0]}") from None


def password_matches(stored: StoredScram, password: str) -> bool:
    """Whether ``password`` has the verifier ``stored``; CPU-heavy (PBKDF2)."""
    # Re-deriving with the stored salt is RFC 5802's SaltedPassword -> ClientKey ->
    # StoredKey chain, with the same SASLprep of the password that scramp applies.
    try:
        candidate = _derive(stored.mechanism, password, stored.iterations, stored.salt)
    except ScramException:
        return False
    return hmac.compare_digest(candidate.stored_key, stored.stored_key)


class AccountService:
    """Use cases over an AccountRepository; usernames are normalised on the way in."""

    def __init__(self, repo: AccountRepository, events: EventLog | None = None) -> None:
        """``events`` gives the origin that deletions are announced with."""
        self._repo = repo
        self._origin = events.origin if events is not None else UNAPPLIED

    async def add_user(self, name: str, password: str, full_name: str | None = None) -> str:
        """Create the account and return its normalised username."""
        username = normalize_username(name)
        if await self._repo.exists(username):
            raise AccountExists([username])
        credentials = await asyncio.to_thread(derive_credentials, password)
        await self._repo.add(username, credentials, full_name)
        return username

    async def change_password(
        self, name: str, password: str, *, kept_resource: str | None = None
    ) -> str:
        """Replace the account's password; its web sessions end with the old one. The
        salts stay, so that its app passwords, which share them, keep working.

        Announced with ``account.password_changed``, on which the XMPP server ends the
        streams signed in with the old password, but that of ``kept_resource`` (the one
        that asked for the change). Raises NoSuchAccount or InvalidPassword.
        """
        username = normalize_username(name)
        old = [
            scram
            for mechanism in MECHANISMS
            if (scram := await self._repo.credentials(username, mechanism)) is not None
        ]
        if not old and not await self._repo.exists(username):
            raise NoSuchAccount(username)
        credentials = await asyncio.to_thread(derive_replacement, password, old)
        kept = resource_mark(kept_resource) if kept_resource is not None else None
        await self._repo.replace_credentials(username, credentials, self._origin, kept)
        return username

    async def delete_user(self, name: str) -> bool:
        """Delete the account and all it owns; its contacts lose it from their rosters.

        Announced with ``account.deleted``; False when there was no such account.
        """
        return await self._repo.delete(normalize_username(name), self._origin)

    async def list_users(self) -> list[AccountRecord]:
        return await self._repo.list()

    async def import_users(
        self, rows: Sequence[UserRow], progress: Callable[[], None] | None = None
    ) -> list[str]:
        """Create every user of ``rows`` or, if any row is bad, none (ImportRejected).

        ``progress`` is called once per row whose credentials are derived.
        """
        usernames = await self._check_rows(rows)
        credentials = await self._derive_all([row.password for row in rows], progress)
        await self._repo.add_many(
            [
                NewAccount(username, scram, row.full_name)
                for username, scram, row in zip(usernames, credentials, rows, strict=True)
            ]
        )
        return usernames

    async def verify_password(self, name: str, password: str) -> bool:
        """Whether ``password`` is the user's; unknown users cost the same work.

        An account imported with SCRAM-SHA-1 verifiers only (from Prosody, say) is
        checked against those."""
        stored = await self.scram_credentials(
            name, VERIFY_MECHANISM
        ) or await self.scram_credentials(name, "SCRAM-SHA-1")
        # The loop's executor directly: asyncio.to_thread would also copy the context,
        # which this pure function does not need, at ~30 µs of the loop's time a sign-in.
        matches = await asyncio.get_running_loop().run_in_executor(
            None, password_matches, stored or _DECOY, password
        )
        return stored is not None and matches

    async def scram_credentials(self, name: str, mechanism: str) -> StoredScram | None:
        try:
            username = normalize_username(name)
        except InvalidUsername:
            return None
        return await self._repo.credentials(username, mechanism)

    async def _check_rows(self, rows: Sequence[UserRow]) -> list[str]:
        problems: list[RowProblem] = []
        usernames: list[str] = []
        first_row_of: dict[str, int] = {}
        for index, row in enumerate(rows):
            try:
                username = _checked_row(row)
            except (InvalidUsername, InvalidPassword) as error:
                problems.append(RowProblem(index, str(error)))
                continue
            if username in first_row_of:
                problems.append(RowProblem(index, f"user '{username}' appears more than once"))
            first_row_of.setdefault(username, index)
            usernames.append(username)
        taken = await self._repo.existing(usernames)
        problems += [
            RowProblem(first_row_of[name], f"user '{name}' already exists") for name in taken
        ]
        if problems:
            raise ImportRejected(problems)
        return usernames

    async def _derive_all(
        self, passwords: Sequence[str], progress: Callable[[], None] | None
    ) -> list[list[StoredScram]]:
        problems: list[RowProblem] = []

        async def derive(index: int, password: str) -> list[StoredScram]:
            try:
                return await asyncio.to_thread(derive_credentials, password)
            except InvalidPassword as error:
                problems.append(RowProblem(index, str(error)))
                return []
            finally:
                if progress is not None:
                    progress()

        # PBKDF2 releases the GIL, so the pool's threads spread it over every core.
        results = await asyncio.gather(*(derive(i, p) for i, p in enumerate(passwords)))
        if problems:
            raise ImportRejected(problems)
        return list(results)
