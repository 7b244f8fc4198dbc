"""TCP listeners for client streams: STARTTLS on one port, direct TLS (XEP-0368) on another.

Each listener accepts every pending connection whenever its socket is readable, and
hands each to the event loop with ``connect_accepted_socket``. Under uvloop's own
``create_server``, a burst of sign-ins (100 in flight) left new connections waiting
~110 ms between the client's connect and the server's first read: most of a plaintext
sign-in. Accepting them here in one go brought that to ~25 ms.

Behind a load balancer (``[c2s] proxy_protocol``), a listener first reads the PROXY
header of each connection from a trusted source, straight off the socket and not a
byte further, so that what follows reaches the stream as sent: XMPP, or on the direct
TLS port the TLS handshake. The client's address it names becomes the stream's
``peer_address``.
"""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import logging
import socket
import ssl
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from typing import Any, cast

from chinwag.config import C2SSettings
from chinwag.server.c2s import C2SConnection, Transport
from chinwag.server.proxy_protocol import MAX_HEADER_BYTES, ProxyHeader, ProxyHeaderError, parse

log = logging.getLogger(__name__)

BACKLOG = 100
"""Connections the kernel completes before they are accepted (asyncio's default)."""
ACCEPTS_PER_WAKEUP = BACKLOG
TLS_HANDSHAKE_TIMEOUT_S = 30.0
ACCEPT_RETRY_S = 1.0
"""How long a listener that ran out of resources waits before it accepts again."""
PROXY_HEADER_TIMEOUT_S = 5.0
"""How long a connection to a PROXY protocol listener has to send its whole header."""
_OUT_OF_RESOURCES = frozenset((errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM))

ConnectionFactory = Callable[[Transport], C2SConnection]
"""Makes the client stream of a newly accepted connection, over that connection."""
ProtocolFactory = Callable[[str | None], asyncio.Protocol]
"""Makes the protocol of an accepted connection, given the client's address that a
PROXY header named (None: the connection's own peer is the client)."""
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


@dataclass(frozen=True)
class ProxyPolicy:
    """The PROXY protocol on a listener: every connection begins with a header, and
    only the trusted sources (when none are listed, any) may connect at all."""

    trusted: tuple[IPNetwork, ...]

    @classmethod
    def from_settings(cls, c2s: C2SSettings) -> ProxyPolicy | None:
        if not c2s.proxy_protocol:
            return None
        return cls(tuple(ipaddress.ip_network(source) for source in c2s.proxy_trusted))

    def trusts(self, address: str) -> bool:
        if not self.trusted:
            return True
        ip = ipaddress.ip_address(address)
        if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped  # an IPv4 proxy reaching a dual-stack socket
        return any(ip in network for network in self.trusted)


class C2SProtocol(asyncio.Protocol):
    """An asyncio protocol that is also the stream's Transport."""

    def __init__(
        self,
        connect: ConnectionFactory,
        ssl_context: ssl.SSLContext | None,
        direct_tls: bool,
        forwarded: str | None = None,
    ) -> None:
        self._connect = connect
        self._ssl_context = ssl_context
        self.secure = direct_tls
        self.kind = "tls" if direct_tls else "tcp"
        self.peer_address = forwarded
        self._transport: asyncio.Transport | None = None
        self._connection: C2SConnection | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        # uvloop's transports implement asyncio.Transport without subclassing it.
        self._transport = cast(asyncio.Transport, transport)
        if self.peer_address is None:
            peer = transport.get_extra_info("peername")
            self.peer_address = peer[0] if isinstance(peer, tuple) else None
        self._connection = self._connect(self)

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


class Listener:
    """Listening sockets for one port (every address the host resolves to)."""

    def __init__(
        self,
        sockets: list[socket.socket],
        protocol_factory: ProtocolFactory,
        ssl_context: ssl.SSLContext | None,
        proxy: ProxyPolicy | None = None,
    ) -> None:
        self.sockets = sockets
        self._protocol_factory = protocol_factory
        self._ssl_context = ssl_context
        self._proxy = proxy
        self._loop = asyncio.get_running_loop()
        self._handshakes: set[asyncio.Task[object]] = set()
        """Connections not handed to their protocol yet: PROXY header, TLS handshake."""
        self._retry: asyncio.TimerHandle | None = None
        for sock in sockets:
            self._loop.add_reader(sock.fileno(), self._accept, sock)

    def close(self) -> None:
        """Stop accepting; connections already accepted live on."""
        if self._retry is not None:
            self._retry.cancel()
        for sock in self.sockets:
            if sock.fileno() >= 0:
                self._loop.remove_reader(sock.fileno())
                sock.close()
        for task in self._handshakes:
            task.cancel()

    async def wait_closed(self) -> None:
        if self._handshakes:
            await asyncio.wait(list(self._handshakes))

    def _accept(self, listening: socket.socket) -> None:
        for _ in range(ACCEPTS_PER_WAKEUP):
            try:
                connection, _address = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as error:
                if error.errno in _OUT_OF_RESOURCES:
                    self._pause(listening, error)
                    return
                continue  # a client that reset before it was accepted: take the next
            connection.setblocking(False)
            connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._start(connection)

    def _pause(self, listening: socket.socket, error: OSError) -> None:
        """Out of file descriptors or memory: stop accepting for a while, rather than
        spin on a socket that stays readable; the kernel queues what arrives meanwhile."""
        log.warning("cannot accept connections (%s); retrying in %s s", error, ACCEPT_RETRY_S)
        self._loop.remove_reader(listening.fileno())
        self._retry = self._loop.call_later(ACCEPT_RETRY_S, self._resume, listening)

    def _resume(self, listening: socket.socket) -> None:
        self._retry = None
        if listening.fileno() >= 0:
            self._loop.add_reader(listening.fileno(), self._accept, listening)

    def _start(self, connection: socket.socket) -> None:
        opening = (
            self._open(connection, None)
            if self._proxy is None
            else self._open_proxied(connection, self._proxy)
        )
        task = self._loop.create_task(opening)
        self._handshakes.add(task)
        task.add_done_callback(self._started)

    def _open(
        self, connection: socket.socket, forwarded: str | None
    ) -> Coroutine[Any, Any, object]:
        return self._loop.connect_accepted_socket(
            lambda: self._protocol_factory(forwarded),
            connection,
            ssl=self._ssl_context,
            ssl_handshake_timeout=TLS_HANDSHAKE_TIMEOUT_S if self._ssl_context else None,
        )

    async def _open_proxied(self, connection: socket.socket, proxy: ProxyPolicy) -> object:
        """Read the PROXY header of a trusted source, then open the connection as usual;
        close any other connection unread."""
        try:
            source = connection.getpeername()[0]
            if not proxy.trusts(source):
                log.info("refused a connection from %s, not in [c2s] proxy_trusted", source)
                connection.close()
                return None
            async with asyncio.timeout(PROXY_HEADER_TIMEOUT_S):
                header = await _read_proxy_header(self._loop, connection)
        except (ProxyHeaderError, TimeoutError) as error:
            reason = str(error) or f"no PROXY header within {PROXY_HEADER_TIMEOUT_S} s"
            log.info("closed a connection from %s: %s", source, reason)
            connection.close()
            return None
        except BaseException:  # it left (OSError), or the listener closed (cancelled)
            connection.close()
            raise
        return await self._open(connection, header.source)

    def _started(self, task: asyncio.Task[object]) -> None:
        self._handshakes.discard(task)
        if not task.cancelled() and task.exception() is not None:
            # A client that left during the TLS handshake, or spoke something else.
            log.debug("a connection ended before its stream began: %s", task.exception())


async def listen(
    connect: ConnectionFactory,
    host: str,
    port: int,
    ssl_context: ssl.SSLContext | None,
    *,
    direct_tls: bool,
    proxy: ProxyPolicy | None = None,
    reuse_port: bool = False,
) -> Listener:
    """Listen on every address of ``host``; direct TLS wraps each connection at once
    (after its PROXY header, with ``proxy``). ``reuse_port``: other processes may listen
    on the same port too (SO_REUSEPORT), and the kernel spreads connections among them."""
    sockets = await _bound_sockets(host, port, reuse_port=reuse_port)
    return Listener(
        sockets,
        lambda forwarded: C2SProtocol(connect, ssl_context, direct_tls, forwarded),
        ssl_context if direct_tls else None,
        proxy,
    )


async def _read_proxy_header(
    loop: asyncio.AbstractEventLoop, connection: socket.socket
) -> ProxyHeader:
    """Take the PROXY header off ``connection``, and nothing after it.

    Each read peeks at what has arrived. Bytes that may still belong to the header are
    taken; once the header is complete, only its own bytes are."""
    taken = b""
    while True:
        await _readable(loop, connection)
        try:
            arrived = connection.recv(MAX_HEADER_BYTES - len(taken), socket.MSG_PEEK)
        except (BlockingIOError, InterruptedError):
            continue
        if not arrived:
            raise ConnectionResetError("the connection closed before its PROXY header ended")
        header = parse(taken + arrived)
        if header is not None:
            connection.recv(header.length - len(taken))
            return header
        taken += connection.recv(len(arrived))


async def _readable(loop: asyncio.AbstractEventLoop, connection: socket.socket) -> None:
    ready: asyncio.Future[None] = loop.create_future()

    def settle() -> None:
        if not ready.done():
            ready.set_result(None)

    loop.add_reader(connection.fileno(), settle)
    try:
        await ready
    finally:
        loop.remove_reader(connection.fileno())


async def _bound_sockets(host: str, port: int, *, reuse_port: bool = False) -> list[socket.socket]:
    """Non-blocking sockets listening on every address of ``host`` (an empty host means
    all, as asyncio's ``create_server`` has it); a bind error names the address."""
    loop = asyncio.get_running_loop()
    addresses = await loop.getaddrinfo(
        host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )
    sockets: list[socket.socket] = []
    try:
        for family, _kind, _proto, _name, address in dict.fromkeys(addresses):
            sockets.append(
                socket.create_server(address, family=family, backlog=BACKLOG, reuse_port=reuse_port)
            )
    except OSError:
        for sock in sockets:
            sock.close()
        raise
    for sock in sockets:
        sock.setblocking(False)
    return sockets
