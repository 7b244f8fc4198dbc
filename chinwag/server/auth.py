"""Authentication seen from the stream: the Authenticator protocol and one SASL driver per mechanism.

The sans-IO parts of each mechanism live in ``chinwag.xmpp.sasl``; the drivers
here add the look-ups, which may wait on storage. Who may sign in with what
(account passwords, app passwords, OAuth tokens) is the Authenticator's
business; it is implemented above this layer, by the OAuth platform.

``counts_against_address`` says which failures the per-address limit counts:
a wrong password, by any mechanism, and a malformed request, never a refused token.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from chinwag.xmpp.sasl import SaslCondition, SaslFailure
from chinwag.xmpp.sasl.oauth import (
    OAUTHBEARER,
    X_MESSENGER_OAUTH2,
    X_OAUTH2,
    is_oauthbearer_abort,
    messenger_token_candidates,
    oauthbearer_error,
    parse_oauthbearer,
    parse_x_oauth2,
)
from chinwag.xmpp.sasl.plain import parse_plain
from chinwag.xmpp.sasl.scram import MECHANISMS as SCRAM_MECHANISMS
from chinwag.xmpp.sasl.scram import ScramCredentials, ScramExchange

SIGN_IN_SCOPE = "wl.messenger"


@dataclass(frozen=True, slots=True)
class Grant:
    """Who signed in, and the third-party app it counts as (None: the account's own password)."""

    username: str
    app: str | None = None
    app_password: int | None = None
    """The app password used, when it was one."""
    token_family: str | None = None
    """The token family (one authorization of the app) of the access token used, when it
    was one."""


class Authenticator(Protocol):
    """What SASL needs to know about accounts, app passwords and tokens."""

    def prepare_username(self, name: str) -> str | None:
        """The prepared localpart, or None when ``name`` cannot be a username."""
        ...

    async def check_password(self, username: str, password: str) -> Grant | None: ...

    async def scram_candidates(
        self, username: str, mechanism: str
    ) -> list[tuple[ScramCredentials, Grant]]:
        """Credentials a SCRAM proof may match, sharing one salt and iteration count."""
        ...

    def scram_stand_in(self, username: str, mechanism: str) -> ScramCredentials:
        """Credentials for a name that has none: they never verify, and the challenge
        made from them looks like a real account's, the same at every try and every start."""
        ...

    async def signed_in(self, grant: Grant) -> None:
        """Told after each successful sign-in (to note when an app password was last used)."""
        ...

    async def check_token(self, token: str) -> Grant | None:
        """The grant of a live access token with the sign-in scope, else None."""
        ...


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    grant: Grant
    additional_data: bytes | None = None


Outcome = Challenge | Success


class SaslDriver(Protocol):
    """One exchange; each call returns the next step or raises SaslFailure."""

    claimed: str | None
    """The username (or address) the client gave, as it gave it, once read; None when
    the mechanism carries none (a token alone), for the log of a failed sign-in."""

    async def start(self, initial_response: bytes | None) -> Outcome: ...

    async def step(self, response: bytes) -> Outcome: ...


def _names(
    authenticator: Authenticator, domain: str, name: str, grant: Grant, *, empty: bool = False
) -> bool:
    """Whether ``name``, a username or a bare JID of this domain, is the grant's account.

    ``empty`` accepts "" (an authzid left out).
    """
    if not name:
        return empty
    local, at, host = name.rpartition("@")
    if not at:
        local = host
    elif host.lower() != domain:
        return False
    return authenticator.prepare_username(local) == grant.username


class TokenRefused(SaslFailure):
    """A token not valid for sign-in. Not counted per address: a token is no more
    guessable than a key, and an app retrying an expired one is no guesser."""


def _token_refused() -> SaslFailure:
    return TokenRefused(SaslCondition.NOT_AUTHORIZED, "the access token is not valid for sign-in")


def _refused() -> SaslFailure:
    return SaslFailure(SaslCondition.NOT_AUTHORIZED, "wrong username or password")


_COUNTED_CONDITIONS = frozenset(
    {
        SaslCondition.NOT_AUTHORIZED,
        SaslCondition.MALFORMED_REQUEST,
        SaslCondition.INCORRECT_ENCODING,
        SaslCondition.INVALID_AUTHZID,
    }
)


def counts_against_address(failure: SaslFailure) -> bool:
    """Whether ``failure`` counts against the client's address: a wrong username or
    password (PLAIN or SCRAM, account or app password), and a malformed request, so that
    neither guesses nor costly nonsense go on without end; not a refused token."""
    return failure.condition in _COUNTED_CONDITIONS and not isinstance(failure, TokenRefused)


class _ClientFirstDriver:
    """A client-first mechanism: its one message comes as the initial response or, when
    the client sent none, as the answer to an empty challenge (RFC 6120 6.4.2)."""

    mechanism = ""

    def __init__(self, authenticator: Authenticator, domain: str) -> None:
        self._authenticator = authenticator
        self._domain = domain
        self._asked = False
        self.claimed: str | None = None

    async def start(self, initial_response: bytes | None) -> Outcome:
        if initial_response is None:
            self._asked = True
            return Challenge(b"")
        return await self._first(initial_response)

    async def step(self, response: bytes) -> Outcome:
        if self._asked:
            self._asked = False
            return await self._first(response)
        return await self._later(response)

    async def _first(self, message: bytes) -> Outcome:
        raise NotImplementedError

    async def _later(self, response: bytes) -> Outcome:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"{self.mechanism} has a single step")


class PlainDriver(_ClientFirstDriver):
    mechanism = "PLAIN"

    async def _first(self, message: bytes) -> Outcome:
        plain = parse_plain(message)
        self.claimed = plain.authcid
        username = self._authenticator.prepare_username(plain.authcid)
        grant = (
            None
            if username is None
            else await self._authenticator.check_password(username, plain.password)
        )
        if grant is None:
            raise _refused()
        if not _names(self._authenticator, self._domain, plain.authzid, grant, empty=True):
            raise SaslFailure(SaslCondition.INVALID_AUTHZID, "cannot act for another account")
        await self._authenticator.signed_in(grant)
        return Success(grant)


class ScramDriver:
    def __init__(self, authenticator: Authenticator, domain: str, mechanism: str) -> None:
        self._authenticator = authenticator
        self._mechanism = mechanism
        self._exchange = ScramExchange(mechanism)
        self._grants: list[Grant] = []
        self.claimed: str | None = None

    async def start(self, initial_response: bytes | None) -> Outcome:
        claimed = self.claimed = self._exchange.receive_client_first(initial_response)
        username = self._authenticator.prepare_username(claimed)
        candidates = []
        if username is not None:
            candidates = await self._authenticator.scram_candidates(username, self._mechanism)
        self._grants = [grant for _credentials, grant in candidates]
        # The prepared name, when there is one: "Nobody" must see the salt "nobody" sees,
        # as the two spellings of a real account's name do.
        credentials = [credentials for credentials, _grant in candidates] or [
            self._authenticator.scram_stand_in(username or claimed, self._mechanism)
        ]
        return Challenge(self._exchange.server_first(credentials))

    async def step(self, response: bytes) -> Outcome:
        index, server_final = self._exchange.receive_client_final(response)
        if index >= len(self._grants):
            raise _refused()
        grant = self._grants[index]
        await self._authenticator.signed_in(grant)
        return Success(grant, server_final)


class MessengerOAuth2Driver:
    """X-MESSENGER-OAUTH2: one step, the token alone; signs in as the token's user."""

    claimed: str | None = None

    def __init__(self, authenticator: Authenticator, domain: str) -> None:
        self._authenticator = authenticator

    async def start(self, initial_response: bytes | None) -> Outcome:
        for token in messenger_token_candidates(initial_response):
            grant = await self._authenticator.check_token(token)
            if grant is not None:
                return Success(grant)
        raise _token_refused()

    async def step(self, response: bytes) -> Outcome:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "X-MESSENGER-OAUTH2 has a single step")


class OAuthBearerDriver(_ClientFirstDriver):
    """OAUTHBEARER (RFC 7628), with its JSON error challenge before the failure."""

    mechanism = OAUTHBEARER

    def __init__(self, authenticator: Authenticator, domain: str) -> None:
        super().__init__(authenticator, domain)
        self._failed = False

    async def _first(self, message: bytes) -> Outcome:
        bearer = parse_oauthbearer(message)
        self.claimed = bearer.authzid or None
        grant = await self._authenticator.check_token(bearer.token)
        if grant is None or not _names(
            self._authenticator, self._domain, bearer.authzid, grant, empty=True
        ):
            self._failed = True
            return Challenge(oauthbearer_error(SIGN_IN_SCOPE))
        return Success(grant)

    async def _later(self, response: bytes) -> Outcome:
        if self._failed and is_oauthbearer_abort(response):
            raise _token_refused()
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "unexpected OAUTHBEARER message")


class XOAuth2Driver(_ClientFirstDriver):
    """X-OAUTH2 (the Google Talk form): ``authzid NUL user NUL token``, as PLAIN lays it out.

    The user is the token's, as a username or a bare JID (Google Talk sends the
    address); the authzid, if any, names the same account.
    """

    mechanism = X_OAUTH2

    async def _first(self, message: bytes) -> Outcome:
        plain = parse_x_oauth2(message)
        self.claimed = plain.authcid
        grant = await self._authenticator.check_token(plain.password)
        if (
            grant is None
            or not _names(self._authenticator, self._domain, plain.authcid, grant)
            or not _names(self._authenticator, self._domain, plain.authzid, grant, empty=True)
        ):
            raise _token_refused()
        return Success(grant)


DriverFactory = Callable[[Authenticator, str], SaslDriver]


def sasl_drivers() -> dict[str, DriverFactory]:
    """Every mechanism chinwag offers, in the order it prefers them."""
    drivers: dict[str, DriverFactory] = {
        name: partial(ScramDriver, mechanism=name) for name in SCRAM_MECHANISMS
    }
    drivers["PLAIN"] = PlainDriver
    drivers[OAUTHBEARER] = OAuthBearerDriver
    drivers[X_OAUTH2] = XOAuth2Driver
    drivers[X_MESSENGER_OAUTH2] = MessengerOAuth2Driver
    return drivers
