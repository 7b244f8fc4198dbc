"""TCP listeners for client streams: STARTTLS on one port, direct TLS (XEP-0368) on another."""

from __future__ import annotations

import asyncio
import ssl
from typing import TYPE_CHECKING, cast

from chinwag.server.c2s import C2SConnection

if TYPE_CHECKING:
    from chinwag.server.xmpp_server import XMPPServer


class C2SProtocol(asyncio.Protocol):
    """An asyncio protocol that is also the stream's Transport."""

    def __init__(
        self, server: XMPPServer, ssl_context: ssl.SSLContext | None, direct_tls: bool
    ) -> None:
        self._server = server
        self._ssl_context = ssl_context
        self.secure = direct_tls
        self.kind = "tls" if direct_tls else "tcp"
        self._transport: asyncio.Transport | None = None
        self._connection: C2SConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        self._connection = C2SConnection(self._server, self)

    def data_received(self, data: bytes) -> None:
        if self._connection is not None:
            self._connection.data_received(data)

    def eof_received(self) -> bool:
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        if self._connection is not None:
            self._connection.connection_lost()

    # Transport, as the connection sees it.

    def writelines(self, items: list[bytes]) -> int:
        transport = self._transport
        if transport is None or transport.is_closing():
            return 0
        transport.write(b"".join(items))
        return transport.get_write_buffer_size()

    def close(self) -> None:
        if self._transport is not None:
            self._transport.close()

    def pause_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.pause_reading()

    def resume_reading(self) -> None:
        if self._transport is not None and not self._transport.is_closing():
            self._transport.resume_reading()

    async def start_tls(self) -> None:
        if self._ssl_context is None or self._transport is None:
            raise ConnectionError("TLS is not configured")
        loop = asyncio.get_running_loop()
        tls_transport = await loop.start_tls(
            self._transport, self, self._ssl_context, server_side=True
        )
        if tls_transport is None:
            raise ConnectionError("the connection closed during the TLS handshake")
        self._transport = tls_transport
        self.secure = True
        self.kind = "starttls"


async def listen(
    server: XMPPServer,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    direct_tls: bool,
) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    return await loop.create_server(
        lambda: C2SProtocol(server, ssl_context, direct_tls),
        host,
        port,
        ssl=ssl_context if direct_tls else None,
        reuse_address=True,
    )
