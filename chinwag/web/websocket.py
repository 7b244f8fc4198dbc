"""XMPP over WebSocket (RFC 7395) at ``/xmpp-websocket``, and its discovery (XEP-0156).

The endpoint is a thin transport. It checks the handshake (the ``xmpp``
subprotocol, an allowed ``Origin``), then carries whole messages between the
WebSocket and a ``C2SConnection`` of the same ``XMPPServer`` TCP clients reach,
so SASL, routing, presence and sessions are shared. The stream core does the
framing: ``<open/>`` and ``<close/>``, one element per message, errors.

When is a WebSocket stream secure (what ``[c2s] require_tls`` asks before SASL)?
When it arrived over TLS: the scope's scheme is ``wss``, which uvicorn also sets
when a proxy it trusts (by default one on the loopback) sends
``X-Forwarded-Proto: https``. And when it comes from the loopback with no proxy
header saying it was plain ``http``: the bytes never left the machine, or a
local proxy that terminated TLS forwarded them. STARTTLS is never offered over
WebSocket.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
from collections import deque
from typing import TYPE_CHECKING
from xml.sax.saxutils import quoteattr

from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response
from starlette.routing import BaseRoute, Route, WebSocketRoute
from starlette.websockets import WebSocket, WebSocketDisconnect

from chinwag.server.c2s import C2SConnection
from chinwag.web.pages import public_url
from chinwag.xmpp.errors import StreamCondition, StreamError

if TYPE_CHECKING:
    from chinwag.server.xmpp_server import XMPPServer

log = logging.getLogger(__name__)

PATH = "/xmpp-websocket"
SUBPROTOCOL = "xmpp"
ALT_CONNECTION_REL = "urn:xmpp:alt-connections:websocket"
XRD_NS = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
CLOSE_WAIT_SECONDS = 5.0
"""How long the endpoint waits for its last messages and close frame to go out."""

_DISCOVERY_HEADERS = {
    # XEP-0156: host-meta is fetched by web clients from other origins.
    "Access-Control-Allow-Origin": "*",
    "Cache-Control": "max-age=3600",
}


class WebSocketTransport:
    """The ``Transport`` of ``chinwag.server.c2s`` over one accepted WebSocket.

    Writes are synchronous for the connection and asynchronous for Starlette, so
    they queue here and ``send_all`` sends them, one text message per element.
    ``pause_reading`` stops the endpoint from taking further messages (uvicorn
    then stops reading the socket).
    """

    kind = "websocket"

    def __init__(self, websocket: WebSocket, *, secure: bool) -> None:
        self.secure = secure
        # Behind a proxy uvicorn trusts, the address its X-Forwarded-For names.
        self.peer_address = websocket.client.host if websocket.client else None
        self.closing = False
        self.readable = asyncio.Event()
        self.readable.set()
        self._websocket = websocket
        self._outbox: deque[bytes] = deque()
        self._outbox_bytes = 0
        self._has_output = asyncio.Event()

    def writelines(self, items: list[bytes]) -> int:
        if self.closing:
            return 0
        self._outbox.extend(items)
        self._outbox_bytes += sum(map(len, items))
        self._has_output.set()
        return self._outbox_bytes

    def close(self) -> None:
        """Send what is queued, then close the WebSocket (normal closure)."""
        if not self.closing:
            self.closing = True
            self._has_output.set()
            self.readable.set()

    def pause_reading(self) -> None:
        if not self.closing:
            self.readable.clear()

    def resume_reading(self) -> None:
        self.readable.set()

    async def start_tls(self) -> None:
        raise ConnectionError("there is no STARTTLS over WebSocket")

    async def send_all(self) -> None:
        """Send queued elements until the transport closes, then close the WebSocket."""
        websocket, outbox = self._websocket, self._outbox
        try:
            while True:
                while outbox:
                    item = outbox.popleft()
                    self._outbox_bytes -= len(item)
                    await websocket.send_text(item.decode())
                if self.closing:
                    break
                self._has_output.clear()
                await self._has_output.wait()
            await websocket.close(1000)
        except (WebSocketDisconnect, RuntimeError, OSError):
            pass  # the peer is gone (or already closed): nothing more can be sent
        finally:
            self.closing = True
            self.readable.set()
            outbox.clear()
            self._outbox_bytes = 0


async def xmpp_websocket(websocket: WebSocket) -> None:
    """RFC 7395: one client stream per WebSocket."""
    server: XMPPServer | None = getattr(websocket.app.state, "xmpp", None)
    if server is None:
        await _deny(websocket, 503, "XMPP is not served here")
        return
    if SUBPROTOCOL not in websocket.scope.get("subprotocols", ()):
        await _deny(websocket, 400, "XMPP over WebSocket needs the subprotocol 'xmpp' (RFC 7395)")
        return
    if not origin_allowed(websocket.headers.get("origin"), server.settings.http.websocket_origins):
        await _deny(websocket, 403, "this Origin may not open XMPP streams here")
        return
    await websocket.accept(subprotocol=SUBPROTOCOL)
    transport = WebSocketTransport(websocket, secure=is_secure(websocket))
    connection = server.connect(transport)
    sender = asyncio.ensure_future(transport.send_all())
    try:
        await _receive_all(websocket, transport, connection)
    finally:
        transport.close()
        connection.connection_lost()
        with contextlib.suppress(TimeoutError, asyncio.CancelledError):
            await asyncio.wait_for(sender, CLOSE_WAIT_SECONDS)


async def _receive_all(
    websocket: WebSocket, transport: WebSocketTransport, connection: C2SConnection
) -> None:
    readable = transport.readable
    while True:
        if not readable.is_set():
            await readable.wait()
        if transport.closing:
            return
        message = await websocket.receive()
        if message["type"] == "websocket.disconnect":
            return
        text = message.get("text")
        if text is None:
            connection.close_stream(
                StreamError(
                    StreamCondition.BAD_FORMAT, "XMPP over WebSocket is sent in text messages"
                )
            )
        else:
            connection.frame_received(text.encode())


async def _deny(websocket: WebSocket, status: int, reason: str) -> None:
    """Refuse the handshake with an HTTP status (plain 403 where the server cannot)."""
    log.info("refused a WebSocket: %s", reason)
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(PlainTextResponse(reason + "\n", status_code=status))
    else:
        await websocket.close(1008, reason)


def origin_allowed(origin: str | None, allowed: tuple[str, ...]) -> bool:
    """Any origin when ``allowed`` is empty; a request without ``Origin`` (not a browser's)
    is always allowed, since only browsers send it and anything else could forge it."""
    if not allowed or origin is None:
        return True
    return origin.strip().rstrip("/").lower() in allowed


def is_secure(websocket: WebSocket) -> bool:
    """See the module's docstring."""
    if websocket.url.scheme == "wss":
        return True
    client = websocket.client
    if client is None or "x-forwarded-proto" in websocket.headers:
        return False
    try:
        return ipaddress.ip_address(client.host).is_loopback
    except ValueError:
        return False


def websocket_url(request: Request) -> str:
    """The endpoint's URL at the listener's public address (``[http] public_url``), never
    one a request's ``Host`` header makes up: ``wss://`` when that address is https."""
    scheme, _, rest = public_url(request).partition("://")
    return f"{'wss' if scheme == 'https' else 'ws'}://{rest}{PATH}"


async def host_meta(request: Request) -> Response:
    """XEP-0156 over host-meta (RFC 6415), XRD form."""
    href = quoteattr(websocket_url(request))
    body = (
        '<?xml version="1.0" encoding="utf-8"?>\n'
        f'<XRD xmlns="{XRD_NS}">\n'
        f'  <Link rel="{ALT_CONNECTION_REL}" href={href}/>\n'
        "</XRD>\n"
    )
    return Response(body, media_type="application/xrd+xml", headers=_DISCOVERY_HEADERS)


async def host_meta_json(request: Request) -> Response:
    """XEP-0156 over host-meta (RFC 6415), JSON form."""
    links = [{"rel": ALT_CONNECTION_REL, "href": websocket_url(request)}]
    return JSONResponse({"links": links}, headers=_DISCOVERY_HEADERS)


ROUTES: list[BaseRoute] = [
    WebSocketRoute(PATH, xmpp_websocket, name="xmpp_websocket"),
    Route("/.well-known/host-meta", host_meta, methods=["GET"]),
    Route("/.well-known/host-meta.json", host_meta_json, methods=["GET"]),
]
