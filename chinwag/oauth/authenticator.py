"""Who may sign in over XMPP: the platform's answer to the stream's Authenticator protocol.

Account passwords (unless ``auth.account_passwords = false``, the strict mode of the
modelled service), app passwords, which count as their app, and access tokens that
carry the ``wl.messenger`` scope and belong to an active app. A SCRAM exchange
for a name without credentials gets stand-ins shaped like an account's, derived
from a key the composition root keeps in the data directory.
"""

from __future__ import annotations

from chinwag.network.accounts import (
    DEFAULT_ITERATIONS,
    SALT_BYTES,
    AccountService,
    InvalidUsername,
    StoredScram,
    normalize_username,
)
from chinwag.oauth.service import AppPasswordGrant, OAuthService
from chinwag.server.auth import SIGN_IN_SCOPE, Grant
from chinwag.xmpp.sasl.scram import ScramCredentials, stand_in_credentials


def _scram(stored: StoredScram) -> ScramCredentials:
    return stored.salt, stored.stored_key, stored.server_key, stored.iterations


def _app_grant(grant: AppPasswordGrant) -> Grant:
    return Grant(grant.username, grant.client_id, grant.app_password_id)


class PlatformAuthenticator:
    def __init__(
        self,
        accounts: AccountService,
        oauth: OAuthService,
        *,
        account_passwords: bool,
        stand_in_key: bytes,
    ) -> None:
        """``stand_in_key``: the secret the SCRAM stand-ins' salts derive from; the same
        key at every start keeps them the same."""
        self._accounts = accounts
        self._oauth = oauth
        self._account_passwords = account_passwords
        self._stand_in_key = stand_in_key

    def prepare_username(self, name: str) -> str | None:
        try:
            return normalize_username(name)
        except InvalidUsername:
            return None

    async def check_password(self, username: str, password: str) -> Grant | None:
        if self._account_passwords and await self._accounts.verify_password(username, password):
            return Grant(username)
        app_grant = await self._oauth.check_app_password(username, password)
        return _app_grant(app_grant) if app_grant is not None else None

    async def scram_candidates(
        self, username: str, mechanism: str
    ) -> list[tuple[ScramCredentials, Grant]]:
        # Read even when account passwords are off: app passwords share its salt.
        account = await self._accounts.scram_credentials(username, mechanism)
        if account is None:
            return []
        candidates = [(_scram(account), Grant(username))] if self._account_passwords else []
        for stored, app_grant in await self._oauth.app_password_candidates(username, account):
            candidates.append((_scram(stored), _app_grant(app_grant)))
        return candidates

    def scram_stand_in(self, username: str, mechanism: str) -> ScramCredentials:
        # Accounts get SALT_BYTES of random salt and DEFAULT_ITERATIONS (derive_credentials).
        return stand_in_credentials(
            self._stand_in_key,
            mechanism,
            username,
            salt_bytes=SALT_BYTES,
            iterations=DEFAULT_ITERATIONS,
        )

    async def signed_in(self, grant: Grant) -> None:
        if grant.app is not None and grant.app_password is not None:
            await self._oauth.app_password_used(
                AppPasswordGrant(grant.username, grant.app, grant.app_password)
            )

    async def check_token(self, token: str) -> Grant | None:
        token_grant = await self._oauth.check_token(token)
        if token_grant is None or SIGN_IN_SCOPE not in token_grant.scopes:
            return None
        return Grant(
            token_grant.username, token_grant.client_id, token_family=token_grant.family_id
        )
