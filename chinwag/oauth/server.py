"""The authorization server: Authlib's grants and endpoints over chinwag's storage.

Authlib implements the protocol: the authorization code grant with PKCE (RFC 7636),
the implicit grant, the refresh token grant, revocation (RFC 7009), introspection
(RFC 7662), client authentication and every error of RFC 6749. This module only
says how to store and find things, and adapts plain HTTP values in and out, so it
knows no web framework: :class:`HttpRequest` and :class:`HttpResponse` are what the
web layer translates.

The sync/async bridge, decided here once
-----------------------------------------
Authlib's server API is synchronous and calls its storage hooks (find the client,
save the code, ...) in the middle of a request; chinwag's storage is asynchronous.
Every Authlib call therefore runs in a worker thread (``anyio.to_thread``, so the
event loop that also carries XMPP traffic never blocks), and each storage hook
hands its query back to the event loop and waits for it
(``anyio.from_thread.run``). The repositories, their engine and their
transactions stay on the event loop, the same ones the rest of chinwag uses, on
SQLite and PostgreSQL alike; no second, synchronous engine exists. The cost is
one thread hop per request and one loop hop per query, negligible next to the
network round trip of an OAuth request. Atomic conditional updates in the store
(claim a code, rotate a refresh token) keep concurrent requests honest.

Policy on top of Authlib (RFC 9700): PKCE with S256 is required of every app, except
a confidential app registered without it, and then still of any request that sent a
challenge; the implicit grant exists only when the operator allows it (``[oauth]
allow_implicit``), and then only for apps registered for it; refresh tokens only with
``wl.offline_access``, rotated on every use, and a replayed refresh token or code
revokes its whole token family.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Coroutine, Mapping, Sequence
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

import anyio.from_thread
import anyio.to_thread
from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationCodeMixin,
    AuthorizationServer,
    ClientMixin,
    ImplicitGrant,
    InvalidGrantError,
    InvalidRequestError,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    RefreshTokenGrant,
    TokenMixin,
    UnsupportedResponseTypeError,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from chinwag.config import OAuthSettings
from chinwag.oauth.scopes import SCOPES, UnknownScope, parse_scope
from chinwag.oauth.tokens import (
    bearer_token,
    digest,
    new_family_id,
    new_secret,
    secret_matches,
    token_row,
)
from chinwag.store.models import utc_now
from chinwag.store.oauth import (
    AppRecord,
    CodeRecord,
    NewCode,
    OAuthRepository,
    TokenRecord,
)

log = logging.getLogger(__name__)

T = TypeVar("T")

AUTHORIZE_PATH = "/oauth/authorize"
TOKEN_PATH = "/oauth/token"
REVOKE_PATH = "/oauth/revoke"
INTROSPECT_PATH = "/oauth/introspect"
METADATA_PATH = "/.well-known/oauth-authorization-server"

_CONFIDENTIAL_AUTH = ["client_secret_basic", "client_secret_post"]
_ANY_CLIENT_AUTH = [*_CONFIDENTIAL_AUTH, "none"]
_PKCE_METHOD = "S256"


@dataclass(frozen=True, slots=True)
class HttpRequest:
    method: str
    uri: str
    """The full request URI; Authlib refuses plain http except on loopback."""
    headers: Mapping[str, str]
    """Case-insensitive, as a web framework's headers are."""
    params: Mapping[str, Sequence[str]]
    """The OAuth parameters: the query of an authorization request, else the form."""


@dataclass(frozen=True, slots=True)
class HttpResponse:
    status: int
    body: str
    headers: list[tuple[str, str]]


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """A valid authorization request, as the consent page presents it."""

    client_id: str
    app_name: str
    scopes: tuple[str, ...]
    redirect_uri: str
    state: str | None


class AuthorizationRefused(Exception):
    """An authorization request that cannot go on.

    ``redirect`` sends the error back to the app when its redirect URI could be
    trusted (RFC 6749 4.1.2.1); otherwise it is None, and the error must be shown to
    the user instead of redirecting anywhere.
    """

    def __init__(self, error: str, description: str, redirect: HttpResponse | None) -> None:
        super().__init__(f"{error}: {description}")
        self.error = error
        self.description = description
        self.redirect = redirect


class OAuthEndpoints:
    """The OAuth endpoints, for the web layer; every call runs Authlib in a worker thread."""

    def __init__(self, repo: OAuthRepository, settings: OAuthSettings, origin: str) -> None:
        self._server = _Server(repo, settings, origin)
        self._implicit = settings.allow_implicit

    async def token(self, request: HttpRequest) -> HttpResponse:
        return await _in_worker(self._respond, self._server.create_token_response, request)

    async def revoke(self, request: HttpRequest) -> HttpResponse:
        return await _in_worker(self._respond, self._endpoint("revocation"), request)

    async def introspect(self, request: HttpRequest) -> HttpResponse:
        return await _in_worker(self._respond, self._endpoint("introspection"), request)

    async def consent_request(self, request: HttpRequest) -> ConsentRequest:
        """Validate an authorization request; raises AuthorizationRefused."""
        grant = await _in_worker(self._consent_grant, request)
        client: _Client = grant.request.client
        return ConsentRequest(
            client_id=client.app.client_id,
            app_name=client.app.name,
            scopes=tuple(grant.request.scope.split()),
            redirect_uri=grant.redirect_uri,
            state=grant.request.payload.state,
        )

    async def authorize(self, request: HttpRequest, username: str | None) -> HttpResponse:
        """The redirect that answers an authorization request, granted to ``username``
        or, when None, denied; raises AuthorizationRefused."""
        return await _in_worker(self._authorize, request, username)

    def metadata(self, issuer: str) -> dict[str, Any]:
        """The RFC 8414 metadata of the server at ``issuer`` (its base URL)."""
        implicit = self._implicit
        return {
            "issuer": issuer,
            "authorization_endpoint": issuer + AUTHORIZE_PATH,
            "token_endpoint": issuer + TOKEN_PATH,
            "revocation_endpoint": issuer + REVOKE_PATH,
            "introspection_endpoint": issuer + INTROSPECT_PATH,
            "scopes_supported": list(SCOPES),
            "response_types_supported": ["code", "token"] if implicit else ["code"],
            "response_modes_supported": ["query", "fragment"] if implicit else ["query"],
            "grant_types_supported": [
                "authorization_code",
                *(["implicit"] if implicit else []),
                "refresh_token",
            ],
            "token_endpoint_auth_methods_supported": list(_CodeGrant.TOKEN_ENDPOINT_AUTH_METHODS),
            "revocation_endpoint_auth_methods_supported": list(_Revocation.CLIENT_AUTH_METHODS),
            "introspection_endpoint_auth_methods_supported": list(
                _Introspection.CLIENT_AUTH_METHODS
            ),
            "code_challenge_methods_supported": [_PKCE_METHOD],
        }

    def _endpoint(self, name: str) -> Callable[[OAuth2Request], HttpResponse]:
        return lambda request: self._server.create_endpoint_response(name, request)

    # The methods below run in the worker thread.

    def _respond(
        self, handle: Callable[[OAuth2Request], HttpResponse], request: HttpRequest
    ) -> HttpResponse:
        try:
            oauth_request = _Request(request)
        except OAuth2Error as error:  # insecure_transport
            return self._server.handle_error_response(None, error)
        return handle(oauth_request)

    def _consent_grant(self, request: HttpRequest, username: str | None = None) -> Any:
        try:
            return self._server.get_consent_grant(_Request(request), end_user=username)
        except OAuth2Error as error:
            if isinstance(error, UnsupportedResponseTypeError) and request.params.get(
                "response_type"
            ) == ["token"]:
                error.redirect_fragment = True  # where an implicit client reads (RFC 6749 4.2.2.1)
            redirect = HttpResponse(*error()) if error.redirect_uri else None
            raise AuthorizationRefused(
                error.error, error.get_error_description(), redirect
            ) from None

    def _authorize(self, request: HttpRequest, username: str | None) -> HttpResponse:
        grant = self._consent_grant(request, username)
        return self._server.create_authorization_response(
            grant.request, grant_user=username, grant=grant
        )


async def _in_worker(function: Callable[..., T], *args: Any) -> T:
    """Run a synchronous Authlib call in a worker thread; the event loop stays free."""
    return await anyio.to_thread.run_sync(function, *args)


def _on_loop(function: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> T:
    """From Authlib's worker thread: run a repository coroutine on the event loop, and wait."""
    return anyio.from_thread.run(function, *args)


class _Payload(OAuth2Payload):
    def __init__(self, params: Mapping[str, Sequence[str]]) -> None:
        self._datalist = {key: list(values) for key, values in params.items()}
        self._data = {key: values[0] for key, values in self._datalist.items() if values}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


class _Request(OAuth2Request):
    def __init__(self, request: HttpRequest) -> None:
        super().__init__(request.method, request.uri, headers=request.headers)
        self.payload = _Payload(request.params)

    @property
    def args(self) -> dict[str, str]:
        return self.payload.data

    @property
    def form(self) -> dict[str, str]:
        return self.payload.data


class _Client(ClientMixin):
    """An app as Authlib sees a client."""

    def __init__(self, app: AppRecord) -> None:
        self.app = app

    def get_client_id(self) -> str:
        return self.app.client_id

    def get_default_redirect_uri(self) -> str | None:
        # RFC 6749 3.1.2.3: with several registered, the request must name one.
        uris = self.app.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str | None:
        try:
            return " ".join(parse_scope(scope or ""))
        except UnknownScope:
            return None

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.app.redirect_uris

    def check_client_secret(self, client_secret: str) -> bool:
        stored = self.app.secret_hash
        return stored is not None and secret_matches(client_secret, stored)

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        # Public apps have no secret; confidential ones must always use theirs.
        return (method == "none") == self.app.public

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code" or (response_type == "token" and self.app.allow_implicit)

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in (_CodeGrant.GRANT_TYPE, _RefreshGrant.GRANT_TYPE)


class _Code(AuthorizationCodeMixin):
    def __init__(self, record: CodeRecord) -> None:
        self.record = record
        self.code_challenge = record.code_challenge
        self.code_challenge_method = record.code_challenge_method

    def get_redirect_uri(self) -> str | None:
        return self.record.redirect_uri

    def get_scope(self) -> str:
        return self.record.scope


class _Token(TokenMixin):
    """A stored token, as found by its access token or by its refresh token (``kind``)."""

    def __init__(self, record: TokenRecord, kind: str) -> None:
        self.record = record
        self.kind = kind

    @property
    def expires_at(self) -> Any:
        return self.record.expires_at if self.kind == "access" else self.record.refresh_expires_at

    def check_client(self, client: ClientMixin) -> bool:
        return self.record.client_id == client.get_client_id()

    def get_scope(self) -> str:
        return self.record.scope

    def get_expires_in(self) -> int:
        return int((self.expires_at - self.record.issued_at).total_seconds())

    def is_expired(self) -> bool:
        return self.expires_at <= utc_now()

    def is_revoked(self) -> bool:
        used = self.kind == "refresh" and self.record.rotated
        return self.record.revoked or used or not self.record.app_active


class _S256CodeChallenge(CodeChallenge):
    """PKCE with S256 only, required already at the authorization endpoint of every app but
    the confidential ones registered without it (RFC 9700 2.1.1)."""

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        challenge = data.get("code_challenge")
        app = grant.request.client.app
        if challenge is None and (app.public or app.require_pkce):
            raise InvalidRequestError("This app must use PKCE: 'code_challenge' is missing.")
        if challenge is not None and data.get("code_challenge_method") != _PKCE_METHOD:
            raise InvalidRequestError("'code_challenge_method' must be S256.")
        super().validate_code_challenge(grant, redirect_uri)


class _CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _ANY_CLIENT_AUTH

    def generate_authorization_code(self) -> str:
        return new_secret()

    def save_authorization_code(self, code: str, request: OAuth2Request) -> None:
        self.server.save_code(code, request)

    def query_authorization_code(self, code: str, client: _Client) -> _Code | None:
        return self.server.claim_code(code, client)

    def delete_authorization_code(self, authorization_code: _Code) -> None:
        """Nothing to do: claiming the code used it up, and it is kept to spot a replay."""

    def authenticate_user(self, authorization_code: _Code) -> str:
        return authorization_code.record.username


class _RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = _ANY_CLIENT_AUTH
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:
        return self.server.live_refresh_token(refresh_token)

    def authenticate_user(self, refresh_token: _Token) -> str:
        return refresh_token.record.username

    def revoke_old_credential(self, refresh_token: _Token) -> None:
        self.server.rotate(refresh_token)


class _TokenLookup:
    """Finding a presented token of either kind, for revocation and introspection."""

    server: _Server

    def query_token(self, token_string: str, token_type_hint: str | None) -> _Token | None:
        return self.server.find_token(token_string, token_type_hint)


class _Revocation(_TokenLookup, RevocationEndpoint):
    CLIENT_AUTH_METHODS = _ANY_CLIENT_AUTH

    def revoke_token(self, token: _Token, request: OAuth2Request) -> None:
        # Every token of the grant goes, as RFC 7009 section 2.1 suggests.
        self.server.revoke_grant(token.record, "revoked by the app")


class _Introspection(_TokenLookup, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = _CONFIDENTIAL_AUTH

    def check_permission(self, token: _Token, client: _Client, request: OAuth2Request) -> bool:
        return token.check_client(client)

    def introspect_token(self, token: _Token) -> dict[str, Any]:
        record = token.record
        payload = {
            "scope": record.scope,
            "client_id": record.client_id,
            "username": record.username,
            "sub": record.username,
            "exp": int(token.expires_at.timestamp()),
            "iat": int(record.issued_at.timestamp()),
        }
        if token.kind == "access":
            payload["token_type"] = "Bearer"
        return payload


class _Server(AuthorizationServer):
    """Authlib's server with chinwag's storage hooks; everything here runs in a worker thread."""

    def __init__(self, repo: OAuthRepository, settings: OAuthSettings, origin: str) -> None:
        super().__init__(scopes_supported=list(SCOPES))
        self._repo = repo
        self._settings = settings
        self._origin = origin
        self.register_token_generator("default", self._bearer_token)
        self.register_grant(_CodeGrant, [_S256CodeChallenge(required=True)])
        if settings.allow_implicit:  # and then to apps with allow_implicit only: see _Client
            self.register_grant(ImplicitGrant)
        self.register_grant(_RefreshGrant)
        self.register_endpoint(_Revocation)
        self.register_endpoint(_Introspection)

    # Authlib's framework hooks.

    def create_oauth2_request(self, request: Any) -> OAuth2Request:
        return request if isinstance(request, OAuth2Request) else _Request(request)

    def handle_response(
        self, status: int, body: Any, headers: Sequence[tuple[str, str]]
    ) -> HttpResponse:
        text = json.dumps(body) if isinstance(body, dict) else body
        return HttpResponse(status, text, list(headers))

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        """chinwag listens to none of Authlib's signals."""

    def _bearer_token(
        self,
        grant_type: str,
        client: _Client,
        user: str | None = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> dict[str, Any]:
        ttl = expires_in or self._settings.access_token_ttl_seconds
        return bearer_token(scope or "", ttl, include_refresh_token)

    # Storage hooks: each query runs on the event loop.

    def query_client(self, client_id: str) -> _Client | None:
        app = _on_loop(self._repo.app, client_id)
        return _Client(app) if app is not None and app.active else None

    def save_token(self, token: dict[str, Any], request: OAuth2Request) -> None:
        if request.refresh_token is not None:
            family_id = request.refresh_token.record.family_id
        elif request.authorization_code is not None:
            family_id = request.authorization_code.record.family_id
        else:
            family_id = new_family_id()
        row = token_row(
            token,
            client_id=request.client.get_client_id(),
            username=request.user,
            family_id=family_id,
            refresh_ttl=self._settings.refresh_token_ttl_seconds,
            now=utc_now(),
        )
        _on_loop(self._repo.add_token, row)

    def save_code(self, code: str, request: OAuth2Request) -> None:
        data = request.payload.data
        ttl = timedelta(seconds=self._settings.authorization_code_ttl_seconds)
        new_code = NewCode(
            code_hash=digest(code),
            client_id=request.client.get_client_id(),
            username=request.user,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            code_challenge=data.get("code_challenge"),
            code_challenge_method=data.get("code_challenge_method"),
            family_id=new_family_id(),
            expires_at=utc_now() + ttl,
        )
        _on_loop(self._repo.add_code, new_code)

    def claim_code(self, code: str, client: _Client) -> _Code | None:
        """The code, now used up, if ``client`` may exchange it; a replay revokes its tokens."""
        claimed = _on_loop(self._repo.claim_code, digest(code))
        if claimed is None:
            return None
        record = claimed.code
        if claimed.replayed:
            # RFC 6749 4.1.2: the code leaked; what it was exchanged for goes too.
            self.revoke_grant(record, "authorization code used twice")
            return None
        if record.client_id != client.get_client_id() or record.expires_at <= utc_now():
            return None
        return _Code(record)

    def live_refresh_token(self, refresh_token: str) -> _Token | None:
        """The token the refresh token belongs to, if still usable; a replay revokes the family."""
        record = _on_loop(self._repo.token_by_refresh, digest(refresh_token))
        if record is None:
            return None
        token = _Token(record, "refresh")
        if record.rotated and not record.revoked:
            # RFC 9700 4.14.2: a rotated refresh token came back, so one copy is stolen.
            self.revoke_grant(record, "refresh token used twice")
        if token.is_revoked() or token.is_expired():
            return None
        return token

    def rotate(self, token: _Token) -> None:
        """Use up the refresh token; losing a race to another request is a replay too."""
        if not _on_loop(self._repo.rotate, token.record.id):
            self.revoke_grant(token.record, "refresh token used twice")
            raise InvalidGrantError("The refresh token was used already.")

    def find_token(self, token_string: str, hint: str | None) -> _Token | None:
        hashed = digest(token_string)
        lookups = [("access", self._repo.token_by_access), ("refresh", self._repo.token_by_refresh)]
        if hint == "refresh_token":
            lookups.reverse()
        for kind, lookup in lookups:
            record = _on_loop(lookup, hashed)
            if record is not None:
                return _Token(record, kind)
        return None

    def revoke_grant(self, record: TokenRecord | CodeRecord, reason: str) -> None:
        """Revoke every token of the grant ``record`` belongs to (its token family)."""
        _on_loop(self._repo.revoke_family, record.family_id, self._origin)
        fields = {"user": record.username, "client_id": record.client_id, "reason": reason}
        log.info("tokens revoked", extra={"fields": fields})
