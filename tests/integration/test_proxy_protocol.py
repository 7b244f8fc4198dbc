"""The PROXY protocol on the client ports (``c2s.proxy_protocol``): behind a load balancer,
the client's address that its header names is the stream's, for the per-address sign-in
limit as for everything else; a connection without a valid header, or from a source not
trusted to send one, is closed before a byte of XMPP is read or sent.

slixmpp signs in through a load balancer in miniature (:func:`balancer`), which sends a
header naming a made-up client and then forwards both ways, over STARTTLS and direct TLS.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import struct
import time
from collections.abc import AsyncIterator
from dataclasses import replace

import pytest

from chinwag.server import tcp

from .conftest import Connect, NewClient, StartServer
from .signin_support import refusal, session_end
from .support import (
    HOST,
    TIMEOUT,
    RawStream,
    ServerHandle,
    SignInFailed,
    sign_in,
    stream_error_condition,
    stream_header,
)

pytestmark = pytest.mark.security

PROXIED = {"c2s": {"proxy_protocol": True}}
CLIENT_V4 = "203.0.113.7"
CLIENT_V6 = "2001:db8::9"
LOCAL = b"\r\n\r\n\x00\r\nQUIT\n\x20\x00\x00\x00"
UNKNOWN = b"PROXY UNKNOWN\r\n"


def v1(client: str) -> bytes:
    family = "TCP4" if ipaddress.ip_address(client).version == 4 else "TCP6"
    server = "192.0.2.1" if family == "TCP4" else "2001:db8::1"
    return f"PROXY {family} {client} {server} 51234 5222\r\n".encode()


def v2(client: str) -> bytes:
    """A version 2 PROXY header, with a TLV after the addresses (a unique id)."""
    source = ipaddress.ip_address(client)
    server = ipaddress.ip_address("192.0.2.1" if source.version == 4 else "2001:db8::1")
    family = 0x11 if source.version == 4 else 0x21
    block = source.packed + server.packed + struct.pack("!HH", 51234, 5222)
    block += struct.pack("!BH", 0x05, 8) + b"uniqueid"
    return b"\r\n\r\n\x00\r\nQUIT\n" + struct.pack("!BBH", 0x21, family, len(block)) + block


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while chunk := await reader.read(65536):
            writer.write(chunk)
            await writer.drain()
    except ConnectionError:
        pass
    finally:
        writer.close()


@contextlib.asynccontextmanager
async def balancer(port: int, header: bytes) -> AsyncIterator[int]:
    """A loopback TCP proxy to ``port`` that sends ``header`` first on each connection,
    as HAProxy's ``send-proxy`` does; yields the port it listens on."""
    pipes: set[asyncio.Task[None]] = set()

    async def forward(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, port)
        up_writer.write(header)
        for task in (_pipe(reader, up_writer), _pipe(up_reader, writer)):
            pipes.add(asyncio.ensure_future(task))

    listening = await asyncio.start_server(forward, HOST, 0)
    try:
        yield listening.sockets[0].getsockname()[1]
    finally:
        listening.close()
        for task in pipes:
            task.cancel()
        await asyncio.gather(*pipes, return_exceptions=True)


def peer_address(server: ServerHandle, jid: str) -> tuple[str | None, str]:
    """The address and the transport kind of the stream bound to the full ``jid``."""
    assert server.app is not None
    [session] = [s for s in server.app.xmpp.sessions.all() if s.jid.text == jid]
    transport = session.connection.transport
    return transport.peer_address, transport.kind


async def test_the_sign_in_limit_counts_the_address_a_proxy_names(
    start_server: StartServer, new_client: NewClient, connect: Connect
) -> None:
    server = await start_server(
        **PROXIED, limits={"max_auth_failures_per_address": 2, "auth_failure_ban_seconds": 60}
    )
    async with (
        balancer(server.port, v1(CLIENT_V4)) as guessers_port,
        balancer(server.port, v2(CLIENT_V6)) as others_port,
    ):
        via_guesser = replace(server, port=guessers_port)
        for attempt in range(2):
            guess = new_client(via_guesser, password=f"guess-{attempt}", sasl_mech="PLAIN")
            assert await refusal(guess, via_guesser) == "not-authorized"

        right = new_client(via_guesser, sasl_mech="PLAIN")
        ended = session_end(right)
        with pytest.raises(SignInFailed):
            await sign_in(right, HOST, guessers_port)
        assert (await asyncio.wait_for(ended, TIMEOUT)).condition == "policy-violation"

        other = await connect(replace(server, port=others_port), "alice", "elsewhere")
        assert peer_address(server, str(other.boundjid)) == (CLIENT_V6, "starttls")
    assert server.app is not None
    limiter = server.app.xmpp.auth_failures
    assert await limiter.refused_for(CLIENT_V4) is not None
    assert await limiter.refused_for("127.0.0.1") is None  # the balancer's own address


@pytest.mark.parametrize("direct_tls", [False, True], ids=["starttls", "direct-tls"])
@pytest.mark.parametrize(
    ("header", "client"),
    [(v1(CLIENT_V4), CLIENT_V4), (v2(CLIENT_V4), CLIENT_V4), (v2(CLIENT_V6), CLIENT_V6)],
    ids=["v1", "v2", "v2-ipv6"],
)
async def test_a_client_signs_in_through_a_proxy_with_its_own_address(
    start_server: StartServer, connect: Connect, header: bytes, client: str, direct_tls: bool
) -> None:
    """STARTTLS after the header in clear and the stream's first features; direct TLS's
    handshake right after the header."""
    server = await start_server(**PROXIED)
    target = server.direct_tls_port if direct_tls else server.port
    async with balancer(target, header) as port:
        via = replace(server, port=port, direct_tls_port=port)
        alice = await connect(via, "alice", "laptop", direct_tls=direct_tls)

        kind = "tls" if direct_tls else "starttls"
        assert peer_address(server, str(alice.boundjid)) == (client, kind)


@pytest.mark.parametrize("header", [LOCAL, UNKNOWN], ids=["v2-local", "v1-unknown"])
async def test_a_header_that_names_no_client_leaves_the_proxys_own_address(
    start_server: StartServer, connect: Connect, header: bytes
) -> None:
    server = await start_server(**PROXIED)
    async with balancer(server.port, header) as port:
        alice = await connect(replace(server, port=port), "alice", "laptop")

        assert peer_address(server, str(alice.boundjid)) == (HOST, "starttls")


async def closed_unanswered(server: ServerHandle, data: bytes, *, source: str = HOST) -> bytes:
    """Send ``data`` on a new connection; what the server sent before closing it."""
    raw = await RawStream.open(server.host, server.port, source=source)
    try:
        await raw.send(data)
        return await raw.read_until_closed()
    finally:
        await raw.close()


@pytest.mark.parametrize(
    "start",
    [
        b"",
        b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 05222\r\n",
        b"PROXY UNKNOWN " + b"x" * 120 + b"\r\n",
        b"\r\n\r\n\x00\r\nQUIT\n\x21\x11\xff\xff",
    ],
    ids=["none", "malformed", "oversized-v1", "oversized-v2"],
)
async def test_a_stream_without_a_valid_header_is_closed_unanswered(
    start_server: StartServer, start: bytes
) -> None:
    server = await start_server(**PROXIED)

    assert await closed_unanswered(server, start + stream_header()) == b""


async def test_a_source_that_is_not_trusted_is_closed_unanswered(
    start_server: StartServer,
) -> None:
    server = await start_server(c2s={"proxy_protocol": True, "proxy_trusted": ["127.0.0.1"]})
    header = v1(CLIENT_V4) + stream_header()

    assert await closed_unanswered(server, header, source="127.0.0.2") == b""

    trusted = await RawStream.open(server.host, server.port)
    try:
        await trusted.send(header)
        assert b"</stream:features>" in await trusted.read_until(b"</stream:features>")
    finally:
        await trusted.close()


async def test_a_header_too_slow_to_arrive_is_closed(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(tcp, "PROXY_HEADER_TIMEOUT_S", 0.5)
    server = await start_server(**PROXIED)
    started = time.monotonic()

    assert await closed_unanswered(server, v1(CLIENT_V4)[:12]) == b""
    assert time.monotonic() - started < 3


async def test_without_the_setting_a_header_is_bad_xml(start_server: StartServer) -> None:
    server = await start_server(c2s={"proxy_protocol": False})

    reply = await closed_unanswered(server, v1(CLIENT_V4) + stream_header())

    assert stream_error_condition(reply) == "not-well-formed"
