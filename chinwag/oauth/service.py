"""The OAuth platform as the rest of chinwag uses it: apps, tokens, consents, app passwords,
and the web sessions of the users signed in on its pages.

The command line and the web pages manage apps and grants through
:class:`OAuthService`; the XMPP server asks it whether a token or an app password
may sign in. The protocol endpoints themselves (authorize, token, revoke,
introspect) are :attr:`OAuthService.endpoints`, built on Authlib in
``chinwag.oauth.server``.

Every revocation, suspension and deletion is announced on the network event
outbox (``oauth.revoked``, ``oauth.app_suspended``), so that whichever process
holds the affected XMPP sessions ends them.
"""

from __future__ import annotations

import asyncio
import hmac
import ipaddress
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.parse import urlsplit

from chinwag.config import OAuthSettings
from chinwag.network.accounts import (
    MECHANISMS,
    AccountService,
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    StoredScram,
    derive_matching,
    normalize_username,
)
from chinwag.oauth.scopes import MESSENGER, UnknownScope, parse_scope
from chinwag.oauth.server import OAuthEndpoints
from chinwag.oauth.tokens import (
    bearer_token,
    digest,
    new_app_password,
    new_client_id,
    new_family_id,
    new_secret,
    token_row,
)
from chinwag.store.events import UNAPPLIED
from chinwag.store.models import utc_now
from chinwag.store.oauth import (
    OAUTH_APP_SUSPENDED,
    OAUTH_REVOKED,
    AppPasswordRecord,
    AppPasswordVerifier,
    AppRecord,
    Consent,
    NewApp,
    NoSuchApp,
    OAuthRepository,
)
from chinwag.store.oauth_models import MAX_APP_NAME, MAX_LABEL

__all__ = [
    "OAUTH_APP_SUSPENDED",
    "OAUTH_REVOKED",
    "AppInfo",
    "AppPasswordGrant",
    "AppPasswordRecord",
    "AppSuspended",
    "Consent",
    "InvalidRegistration",
    "InvalidRequest",
    "IssuedToken",
    "NoSuchAccount",
    "NoSuchApp",
    "OAuthService",
    "RegisteredApp",
    "TokenGrant",
    "UnknownScope",
]

log = logging.getLogger(__name__)

_PLAIN_CHECK_MECHANISM = "SCRAM-SHA-256"


MAX_APPS_PER_OWNER = 100
"""Apps one user may own (registered in the developer portal, or for them with
``--owner``); apps the operator registers for nobody are not counted."""
MAX_APP_PASSWORDS = 100
"""App passwords one account holds at most: each sign-in with a password checks them."""


class InvalidRequest(ValueError):
    """A request the service cannot meet, said in one line."""


class InvalidRegistration(InvalidRequest):
    pass


class AppSuspended(Exception):
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"app '{client_id}' is suspended")


@dataclass(frozen=True, slots=True)
class AppInfo:
    client_id: str
    name: str
    redirect_uris: tuple[str, ...]
    public: bool
    allow_implicit: bool
    owner: str | None
    status: str
    """``active`` or ``suspended``."""
    created_at: datetime
    require_pkce: bool
    """Always true for a public app; false lets a confidential app skip PKCE."""


@dataclass(frozen=True, slots=True)
class RegisteredApp:
    app: AppInfo
    client_secret: str | None
    """Shown once, never stored; None for public apps."""


@dataclass(frozen=True, slots=True)
class IssuedToken:
    access_token: str
    token_type: str
    expires_in: int
    scope: str
    refresh_token: str | None
    expires_at: datetime

    def response(self) -> dict[str, str | int]:
        """The RFC 6749 section 5.1 token response."""
        body: dict[str, str | int] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "expires_in": self.expires_in,
            "scope": self.scope,
        }
        if self.refresh_token is not None:
            body["refresh_token"] = self.refresh_token
        return body


@dataclass(frozen=True, slots=True)
class TokenGrant:
    """What a live access token allows: an app acting for a user."""

    username: str
    client_id: str
    scopes: frozenset[str]
    token_id: int
    expires_at: datetime
    family_id: str
    """The authorization the token belongs to, with every token refreshed from it."""


@dataclass(frozen=True, slots=True)
class AppPasswordGrant:
    """A sign-in with an app password: it counts as the app."""

    username: str
    client_id: str
    app_password_id: int


class OAuthService:
    """Apps, grants and credentials; usernames are normalised on the way in.

    ``origin`` marks the outbox events this service writes (see
    ``chinwag.network.events``); the default marks them as applied by nobody, so
    every process's reader, this one's included, acts on them.
    """

    def __init__(
        self,
        repo: OAuthRepository,
        accounts: AccountService,
        settings: OAuthSettings,
        origin: str = UNAPPLIED,
    ) -> None:
        self._repo = repo
        self._accounts = accounts
        self._settings = settings
        self._origin = origin
        self.endpoints = OAuthEndpoints(repo, settings, origin)

    # -- apps

    async def register_app(
        self,
        name: str,
        redirect_uris: Sequence[str],
        *,
        public: bool = False,
        allow_implicit: bool = False,
        owner: str | None = None,
        require_pkce: bool = True,
    ) -> RegisteredApp:
        """Register an app; the client secret of a confidential app is returned only here.

        Every app must use PKCE unless a confidential one is registered with
        ``require_pkce=False``. The implicit grant (``allow_implicit``, public apps only)
        works only while the operator allows it (``[oauth] allow_implicit``).
        """
        checked_name = _check_name(name)
        uris = _check_redirect_uris(redirect_uris)
        if allow_implicit and not public:
            raise InvalidRegistration(
                "the implicit grant is for public apps (in a browser, they cannot keep "
                "a secret): register the app as public too"
            )
        _check_pkce(public, require_pkce)
        owner = None if owner is None else normalize_username(owner)
        if owner is not None and len(await self._repo.apps_of(owner)) >= MAX_APPS_PER_OWNER:
            raise InvalidRegistration(
                f"a user owns at most {MAX_APPS_PER_OWNER} apps: delete one first"
            )
        secret = None if public else new_secret()
        record = await self._repo.add_app(
            NewApp(
                client_id=new_client_id(),
                name=checked_name,
                secret_hash=None if secret is None else digest(secret),
                redirect_uris=uris,
                public=public,
                allow_implicit=allow_implicit,
                owner=owner,
                require_pkce=require_pkce,
            )
        )
        return RegisteredApp(_app_info(record), secret)

    async def list_apps(self) -> list[AppInfo]:
        return [_app_info(record) for record in await self._repo.apps()]

    async def get_app(self, client_id: str) -> AppInfo | None:
        record = await self._repo.app(client_id)
        return None if record is None else _app_info(record)

    async def apps_of(self, owner: str) -> list[AppInfo]:
        """The apps the user registered (in the developer portal, or with ``--owner``)."""
        try:
            user = normalize_username(owner)
        except InvalidUsername:
            return []
        return [_app_info(record) for record in await self._repo.apps_of(user)]

    async def owned_app(self, client_id: str, owner: str | None) -> AppInfo:
        """The app, if ``owner`` registered it (any app when ``owner`` is None).

        Raises NoSuchApp otherwise: another developer's app is as good as absent.
        """
        app = await self.get_app(client_id)
        if app is None or (owner is not None and app.owner != _normalized_or_none(owner)):
            raise NoSuchApp(client_id)
        return app

    async def update_app(
        self,
        client_id: str,
        *,
        name: str | None = None,
        redirect_uris: Sequence[str] | None = None,
        require_pkce: bool | None = None,
        owner: str | None = None,
    ) -> AppInfo:
        """Change the app's name, its redirect URIs (all of them), or whether a confidential
        app must use PKCE; what is None stays as it is. Checked as at registration.

        Codes, tokens and consents already given stay valid. With ``owner``, only that
        user's app (else NoSuchApp). Raises NoSuchApp and InvalidRegistration.
        """
        app = await self.owned_app(client_id, owner)
        checked_name = app.name if name is None else _check_name(name)
        uris = app.redirect_uris if redirect_uris is None else _check_redirect_uris(redirect_uris)
        pkce = app.require_pkce if require_pkce is None else require_pkce
        _check_pkce(app.public, pkce)
        record = await self._repo.update_app(client_id, checked_name, uris, pkce)
        if record is None:
            raise NoSuchApp(client_id)
        return _app_info(record)

    async def rotate_secret(self, client_id: str, owner: str | None = None) -> str:
        """A new client secret for a confidential app, returned only here.

        The old secret stops working at once; tokens already issued stay valid.
        With ``owner``, only that user's app (else NoSuchApp). Raises NoSuchApp, and
        InvalidRequest for a public app, which has no secret.
        """
        app = await self.owned_app(client_id, owner)
        if app.public:
            raise InvalidRequest("a public app has no client secret to rotate")
        secret = new_secret()
        if not await self._repo.set_secret(client_id, digest(secret)):
            raise NoSuchApp(client_id)
        return secret

    async def suspend_app(self, client_id: str, by: str | None = None) -> None:
        """Suspend the app: its tokens are revoked and its sessions end; raises NoSuchApp.

        ``by``: the operator who did it, for the log.
        """
        if not await self._repo.suspend_app(client_id, self._origin):
            raise NoSuchApp(client_id)
        log.info("app suspended", extra={"fields": {"client_id": client_id, "by": by}})

    async def resume_app(self, client_id: str, by: str | None = None) -> None:
        """Let a suspended app in again (its revoked tokens stay revoked); raises NoSuchApp."""
        if not await self._repo.resume_app(client_id):
            raise NoSuchApp(client_id)
        log.info("app resumed", extra={"fields": {"client_id": client_id, "by": by}})

    async def delete_app(self, client_id: str, owner: str | None = None) -> None:
        """Delete the app with every grant to it; its sessions end; raises NoSuchApp.

        With ``owner``, only that user's app (else NoSuchApp).
        """
        if owner is not None:
            await self.owned_app(client_id, owner)
        if not await self._repo.delete_app(client_id, self._origin):
            raise NoSuchApp(client_id)
        log.info("app deleted", extra={"fields": {"client_id": client_id, "by": owner}})

    # -- tokens and consents

    async def issue_token(
        self,
        client_id: str,
        username: str,
        scopes: str | Iterable[str],
        ttl: int | None = None,
    ) -> IssuedToken:
        """A token issued without the browser, as if the user had approved the app.

        A refresh token comes with it when ``scopes`` has ``wl.offline_access``.
        Raises NoSuchApp, AppSuspended, NoSuchAccount, InvalidUsername, UnknownScope.
        """
        user = normalize_username(username)
        scope = " ".join(parse_scope(scopes))
        await self._require_active_app(client_id)
        expires_in = self._settings.access_token_ttl_seconds if ttl is None else ttl
        if expires_in <= 0:
            raise InvalidRequest("the lifetime of a token must be at least one second")
        await self._repo.grant_consent(user, client_id, scope, remembered=None)
        token = bearer_token(scope, expires_in, refreshable=True)
        row = token_row(
            token,
            client_id=client_id,
            username=user,
            family_id=new_family_id(),
            refresh_ttl=self._settings.refresh_token_ttl_seconds,
            now=utc_now(),
        )
        await self._repo.add_token(row)
        return IssuedToken(
            access_token=token["access_token"],
            token_type=token["token_type"],
            expires_in=expires_in,
            scope=scope,
            refresh_token=token.get("refresh_token"),
            expires_at=row.expires_at,
        )

    async def revoke_token(self, token: str) -> bool:
        """Revoke the grant an access or refresh token belongs to, ending the sessions its
        tokens signed in; False if unknown."""
        hashed = digest(token)
        record = await self._repo.token_by_access(hashed) or await self._repo.token_by_refresh(
            hashed
        )
        if record is None:
            return False
        await self._repo.revoke_family(record.family_id, self._origin)
        fields = {"user": record.username, "client_id": record.client_id, "reason": "revoked"}
        log.info("tokens revoked", extra={"fields": fields})
        return True

    async def check_token(self, token: str) -> TokenGrant | None:
        """What the access token allows, if it is live, unrevoked and its app active."""
        record = await self._repo.token_by_access(digest(token))
        if (
            record is None
            or record.revoked
            or not record.app_active
            or record.expires_at <= utc_now()
        ):
            return None
        return TokenGrant(
            username=record.username,
            client_id=record.client_id,
            scopes=frozenset(record.scope.split()),
            token_id=record.id,
            expires_at=record.expires_at,
            family_id=record.family_id,
        )

    async def remembered(self, username: str, client_id: str, scopes: Iterable[str]) -> bool:
        """Whether the user chose to skip the consent page for ``scopes`` of this app."""
        consent = await self._repo.consent(normalize_username(username), client_id)
        return (
            consent is not None and consent.remembered and set(scopes) <= set(consent.scope.split())
        )

    async def record_consent(
        self, username: str, client_id: str, scopes: Iterable[str], remember: bool
    ) -> None:
        """The user approved ``scopes`` for the app on the consent page."""
        scope = " ".join(parse_scope(scopes))
        await self._repo.grant_consent(normalize_username(username), client_id, scope, remember)

    async def connected_apps(self, username: str) -> list[Consent]:
        """The apps the user granted access to, by name."""
        return await self._repo.consents(normalize_username(username))

    async def revoke_app_for_user(self, username: str, client_id: str) -> bool:
        """End the app's access to the user: tokens, consent, app passwords and sessions.

        False if the app had none; raises NoSuchApp, NoSuchAccount.
        """
        user = normalize_username(username)
        revoked = await self._repo.revoke_user_app(user, client_id, self._origin)
        return _logged_if(revoked, "app access revoked by the user", user=user, client_id=client_id)

    # -- app passwords

    async def create_app_password(
        self, username: str, client_id: str, label: str
    ) -> tuple[int, str]:
        """A new app password for the app, shown only now: (its id, the password).

        Its SCRAM verifiers take the salt and iteration count of the account's own,
        so one SCRAM exchange can be checked against all of them.
        """
        user = normalize_username(username)
        await self._require_active_app(client_id)
        checked_label = _check_label(label)
        if len(await self._repo.app_passwords(user)) >= MAX_APP_PASSWORDS:
            raise InvalidRequest(
                f"an account holds at most {MAX_APP_PASSWORDS} app passwords: revoke one first"
            )
        password = new_app_password()
        models = [
            model
            for mechanism in MECHANISMS
            if (model := await self._accounts.scram_credentials(user, mechanism)) is not None
        ]
        verifiers = await asyncio.to_thread(
            lambda: [derive_matching(password, model) for model in models]
        )
        await self._repo.grant_consent(user, client_id, MESSENGER, remembered=None)
        password_id = await self._repo.add_app_password(user, client_id, checked_label, verifiers)
        return password_id, password

    async def list_app_passwords(self, username: str) -> list[AppPasswordRecord]:
        return await self._repo.app_passwords(normalize_username(username))

    async def revoke_app_password(self, username: str, app_password_id: int) -> bool:
        """Delete it and end the sessions it signed in; False if there was none."""
        user = normalize_username(username)
        revoked = await self._repo.delete_app_password(user, app_password_id, self._origin)
        return _logged_if(
            revoked, "app password revoked", user=user, app_password_id=app_password_id
        )

    async def app_password_candidates(
        self, username: str, account: StoredScram
    ) -> list[tuple[StoredScram, AppPasswordGrant]]:
        """The user's app-password verifiers for the SCRAM mechanism of ``account``, the
        account's own verifier (which the caller has read already), for active apps.

        All share the salt and iteration count of ``account``, which the server-first
        message announces (verifiers made before a password change, with the old
        salt, are left out).
        """
        try:
            user = normalize_username(username)
        except InvalidUsername:
            return []
        return [
            (verifier.scram, AppPasswordGrant(user, verifier.client_id, verifier.id))
            for verifier in await self._repo.app_password_verifiers(user, account.mechanism)
            if (verifier.scram.salt, verifier.scram.iterations)
            == (account.salt, account.iterations)
        ]

    async def check_app_password(self, username: str, password: str) -> AppPasswordGrant | None:
        """The grant of the app password ``password`` of the user (for SASL PLAIN), or None."""
        try:
            user = normalize_username(username)
        except InvalidUsername:
            return None
        verifiers = await self._repo.app_password_verifiers(user, _PLAIN_CHECK_MECHANISM)
        found = await asyncio.get_running_loop().run_in_executor(
            None, _matching_verifier, password, verifiers
        )
        if found is None:
            return None
        return AppPasswordGrant(user, found.client_id, found.id)

    async def app_password_used(self, grant: AppPasswordGrant) -> None:
        """Record a sign-in with the app password (the connected-apps page shows when)."""
        await self._repo.touch_app_password(grant.app_password_id, utc_now())

    # -- web sessions

    async def start_web_session(self, username: str, ttl: timedelta) -> str:
        """A new session id for a browser the user just signed in on, valid for ``ttl``.

        Only its digest is stored; it ends at sign-out, when it expires, and when the
        user's password changes or the account is deleted. Raises NoSuchAccount.
        """
        session_id = new_secret()
        expires_at = utc_now() + ttl
        await self._repo.add_web_session(
            normalize_username(username), digest(session_id), expires_at
        )
        return session_id

    async def web_session_user(self, session_id: str) -> str | None:
        """The user signed in with ``session_id``, if the session has not ended."""
        return await self._repo.web_session_user(digest(session_id))

    async def end_web_session(self, session_id: str) -> None:
        """Sign the session out: its id no longer signs anybody in."""
        await self._repo.end_web_session(digest(session_id))

    async def _require_active_app(self, client_id: str) -> None:
        app = await self._repo.app(client_id)
        if app is None:
            raise NoSuchApp(client_id)
        if not app.active:
            raise AppSuspended(client_id)


def _logged_if(done: bool, message: str, **fields: object) -> bool:
    """``done``, once ``message`` is logged with ``fields`` if it is true."""
    if done:
        log.info(message, extra={"fields": fields})
    return done


def _matching_verifier(
    password: str, verifiers: Sequence[AppPasswordVerifier]
) -> AppPasswordVerifier | None:
    """The verifier ``password`` matches; one PBKDF2 run per distinct salt."""
    derived: dict[tuple[bytes, int], bytes | None] = {}
    for verifier in verifiers:
        scram = verifier.scram
        key = (scram.salt, scram.iterations)
        if key not in derived:
            try:
                derived[key] = derive_matching(password, scram).stored_key
            except InvalidPassword:
                derived[key] = None
        stored_key = derived[key]
        if stored_key is not None and hmac.compare_digest(stored_key, scram.stored_key):
            return verifier
    return None


def _app_info(record: AppRecord) -> AppInfo:
    return AppInfo(
        client_id=record.client_id,
        name=record.name,
        redirect_uris=record.redirect_uris,
        public=record.public,
        allow_implicit=record.allow_implicit,
        owner=record.owner,
        status=record.status,
        created_at=record.created_at,
        require_pkce=record.require_pkce,
    )


def _normalized_or_none(name: str) -> str | None:
    try:
        return normalize_username(name)
    except InvalidUsername:
        return None


def _check_name(name: str) -> str:
    name = name.strip()
    if not name:
        raise InvalidRegistration("the app's name is empty")
    if len(name) > MAX_APP_NAME:
        raise InvalidRegistration(f"the app's name is longer than {MAX_APP_NAME} characters")
    return name


def _check_label(label: str) -> str:
    label = label.strip()
    if not label:
        raise InvalidRequest("the app password's label is empty")
    if len(label) > MAX_LABEL:
        raise InvalidRequest(f"the app password's label is longer than {MAX_LABEL} characters")
    return label


def _check_redirect_uris(uris: Sequence[str]) -> tuple[str, ...]:
    """The redirect URIs, each once, if an app may register them all."""
    checked = tuple(dict.fromkeys(_check_redirect_uri(uri) for uri in uris))
    if not checked:
        raise InvalidRegistration("an app needs at least one redirect URI")
    return checked


def _check_pkce(public: bool, require_pkce: bool) -> None:
    if public and not require_pkce:
        raise InvalidRegistration(
            "a public app always uses PKCE: it has no secret to prove itself with"
        )


def _check_redirect_uri(uri: str) -> str:
    """``uri`` if an app may register it (RFC 6749 3.1.2, RFC 8252 7, RFC 9700 2.1)."""
    parts = urlsplit(uri)
    if parts.fragment or "#" in uri:
        raise InvalidRegistration(f"redirect URI {uri!r} must not have a fragment")
    if parts.scheme == "https" and parts.hostname:
        return uri
    if parts.scheme == "http" and _is_loopback(parts.hostname):
        return uri
    if "." in parts.scheme:  # a private-use scheme of a native app: com.example.app:/callback
        return uri
    raise InvalidRegistration(
        f"redirect URI {uri!r} must use https, http on a loopback address, or a "
        "private-use scheme such as com.example.app:/callback"
    )


def _is_loopback(hostname: str | None) -> bool:
    if hostname == "localhost":
        return True
    try:
        return hostname is not None and ipaddress.ip_address(hostname).is_loopback
    except ValueError:
        return False
