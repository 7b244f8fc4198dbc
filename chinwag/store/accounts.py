"""Account storage: the repository protocol, its SQLAlchemy implementation and values.

Usernames reaching this layer are already normalised; passwords never do, only
their SCRAM verifiers (:class:`StoredScram`). The reads made at every sign-in and
by message routing (credentials, whether an account exists) are Core statements
built once.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any, Protocol, TypeVar

from sqlalchemy import Row, Select, bindparam, delete, insert, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.db import Database
from chinwag.store.events import (
    ACCOUNT_DELETED,
    ACCOUNT_PASSWORD_CHANGED,
    ROSTER_CHANGED,
    UNAPPLIED,
    NewEvent,
    record_events,
)
from chinwag.store.models import (
    Account,
    Credential,
    PepAffiliation,
    PepSubscription,
    Profile,
    RosterItem,
)

T = TypeVar("T")

# Stays well under the bound-parameter limits of SQLite and asyncpg.
_IN_CLAUSE_CHUNK = 1000

_ACCOUNT = Account.__table__
_CREDENTIAL = Credential.__table__

ACCOUNT_ID = select(_ACCOUNT.c.id).where(_ACCOUNT.c.username == bindparam("username"))
"""The id of the account whose username is the bind parameter ``username``."""

_IDS_OF_USERNAMES = select(_ACCOUNT.c.id).where(
    _ACCOUNT.c.username.in_(bindparam("usernames", expanding=True))
)
_LOCK_IN_ID_ORDER = (
    update(_ACCOUNT)
    .where(
        _ACCOUNT.c.id.in_(
            select(_ACCOUNT.c.id)
            .where(_ACCOUNT.c.id.in_(bindparam("ids", expanding=True)))
            .order_by(_ACCOUNT.c.id)
            .with_for_update()
        )
    )
    .values(roster_version=_ACCOUNT.c.roster_version)
    .returning(_ACCOUNT.c.username, _ACCOUNT.c.id, _ACCOUNT.c.roster_version)
)

_CREDENTIALS = (
    select(
        _CREDENTIAL.c.mechanism,
        _CREDENTIAL.c.salt,
        _CREDENTIAL.c.stored_key,
        _CREDENTIAL.c.server_key,
        _CREDENTIAL.c.iterations,
    )
    .select_from(_CREDENTIAL.join(_ACCOUNT))
    .where(
        _ACCOUNT.c.username == bindparam("username"),
        _CREDENTIAL.c.mechanism == bindparam("mechanism"),
    )
)


@dataclass(frozen=True)
class StoredScram:
    """A SCRAM verifier (RFC 5802 section 3) for one mechanism."""

    mechanism: str
    salt: bytes
    stored_key: bytes
    server_key: bytes
    iterations: int


@dataclass(frozen=True)
class NewAccount:
    username: str
    credentials: Sequence[StoredScram]
    full_name: str | None = None


@dataclass(frozen=True)
class AccountRecord:
    username: str
    full_name: str | None
    created_at: datetime


class AccountExists(Exception):
    def __init__(self, usernames: Iterable[str]) -> None:
        self.usernames = tuple(sorted(usernames))
        quoted = ", ".join(f"'{name}'" for name in self.usernames)
        if len(self.usernames) == 1:
            super().__init__(f"user {quoted} already exists")
        else:
            super().__init__(f"users {quoted} already exist")


class NoSuchAccount(Exception):
    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"no such user '{username}'")


class AccountRepository(Protocol):
    async def add(
        self, username: str, credentials: Sequence[StoredScram], full_name: str | None = None
    ) -> None:
        """Create one account; raises AccountExists."""

    async def add_many(self, accounts: Sequence[NewAccount]) -> None:
        """Create all accounts in one transaction, or none; raises AccountExists."""

    async def credentials(self, username: str, mechanism: str) -> StoredScram | None: ...

    async def replace_credentials(
        self,
        username: str,
        credentials: Sequence[StoredScram],
        origin: str = UNAPPLIED,
        kept: str | None = None,
    ) -> None:
        """Swap every verifier of the account for ``credentials``; raises NoSuchAccount.

        The account's web sessions end with its old verifiers. Announces
        ``account.password_changed`` (from ``origin``, with ``kept`` as its detail).
        """

    async def delete(self, username: str, origin: str = UNAPPLIED) -> bool:
        """Remove the account and all it owns; False when there was none.

        Announces ``account.deleted`` (from ``origin``), and ``roster.changed`` for
        every account that had it as a contact, whose roster version goes up.
        """

    async def exists(self, username: str) -> bool: ...

    async def existing(self, usernames: Iterable[str]) -> set[str]:
        """Those of ``usernames`` that already have an account."""

    async def list(self) -> list[AccountRecord]:
        """Every account, sorted by username."""


class SqlAccountRepository:
    """AccountRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def add(
        self, username: str, credentials: Sequence[StoredScram], full_name: str | None = None
    ) -> None:
        await self.add_many([NewAccount(username, credentials, full_name)])

    async def add_many(self, accounts: Sequence[NewAccount]) -> None:
        if not accounts:
            return
        try:
            async with self._sessions.begin() as session:
                await insert_accounts(session, accounts)
        except IntegrityError:
            names = [account.username for account in accounts]
            duplicates = {name for name, count in Counter(names).items() if count > 1}
            taken = await self.existing(names) | duplicates
            if not taken:
                raise
            raise AccountExists(taken) from None

    async def credentials(self, username: str, mechanism: str) -> StoredScram | None:
        rows = await self._db.rows(_CREDENTIALS, {"username": username, "mechanism": mechanism})
        return _stored_scram(rows[0]) if rows else None

    async def replace_credentials(
        self,
        username: str,
        credentials: Sequence[StoredScram],
        origin: str = UNAPPLIED,
        kept: str | None = None,
    ) -> None:
        async with self._sessions.begin() as session:
            account_id = await session.scalar(ACCOUNT_ID, {"username": username})
            if account_id is None:
                raise NoSuchAccount(username)
            await session.execute(delete(Credential).where(Credential.account_id == account_id))
            await _insert_credentials(session, [(account_id, each) for each in credentials])
            await record_events(
                session, [NewEvent(ACCOUNT_PASSWORD_CHANGED, username, None, origin, kept)]
            )

    async def delete(self, username: str, origin: str = UNAPPLIED) -> bool:
        async with self._sessions.begin() as session:
            account_id = await session.scalar(ACCOUNT_ID, {"username": username})
            if account_id is None:
                return False
            holders = select(RosterItem.owner_id).where(
                RosterItem.contact_id == account_id, RosterItem.owner_id != account_id
            )
            # The account and those who have it as a contact, locked together in id
            # order as every other locker does, so that none of them can deadlock with
            # this. FOR UPDATE also waits out transactions adding rows that refer to the
            # account (roster items), so none of them is removed unannounced below.
            locked = await _lock_ids(session, [account_id, *await session.scalars(holders)])
            if account_id not in {account.id for account in locked.values()}:
                return False  # deleted meanwhile
            watchers = await bump_roster_versions(session, holders)
            await session.execute(delete(Account).where(Account.id == account_id))
            # Grants to the account on others' PEP nodes go too, and its subscriptions to
            # them: a new account of the same name must not inherit them (no
            # server-to-server: any domain is this one).
            own_jids = _escaped_for_like(username) + "@%"
            for model in (PepAffiliation, PepSubscription):
                await session.execute(delete(model).where(model.jid.like(own_jids, escape="\\")))
            await record_events(
                session,
                [
                    NewEvent(ACCOUNT_DELETED, username, None, origin),
                    # Nobody has taken these off the contacts' rosters yet: every reader must.
                    *(NewEvent(ROSTER_CHANGED, owner, username, UNAPPLIED) for owner in watchers),
                ],
            )
        return True

    async def exists(self, username: str) -> bool:
        return await account_exists(self._db, username)

    async def existing(self, usernames: Iterable[str]) -> set[str]:
        names = list(dict.fromkeys(usernames))
        found: set[str] = set()
        async with self._sessions() as session:
            for chunk in in_chunks(names):
                found.update(
                    await session.scalars(
                        select(Account.username).where(Account.username.in_(chunk))
                    )
                )
        return found

    async def list(self) -> list[AccountRecord]:
        query = select(Account.username, Profile.fn, Account.created_at).outerjoin(Profile)
        async with self._sessions() as session:
            rows = await session.execute(query)
        # Sorted here: PostgreSQL's locale collation and SQLite's binary one disagree.
        return sorted((AccountRecord(*row) for row in rows), key=lambda record: record.username)


def in_chunks(items: Sequence[T]) -> Iterator[Sequence[T]]:
    """``items`` in slices short enough for one IN clause each."""
    for start in range(0, len(items), _IN_CLAUSE_CHUNK):
        yield items[start : start + _IN_CLAUSE_CHUNK]


async def account_exists(db: Database, username: str) -> bool:
    """Whether ``username`` has an account."""
    return await db.scalar(ACCOUNT_ID, {"username": username}) is not None


@dataclass(frozen=True, slots=True)
class LockedAccount:
    id: int
    roster_version: int


async def lock_accounts(
    session: AsyncSession, usernames: Iterable[str]
) -> dict[str, LockedAccount]:
    """Lock the rows of those of ``usernames`` that exist, for the rest of the transaction.

    Their ids are looked up first, then the rows locked by a no-op UPDATE, a thousand
    at a time: on PostgreSQL it locks them in id order (as :func:`bump_roster_versions`
    does), so two lockers cannot deadlock; on SQLite it takes the write lock, and so
    puts the reads that follow inside the transaction (pysqlite runs statements before
    the first write outside of any). An account deleted in between is left out.
    """
    names = sorted(set(usernames))
    ids: list[int] = []
    for chunk in in_chunks(names):
        ids.extend(await session.scalars(_IDS_OF_USERNAMES, {"usernames": chunk}))
    return await _lock_ids(session, ids)


async def _lock_ids(session: AsyncSession, ids: Iterable[int]) -> dict[str, LockedAccount]:
    """Lock the accounts of ``ids`` that still exist, in id order; by username."""
    locked: dict[str, LockedAccount] = {}
    for chunk in in_chunks(sorted(set(ids))):
        rows = await session.execute(_LOCK_IN_ID_ORDER, {"ids": chunk})
        locked.update((row.username, LockedAccount(row.id, row.roster_version)) for row in rows)
    return locked


async def bump_roster_versions(
    session: AsyncSession, account_ids: Select[*tuple[Any, ...]]
) -> dict[str, int]:
    """Add one to the roster version of the accounts ``account_ids`` selects.

    Returns the new version by username. Rows are locked in id order first, so
    concurrent bumps of overlapping sets wait rather than deadlock on PostgreSQL.
    """
    await session.execute(
        select(Account.id).where(Account.id.in_(account_ids)).order_by(Account.id).with_for_update()
    )
    bumped = await session.execute(
        update(Account)
        .where(Account.id.in_(account_ids))
        .values(roster_version=Account.roster_version + 1)
        .returning(Account.username, Account.roster_version)
    )
    return {username: version for username, version in bumped}


async def insert_accounts(session: AsyncSession, accounts: Sequence[NewAccount]) -> None:
    """Insert ``accounts`` with their profiles and verifiers, in the caller's transaction."""
    # Matched by username: ordered RETURNING would make SQLite insert row by row.
    inserted = await session.execute(
        insert(Account).returning(Account.username, Account.id),
        [{"username": account.username} for account in accounts],
    )
    id_of = {username: account_id for username, account_id in inserted}
    created = [(id_of[account.username], account) for account in accounts]
    await session.execute(
        insert(Profile),
        [{"account_id": account_id, "fn": account.full_name} for account_id, account in created],
    )
    await _insert_credentials(
        session,
        [(account_id, each) for account_id, account in created for each in account.credentials],
    )


async def _insert_credentials(
    session: AsyncSession, credentials: Sequence[tuple[int, StoredScram]]
) -> None:
    if credentials:
        await session.execute(
            insert(Credential),
            [_credential_row(account_id, scram) for account_id, scram in credentials],
        )


def _credential_row(account_id: int, scram: StoredScram) -> dict[str, Any]:
    return {"account_id": account_id, **asdict(scram)}


def _stored_scram(row: Row[*tuple[Any, ...]]) -> StoredScram:
    return StoredScram(
        row.mechanism, bytes(row.salt), bytes(row.stored_key), bytes(row.server_key), row.iterations
    )


def _escaped_for_like(text: str) -> str:
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
