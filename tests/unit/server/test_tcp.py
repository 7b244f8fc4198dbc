"""The TCP listener: every pending connection accepted at once, nothing after close.

Each test runs on both loops chinwag serves with: the standard one, and uvloop."""

from __future__ import annotations

import asyncio
import errno
import ipaddress
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from chinwag.config import C2SSettings
from chinwag.server import tcp

PENDING = 30
LOOPS = pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], test: Coroutine[Any, Any, None]
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(test)


class Recorder(asyncio.Protocol):
    made: list[asyncio.BaseTransport] = []
    protocols: list[Recorder] = []

    def __init__(self, forwarded: str | None = None) -> None:
        self.forwarded = forwarded
        self.received = b""

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Recorder.made.append(transport)
        Recorder.protocols.append(self)

    def data_received(self, data: bytes) -> None:
        self.received += data


@asynccontextmanager
async def listening(proxy: tcp.ProxyPolicy | None = None) -> AsyncIterator[tcp.Listener]:
    Recorder.made = []
    Recorder.protocols = []
    listener = tcp.Listener(await tcp._bound_sockets("127.0.0.1", 0), Recorder, None, proxy)
    try:
        yield listener
    finally:
        listener.close()
        await listener.wait_closed()
        for transport in Recorder.made:
            transport.close()


@pytest.fixture
def wakeups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per time a listener found its socket readable."""
    counted: list[int] = []
    accept = tcp.Listener._accept

    def counting(self: tcp.Listener, listening_socket: socket.socket) -> None:
        counted.append(1)
        accept(self, listening_socket)

    monkeypatch.setattr(tcp.Listener, "_accept", counting)
    return counted


@LOOPS
def test_every_pending_connection_is_accepted_in_one_wakeup(loop_factory, wakeups) -> None:
    async def scenario() -> None:
        async with listening() as listener:
            address = listener.sockets[0].getsockname()
            # Connected by the kernel while the loop is busy right here.
            clients = [socket.create_connection(address) for _ in range(PENDING)]
            try:
                async with asyncio.timeout(5):
                    while len(Recorder.made) < PENDING:
                        await asyncio.sleep(0.01)
                assert len(wakeups) == 1
                for transport in Recorder.made:
                    sock = transport.get_extra_info("socket")
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            finally:
                for client in clients:
                    client.close()

    run(loop_factory, scenario())


@LOOPS
def test_a_closed_listener_refuses_connections(loop_factory) -> None:
    async def scenario() -> None:
        async with listening() as listener:
            address = listener.sockets[0].getsockname()
            listener.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=1).close()

    run(loop_factory, scenario())


async def test_a_busy_port_names_its_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(OSError, match=f"bind on address \\('127.0.0.1', {port}\\)"):
            await tcp._bound_sockets("127.0.0.1", port)


@LOOPS
def test_out_of_file_descriptors_pauses_accepting_then_resumes(
    loop_factory, wakeups, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(tcp, "ACCEPT_RETRY_S", 0.05)
    accept = socket.socket.accept
    out_of_descriptors_until = time.monotonic() + 0.03

    def accept_or_fail(self: socket.socket):
        if time.monotonic() < out_of_descriptors_until:
            raise OSError(errno.EMFILE, "Too many open files")
        return accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept_or_fail)

    async def scenario() -> None:
        async with listening() as listener:
            client = socket.create_connection(listener.sockets[0].getsockname())
            try:
                async with asyncio.timeout(5):
                    while not Recorder.made:
                        await asyncio.sleep(0.01)
                assert len(wakeups) == 2  # the failed one, then one after the pause: no spinning
            finally:
                client.close()

    run(loop_factory, scenario())
    assert caplog.text.count("cannot accept connections") == 1


async def test_an_empty_host_listens_on_every_interface() -> None:
    sockets = await tcp._bound_sockets("", 0)
    try:
        assert {sock.getsockname()[0] for sock in sockets} >= {"0.0.0.0"}
    finally:
        for sock in sockets:
            sock.close()


# --- the PROXY protocol -----------------------------------------------------------

LOOPBACK = tcp.ProxyPolicy((ipaddress.ip_network("127.0.0.1/32"),))
V1 = b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 5222\r\n"
V2_IPV6 = (
    b"\r\n\r\n\x00\r\nQUIT\n\x21\x21\x00\x24"
    + ipaddress.ip_address("2001:db8::9").packed
    + ipaddress.ip_address("2001:db8::1").packed
    + b"\xc8\x22\x14\x66"
)
AFTER = b"<stream:stream to='localhost'>"


async def proxied_client(
    listener: tcp.Listener, *chunks: bytes, source: str = "127.0.0.1"
) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    reader, writer = await asyncio.open_connection(
        *listener.sockets[0].getsockname(), local_addr=(source, 0)
    )
    for chunk in chunks:
        writer.write(chunk)
        await writer.drain()
        await asyncio.sleep(0.005)  # a read of its own on the other side
    return reader, writer


async def closed_unread(reader: asyncio.StreamReader) -> bool:
    """The listener closed the connection (a reset, when it left bytes unread), and made
    no protocol for it."""
    async with asyncio.timeout(5):
        try:
            ended = await reader.read() == b""
        except ConnectionResetError:
            ended = True
    return ended and not Recorder.made


async def handed_over(expected: bytes) -> Recorder:
    async with asyncio.timeout(5):
        while not Recorder.protocols or Recorder.protocols[0].received != expected:
            await asyncio.sleep(0.005)
    return Recorder.protocols[0]


def byte_by_byte(data: bytes) -> list[bytes]:
    return [data[i : i + 1] for i in range(len(data))]


@LOOPS
@pytest.mark.parametrize(
    ("header", "client"), [(V1, "203.0.113.7"), (V2_IPV6, "2001:db8::9")], ids=["v1", "v2"]
)
@pytest.mark.parametrize("split", [False, True], ids=["one-read", "byte-by-byte"])
def test_the_header_names_the_client_and_only_what_follows_it_is_handed_over(
    loop_factory, header: bytes, client: str, split: bool
) -> None:
    async def scenario() -> None:
        async with listening(LOOPBACK) as listener:
            chunks = [*byte_by_byte(header), AFTER] if split else [header + AFTER]
            _reader, writer = await proxied_client(listener, *chunks)
            try:
                protocol = await handed_over(AFTER)
                assert protocol.forwarded == client
            finally:
                writer.close()

    run(loop_factory, scenario())


@LOOPS
@pytest.mark.parametrize(
    "start",
    [AFTER, b"PROXY TCP4 203.0.113.7 127.0.0.1 51234 05222\r\n", b"PROXY UNKNOWN " + b"x" * 200],
    ids=["no-header", "malformed", "oversized"],
)
def test_a_connection_without_a_valid_header_is_closed_unread(loop_factory, start) -> None:
    async def scenario() -> None:
        async with listening(LOOPBACK) as listener:
            reader, writer = await proxied_client(listener, start)
            try:
                assert await closed_unread(reader)
            finally:
                writer.close()

    run(loop_factory, scenario())


@LOOPS
def test_a_header_too_slow_to_arrive_is_closed(loop_factory, monkeypatch) -> None:
    monkeypatch.setattr(tcp, "PROXY_HEADER_TIMEOUT_S", 0.2)

    async def scenario() -> None:
        async with listening(LOOPBACK) as listener:
            reader, writer = await proxied_client(listener, V1[:20])
            try:
                started = time.monotonic()
                assert await closed_unread(reader)
                assert 0.15 < time.monotonic() - started < 2
            finally:
                writer.close()

    run(loop_factory, scenario())


@LOOPS
def test_an_untrusted_source_is_closed_even_with_a_valid_header(loop_factory) -> None:
    async def scenario() -> None:
        async with listening(LOOPBACK) as listener:
            reader, writer = await proxied_client(listener, V1 + AFTER, source="127.0.0.2")
            try:
                assert await closed_unread(reader)
            finally:
                writer.close()

    run(loop_factory, scenario())


@LOOPS
def test_a_closed_listener_drops_the_headers_it_waits_for(loop_factory) -> None:
    async def scenario() -> None:
        async with listening(LOOPBACK) as listener:
            reader, writer = await proxied_client(listener, V1[:20])
            await asyncio.sleep(0.05)
            listener.close()
            try:
                assert await closed_unread(reader)
            finally:
                writer.close()

    run(loop_factory, scenario())


def test_trusted_sources() -> None:
    policy = tcp.ProxyPolicy(
        (ipaddress.ip_network("10.0.0.0/8"), ipaddress.ip_network("2001:db8::/32"))
    )
    assert policy.trusts("10.1.2.3")
    assert policy.trusts("::ffff:10.1.2.3")  # an IPv4 balancer on a dual-stack socket
    assert policy.trusts("2001:db8::5")
    assert not policy.trusts("11.0.0.1")
    assert not policy.trusts("::1")
    assert tcp.ProxyPolicy(()).trusts("192.0.2.1")  # none listed: any source


def test_the_setting_is_off_by_default() -> None:
    assert tcp.ProxyPolicy.from_settings(C2SSettings()) is None
    on = tcp.ProxyPolicy.from_settings(C2SSettings(proxy_protocol=True))
    assert on == tcp.ProxyPolicy(
        (ipaddress.ip_network("127.0.0.1/32"), ipaddress.ip_network("::1/128"))
    )
