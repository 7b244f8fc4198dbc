"""The browser's session: a signed cookie, and the server-side record of who signed in.

The cookie is Starlette's signed session. It holds the form's CSRF token and, once
the user signed in, a random session id; who signed in with that id is kept on the
server (``OAuthService.start_web_session``), so signing out, a new password or a
deleted account ends the session even for a copy of the cookie taken before.
:class:`SignedInUser` looks the id up once per request.

The cookie is HttpOnly and SameSite=Lax, and Secure whenever the request came over
TLS: its scheme is https (or wss), which uvicorn also sets for a request that a
trusted proxy (``[http] trusted_proxies``) forwarded with ``X-Forwarded-Proto: https``.
"""

from __future__ import annotations

from typing import Any

from starlette.middleware.sessions import SessionMiddleware
from starlette.types import ASGIApp, Receive, Scope, Send

from chinwag.oauth.service import OAuthService

SESSION_ID = "sid"
"""The cookie's key for the session id."""
USER_SCOPE_KEY = "chinwag.user"
"""Where :class:`SignedInUser` leaves the signed-in username (or None) in the ASGI scope."""
_SECURE_SCHEMES = ("https", "wss")


class SessionCookie:
    """Starlette's ``SessionMiddleware``, with the Secure flag set per request."""

    def __init__(self, app: ASGIApp, /, **options: Any) -> None:
        self._plain = SessionMiddleware(app, **options, https_only=False)
        self._secure = SessionMiddleware(app, **options, https_only=True)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        chosen = self._secure if scope.get("scheme") in _SECURE_SCHEMES else self._plain
        await chosen(scope, receive, send)


class SignedInUser:
    """Resolves the cookie's session id to the signed-in user, once per HTTP request.

    An id whose session has ended is dropped from the cookie.
    """

    def __init__(self, app: ASGIApp, oauth: OAuthService) -> None:
        self._app = app
        self._oauth = oauth

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            session = scope["session"]
            session_id = session.get(SESSION_ID)
            user = None
            if isinstance(session_id, str):
                user = await self._oauth.web_session_user(session_id)
                if user is None:
                    del session[SESSION_ID]
            scope[USER_SCOPE_KEY] = user
        await self._app(scope, receive, send)
