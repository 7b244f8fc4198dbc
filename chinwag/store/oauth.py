"""OAuth storage: apps, authorization codes, tokens, consents, app passwords and the
web sessions of the sign-in and consent pages.

Usernames reaching this layer are already normalised, and secrets arrive as their
digests (or, for app passwords, as SCRAM verifiers). Every revocation, suspension
and deletion writes its event to the network outbox in the transaction of the
change itself, so that every process ends the sessions it concerns:
``oauth.revoked`` (subject: the user, object: the app's client_id) ends that
user's sessions of that app, or with a detail (see :func:`app_password_credential`
and :func:`token_family_credential`) only those signed in with the credential it
names; ``oauth.app_suspended`` (subject: the client_id) ends every session of the app.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from sqlalchemy import Row, Select, bindparam, delete, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.accounts import NoSuchAccount, StoredScram, lock_accounts
from chinwag.store.db import Database
from chinwag.store.events import NewEvent, record_events
from chinwag.store.models import Account, Credential, utc_now
from chinwag.store.oauth_models import (
    AppPassword,
    AppPasswordCredential,
    OAuthApp,
    OAuthCode,
    OAuthConsent,
    OAuthToken,
    WebSession,
)

OAUTH_REVOKED = "oauth.revoked"
"""subject: the user; object: the client_id of the app whose grant to the user ended;
detail: the one credential of that grant that ended, or None for all of it."""
OAUTH_APP_SUSPENDED = "oauth.app_suspended"
"""subject: the client_id of an app suspended or deleted."""

ACTIVE = "active"
SUSPENDED = "suspended"

CODE_RETENTION = timedelta(days=1)
"""How long a used or expired authorization code is kept, to recognise a replay."""
TOKEN_RETENTION = timedelta(days=7)
"""How long an issuance is kept once none of its tokens works: a refresh token replayed
meanwhile is still known as one (and revokes its family); later, it is only unknown."""

WEB_SESSION_CREDENTIAL = "SCRAM-SHA-256"
"""The password verifier a web session depends on; every account with a password has one."""
MAX_WEB_SESSIONS = 100
"""Browsers signed in to one account at once: a new sign-in past this ends the oldest."""


def app_password_credential(app_password_id: int) -> str:
    """How an ``oauth.revoked`` detail names an app password."""
    return f"app-password:{app_password_id}"


def token_family_credential(family_id: str) -> str:
    """How an ``oauth.revoked`` detail names a token family: the tokens of one authorization."""
    return f"token-family:{family_id}"


class NoSuchApp(Exception):
    def __init__(self, client_id: str) -> None:
        self.client_id = client_id
        super().__init__(f"no such app '{client_id}'")


@dataclass(frozen=True, slots=True)
class NewApp:
    client_id: str
    name: str
    secret_hash: bytes | None
    """None for a public app."""
    redirect_uris: tuple[str, ...]
    public: bool
    allow_implicit: bool
    owner: str | None = None
    require_pkce: bool = True


@dataclass(frozen=True, slots=True)
class AppRecord:
    client_id: str
    name: str
    secret_hash: bytes | None
    redirect_uris: tuple[str, ...]
    public: bool
    allow_implicit: bool
    owner: str | None
    status: str
    """``active`` or ``suspended``."""
    created_at: datetime
    require_pkce: bool

    @property
    def active(self) -> bool:
        return self.status == ACTIVE


@dataclass(frozen=True, slots=True)
class NewCode:
    code_hash: bytes
    client_id: str
    username: str
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    family_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class CodeRecord:
    client_id: str
    username: str
    redirect_uri: str | None
    scope: str
    code_challenge: str | None
    code_challenge_method: str | None
    family_id: str
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class ClaimedCode:
    code: CodeRecord
    replayed: bool
    """The code had been claimed before: whoever presents it again replays it."""


@dataclass(frozen=True, slots=True)
class NewToken:
    access_hash: bytes
    refresh_hash: bytes | None
    family_id: str
    client_id: str
    username: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None


@dataclass(frozen=True, slots=True)
class TokenRecord:
    id: int
    family_id: str
    client_id: str
    username: str
    scope: str
    issued_at: datetime
    expires_at: datetime
    refresh_expires_at: datetime | None
    revoked: bool
    rotated: bool
    app_active: bool


@dataclass(frozen=True, slots=True)
class Consent:
    client_id: str
    app_name: str
    scope: str
    remembered: bool
    updated_at: datetime


@dataclass(frozen=True, slots=True)
class AppPasswordRecord:
    id: int
    client_id: str
    app_name: str
    label: str
    created_at: datetime
    last_used_at: datetime | None


@dataclass(frozen=True, slots=True)
class AppPasswordVerifier:
    id: int
    client_id: str
    scram: StoredScram


class OAuthRepository(Protocol):
    async def add_app(self, app: NewApp) -> AppRecord: ...

    async def app(self, client_id: str) -> AppRecord | None: ...

    async def apps(self) -> list[AppRecord]:
        """Every app, oldest first."""

    async def apps_of(self, owner: str) -> list[AppRecord]:
        """The apps ``owner`` registered, oldest first."""

    async def update_app(
        self, client_id: str, name: str, redirect_uris: Sequence[str], require_pkce: bool
    ) -> AppRecord | None:
        """Set the app's name, redirect URIs and PKCE rule; None if there is no such app."""

    async def set_secret(self, client_id: str, secret_hash: bytes) -> bool:
        """Replace the app's client secret; False if there is no such app."""

    async def suspend_app(self, client_id: str, origin: str) -> bool:
        """Suspend the app and revoke all its tokens; False if there is no such app."""

    async def resume_app(self, client_id: str) -> bool: ...

    async def delete_app(self, client_id: str, origin: str) -> bool:
        """Delete the app and all it owns; False if there was none."""

    async def add_code(self, code: NewCode) -> None:
        """Store a code (and forget codes long expired); raises NoSuchApp, NoSuchAccount."""

    async def claim_code(self, code_hash: bytes) -> ClaimedCode | None:
        """Mark the code used, atomically; None if there is no such code."""

    async def add_token(self, token: NewToken) -> int:
        """Store a token and return its id; raises NoSuchApp, NoSuchAccount."""

    async def token_by_access(self, access_hash: bytes) -> TokenRecord | None: ...

    async def token_by_refresh(self, refresh_hash: bytes) -> TokenRecord | None: ...

    async def rotate(self, token_id: int) -> bool:
        """Mark the token's refresh token used, atomically; False if it was used or revoked."""

    async def revoke_family(self, family_id: str, origin: str) -> bool:
        """Revoke every token of the family; False if none was live."""

    async def revoke_user_app(self, username: str, client_id: str, origin: str) -> bool:
        """End the app's grant to the user: tokens, consent and app passwords.

        False if there was nothing to end.
        """

    async def grant_consent(
        self, username: str, client_id: str, scope: str, remembered: bool | None
    ) -> None:
        """Add ``scope`` to the user's consent for the app; ``remembered`` None keeps it."""

    async def consent(self, username: str, client_id: str) -> Consent | None: ...

    async def consents(self, username: str) -> list[Consent]:
        """The user's consents, by app name."""

    async def add_app_password(
        self, username: str, client_id: str, label: str, verifiers: Sequence[StoredScram]
    ) -> int: ...

    async def app_passwords(self, username: str) -> list[AppPasswordRecord]: ...

    async def app_password_verifiers(
        self, username: str, mechanism: str
    ) -> list[AppPasswordVerifier]:
        """The verifiers for ``mechanism`` of the user's app passwords for active apps."""

    async def delete_app_password(self, username: str, password_id: int, origin: str) -> bool: ...

    async def touch_app_password(self, password_id: int, when: datetime) -> None:
        """Record that the app password was used at ``when``."""

    async def add_web_session(self, username: str, id_hash: bytes, expires_at: datetime) -> None:
        """Store a signed-in browser's session (and forget expired ones); raises NoSuchAccount."""

    async def web_session_user(self, id_hash: bytes) -> str | None:
        """The user signed in with the session, while it lasts (one indexed read)."""

    async def end_web_session(self, id_hash: bytes) -> None: ...


_APP_COLUMNS = (
    OAuthApp.client_id,
    OAuthApp.name,
    OAuthApp.secret_hash,
    OAuthApp.redirect_uris,
    OAuthApp.public,
    OAuthApp.allow_implicit,
    OAuthApp.owner,
    OAuthApp.status,
    OAuthApp.created_at,
    OAuthApp.require_pkce,
)
_CODE_COLUMNS = (
    OAuthApp.client_id,
    Account.username,
    OAuthCode.redirect_uri,
    OAuthCode.scope,
    OAuthCode.code_challenge,
    OAuthCode.code_challenge_method,
    OAuthCode.family_id,
    OAuthCode.expires_at,
)
_CONSENT_COLUMNS = (
    OAuthApp.client_id,
    OAuthApp.name,
    OAuthConsent.scope,
    OAuthConsent.remembered,
    OAuthConsent.updated_at,
)


# The reads of every sign-in (tokens, app-password verifiers) are Core statements
# built once.
_ACCOUNT = Account.__table__
_APP = OAuthApp.__table__
_TOKEN = OAuthToken.__table__
_APP_PASSWORD = AppPassword.__table__
_APP_PASSWORD_CREDENTIAL = AppPasswordCredential.__table__
_TOKENS = select(
    _TOKEN.c.id,
    _TOKEN.c.family_id,
    _APP.c.client_id,
    _ACCOUNT.c.username,
    _TOKEN.c.scope,
    _TOKEN.c.issued_at,
    _TOKEN.c.expires_at,
    _TOKEN.c.refresh_expires_at,
    _TOKEN.c.revoked,
    _TOKEN.c.rotated,
    _APP.c.status == ACTIVE,
).select_from(
    _TOKEN.join(_APP, _APP.c.id == _TOKEN.c.app_id).join(
        _ACCOUNT, _ACCOUNT.c.id == _TOKEN.c.account_id
    )
)
_TOKEN_BY_ACCESS = _TOKENS.where(_TOKEN.c.access_hash == bindparam("hash"))
_TOKEN_BY_REFRESH = _TOKENS.where(_TOKEN.c.refresh_hash == bindparam("hash"))
_APP_PASSWORD_VERIFIERS = (
    select(
        _APP_PASSWORD.c.id,
        _APP.c.client_id,
        _APP_PASSWORD_CREDENTIAL.c.salt,
        _APP_PASSWORD_CREDENTIAL.c.stored_key,
        _APP_PASSWORD_CREDENTIAL.c.server_key,
        _APP_PASSWORD_CREDENTIAL.c.iterations,
    )
    .select_from(
        _APP_PASSWORD_CREDENTIAL.join(
            _APP_PASSWORD, _APP_PASSWORD.c.id == _APP_PASSWORD_CREDENTIAL.c.app_password_id
        )
        .join(_APP, _APP.c.id == _APP_PASSWORD.c.app_id)
        .join(_ACCOUNT, _ACCOUNT.c.id == _APP_PASSWORD.c.account_id)
    )
    .where(
        _ACCOUNT.c.username == bindparam("username"),
        _APP_PASSWORD_CREDENTIAL.c.mechanism == bindparam("mechanism"),
        _APP.c.status == ACTIVE,
    )
    .order_by(_APP_PASSWORD.c.id)
)
_WEB_SESSION = WebSession.__table__
_WEB_SESSION_USER = (
    select(_ACCOUNT.c.username, _WEB_SESSION.c.expires_at)
    .select_from(_WEB_SESSION.join(_ACCOUNT, _ACCOUNT.c.id == _WEB_SESSION.c.account_id))
    .where(_WEB_SESSION.c.id_hash == bindparam("hash"))
)


class SqlOAuthRepository:
    """OAuthRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    # -- apps

    async def add_app(self, app: NewApp) -> AppRecord:
        row = {**asdict(app), "redirect_uris": json.dumps(list(app.redirect_uris))}
        async with self._sessions.begin() as session:
            await session.execute(insert(OAuthApp).values(**row, status=ACTIVE))
        added = await self.app(app.client_id)
        assert added is not None
        return added

    async def app(self, client_id: str) -> AppRecord | None:
        async with self._sessions() as session:
            row = (
                await session.execute(select(*_APP_COLUMNS).where(OAuthApp.client_id == client_id))
            ).one_or_none()
        return None if row is None else _app_record(row)

    async def apps(self) -> list[AppRecord]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(*_APP_COLUMNS).order_by(OAuthApp.created_at, OAuthApp.id)
            )
            return [_app_record(row) for row in rows]

    async def apps_of(self, owner: str) -> list[AppRecord]:
        async with self._sessions() as session:
            rows = await session.execute(
                select(*_APP_COLUMNS)
                .where(OAuthApp.owner == owner)
                .order_by(OAuthApp.created_at, OAuthApp.id)
            )
            return [_app_record(row) for row in rows]

    async def update_app(
        self, client_id: str, name: str, redirect_uris: Sequence[str], require_pkce: bool
    ) -> AppRecord | None:
        async with self._sessions.begin() as session:
            row = (
                await session.execute(
                    update(OAuthApp)
                    .where(OAuthApp.client_id == client_id)
                    .values(
                        name=name,
                        redirect_uris=json.dumps(list(redirect_uris)),
                        require_pkce=require_pkce,
                    )
                    .returning(*_APP_COLUMNS)
                )
            ).one_or_none()
        return None if row is None else _app_record(row)

    async def set_secret(self, client_id: str, secret_hash: bytes) -> bool:
        async with self._sessions.begin() as session:
            changed = await session.scalar(
                update(OAuthApp)
                .where(OAuthApp.client_id == client_id)
                .values(secret_hash=secret_hash)
                .returning(OAuthApp.id)
            )
        return changed is not None

    async def suspend_app(self, client_id: str, origin: str) -> bool:
        async with self._sessions.begin() as session:
            app_id = await _set_status(session, client_id, SUSPENDED)
            if app_id is None:
                return False
            await session.execute(
                update(OAuthToken)
                .where(OAuthToken.app_id == app_id, OAuthToken.revoked.is_(False))
                .values(revoked=True)
            )
            await record_events(session, [NewEvent(OAUTH_APP_SUSPENDED, client_id, None, origin)])
        return True

    async def resume_app(self, client_id: str) -> bool:
        async with self._sessions.begin() as session:
            return await _set_status(session, client_id, ACTIVE) is not None

    async def delete_app(self, client_id: str, origin: str) -> bool:
        async with self._sessions.begin() as session:
            deleted = await session.scalar(
                delete(OAuthApp).where(OAuthApp.client_id == client_id).returning(OAuthApp.id)
            )
            if deleted is None:
                return False
            await record_events(session, [NewEvent(OAUTH_APP_SUSPENDED, client_id, None, origin)])
        return True

    # -- authorization codes

    async def add_code(self, code: NewCode) -> None:
        async with self._sessions.begin() as session:
            app_id = await _app_id(session, code.client_id)
            account_id = await _account_id(session, code.username)
            await session.execute(
                delete(OAuthCode).where(OAuthCode.expires_at < utc_now() - CODE_RETENTION)
            )
            await session.execute(
                insert(OAuthCode).values(
                    code_hash=code.code_hash,
                    app_id=app_id,
                    account_id=account_id,
                    redirect_uri=code.redirect_uri,
                    scope=code.scope,
                    code_challenge=code.code_challenge,
                    code_challenge_method=code.code_challenge_method,
                    family_id=code.family_id,
                    expires_at=code.expires_at,
                    used=False,
                )
            )

    async def claim_code(self, code_hash: bytes) -> ClaimedCode | None:
        async with self._sessions.begin() as session:
            claimed = await session.scalar(
                update(OAuthCode)
                .where(OAuthCode.code_hash == code_hash, OAuthCode.used.is_(False))
                .values(used=True)
                .returning(OAuthCode.id)
            )
            row = (
                await session.execute(
                    select(*_CODE_COLUMNS)
                    .join(OAuthApp, OAuthApp.id == OAuthCode.app_id)
                    .join(Account, Account.id == OAuthCode.account_id)
                    .where(OAuthCode.code_hash == code_hash)
                )
            ).one_or_none()
        if row is None:
            return None
        return ClaimedCode(CodeRecord(*row), replayed=claimed is None)

    # -- tokens

    async def add_token(self, token: NewToken) -> int:
        async with self._sessions.begin() as session:
            app_id = await _app_id(session, token.client_id)
            account_id = await _account_id(session, token.username)
            await session.execute(
                delete(OAuthToken).where(OAuthToken.usable_until < utc_now() - TOKEN_RETENTION)
            )
            token_id = await session.scalar(
                insert(OAuthToken)
                .values(
                    access_hash=token.access_hash,
                    refresh_hash=token.refresh_hash,
                    family_id=token.family_id,
                    app_id=app_id,
                    account_id=account_id,
                    scope=token.scope,
                    issued_at=token.issued_at,
                    expires_at=token.expires_at,
                    refresh_expires_at=token.refresh_expires_at,
                    usable_until=token.refresh_expires_at or token.expires_at,
                    revoked=False,
                    rotated=False,
                )
                .returning(OAuthToken.id)
            )
        assert token_id is not None
        return token_id

    async def token_by_access(self, access_hash: bytes) -> TokenRecord | None:
        return await self._token(_TOKEN_BY_ACCESS, access_hash)

    async def token_by_refresh(self, refresh_hash: bytes) -> TokenRecord | None:
        return await self._token(_TOKEN_BY_REFRESH, refresh_hash)

    async def _token(
        self, statement: Select[*tuple[Any, ...]], hashed: bytes
    ) -> TokenRecord | None:
        rows = await self._db.rows(statement, {"hash": hashed})
        return TokenRecord(*rows[0]) if rows else None

    async def rotate(self, token_id: int) -> bool:
        async with self._sessions.begin() as session:
            rotated = await session.scalar(
                update(OAuthToken)
                .where(
                    OAuthToken.id == token_id,
                    OAuthToken.rotated.is_(False),
                    OAuthToken.revoked.is_(False),
                )
                .values(rotated=True)
                .returning(OAuthToken.id)
            )
        return rotated is not None

    async def revoke_family(self, family_id: str, origin: str) -> bool:
        async with self._sessions.begin() as session:
            revoked = await _count(
                session,
                update(OAuthToken)
                .where(OAuthToken.family_id == family_id, OAuthToken.revoked.is_(False))
                .values(revoked=True)
                .returning(OAuthToken.id),
            )
            if not revoked:
                return False
            username, client_id = (
                await session.execute(
                    select(Account.username, OAuthApp.client_id)
                    .select_from(OAuthToken)
                    .join(Account, Account.id == OAuthToken.account_id)
                    .join(OAuthApp, OAuthApp.id == OAuthToken.app_id)
                    .where(OAuthToken.family_id == family_id)
                    .limit(1)
                )
            ).one()
            event = NewEvent(
                OAUTH_REVOKED, username, client_id, origin, token_family_credential(family_id)
            )
            await record_events(session, [event])
        return True

    async def revoke_user_app(self, username: str, client_id: str, origin: str) -> bool:
        async with self._sessions.begin() as session:
            app_id = await _app_id(session, client_id)
            account_id = await _account_id(session, username)
            ended = [
                await _count(session, statement)
                for statement in (
                    update(OAuthToken)
                    .where(
                        OAuthToken.account_id == account_id,
                        OAuthToken.app_id == app_id,
                        OAuthToken.revoked.is_(False),
                    )
                    .values(revoked=True)
                    .returning(OAuthToken.id),
                    delete(OAuthConsent)
                    .where(OAuthConsent.account_id == account_id, OAuthConsent.app_id == app_id)
                    .returning(OAuthConsent.app_id),
                    delete(AppPassword)
                    .where(AppPassword.account_id == account_id, AppPassword.app_id == app_id)
                    .returning(AppPassword.id),
                )
            ]
            if not any(ended):
                return False
            await record_events(session, [NewEvent(OAUTH_REVOKED, username, client_id, origin)])
        return True

    # -- consents

    async def grant_consent(
        self, username: str, client_id: str, scope: str, remembered: bool | None
    ) -> None:
        async with self._sessions.begin() as session:
            locked = await lock_accounts(session, [username])
            if username not in locked:
                raise NoSuchAccount(username)
            account_id = locked[username].id
            app_id = await _app_id(session, client_id)
            key = (OAuthConsent.account_id == account_id, OAuthConsent.app_id == app_id)
            current = (
                await session.execute(
                    select(OAuthConsent.scope, OAuthConsent.remembered).where(*key)
                )
            ).one_or_none()
            if current is None:
                await session.execute(
                    insert(OAuthConsent).values(
                        account_id=account_id,
                        app_id=app_id,
                        scope=_joined(scope),
                        remembered=bool(remembered),
                        updated_at=utc_now(),
                    )
                )
                return
            await session.execute(
                update(OAuthConsent)
                .where(*key)
                .values(
                    scope=_joined(f"{current.scope} {scope}"),
                    remembered=current.remembered if remembered is None else remembered,
                    updated_at=utc_now(),
                )
            )

    async def consent(self, username: str, client_id: str) -> Consent | None:
        query = _consent_query().where(
            Account.username == username, OAuthApp.client_id == client_id
        )
        async with self._sessions() as session:
            row = (await session.execute(query)).one_or_none()
        return None if row is None else Consent(*row)

    async def consents(self, username: str) -> list[Consent]:
        query = _consent_query().where(Account.username == username)
        async with self._sessions() as session:
            rows = await session.execute(query.order_by(OAuthApp.name, OAuthApp.client_id))
            return [Consent(*row) for row in rows]

    # -- app passwords

    async def add_app_password(
        self, username: str, client_id: str, label: str, verifiers: Sequence[StoredScram]
    ) -> int:
        async with self._sessions.begin() as session:
            app_id = await _app_id(session, client_id)
            account_id = await _account_id(session, username)
            password_id = await session.scalar(
                insert(AppPassword)
                .values(account_id=account_id, app_id=app_id, label=label, created_at=utc_now())
                .returning(AppPassword.id)
            )
            assert password_id is not None
            if verifiers:
                await session.execute(
                    insert(AppPasswordCredential),
                    [{"app_password_id": password_id, **asdict(each)} for each in verifiers],
                )
        return password_id

    async def app_passwords(self, username: str) -> list[AppPasswordRecord]:
        query = (
            select(
                AppPassword.id,
                OAuthApp.client_id,
                OAuthApp.name,
                AppPassword.label,
                AppPassword.created_at,
                AppPassword.last_used_at,
            )
            .join(OAuthApp, OAuthApp.id == AppPassword.app_id)
            .join(Account, Account.id == AppPassword.account_id)
            .where(Account.username == username)
            .order_by(AppPassword.id)
        )
        async with self._sessions() as session:
            rows = await session.execute(query)
            return [AppPasswordRecord(*row) for row in rows]

    async def app_password_verifiers(
        self, username: str, mechanism: str
    ) -> list[AppPasswordVerifier]:
        rows = await self._db.rows(
            _APP_PASSWORD_VERIFIERS, {"username": username, "mechanism": mechanism}
        )
        return [
            AppPasswordVerifier(
                row.id,
                row.client_id,
                StoredScram(
                    mechanism,
                    bytes(row.salt),
                    bytes(row.stored_key),
                    bytes(row.server_key),
                    row.iterations,
                ),
            )
            for row in rows
        ]

    async def delete_app_password(self, username: str, password_id: int, origin: str) -> bool:
        async with self._sessions.begin() as session:
            account_id = await _account_id(session, username)
            app_id = await session.scalar(
                delete(AppPassword)
                .where(AppPassword.id == password_id, AppPassword.account_id == account_id)
                .returning(AppPassword.app_id)
            )
            if app_id is None:
                return False
            client_id = await session.scalar(
                select(OAuthApp.client_id).where(OAuthApp.id == app_id)
            )
            assert client_id is not None
            event = NewEvent(
                OAUTH_REVOKED, username, client_id, origin, app_password_credential(password_id)
            )
            await record_events(session, [event])
        return True

    async def touch_app_password(self, password_id: int, when: datetime) -> None:
        async with self._sessions.begin() as session:
            await session.execute(
                update(AppPassword).where(AppPassword.id == password_id).values(last_used_at=when)
            )

    # -- web sessions

    async def add_web_session(self, username: str, id_hash: bytes, expires_at: datetime) -> None:
        now = utc_now()
        async with self._sessions.begin() as session:
            account_id = await session.scalar(
                select(Credential.account_id)
                .join(Account, Account.id == Credential.account_id)
                .where(Account.username == username, Credential.mechanism == WEB_SESSION_CREDENTIAL)
            )
            if account_id is None:
                raise NoSuchAccount(username)
            await session.execute(delete(WebSession).where(WebSession.expires_at <= now))
            await session.execute(
                insert(WebSession).values(
                    id_hash=id_hash,
                    account_id=account_id,
                    mechanism=WEB_SESSION_CREDENTIAL,
                    created_at=now,
                    expires_at=expires_at,
                )
            )
            kept = (
                select(WebSession.id)
                .where(WebSession.account_id == account_id)
                .order_by(WebSession.id.desc())
                .limit(MAX_WEB_SESSIONS)
                .scalar_subquery()
            )
            await session.execute(
                delete(WebSession).where(
                    WebSession.account_id == account_id, WebSession.id.not_in(kept)
                )
            )

    async def web_session_user(self, id_hash: bytes) -> str | None:
        rows = await self._db.rows(_WEB_SESSION_USER, {"hash": id_hash})
        if not rows or rows[0].expires_at <= utc_now():
            return None
        username: str = rows[0].username
        return username

    async def end_web_session(self, id_hash: bytes) -> None:
        async with self._sessions.begin() as session:
            await session.execute(delete(WebSession).where(WebSession.id_hash == id_hash))


def _app_record(row: Row[*tuple[Any, ...]]) -> AppRecord:
    values = row._asdict()
    return AppRecord(**{**values, "redirect_uris": tuple(json.loads(values["redirect_uris"]))})


def _consent_query() -> Any:
    return (
        select(*_CONSENT_COLUMNS)
        .join(OAuthApp, OAuthApp.id == OAuthConsent.app_id)
        .join(Account, Account.id == OAuthConsent.account_id)
    )


def _joined(scope: str) -> str:
    """``scope`` with each scope once, sorted."""
    return " ".join(sorted(set(scope.split())))


async def _count(session: AsyncSession, statement: Any) -> int:
    """How many rows ``statement`` (with RETURNING) changed."""
    return len((await session.scalars(statement)).all())


async def _set_status(session: AsyncSession, client_id: str, status: str) -> int | None:
    return await session.scalar(
        update(OAuthApp)
        .where(OAuthApp.client_id == client_id)
        .values(status=status)
        .returning(OAuthApp.id)
    )


async def _app_id(session: AsyncSession, client_id: str) -> int:
    app_id = await session.scalar(select(OAuthApp.id).where(OAuthApp.client_id == client_id))
    if app_id is None:
        raise NoSuchApp(client_id)
    return app_id


async def _account_id(session: AsyncSession, username: str) -> int:
    account_id = await session.scalar(select(Account.id).where(Account.username == username))
    if account_id is None:
        raise NoSuchAccount(username)
    return account_id
