"""The web application: OAuth endpoints and the user's pages, on Starlette."""

from __future__ import annotations

import base64
from pathlib import Path
from typing import TYPE_CHECKING

from cryptography.fernet import Fernet
from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response

from chinwag.config import Settings
from chinwag.network.accounts import AccountService
from chinwag.network.blocking import BlockingService
from chinwag.network.contacts import ContactService
from chinwag.network.invitations import InvitationService
from chinwag.network.profiles import ProfileService
from chinwag.oauth.service import OAuthService
from chinwag.server.auth_failures import AuthFailureLimiter, AuthFailures
from chinwag.store.archive import ArchiveRepository
from chinwag.store.secret_files import secret_file
from chinwag.web import (
    account_routes,
    admin_routes,
    examples,
    invite_routes,
    metrics_routes,
    oauth_routes,
    portal_routes,
    websocket,
)
from chinwag.web.admin_token import ensure_admin_token
from chinwag.web.api import api_mount
from chinwag.web.pages import SESSION_SECONDS, Services, error_page
from chinwag.web.presence import PresenceSource, nobody_online
from chinwag.web.sessions import SessionCookie, SignedInUser

if TYPE_CHECKING:
    from chinwag.server.xmpp_server import XMPPServer

SECRET_FILE = "web-secret"
SESSION_COOKIE = "chinwag_session"


def build_web_app(
    settings: Settings,
    accounts: AccountService,
    oauth: OAuthService,
    *,
    contacts: ContactService | None = None,
    profiles: ProfileService | None = None,
    blocking: BlockingService | None = None,
    presence: PresenceSource = nobody_online,
    xmpp: XMPPServer | None = None,
    sessions: admin_routes.SessionSource = admin_routes.no_sessions,
    control: admin_routes.ServerControl | None = None,
    auth_failures: AuthFailures | None = None,
    invitations: InvitationService | None = None,
    metrics: metrics_routes.MetricsSource | None = None,
    archive: ArchiveRepository | None = None,
) -> Starlette:
    """The ASGI application for chinwag's HTTP listener.

    ``contacts``, ``profiles`` and ``blocking`` serve the REST API (their changes should
    carry an origin of their own, so that the XMPP server applies them); ``presence``
    tells it who is online. ``xmpp`` serves XMPP over WebSocket (RFC 7395) at /xmpp-websocket.
    ``sessions`` lists the live sessions for the operator (``GET /admin/sessions``), and
    ``control`` serves the other admin endpoints (status, ending sessions, reload).
    ``auth_failures`` counts the sign-in form's failures (a new count when not given).
    ``invitations`` serves the sign-up page at ``/invite/{token}``, if ``[auth]
    invitations`` is on too. ``metrics`` serves ``/metrics``, ``/ready`` and the
    operators' live page. ``archive`` serves ``/api/v1/me/archive``.
    """
    if auth_failures is None:
        auth_failures = AuthFailureLimiter.from_settings(settings.limits)
    services = Services(
        settings,
        accounts,
        oauth,
        auth_failures,
        contacts,
        profiles,
        presence,
        blocking,
        invitations if settings.auth.invitations else None,
        archive=archive,
    )
    admin_token = ensure_admin_token(settings.data_path)
    cookie_secret = signing_secret(settings.data_path)
    app = Starlette(
        routes=[
            *oauth_routes.ROUTES,
            *account_routes.ROUTES,
            *invite_routes.ROUTES,
            *portal_routes.ROUTES,
            *websocket.ROUTES,
            *admin_routes.ROUTES,
            *metrics_routes.ROUTES,
            *examples.ROUTES,
            api_mount(services, admin_token),
        ],
        middleware=[
            Middleware(
                SessionCookie,
                secret_key=cookie_secret,
                session_cookie=SESSION_COOKIE,
                max_age=SESSION_SECONDS,
                same_site="lax",
            ),
            Middleware(SignedInUser, oauth=oauth),
        ],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.services = services
    app.state.admin_token = admin_token
    app.state.sessions = sessions
    app.state.control = control
    app.state.xmpp = xmpp
    app.state.metrics = metrics
    app.state.cookie_cipher = cookie_cipher(cookie_secret)
    return app


def signing_secret(data_dir: Path) -> str:
    """The key that signs session cookies: ``{data_dir}/web-secret``, made (0600) if absent."""
    return secret_file(data_dir / SECRET_FILE, "sign cookies")


def cookie_cipher(secret: str) -> Fernet:
    """Encrypts what the session cookie must carry unread (it is signed, not encrypted),
    with a key derived from the cookie's signing secret."""
    key = HKDF(algorithm=SHA256(), length=32, salt=None, info=b"chinwag cookie cipher").derive(
        secret.encode()
    )
    return Fernet(base64.urlsafe_b64encode(key))


async def _http_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    titles = {403: "Forbidden", 404: "Not found", 405: "Method not allowed"}
    title = titles.get(exc.status_code, "Something went wrong")
    return error_page(request, exc.status_code, title, exc.detail)
