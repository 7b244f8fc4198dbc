"""The operator's endpoints on the running server, which the ``chinwag`` commands call:

- ``GET /admin/status``: version, uptime, sessions by transport, listeners, database;
- ``GET /admin/sessions``: the live sessions; ``DELETE /admin/sessions?jid=JID``
  ends one (a full JID) or all of an account's (a bare one);
- ``GET /admin/bans``: the addresses refused after failed sign-ins;
  ``DELETE /admin/bans?address=ADDRESS`` lifts one;
- ``POST /admin/reload``: reads the settings file again (certificate, limits, log);
- ``POST /admin/drain?to=HOST:PORT&timeout=SECONDS``: sends every client to another
  node and stops the server once they have gone.

The commands run in processes of their own, so they ask the HTTP listener, with the
admin token of ``{data_dir}/admin-token`` (see ``admin_token.py``) as a bearer token.
What acts on the XMPP server comes from the composition root, as a
:class:`ServerControl` and a session source: the web layer never reaches into the
XMPP server for them. A refusal is JSON: ``{"error": ..., "message": ...}``.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, Protocol

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from chinwag.server.auth_failures import AuthFailures, Ban
from chinwag.server.session import Session
from chinwag.web.admin_token import check_admin

STATUS_PATH = "/admin/status"
SESSIONS_PATH = "/admin/sessions"
BANS_PATH = "/admin/bans"
RELOAD_PATH = "/admin/reload"
DRAIN_PATH = "/admin/drain"
DEFAULT_DRAIN_SECONDS = 30.0
"""How long a drain waits for the streams and sessions to end before the node stops."""
MAX_DRAIN_SECONDS = 3600.0
MAX_REASON_CHARS = 1000

SessionSource = Callable[[], Sequence[Session]]
"""The bound sessions of the running XMPP server, right now."""


class ReloadFailed(Exception):
    """The settings file or the certificate did not load; nothing changed."""


class DrainFailed(Exception):
    """No other node to send the clients to, or a drain already under way."""


class ServerControl(Protocol):
    """What the operator does to the running server (``chinwag/control.py``)."""

    async def status(self) -> dict[str, Any]: ...

    def kick(self, jid: str, reason: str | None) -> list[str]:
        """End the sessions of ``jid``; the full JIDs ended. ValueError: not a JID of a
        user of this server."""
        ...

    def reload(self) -> dict[str, Any]:
        """Apply the settings file again; what changed. ReloadFailed: nothing changed."""
        ...

    async def drain(self, to: str | None, timeout: float) -> dict[str, Any]:
        """Send every client to ``to`` (None: another live node) and stop once they have
        gone. ValueError: ``to`` is not HOST:PORT. DrainFailed: no node to send them to."""
        ...


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


def ban_json(ban: Ban) -> dict[str, Any]:
    return {
        "address": ban.address,
        "failures": ban.failures,
        "remaining_seconds": round(ban.remaining_seconds, 1),
    }


def _refusal(
    status: int, error: str, message: str, headers: Mapping[str, str] | None = None
) -> JSONResponse:
    return JSONResponse({"error": error, "message": message}, status, headers=headers)


def _admin_only(
    endpoint: Callable[[Request], Awaitable[Response]],
) -> Callable[[Request], Awaitable[Response]]:
    """``endpoint``, for requests with the admin token only; its answers are not cached."""

    async def guarded(request: Request) -> Response:
        try:
            check_admin(request)
        except HTTPException as refused:
            return _refusal(refused.status_code, "unauthorized", refused.detail, refused.headers)
        response = await endpoint(request)
        response.headers["Cache-Control"] = "no-store"
        return response

    return guarded


def _control(request: Request) -> ServerControl | None:
    control: ServerControl | None = request.app.state.control
    return control


def _no_server() -> JSONResponse:
    return _refusal(503, "no_server", "no XMPP server runs in this process")


def _parameter(request: Request, name: str) -> str | None:
    value = request.query_params.get(name)
    return value.strip() if value is not None and value.strip() else None


@_admin_only
async def status(request: Request) -> Response:
    control = _control(request)
    if control is None:
        return _no_server()
    return JSONResponse(await control.status())


@_admin_only
async def sessions(request: Request) -> Response:
    """Every live session, ordered by JID: who, which resource, as which app, over what."""
    source: SessionSource = request.app.state.sessions
    listed = sorted((session_json(session) for session in source()), key=lambda s: s["jid"])
    return JSONResponse(listed)


@_admin_only
async def end_sessions(request: Request) -> Response:
    """End the sessions of ``?jid=`` with ``<policy-violation/>`` (and ``?reason=``)."""
    control = _control(request)
    if control is None:
        return _no_server()
    jid, reason = _parameter(request, "jid"), _parameter(request, "reason")
    if jid is None:
        return _refusal(400, "bad_request", "give the JID whose sessions to end: ?jid=")
    if reason is not None and len(reason) > MAX_REASON_CHARS:
        return _refusal(400, "bad_request", f"the reason is over {MAX_REASON_CHARS} characters")
    try:
        ended = control.kick(jid, reason)
    except ValueError as error:
        return _refusal(400, "bad_request", str(error))
    if not ended:
        return _refusal(404, "not_found", f"{jid} has no session")
    return JSONResponse({"ended": ended})


@_admin_only
async def bans(request: Request) -> Response:
    """The addresses refused now for failed sign-ins, with the seconds each has left."""
    limiter: AuthFailures = request.app.state.services.auth_failures
    return JSONResponse([ban_json(ban) for ban in await limiter.bans()])


@_admin_only
async def lift_ban(request: Request) -> Response:
    """Lift the ban of ``?address=`` (an IPv6 address's /64, as it is counted)."""
    address = _parameter(request, "address")
    if address is None:
        return _refusal(400, "bad_request", "give the address whose ban to lift: ?address=")
    limiter: AuthFailures = request.app.state.services.auth_failures
    lifted = await limiter.lift(address)
    if lifted is None:
        return _refusal(404, "not_found", f"{address} is not refused")
    return JSONResponse(ban_json(lifted))


@_admin_only
async def reload(request: Request) -> Response:
    control = _control(request)
    if control is None:
        return _no_server()
    try:
        return JSONResponse(control.reload())
    except ReloadFailed as error:
        return _refusal(409, "reload_failed", str(error))


@_admin_only
async def drain(request: Request) -> Response:
    control = _control(request)
    if control is None:
        return _no_server()
    to, timeout = _parameter(request, "to"), _parameter(request, "timeout")
    try:
        seconds = DEFAULT_DRAIN_SECONDS if timeout is None else float(timeout)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= MAX_DRAIN_SECONDS:
        return _refusal(
            400, "bad_request", f"the timeout is a number of seconds, 0 to {MAX_DRAIN_SECONDS:g}"
        )
    try:
        return JSONResponse(await control.drain(to, seconds))
    except ValueError as error:
        return _refusal(400, "bad_request", str(error))
    except DrainFailed as error:
        return _refusal(409, "drain_failed", str(error))


ROUTES = [
    Route(STATUS_PATH, status, methods=["GET"]),
    Route(SESSIONS_PATH, sessions, methods=["GET"]),
    Route(SESSIONS_PATH, end_sessions, methods=["DELETE"]),
    Route(BANS_PATH, bans, methods=["GET"]),
    Route(BANS_PATH, lift_ban, methods=["DELETE"]),
    Route(RELOAD_PATH, reload, methods=["POST"]),
    Route(DRAIN_PATH, drain, methods=["POST"]),
]
