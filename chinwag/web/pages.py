"""Server-rendered pages: templates, the signed-in user and CSRF protection.

The session cookie (see ``chinwag.web.sessions``) holds a random CSRF token that
every form repeats; a form without it, or with another, is refused with 403. It
also names the server-side session of the signed-in user, which signing out ends.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from chinwag.config import Settings
from chinwag.network.accounts import AccountService, InvalidUsername, normalize_username
from chinwag.network.blocking import BlockingService
from chinwag.network.contacts import ContactService
from chinwag.network.invitations import InvitationService
from chinwag.network.profiles import ProfileService
from chinwag.oauth.scopes import describe
from chinwag.oauth.service import OAuthService
from chinwag.server.auth_failures import AuthFailures
from chinwag.store.archive import ArchiveRepository
from chinwag.web.presence import PresenceSource, nobody_online
from chinwag.web.sessions import SESSION_ID, USER_SCOPE_KEY

_TEMPLATES = Jinja2Templates(
    env=Environment(loader=PackageLoader("chinwag.web", "templates"), autoescape=True)
)
_PAGE_HEADERS = {
    # No script, no external resource, no framing (clickjacking of the consent page).
    "Content-Security-Policy": (
        "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Frame-Options": "DENY",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
_CSRF = "csrf"
CSRF_FIELD = "csrf_token"
SESSION_SECONDS = 7 * 24 * 3600
"""How long a sign-in lasts on one browser."""


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes work with, kept in the application's state."""

    settings: Settings
    accounts: AccountService
    oauth: OAuthService
    auth_failures: AuthFailures
    """Failed sign-ins per client address, shared with the XMPP server where there is one."""
    contacts: ContactService | None = None
    """None in a web application without the network services (the REST API then says 503)."""
    profiles: ProfileService | None = None
    presence: PresenceSource = nobody_online
    """Who is online now, read from the XMPP server by whoever composed the application."""
    blocking: BlockingService | None = None
    """None in a web application without the network services, as ``contacts``."""
    invitations: InvitationService | None = None
    """The sign-up page's, with ``[auth] invitations = true``; None serves no such page."""
    archive: ArchiveRepository | None = None
    """Each user's message archive (XEP-0313), for the REST API; None: not served here."""


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


def public_url(request: Request) -> str:
    """Where users and apps reach this listener: ``[http] public_url``, else
    ``http://{host}:{port}`` of the listener that took the request (the port its socket is
    bound to, the configured one unless that is 0). Never the request's ``Host`` header."""
    http = services(request).settings.http
    if http.public_url:
        return http.public_url
    server = request.scope.get("server")
    port = server[1] if server else http.port
    host = f"[{http.host}]" if ":" in http.host else http.host
    return f"http://{host}:{port}"


def render(request: Request, template: str, status: int = 200, **context: Any) -> HTMLResponse:
    user = signed_in(request)
    base = {
        "domain": services(request).settings.domain,
        "user": user,
        "operator": is_operator(request, user),
        "csrf_token": csrf_token(request),
        "describe": describe,
    }
    return _TEMPLATES.TemplateResponse(
        request, template, {**base, **context}, status_code=status, headers=_PAGE_HEADERS
    )


def is_operator(request: Request, user: str | None) -> bool:
    """Whether ``user`` is one of the ``[http] operators`` of the settings."""
    return user is not None and user in _operators(services(request).settings.http.operators)


@functools.lru_cache(maxsize=8)
def _operators(names: tuple[str, ...]) -> frozenset[str]:
    normalized = set()
    for name in names:
        with contextlib.suppress(InvalidUsername):  # no such account can ever sign in
            normalized.add(normalize_username(name))
    return frozenset(normalized)


def signed_in(request: Request) -> str | None:
    """The username signed in on this browser, if any."""
    user = request.scope.get(USER_SCOPE_KEY)
    return user if isinstance(user, str) else None


async def sign_in(request: Request, username: str) -> None:
    """Start a server-side session for ``username`` and name it in the cookie."""
    session_id = await services(request).oauth.start_web_session(
        username, timedelta(seconds=SESSION_SECONDS)
    )
    await sign_out(request)  # whoever was signed in here before; a new CSRF token too
    request.session[SESSION_ID] = session_id
    request.scope[USER_SCOPE_KEY] = username


async def sign_out(request: Request) -> None:
    """End the session: a copy of the cookie no longer signs anybody in."""
    session_id = request.session.get(SESSION_ID)
    if isinstance(session_id, str):
        await services(request).oauth.end_web_session(session_id)
    request.session.clear()
    request.scope[USER_SCOPE_KEY] = None


def csrf_token(request: Request) -> str:
    token = request.session.get(_CSRF)
    if not isinstance(token, str):
        token = secrets.token_urlsafe(32)
        request.session[_CSRF] = token
    return token


async def checked_form(request: Request) -> FormData:
    """The posted form, once its CSRF token is this session's; else 403."""
    form = await request.form()
    sent = form.get(CSRF_FIELD)
    expected = request.session.get(_CSRF)
    if not (
        isinstance(sent, str)
        and isinstance(expected, str)
        and hmac.compare_digest(sent.encode(), expected.encode())
    ):
        raise HTTPException(
            403, "This form has expired or did not come from this site. Reload the page and retry."
        )
    return form


def form_text(form: FormData, name: str) -> str:
    value = form.get(name)
    return value if isinstance(value, str) else ""


def local_path(target: str, default: str) -> str:
    """``target`` if it is a path on this site, else ``default`` (no open redirect)."""
    if target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return default


def error_page(
    request: Request, status: int, title: str, description: str, error: str = ""
) -> HTMLResponse:
    return render(request, "error.html", status, title=title, description=description, error=error)
