"""Metrics, health and the operators' live page, on the HTTP listener:

- ``GET /metrics``: every metric in the OpenMetrics text format, for the addresses of
  ``[metrics] allow`` and for requests with ``[metrics] token`` as a bearer token;
  others get 401 (a token is configured) or 403 (none is);
- ``GET /health``: 200 while the process serves HTTP (liveness);
- ``GET /ready``: 200 when the XMPP listeners accept connections and the database
  answers, else 503 with the reason as JSON (readiness);
- ``GET /developers/admin/live``: the ``[http] operators``' page of live charts, which
  polls ``/developers/admin/live.json`` with its script, ``live.js``, served from here.

What is measured comes from the composition root as a :class:`MetricsSource`.
"""

from __future__ import annotations

import functools
import hmac
import ipaddress
from importlib.resources import files
from typing import Any, Protocol
from urllib.parse import urlencode

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, RedirectResponse, Response
from starlette.routing import Route

from chinwag.config import MetricsSettings
from chinwag.server.metrics import CONTENT_TYPE
from chinwag.web.admin_token import bearer_credential
from chinwag.web.pages import is_operator, render, services, signed_in
from chinwag.web.portal_routes import SIGNIN_PATH

METRICS_PATH = "/metrics"
HEALTH_PATH = "/health"
READY_PATH = "/ready"
LIVE_PATH = "/developers/admin/live"
METRICS_REALM = "chinwag-metrics"
_LIVE_PAGE_POLICY = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; style-src 'unsafe-inline'; "
    "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
)
"""The live page runs its own script (from this origin only), which fetches figures."""
CHARTS = (
    {"key": "sessions", "title": "Sessions", "series": ("sessions",)},
    {"key": "stanzas", "title": "Stanzas a second, in and out", "series": ("stanzas",)},
    {"key": "sign_ins", "title": "Sign-ins a minute", "series": ("sign_ins", "sign_in_failures")},
    {"key": "lag", "title": "Event-loop lag", "series": ("lag",)},
)
"""The live page's charts; each series is drawn by ``static/live.js``, which knows it by name."""


class MetricsSource(Protocol):
    """What the running service measures (``server/metrics.py``)."""

    async def exposition(self) -> bytes:
        """Every metric in the OpenMetrics text format."""
        ...

    def live(self) -> dict[str, Any]:
        """The recent figures for the live page."""
        ...

    async def unready(self) -> str | None:
        """Why the service cannot serve now; None when it can."""
        ...


def _source(request: Request) -> MetricsSource | None:
    source: MetricsSource | None = getattr(request.app.state, "metrics", None)
    return source


def _no_server() -> JSONResponse:
    return JSONResponse(
        {"error": "no_server", "message": "no XMPP server runs in this process"}, 503
    )


# --- health ---------------------------------------------------------------------------


async def health(_request: Request) -> Response:
    return JSONResponse({"status": "ok"}, headers={"Cache-Control": "no-store"})


async def ready(request: Request) -> Response:
    source = _source(request)
    if source is None:
        return _no_server()
    problem = await source.unready()
    headers = {"Cache-Control": "no-store"}
    if problem is not None:
        return JSONResponse({"status": "unavailable", "reason": problem}, 503, headers=headers)
    return JSONResponse({"status": "ready"}, headers=headers)


# --- /metrics ---------------------------------------------------------------------------


async def metrics(request: Request) -> Response:
    refused = _refusal(request, services(request).settings.metrics)
    if refused is not None:
        return refused
    source = _source(request)
    if source is None:
        return _no_server()
    return Response(
        await source.exposition(), media_type=CONTENT_TYPE, headers={"Cache-Control": "no-store"}
    )


def _refusal(request: Request, settings: MetricsSettings) -> Response | None:
    """None if the request may read the metrics: it carries the configured token, or
    comes from an allowed address; else the 401 or 403 that answers it."""
    sent = bearer_credential(request)
    if settings.token and sent is not None:
        if hmac.compare_digest(sent.encode(), settings.token.encode()):
            return None
        return _unauthorized("The metrics token is not valid.", invalid=True)
    address = request.client.host if request.client else None
    if address is not None and _allowed(address, settings.allow):
        return None
    if settings.token:
        return _unauthorized("The metrics need the token of [metrics] token as a bearer token.")
    return JSONResponse(
        {
            "error": "forbidden",
            "message": "This address may not read the metrics: see [metrics] allow.",
        },
        403,
    )


def _unauthorized(message: str, *, invalid: bool = False) -> Response:
    challenge = f'Bearer realm="{METRICS_REALM}"'
    if invalid:
        challenge += ', error="invalid_token"'
    return JSONResponse(
        {"error": "unauthorized", "message": message},
        401,
        headers={"WWW-Authenticate": challenge},
    )


def _allowed(address: str, allow: tuple[str, ...]) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False  # not an IP address (a Unix socket's peer): never listed
    if ip.version == 6 and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return any(ip in network for network in _networks(allow))


@functools.lru_cache(maxsize=8)
def _networks(
    allow: tuple[str, ...],
) -> tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]:
    return tuple(ipaddress.ip_network(entry, strict=False) for entry in allow)


# --- the operators' live page -----------------------------------------------------------


def _operator(request: Request) -> str | None:
    """The signed-in operator; None if nobody is signed in; 403 for anyone else."""
    user = signed_in(request)
    if user is not None and not is_operator(request, user):
        raise HTTPException(403, "Only the network's operators can see this page.")
    return user


async def live_page(request: Request) -> Response:
    if _operator(request) is None:
        return RedirectResponse(f"{SIGNIN_PATH}?{urlencode({'next': LIVE_PATH})}", 303)
    response = render(
        request,
        "operator_live.html",
        charts=CHARTS,
        live_data=f"{LIVE_PATH}.json",
        live_script=f"{LIVE_PATH}.js",
    )
    response.headers["Content-Security-Policy"] = _LIVE_PAGE_POLICY
    return response


async def live_data(request: Request) -> Response:
    if _operator(request) is None:
        return JSONResponse({"error": "unauthorized", "message": "Sign in as an operator."}, 401)
    source = _source(request)
    if source is None:
        return _no_server()
    return JSONResponse(source.live(), headers={"Cache-Control": "no-store"})


@functools.cache
def _live_script() -> bytes:
    return files("chinwag.web").joinpath("static", "live.js").read_bytes()


async def live_script(_request: Request) -> Response:
    return Response(
        _live_script(),
        media_type="text/javascript",
        headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
    )


ROUTES = [
    Route(METRICS_PATH, metrics, methods=["GET"]),
    Route(HEALTH_PATH, health, methods=["GET"]),
    Route(READY_PATH, ready, methods=["GET"]),
    Route(LIVE_PATH, live_page, methods=["GET"]),
    Route(f"{LIVE_PATH}.json", live_data, methods=["GET"]),
    Route(f"{LIVE_PATH}.js", live_script, methods=["GET"]),
]
