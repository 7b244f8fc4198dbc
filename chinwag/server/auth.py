"""Authentication seen from the stream: the Authenticator protocol and one SASL driver per mechanism.

The sans-IO parts of each mechanism live in ``chinwag.xmpp.sasl``; the drivers
here add the credential lookups, which may wait on storage.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Protocol

from chinwag.network.accounts import AccountService, InvalidUsername, normalize_username
from chinwag.xmpp.sasl import SaslCondition, SaslFailure
from chinwag.xmpp.sasl.plain import parse_plain
from chinwag.xmpp.sasl.scram import MECHANISMS as SCRAM_MECHANISMS
from chinwag.xmpp.sasl.scram import ScramCredentials, ScramExchange


class Authenticator(Protocol):
    """What SASL needs to know about accounts."""

    def prepare_username(self, name: str) -> str | None:
        """The prepared localpart, or None when ``name`` cannot be a username."""
        ...

    async def check_password(self, username: str, password: str) -> bool: ...

    async def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None: ...


class AccountAuthenticator:
    """Checks passwords against the salted credentials of the accounts domain."""

    def __init__(self, accounts: AccountService) -> None:
        self._accounts = accounts

    def prepare_username(self, name: str) -> str | None:
        try:
            return normalize_username(name)
        except InvalidUsername:
            return None

    async def check_password(self, username: str, password: str) -> bool:
        return await self._accounts.verify_password(username, password)

    async def scram_credentials(self, username: str, mechanism: str) -> ScramCredentials | None:
        stored = await self._accounts.scram_credentials(username, mechanism)
        if stored is None:
            return None
        return stored.salt, stored.stored_key, stored.server_key, stored.iterations


@dataclass(frozen=True, slots=True)
class Challenge:
    data: bytes


@dataclass(frozen=True, slots=True)
class Success:
    username: str
    additional_data: bytes | None = None


Outcome = Challenge | Success


class SaslDriver(Protocol):
    """One exchange; each call returns the next step or raises SaslFailure."""

    async def start(self, initial_response: bytes | None) -> Outcome: ...

    async def step(self, response: bytes) -> Outcome: ...


class PlainDriver:
    def __init__(self, authenticator: Authenticator, domain: str) -> None:
        self._authenticator = authenticator
        self._domain = domain

    async def start(self, initial_response: bytes | None) -> Outcome:
        if initial_response is None:
            return Challenge(b"")
        return await self.step(initial_response)

    async def step(self, response: bytes) -> Outcome:
        message = parse_plain(response)
        username = self._authenticator.prepare_username(message.authcid)
        if username is None or not await self._authenticator.check_password(
            username, message.password
        ):
            raise SaslFailure(SaslCondition.NOT_AUTHORIZED, "wrong username or password")
        if message.authzid not in ("", username, f"{username}@{self._domain}"):
            raise SaslFailure(SaslCondition.INVALID_AUTHZID, "cannot act for another account")
        return Success(username)


class ScramDriver:
    def __init__(self, authenticator: Authenticator, domain: str, mechanism: str) -> None:
        self._authenticator = authenticator
        self._mechanism = mechanism
        self._exchange = ScramExchange(mechanism)
        self._username: str | None = None

    async def start(self, initial_response: bytes | None) -> Outcome:
        claimed = self._exchange.receive_client_first(initial_response)
        self._username = self._authenticator.prepare_username(claimed)
        credentials = None
        if self._username is not None:
            credentials = await self._authenticator.scram_credentials(
                self._username, self._mechanism
            )
        return Challenge(self._exchange.server_first(credentials))

    async def step(self, response: bytes) -> Outcome:
        server_final = self._exchange.receive_client_final(response)
        if self._username is None:
            raise SaslFailure(SaslCondition.NOT_AUTHORIZED, "authentication failed")
        return Success(self._username, server_final)


DriverFactory = Callable[[Authenticator, str], SaslDriver]


def password_drivers() -> dict[str, DriverFactory]:
    """The mechanisms that check the account password, strongest first."""
    drivers: dict[str, DriverFactory] = {
        name: partial(ScramDriver, mechanism=name) for name in SCRAM_MECHANISMS
    }
    drivers["PLAIN"] = PlainDriver
    return drivers
