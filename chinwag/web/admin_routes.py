"""The operator's view of the running server: ``GET /admin/sessions``.

``chinwag sessions list`` runs in a process of its own, so it asks the server's
HTTP listener, with the admin token of ``{data_dir}/admin-token`` (see
``admin_token.py``) as a bearer token. The live sessions come from a callable
that the composition root passes in; the web layer never reaches into the XMPP
server for them.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chinwag.server.session import Session
from chinwag.web.admin_token import check_admin

SESSIONS_PATH = "/admin/sessions"

SessionSource = Callable[[], Sequence[Session]]
"""The bound sessions of the running XMPP server, right now."""


def no_sessions() -> Sequence[Session]:
    """The session source of a web application without an XMPP server."""
    return ()


def session_json(session: Session) -> dict[str, Any]:
    return {
        "jid": str(session.jid),
        "user": session.username,
        "resource": session.jid.resource,
        "app": session.app,
        "transport": session.transport_kind,
        "available": session.available,
        "priority": session.priority,
    }


async def sessions(request: Request) -> Response:
    """Every live session, ordered by JID: who, which resource, as which app, over what."""
    try:
        check_admin(request)
    except HTTPException as refused:
        return JSONResponse(
            {"error": "unauthorized", "message": refused.detail},
            refused.status_code,
            headers=refused.headers,
        )
    source: SessionSource = request.app.state.sessions
    listed = sorted((session_json(session) for session in source()), key=lambda s: s["jid"])
    return JSONResponse(listed, headers={"Cache-Control": "no-store"})


ROUTES = [Route(SESSIONS_PATH, sessions, methods=["GET"])]
