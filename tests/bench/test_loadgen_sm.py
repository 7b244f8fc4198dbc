"""The load generator's XEP-0198 client (``Params.sm``): it enables stream management
after binding, counts what it receives from the ``<enabled/>`` on, answers ``<r/>``,
asks for acknowledgements as it sends, and checks the ``<a/>`` it gets back.

Each test drives one bench client against a scripted server on a loopback port: the
test reads what the client writes and writes what the server would.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest

from bench.loadgen import (
    DOMAIN,
    HOST,
    PASSWORD,
    SM_REQUEST,
    SM_REQUEST_EVERY,
    Client,
    LoginError,
    Stats,
)

TIMEOUT = 5.0
SM = "urn:xmpp:sm:3"
HEADER = (
    b"<?xml version='1.0'?><stream:stream xmlns='jabber:client' "
    b"xmlns:stream='http://etherx.jabber.org/streams' from='localhost' id='s1' version='1.0'>"
)
SASL_FEATURES = (
    b"<stream:features><mechanisms xmlns='urn:ietf:params:xml:ns:xmpp-sasl'>"
    b"<mechanism>PLAIN</mechanism></mechanisms></stream:features>"
)
BOUND_FEATURES = (
    b"<stream:features><bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>%s</stream:features>"
)
OFFERED = f"<sm xmlns='{SM}'/>".encode()
CHAT = b"<message from='u1@localhost/bench' type='chat'><body>t=%d</body></message>"


@dataclass
class Peer:
    """The server's end of the client's connection."""

    reader: asyncio.StreamReader
    writer: asyncio.StreamWriter

    async def expect(self, marker: bytes) -> bytes:
        """What the client writes up to and including ``marker``."""
        return await asyncio.wait_for(self.reader.readuntil(marker), TIMEOUT)

    async def say(self, data: bytes) -> None:
        self.writer.write(data)
        await self.writer.drain()

    async def nothing_more(self) -> bytes:
        """What the client writes in the next tenth of a second."""
        with contextlib.suppress(TimeoutError):
            return await asyncio.wait_for(self.reader.read(65536), 0.1)
        return b""


@pytest.fixture
async def peers() -> AsyncIterator[asyncio.Queue[Peer]]:
    """Each connection the scripted server accepts; its port is ``queue.port``."""
    accepted: asyncio.Queue[Peer] = asyncio.Queue()

    async def accept(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await accepted.put(Peer(reader, writer))

    server = await asyncio.start_server(accept, HOST, 0)
    accepted.port = server.sockets[0].getsockname()[1]  # type: ignore[attr-defined]
    async with server:
        yield accepted
        server.close()


async def signed_in(
    peers: asyncio.Queue[Peer], stats: Stats, *, offered: bytes = OFFERED, early: bytes = b""
) -> tuple[Client, Peer]:
    """A bench client with ``sm`` through the handshake; ``early`` comes before
    ``<enabled/>``, one chat message right after it."""
    client = Client(0, DOMAIN, stats, sm=True)
    port: int = peers.port  # type: ignore[attr-defined]
    signing = asyncio.create_task(client.sign_in(HOST, port, PASSWORD, tls=False))
    peer = await asyncio.wait_for(peers.get(), TIMEOUT)
    await peer.expect(b"version='1.0'>")
    await peer.say(HEADER + SASL_FEATURES)
    await peer.expect(b"</auth>")
    await peer.say(b"<success xmlns='urn:ietf:params:xml:ns:xmpp-sasl'/>")
    await peer.expect(b"version='1.0'>")
    await peer.say(HEADER + BOUND_FEATURES % offered)
    await peer.expect(b"</iq>")
    await peer.say(b"<iq type='result' id='bind'/>")
    if offered:
        assert await peer.expect(b"/>") == f"<enable xmlns='{SM}' resume='true'/>".encode()
        await peer.say(early + f"<enabled xmlns='{SM}' id='x' resume='true'/>".encode() + CHAT % 1)
    await asyncio.wait_for(signing, TIMEOUT)
    assert await peer.expect(b"<presence/>") == b"<presence/>"
    return client, peer


async def test_the_client_enables_stream_management_after_binding_and_counts_from_enabled(
    peers: asyncio.Queue[Peer],
) -> None:
    stats = Stats()
    early = CHAT % 0  # before <enabled/>: not counted (XEP-0198 section 4)
    client, peer = await signed_in(peers, stats, early=early)

    await peer.say(f"<r xmlns='{SM}'/>".encode())

    assert await peer.expect(b"/>") == f"<a xmlns='{SM}' h='1'/>".encode()
    assert client.sm is not None and client.sm.handled == 1
    assert client.sm.sent == 1  # the initial presence
    assert stats.errors == 0


async def test_the_client_asks_for_an_acknowledgement_every_few_stanzas(
    peers: asyncio.Queue[Peer],
) -> None:
    stats = Stats()
    client, peer = await signed_in(peers, stats)

    for _ in range(2 * SM_REQUEST_EVERY - 1):  # with the presence: two windows
        client.send_chat()
    written = await peer.expect(SM_REQUEST)
    written += await peer.expect(SM_REQUEST)

    assert written.count(b"<message ") == SM_REQUEST_EVERY * 2 - 1
    assert written.endswith(b"</message>" + SM_REQUEST)
    assert await peer.nothing_more() == b""
    await peer.say(f"<a xmlns='{SM}' h='{2 * SM_REQUEST_EVERY}'/>".encode())
    await client.confirm_acked(TIMEOUT)
    assert stats.errors == 0


async def test_the_final_check_waits_for_an_acknowledgement_of_everything_sent(
    peers: asyncio.Queue[Peer],
) -> None:
    stats = Stats()
    client, peer = await signed_in(peers, stats)
    client.send_chat()

    confirming = asyncio.create_task(client.confirm_acked(TIMEOUT))
    assert (await peer.expect(SM_REQUEST)).endswith(b"</message>" + SM_REQUEST)
    await peer.say(f"<a xmlns='{SM}' h='1'/>".encode())  # an older answer: not enough
    await asyncio.sleep(0.05)
    assert not confirming.done()
    await peer.say(f"<a xmlns='{SM}' h='2'/>".encode())

    await asyncio.wait_for(confirming, TIMEOUT)
    with pytest.raises(TimeoutError):  # the server never answers
        await client.confirm_acked(0.1)


@pytest.mark.parametrize(
    ("acks", "complaint"),
    [
        ([b"5"], "acknowledged 5 stanzas after 0, of 1 sent"),
        ([b"1", b"0"], "acknowledged 0 stanzas after 1, of 1 sent"),
        ([b"one"], "acknowledgement without a number"),
    ],
)
async def test_a_wrong_acknowledgement_is_an_error(
    peers: asyncio.Queue[Peer], acks: list[bytes], complaint: str
) -> None:
    stats = Stats()
    _client, peer = await signed_in(peers, stats)

    for h in acks:
        await peer.say(b"<a xmlns='urn:xmpp:sm:3' h='%s'/>" % h)
    await peer.say(f"<r xmlns='{SM}'/>".encode())
    await peer.expect(b"/>")  # the answer: every <a/> before it has been read

    assert stats.errors == 1
    assert complaint in stats.samples[0]


async def test_closing_acknowledges_what_was_received_before_the_end_of_the_stream(
    peers: asyncio.Queue[Peer],
) -> None:
    client, peer = await signed_in(peers, Stats())
    await peer.say(CHAT % 2 + CHAT % 3)
    await peer.say(f"<r xmlns='{SM}'/>".encode())
    assert await peer.expect(b"/>") == f"<a xmlns='{SM}' h='3'/>".encode()

    client.close()

    assert await peer.expect(b"</stream:stream>") == (
        f"<a xmlns='{SM}' h='3'/></stream:stream>".encode()
    )


async def test_a_server_without_stream_management_fails_the_sign_in(
    peers: asyncio.Queue[Peer],
) -> None:
    with pytest.raises(LoginError, match="no stream management"):
        await signed_in(peers, Stats(), offered=b"")
