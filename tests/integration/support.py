"""Helpers shared by the integration tests: server handles, slixmpp clients, raw sockets.

Every wait here is bounded by ``TIMEOUT`` seconds: a broken server fails a
test, it never hangs the suite.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import os
import socket
import ssl
import struct
import xml.etree.ElementTree as ET
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Protocol

from slixmpp import ClientXMPP

from chinwag.app import Running

TIMEOUT = 10.0
"""The longest any single wait in the integration suite may take."""

HOST = "127.0.0.1"
DOMAIN = "localhost"
USERS = {"alice": "alice-secret", "bob": "bob-secret"}
CLIENT_PLUGINS = ("xep_0030", "xep_0092", "xep_0199")

NS_CLIENT = "jabber:client"
NS_STREAMS = "http://etherx.jabber.org/streams"
NS_STREAM_ERRORS = "urn:ietf:params:xml:ns:xmpp-streams"
NS_SASL = "urn:ietf:params:xml:ns:xmpp-sasl"
NS_TLS = "urn:ietf:params:xml:ns:xmpp-tls"


@dataclass
class ServerHandle:
    """Where a started chinwag listens, and the running application itself."""

    host: str
    port: int
    """STARTTLS (and plaintext, before STARTTLS) client port."""
    direct_tls_port: int
    """XEP-0368 direct TLS client port."""
    domain: str
    app: Running | None = None
    """The in-process application; None for a server running in a subprocess."""
    users: dict[str, str] = field(default_factory=lambda: dict(USERS))

    def jid(self, user: str, resource: str | None = None) -> str:
        bare = f"{user}@{self.domain}"
        return f"{bare}/{resource}" if resource else bare


def deep_merge(base: Mapping[str, Any], overrides: Mapping[str, Any]) -> dict[str, Any]:
    """``base`` with ``overrides`` laid over it, section by section."""
    merged = dict(base)
    for key, value in overrides.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), Mapping):
            merged[key] = deep_merge(merged[key], value)
        else:
            merged[key] = value
    return merged


FIRST_TEST_PORT = 20_000
"""Ports for the tests' servers start here, below the kernel's range of ephemeral ports
(32768-60999 on Linux): a port the kernel chose (``bind(0)``) could be taken by any
outgoing connection between the test's choice and its server's bind, and was, when
several test workers ran."""
PORTS_PER_WORKER = 500
WORKER_SLOTS = 24
"""Each pytest-xdist worker takes its ports from a slice of its own, cycling through it."""
_worker = int(os.environ.get("PYTEST_XDIST_WORKER", "gw0").removeprefix("gw") or 0)
_ports = itertools.cycle(
    range(
        FIRST_TEST_PORT + _worker % WORKER_SLOTS * PORTS_PER_WORKER,
        FIRST_TEST_PORT + (_worker % WORKER_SLOTS + 1) * PORTS_PER_WORKER,
    )
)


def free_port() -> int:
    """A TCP port on the loopback that was free a moment ago, from this worker's slice."""
    for _ in range(PORTS_PER_WORKER):
        port = next(_ports)
        if port_is_free(port):
            return port
    raise RuntimeError("no free port in this test worker's slice")


def port_is_free(port: int) -> bool:
    with socket.socket() as probe:
        try:
            probe.bind((HOST, port))
        except OSError:
            return False
        return True


# --- fixture signatures (for type hints in tests) ------------------------------


class StartServer(Protocol):
    def __call__(self, *, with_users: bool = True, **overrides: Any) -> Awaitable[ServerHandle]:
        """A running server with ``overrides`` of its settings; ``with_users``: alice and
        bob, mutual contacts (else no account)."""


class NewClient(Protocol):
    def __call__(
        self,
        server: ServerHandle,
        user: str = "alice",
        resource: str | None = "test",
        *,
        password: str | None = None,
        sasl_mech: str | None = None,
        direct_tls: bool = False,
    ) -> ClientXMPP: ...


class Connect(Protocol):
    def __call__(
        self,
        server: ServerHandle,
        user: str = "alice",
        resource: str | None = "test",
        *,
        password: str | None = None,
        sasl_mech: str | None = None,
        direct_tls: bool = False,
    ) -> Awaitable[ClientXMPP]: ...


class AssertServing(Protocol):
    def __call__(self, server: ServerHandle) -> Awaitable[None]: ...


# --- slixmpp clients -------------------------------------------------------------


def insecure_context() -> ssl.SSLContext:
    """A client context that accepts the server's self-signed certificate."""
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    return context


def make_client(
    jid: str,
    password: str,
    *,
    sasl_mech: str | None = None,
    direct_tls: bool = False,
    plugins: Iterable[str] = CLIENT_PLUGINS,
) -> ClientXMPP:
    """A slixmpp client, not yet connected, that speaks STARTTLS or direct TLS only."""
    client = ClientXMPP(jid, password, sasl_mech=sasl_mech)
    client.ssl_context = insecure_context()
    # Given an explicit address, slixmpp tries every enabled method in turn;
    # enable exactly the one meant for the port we connect to.
    client.enable_direct_tls = direct_tls
    client.enable_starttls = not direct_tls
    client.enable_plaintext = False
    for plugin in plugins:
        client.register_plugin(plugin)
    return client


class SignInFailed(AssertionError):
    """The client's authentication was refused or the connection ended early."""


async def sign_in(client: ClientXMPP, host: str, port: int, *, timeout: float = TIMEOUT) -> None:
    """Connect ``client`` and wait for ``session_start``; raise SignInFailed otherwise."""
    outcome: asyncio.Future[str | None] = asyncio.get_running_loop().create_future()

    def settle(result: str | None) -> Callable[[Any], None]:
        def handler(_event: Any) -> None:
            if not outcome.done():
                outcome.set_result(result)

        return handler

    client.add_event_handler("session_start", settle(None))
    client.add_event_handler("failed_auth", settle("authentication failed"))
    client.add_event_handler("failed_all_auth", settle("no usable SASL mechanism"))
    client.add_event_handler("disconnected", settle("disconnected before session_start"))
    client.connect(host, port)
    try:
        problem = await asyncio.wait_for(outcome, timeout)
    except TimeoutError:
        raise SignInFailed(f"no session_start within {timeout}s") from None
    if problem is not None:
        raise SignInFailed(problem)


async def close_client(client: ClientXMPP) -> None:
    """Disconnect cleanly (bounded), then stop slixmpp's background send loop."""
    client.cancel_connection_attempt()
    if client.is_connected():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(client.disconnect(wait=1.0), 3.0)
        if client.is_connected():
            client.abort()
    sender = client._run_out_filters
    if sender is not None and not sender.done():
        sender.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await sender


def watch(client: ClientXMPP, event: str) -> asyncio.Future[Any]:
    """A future for the next ``event`` of ``client``; register it before causing the event."""
    future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def handler(data: Any) -> None:
        if not future.done():
            future.set_result(data)

    client.add_event_handler(event, handler, disposable=True)
    return future


# --- raw streams ---------------------------------------------------------------------


def stream_header(
    to: str | None = DOMAIN,
    *,
    version: str | None = "1.0",
    content_ns: str = NS_CLIENT,
    stream_ns: str = NS_STREAMS,
    declaration: bool = True,
) -> bytes:
    """A client stream header; pass None to leave an attribute out."""
    attrs = [f"xmlns='{content_ns}'", f"xmlns:stream='{stream_ns}'"]
    if to is not None:
        attrs.append(f"to='{to}'")
    if version is not None:
        attrs.append(f"version='{version}'")
    prolog = "<?xml version='1.0'?>" if declaration else ""
    return f"{prolog}<stream:stream {' '.join(attrs)}>".encode()


class RawStream:
    """A client connection driven byte by byte, for input no real client would send."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.received = b""

    @classmethod
    async def open(cls, host: str, port: int, *, source: str | None = None) -> RawStream:
        """Connect from ``source`` (another loopback address, say) when given."""
        local_addr = None if source is None else (source, 0)
        reader, writer = await asyncio.wait_for(
            asyncio.open_connection(host, port, local_addr=local_addr), TIMEOUT
        )
        return cls(reader, writer)

    async def send(self, data: bytes) -> None:
        """Send ``data``; a server that already closed the connection is not an error here."""
        with contextlib.suppress(ConnectionError):
            self.writer.write(data)
            await asyncio.wait_for(self.writer.drain(), TIMEOUT)

    async def read_until(self, marker: bytes, timeout: float = TIMEOUT) -> bytes:
        """Read until ``marker`` arrives, the connection closes or ``timeout`` passes.

        Returns everything received so far; the caller checks for the marker.
        """

        async def more() -> None:
            while marker not in self.received:
                chunk = await self.reader.read(65536)
                if not chunk:
                    return
                self.received += chunk

        with contextlib.suppress(ConnectionError, TimeoutError):
            await asyncio.wait_for(more(), timeout)
        return self.received

    async def read_until_closed(self, timeout: float = TIMEOUT) -> bytes:
        """Everything the server sends until it closes the connection (which it must)."""

        async def drain() -> None:
            while chunk := await self.reader.read(65536):
                self.received += chunk

        try:
            await asyncio.wait_for(drain(), timeout)
        except ConnectionResetError:
            pass
        except TimeoutError:
            raise AssertionError(
                f"the server kept the connection open for {timeout}s after: {self.received!r}"
            ) from None
        return self.received

    async def start_tls(self) -> None:
        """Negotiate STARTTLS on a stream whose features offered it; then restart the stream."""
        await self.send(f"<starttls xmlns='{NS_TLS}'/>".encode())
        await self.read_until(b"proceed")
        assert b"<proceed" in self.received, self.received
        self.received = b""
        await asyncio.wait_for(
            self.writer.start_tls(insecure_context(), server_hostname=DOMAIN), TIMEOUT
        )

    def abort(self) -> None:
        """Drop the connection without closing the stream (a reset, not a FIN)."""
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    async def close(self) -> None:
        self.writer.close()
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.writer.wait_closed(), TIMEOUT)


def parse_stream(data: bytes) -> ET.Element:
    """A whole server stream (header to ``</stream:stream>``) as one element tree."""
    return ET.fromstring(data)


def stream_error_condition(data: bytes) -> str:
    """The one defined condition of the stream error that ends ``data``.

    Asserts the stream is complete and well-formed, that ``<stream:error/>`` is
    its last child, and that the error holds exactly one condition (plus an
    optional ``<text/>``).
    """
    assert data.rstrip().endswith(b"</stream:stream>"), f"the stream was not closed: {data!r}"
    root = parse_stream(data)
    assert root.tag == f"{{{NS_STREAMS}}}stream", root.tag
    assert len(root), f"no stream error in {data!r}"
    error = root[-1]
    assert error.tag == f"{{{NS_STREAMS}}}error", f"the stream ends with {error.tag}: {data!r}"
    conditions = [child for child in error if child.tag != f"{{{NS_STREAM_ERRORS}}}text"]
    assert len(conditions) == 1, f"expected one condition in {data!r}"
    namespace, _, condition = conditions[0].tag[1:].partition("}")
    assert namespace == NS_STREAM_ERRORS, conditions[0].tag
    return condition
