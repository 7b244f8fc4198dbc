"""Stream management (XEP-0198) over WebSocket with a real client library: xmpp.js.

xmpp.js (``@xmpp/client``, run by ``tests/js/ws_client.mjs``) enables stream
management with resumption whenever the server offers it, and with its reconnect
module on it resumes the session when its connection drops. Here its WebSocket runs
through a loopback TCP relay that the test first silences (nothing passes either way,
as when a mobile network goes away) and then resets: no closing stream, no WebSocket
close frame. Either both sides are reset, or only the client's, so that the server
still holds the old stream when the client resumes. A slixmpp user keeps sending
numbered messages all along; xmpp.js reconnects, resumes, and must have received
every message exactly once, in order, and the slixmpp user every message xmpp.js sent
into the silenced link.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import struct
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from slixmpp import ClientXMPP

from .support import DOMAIN, HOST, TIMEOUT, AssertServing, Connect, ServerHandle
from .test_websocket import Inbox, NodeClient, http_port, xmpp_js  # noqa: F401

SEND_EVERY_S = 0.02
MESSAGES_AFTER_RESUMING = 20
LOST_FROM_XMPP_JS = 3
MAX_MESSAGES = 1000


# --- a relay that can go silent, then reset --------------------------------------------------


@dataclass
class Link:
    """One client connection through the relay and its connection to the server."""

    client: asyncio.StreamWriter
    server: asyncio.StreamWriter
    silent: bool = False
    cut: bool = False
    dropped: bytearray = field(default_factory=bytearray)
    """What the server wrote into the link once it was silent."""

    def server_close_code(self) -> int | None:
        """The status code of the WebSocket close frame (RFC 6455 5.5.1) the server
        wrote into the silent link, if that is what it wrote last."""
        frame = self.dropped[self.dropped.rfind(0x88) :]  # FIN + close; a server masks nothing
        if len(frame) < 4 or frame[1] != len(frame) - 2:
            return None
        return int.from_bytes(frame[2:4])

    def reset(self, *, server_side: bool = True) -> None:
        """Drop the client's connection, and the server's if ``server_side``, with a TCP
        reset: no FIN, no WebSocket close frame."""
        self.cut = True
        for writer in (self.client, self.server) if server_side else (self.client,):
            sock = writer.get_extra_info("socket")
            if sock is not None:
                with contextlib.suppress(OSError):
                    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()


@dataclass
class Relay:
    """A loopback TCP relay to the server's HTTP port."""

    target: int
    links: list[Link] = field(default_factory=list)
    port: int = 0
    _server: asyncio.Server | None = None
    _pumps: set[asyncio.Task[None]] = field(default_factory=set)

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._link, HOST, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    def silence(self) -> None:
        """From now on, drop whatever either side of the current links sends."""
        for link in self.links:
            link.silent = True

    def cut(self, *, server_side: bool = True) -> None:
        """Reset the current links; new connections pass. Without ``server_side`` the
        server's ends stay open and silent: the server learns nothing of the cut."""
        for link in self.links:
            if not link.cut:
                link.reset(server_side=server_side)

    async def close(self) -> None:
        for link in self.links:
            link.reset()
        if self._server is not None:
            self._server.close()
        for pump in self._pumps:
            pump.cancel()
        await asyncio.gather(*self._pumps, return_exceptions=True)

    async def _link(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        up_reader, up_writer = await asyncio.open_connection(HOST, self.target)
        link = Link(writer, up_writer)
        self.links.append(link)
        for source, sink in ((reader, up_writer), (up_reader, writer)):
            pump = asyncio.create_task(self._pump(link, source, sink))
            self._pumps.add(pump)
            pump.add_done_callback(self._pumps.discard)

    @staticmethod
    async def _pump(link: Link, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await source.read(65536):
                if not link.silent:
                    sink.write(data)
                elif sink is link.client:
                    link.dropped += data
        if not link.silent:
            sink.close()


@pytest.fixture
async def relay(server: ServerHandle) -> AsyncIterator[Relay]:
    relay = Relay(http_port(server))
    await relay.start()
    yield relay
    await relay.close()


# --- xmpp.js, watched --------------------------------------------------------------------------


class Watched:
    """Every event xmpp.js prints, read as it comes; waits look at what came so far."""

    def __init__(self, node: NodeClient) -> None:
        self.node = node
        self.events = node.events
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        stdout = self.node.process.stdout
        assert stdout is not None
        while line := await stdout.readline():
            self.events.append(json.loads(line))

    def of(self, kind: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            event
            for event in self.events
            if event["event"] == kind and all(event.get(k) == v for k, v in fields.items())
        ]

    async def until(self, what: str, ready: Callable[[], bool]) -> None:
        deadline = time.monotonic() + TIMEOUT
        while not ready():
            if self._reader.done():
                raise AssertionError(f"xmpp.js exited before {what}; events: {self.events}")
            if time.monotonic() > deadline:
                raise AssertionError(f"no {what} within {TIMEOUT}s; events: {self.events}")
            await asyncio.sleep(0.02)

    def bodies(self, sender: str) -> list[str]:
        return [event["body"] for event in self.of("message", **{"from": sender})]

    async def close(self) -> None:
        await self.node.close()
        await asyncio.wait_for(self._reader, TIMEOUT)


async def send_numbered(bob: ClientXMPP, to: str, stop: asyncio.Event) -> int:
    """Send "1", "2", ... to ``to`` until ``stop`` is set; returns how many were sent."""
    number = 0
    while not stop.is_set() and number < MAX_MESSAGES:
        number += 1
        bob.send_message(mto=to, mbody=str(number), mtype="chat")
        await asyncio.sleep(SEND_EVERY_S)
    return number


async def messages_from(inbox: Inbox, sender: str, count: int) -> list[str]:
    """The bodies of the next ``count`` messages from ``sender``, and of any more that
    arrive right behind them."""
    bodies: list[str] = []

    async def collect() -> None:
        while len(bodies) < count:
            origin, body = await inbox.messages.get()
            if origin == sender:
                bodies.append(body)

    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(collect(), TIMEOUT)
    await asyncio.sleep(0.2)
    while not inbox.messages.empty():
        origin, body = inbox.messages.get_nowait()
        if origin == sender:
            bodies.append(body)
    return bodies


# --- the test ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("address", "server_side"),
    [("bare", True), ("full", True), ("bare", False)],
    ids=["to-bare-jid", "to-full-jid", "server-unaware"],
)
async def test_xmpp_js_resumes_after_its_websocket_is_cut_and_misses_nothing(
    server: ServerHandle,
    connect: Connect,
    xmpp_js: list[str],  # noqa: F811
    relay: Relay,
    assert_serving: AssertServing,
    address: str,
    server_side: bool,
) -> None:
    """``server-unaware``: only the client's connection is reset; the server's stays
    open and silent, so the resumption comes while the server still holds the old
    stream, which it must then end (XEP-0198 section 5)."""
    bob = await connect(server, "bob", "phone")
    inbox = Inbox(bob)
    bob.send_presence()
    bob_jid, alice_jid = server.jid("bob", "phone"), server.jid("alice", "node")
    service = f"ws://{HOST}:{relay.port}/xmpp-websocket"
    node = Watched(
        await NodeClient.start(
            xmpp_js, service, DOMAIN, "alice", server.users["alice"], "PLAIN", "resume"
        )
    )
    stop = asyncio.Event()
    sending: asyncio.Task[int] | None = None
    try:
        await node.until("online", lambda: bool(node.of("online", jid=alice_jid)))
        await node.until("<enabled/>", lambda: bool(node.of("sm", state="enabled")))
        enabled = node.of("sm", state="enabled")[0]
        assert enabled.get("resume") in ("true", "1"), enabled
        await node.node.command(presence=True)
        await inbox.wait_for(inbox.available, alice_jid)

        to = alice_jid if address == "full" else server.jid("alice")
        sending = asyncio.create_task(send_numbered(bob, to, stop))
        await node.until("the first messages", lambda: len(node.bodies(bob_jid)) >= 10)

        relay.silence()
        for number in range(1, LOST_FROM_XMPP_JS + 1):
            await node.node.command(message={"to": bob_jid, "body": f"alice {number}"})
        await asyncio.sleep(0.3)  # the server writes more messages into the silent link
        relay.cut(server_side=server_side)

        await node.until("the disconnect", lambda: bool(node.of("disconnect")))
        await node.until("<resumed/>", lambda: bool(node.of("sm", state="resumed")))
        resumed_at = len(node.bodies(bob_jid))
        await node.until(
            "messages after resuming",
            lambda: len(node.bodies(bob_jid)) >= resumed_at + MESSAGES_AFTER_RESUMING,
        )
        stop.set()
        sent = await asyncio.wait_for(sending, TIMEOUT)
        await node.until("every message", lambda: len(node.bodies(bob_jid)) >= sent)
        await asyncio.sleep(0.2)  # a duplicate would come right behind

        assert node.bodies(bob_jid) == [str(n) for n in range(1, sent + 1)]
        assert not node.of("sm", state="failed"), node.events
        assert len(node.of("online")) == 1, "xmpp.js bound a new session instead of resuming"
        assert await messages_from(inbox, alice_jid, LOST_FROM_XMPP_JS) == [
            f"alice {n}" for n in range(1, LOST_FROM_XMPP_JS + 1)
        ]
        assert inbox.unavailable.empty(), "the session ended while it waited for resumption"
        if not server_side:  # the old stream ended as the new one took the session
            old = relay.links[0]
            assert old.server_close_code() == 1000, bytes(old.dropped[-100:])
    finally:
        stop.set()
        if sending is not None:
            await asyncio.gather(sending, return_exceptions=True)
        await node.close()
    await assert_serving(server)
