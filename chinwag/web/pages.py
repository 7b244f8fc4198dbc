"""Server-rendered pages: templates, the signed-in user and CSRF protection.

The session lives in a signed cookie (Starlette's SessionMiddleware). It holds the
signed-in username and a random CSRF token that every form repeats; a form
without it, or with another, is refused with 403.
"""

from __future__ import annotations

import contextlib
import functools
import hmac
import secrets
from dataclasses import dataclass
from typing import Any

from jinja2 import Environment, PackageLoader
from starlette.datastructures import FormData
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import HTMLResponse
from starlette.templating import Jinja2Templates

from chinwag.config import Settings
from chinwag.network.accounts import AccountService, InvalidUsername, normalize_username
from chinwag.network.contacts import ContactService
from chinwag.network.profiles import ProfileService
from chinwag.oauth.scopes import describe
from chinwag.oauth.service import OAuthService
from chinwag.server.auth_failures import AuthFailureLimiter
from chinwag.web.presence import PresenceSource, nobody_online

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
_USER = "user"
_CSRF = "csrf"
CSRF_FIELD = "csrf_token"


@dataclass(frozen=True, slots=True)
class Services:
    """What the routes work with, kept in the application's state."""

    settings: Settings
    accounts: AccountService
    oauth: OAuthService
    auth_failures: AuthFailureLimiter
    """Failed sign-ins per client address, shared with the XMPP server where there is one."""
    contacts: ContactService | None = None
    """None in a web application without the network services (the REST API then says 503)."""
    profiles: ProfileService | None = None
    presence: PresenceSource = nobody_online
    """Who is online now, read from the XMPP server by whoever composed the application."""


def services(request: Request) -> Services:
    found: Services = request.app.state.services
    return found


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
    user = request.session.get(_USER)
    return user if isinstance(user, str) else None


def sign_in(request: Request, username: str) -> None:
    # A new session, and so a new CSRF token, for the signed-in user.
    request.session.clear()
    request.session[_USER] = username


def sign_out(request: Request) -> None:
    request.session.clear()


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
