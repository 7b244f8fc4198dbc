"""The browser example (``examples/browser/``), served at ``/examples/browser/``.

Only its built files are served: ``examples/browser/dist/``, which ``npm ci && npm
run build`` in ``examples/browser/`` makes (the page, its script and style, and
xmpp.js's prebuilt browser bundle); never ``node_modules``. Served from the same
origin as ``/oauth/token`` and ``/xmpp-websocket``, the page needs no CORS.
``config.json`` tells it the XMPP domain and the WebSocket endpoint. In an
installation without a checkout, or before the build, the path says so with 404.
"""

from __future__ import annotations

from pathlib import Path

from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import Message, Receive, Scope, Send

from chinwag.web.pages import error_page, services
from chinwag.web.websocket import websocket_url

PATH = "/examples/browser"
BUILT = Path(__file__).resolve().parents[2] / "examples" / "browser" / "dist"
_HEADERS = {
    # Scripts and styles from this origin only; connections to it (fetch, WebSocket).
    "Content-Security-Policy": (
        "default-src 'none'; script-src 'self'; style-src 'self'; connect-src 'self' ws: wss:; "
        "img-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"
    ),
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-cache",
}


async def config(request: Request) -> Response:
    settings = services(request).settings
    return JSONResponse(
        {"domain": settings.domain, "websocket": websocket_url(request)}, headers=_HEADERS
    )


class _BuiltFiles:
    """StaticFiles on the built directory, or a 404 page that says how to build it."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self._files = StaticFiles(directory=directory, html=True, check_dir=False)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if not (self.directory / "index.html").is_file():
            request = Request(scope, receive)
            response: Response = error_page(
                request,
                404,
                "The browser example is not built",
                "Build it in a checkout of chinwag with: "
                "npm ci --prefix examples/browser && npm run build --prefix examples/browser",
            )
            await response(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                message["headers"] = [
                    *message.get("headers", []),
                    *((k.lower().encode(), v.encode()) for k, v in _HEADERS.items()),
                ]
            await send(message)

        await self._files(scope, receive, send_with_headers)


ROUTES: list[BaseRoute] = [
    Route(f"{PATH}/config.json", config, methods=["GET"]),
    Mount(PATH, app=_BuiltFiles(BUILT)),
]
