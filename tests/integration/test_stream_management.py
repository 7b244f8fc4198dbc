"""XEP-0198 stream management against a real chinwag: slixmpp's own ``xep_0198`` plugin
for acknowledgements and for resuming a session after its TCP connection was cut, and
clients driven by hand (over TCP and WebSocket) for the protocol's edges: unknown ids,
a resource bound anew while its session waits, acknowledgements that never come or
count too high.

The client with stream management sends its stanzas through slixmpp's own ``send`` (the
plugin counts what passes there), never raw; the clients it talks to may send raw.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import xml.etree.ElementTree as ET
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import pytest

from chinwag.server import c2s, stream_management
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import ROUTE_BEFORE
from chinwag.server.session import Session, SessionState
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.jid import JID

from .im_support import NS_DELAY, Peer, body, delay_stamp, login, q
from .support import (
    NS_SASL,
    NS_STREAM_ERRORS,
    NS_STREAMS,
    TIMEOUT,
    NewClient,
    RawStream,
    ServerHandle,
    StartServer,
    sign_in,
    stream_header,
    watch,
)
from .test_websocket import WSStream

if TYPE_CHECKING:
    from chinwag.server.stream_management import StreamManagement

NS_SM = "urn:xmpp:sm:3"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
ALICE = "alice@localhost/phone"
NS_CSI = "urn:xmpp:csi:0"
PLAINTEXT = {"c2s": {"require_tls": False}}
"""For the clients driven by hand over TCP: SASL without STARTTLS, on the loopback."""


async def eventually(check: Callable[[], bool], what: str) -> None:
    """Wait, bounded, until ``check()`` holds."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while not check():
        if loop.time() > deadline:
            raise AssertionError(f"not within {TIMEOUT}s: {what}")
        await asyncio.sleep(0.01)


def session_of(server: ServerHandle, jid: str = ALICE) -> Session:
    assert server.app is not None
    session = server.app.xmpp.router.session(JID.parse(jid))
    assert session is not None, f"no session for {jid}"
    return session


def sm_of(session: Session) -> StreamManagement:
    assert session.stream_management is not None, "stream management is not on"
    return session.stream_management


def bodies(peer: Peer) -> list[str]:
    """The bodies of the messages ``peer`` got, in order, without taking them."""
    return [body(e) or "" for e in peer.inbox if e.tag == q("message") and body(e) is not None]


async def managed(new_client: NewClient, server: ServerHandle, resource: str = "phone") -> Peer:
    """alice with slixmpp's XEP-0198 plugin (which asks for resumption), available."""
    client = new_client(server, "alice", resource)
    client.register_plugin("xep_0198")
    enabled = watch(client, "sm_enabled")
    peer = Peer(client)
    await sign_in(client, server.host, server.port)
    await asyncio.wait_for(enabled, TIMEOUT)
    client.send_presence()
    await client.plugin["xep_0199"].send_ping(server.domain, timeout=TIMEOUT)
    return peer


def sm_plugin(peer: Peer) -> Any:
    """slixmpp's XEP-0198 plugin: ``handled`` (its count of what it got), ``seq`` (of what
    it sent), ``last_ack`` (the server's last count of it), ``sm_id``."""
    return peer.client.plugin["xep_0198"]


async def stored_bodies(server: ServerHandle, user: str, count: int) -> list[str]:
    """The bodies of ``user``'s offline messages, once there are ``count`` (bounded wait)."""
    assert server.app is not None
    offline = server.app.services.offline
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while len(stored := await offline.fetch(user)) < count and loop.time() < deadline:
        await asyncio.sleep(0.02)
    return [m.stanza.split("<body>")[1].split("</body>")[0] for m in stored]


def numbered(to: str, number: int) -> str:
    return f"<message to='{to}' type='chat' id='n{number}'><body>{number}</body></message>"


async def cut(peer: Peer) -> None:
    """A TCP reset from the client's side, no closing tag; wait until slixmpp knows."""
    disconnected = watch(peer.client, "disconnected")
    peer.kill()
    await asyncio.wait_for(disconnected, TIMEOUT)


# --- a client stream driven by hand -------------------------------------------------------


class Raw:
    """A client stream over plaintext TCP, read as the top-level elements it carries."""

    def __init__(self, stream: RawStream) -> None:
        self.stream = stream
        self.elements: deque[ET.Element] = deque()
        self.ended = False
        self._parser = ET.XMLPullParser(("start", "end"))
        self._depth = 0

    @classmethod
    async def signed_in(cls, server: ServerHandle, user: str = "alice") -> Raw:
        raw = cls(await RawStream.open(server.host, server.port))
        await raw.open()
        token = base64.b64encode(f"\0{user}\0{server.users[user]}".encode()).decode()
        await raw.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>")
        await raw.next(q("success", NS_SASL))
        await raw.open()
        return raw

    async def open(self) -> ET.Element:
        self._parser = ET.XMLPullParser(("start", "end"))
        self._depth = 0
        await self.stream.send(stream_header())
        return await self.next(q("features", NS_STREAMS))

    async def bind(self, resource: str = "phone") -> None:
        await self.send(
            f"<iq type='set' id='bind'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        result = await self.next(q("iq"))
        assert result.get("type") == "result", ET.tostring(result)

    async def send(self, xml: str) -> None:
        await self.stream.send(xml.encode())

    async def next(self, tag: str) -> ET.Element:
        """The next top-level element, which must be a ``tag``."""
        element = await self._take(tag)
        assert element.tag == tag, f"expected {tag}, got {ET.tostring(element)!r}"
        return element

    async def take(self) -> ET.Element:
        """The next top-level element, whatever it is."""
        return await self._take("an element")

    async def until(self, tag: str) -> ET.Element:
        """The next ``tag``, skipping the top-level elements before it."""
        while (element := await self._take(tag)).tag != tag:
            pass
        return element

    async def _take(self, wanted: str) -> ET.Element:
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not self.elements:
            assert not self.ended, f"the server closed the stream before {wanted}"
            remaining = deadline - loop.time()
            assert remaining > 0, f"no {wanted} within {TIMEOUT}s"
            chunk = b""
            with contextlib.suppress(TimeoutError, ConnectionError):
                chunk = await asyncio.wait_for(self.stream.reader.read(65536), remaining)
            self._feed(chunk)
        return self.elements.popleft()

    def _feed(self, chunk: bytes) -> None:
        if not chunk:
            self.ended = True
            return
        self._parser.feed(chunk)
        for event, element in self._parser.read_events():
            if event == "start":
                self._depth += 1
            else:
                self._depth -= 1
                if self._depth == 1:
                    self.elements.append(element)
                elif self._depth == 0:
                    self.ended = True

    async def stream_error(self) -> ET.Element:
        """The stream error the server ends the stream with; the stream must end."""
        error = await self.until(q("error", NS_STREAMS))
        with contextlib.suppress(ConnectionError, TimeoutError):
            while not self.ended:
                self._feed(await asyncio.wait_for(self.stream.reader.read(65536), TIMEOUT))
        assert self.ended
        return error


def condition(error: ET.Element, namespace: str) -> str:
    (defined,) = [c for c in error if c.tag.startswith(f"{{{namespace}}}") and "text" not in c.tag]
    return defined.tag.partition("}")[2]


# --- acknowledgements -------------------------------------------------------------------------


async def test_slixmpp_enables_and_both_sides_count_and_acknowledge(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await managed(new_client, server)
    bob = await login(new_client, server, "bob", "desk")
    sm = sm_of(session_of(server))
    plugin = sm_plugin(alice)
    assert sm.id == plugin.sm_id and sm.resume_seconds == 300

    for number in range(1, 13):
        bob.send(numbered(ALICE, number))
    for number in range(1, 8):
        alice.client.send_message(mto="bob@localhost/desk", mbody=f"back {number}")
    await eventually(lambda: bodies(alice)[-1:] == ["12"], "alice got every message")
    await eventually(lambda: len(bodies(bob)) == 7, "bob got every answer")
    plugin.request_ack()  # after them: slixmpp queues stanzas

    await eventually(
        lambda: plugin.last_ack == plugin.seq == 9,
        "the server acknowledged every stanza alice sent",
    )
    await eventually(
        lambda: not sm.unacked and sm.acked == plugin.handled,
        "alice acknowledged every stanza the server sent",
    )
    assert sm.sent == plugin.handled >= 13


# --- resumption --------------------------------------------------------------------------------


async def test_a_cut_connection_is_resumed_and_each_message_arrives_once_in_order(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await managed(new_client, server)
    bob = await login(new_client, server, "bob", "desk")
    session = session_of(server)
    total = 60

    async def send_all() -> None:
        for number in range(1, total + 1):
            bob.send(numbered(ALICE, number))
            await asyncio.sleep(0.01)

    sending = asyncio.ensure_future(send_all())
    try:
        await eventually(lambda: len(bodies(alice)) >= 10, "the first messages arrived")
        await cut(alice)
        await eventually(lambda: session.state is SessionState.DETACHED, "the session waits")
        resumed = watch(alice.client, "session_resumed")
        alice.client.connect(server.host, server.port)
        await asyncio.wait_for(resumed, TIMEOUT)
        await asyncio.wait_for(sending, TIMEOUT)
    finally:
        sending.cancel()
    await bob.sync()
    await eventually(lambda: str(total) in bodies(alice), "the last message arrived")

    assert bodies(alice) == [str(number) for number in range(1, total + 1)]
    assert session_of(server) is session and session.state is SessionState.BOUND
    delayed = [e for e in alice.inbox if e.find(q("delay", NS_DELAY)) is not None]
    assert delayed, "what was sent again, or waited, carries a delay"


async def test_resumption_works_over_websocket_for_a_session_begun_over_tcp(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await managed(new_client, server)
    bob = await login(new_client, server, "bob", "desk")
    plugin = sm_plugin(alice)
    bob.send(numbered(ALICE, 1))
    await eventually(lambda: bodies(alice) == ["1"], "the first message arrived")
    handled = plugin.handled
    await cut(alice)
    await eventually(lambda: session_of(server).state is SessionState.DETACHED, "the session waits")
    bob.send(numbered(ALICE, 2))
    await bob.sync()

    web = await WSStream.connect(server)
    try:
        await web.authenticate("alice", server.users["alice"])
        assert (await web.open()).find(f"{{{NS_SM}}}sm") is not None
        await web.send(f"<resume xmlns='{NS_SM}' previd='{plugin.sm_id}' h='{handled}'/>")
        resumed = await web.recv()
        assert resumed.tag == f"{{{NS_SM}}}resumed", ET.tostring(resumed)
        waited = await web.recv_until(lambda e: e.tag == q("message"))
        assert body(waited) == "2" and waited.find(q("delay", NS_DELAY)) is not None
        await web.ping()
        assert session_of(server).transport_kind == "websocket"
    finally:
        await web.close()


async def test_when_the_window_closes_messages_go_offline_stamped_for_the_next_login(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(
        stream_management={"resume_timeout_seconds": 1, "max_resume_timeout_seconds": 1}
    )
    alice = await managed(new_client, server)
    alice.client.remove_handler("Stream Management Request Ack")  # it never acknowledges
    bob = await login(new_client, server, "bob", "desk")
    session = session_of(server)
    for number in (1, 2):
        bob.send(numbered("alice@localhost", number))
    await eventually(lambda: bodies(alice) == ["1", "2"], "alice got the first two")
    await cut(alice)
    await eventually(lambda: session.state is SessionState.DETACHED, "the session waits")
    cut_at = datetime.now(UTC)
    await asyncio.sleep(0.01)  # stamps have milliseconds
    for number in (3, 4):
        bob.send(numbered("alice@localhost", number))
    await bob.sync()

    await eventually(lambda: session.state is SessionState.ENDED, "the window closed")
    assert await stored_bodies(server, "alice", 4) == ["1", "2", "3", "4"]

    # The next login: slixmpp tries to resume, is refused, and binds anew.
    alice.inbox.clear()
    failed = watch(alice.client, "sm_failed")
    started = watch(alice.client, "session_start")
    alice.client.connect(server.host, server.port)
    refusal = await asyncio.wait_for(failed, TIMEOUT)
    assert refusal.xml.find(f"{{{NS_STANZAS}}}item-not-found") is not None
    assert refusal.xml.get("h") == "2"  # its presence and ping were handled
    await asyncio.wait_for(started, TIMEOUT)
    alice.client.send_presence()
    await eventually(lambda: len(bodies(alice)) == 4, "the stored messages arrived")

    assert bodies(alice) == ["1", "2", "3", "4"]
    messages = [e for e in alice.inbox if e.tag == q("message")]
    first_stamps = [delay_stamp(e)[1] for e in messages]
    assert first_stamps[1] <= cut_at <= first_stamps[2]
    assert all(delay_stamp(e)[0] == "localhost" for e in messages)


async def test_a_new_login_replaces_a_waiting_session_whose_id_then_is_unknown(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**PLAINTEXT)
    alice = await managed(new_client, server)
    sm_id = sm_of(session_of(server)).id
    waiting = session_of(server)
    await cut(alice)
    await eventually(lambda: waiting.state is SessionState.DETACHED, "the session waits")

    newer = await login(new_client, server, "alice", "phone")

    assert waiting.state is SessionState.ENDED
    assert session_of(server) is not waiting
    await newer.sync()
    raw = await Raw.signed_in(server)
    await raw.send(f"<resume xmlns='{NS_SM}' previd='{sm_id}' h='0'/>")
    failed = await raw.next(f"{{{NS_SM}}}failed")
    assert condition(failed, NS_STANZAS) == "item-not-found"
    assert failed.get("h") == "2"
    await raw.stream.close()


async def test_an_unknown_id_is_item_not_found_and_the_client_may_bind(
    start_server: StartServer,
) -> None:
    server = await start_server(**PLAINTEXT)
    raw = await Raw.signed_in(server)
    await raw.send(f"<resume xmlns='{NS_SM}' previd='made-up' h='0'/>")
    failed = await raw.next(f"{{{NS_SM}}}failed")
    assert condition(failed, NS_STANZAS) == "item-not-found" and failed.get("h") is None
    await raw.bind()
    await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/>")
    enabled = await raw.next(f"{{{NS_SM}}}enabled")
    assert enabled.get("resume") == "true" and enabled.get("max") == "300"
    await raw.stream.close()


async def test_a_client_that_never_acknowledges_is_cut_off_and_nothing_is_lost(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**PLAINTEXT, stream_management={"max_unacked_stanzas": 5})
    raw = await Raw.signed_in(server)
    await raw.bind()
    await raw.send(f"<enable xmlns='{NS_SM}'/><presence/>")
    await raw.next(f"{{{NS_SM}}}enabled")
    bob = await login(new_client, server, "bob", "desk")
    for number in range(1, 11):
        bob.send(numbered("alice@localhost", number))

    error = await raw.stream_error()

    assert condition(error, NS_STREAM_ERRORS) == "policy-violation"
    await bob.sync()
    assert server.app is not None and server.app.xmpp.router.session(JID.parse(ALICE)) is None
    expected = [str(number) for number in range(1, 11)]
    assert await stored_bodies(server, "alice", 10) == expected


async def test_an_ack_of_more_than_was_sent_ends_the_stream(start_server: StartServer) -> None:
    server = await start_server(**PLAINTEXT)
    raw = await Raw.signed_in(server)
    await raw.bind()
    await raw.send(f"<enable xmlns='{NS_SM}'/><presence/>")
    await raw.next(f"{{{NS_SM}}}enabled")
    await raw.send(f"<a xmlns='{NS_SM}' h='9'/>")

    error = await raw.stream_error()

    assert condition(error, NS_STREAM_ERRORS) == "undefined-condition"
    detail = error.find(f"{{{NS_SM}}}handled-count-too-high")
    assert detail is not None and detail.get("h") == "9"
    assert detail.get("send-count") in ("0", "1")  # its own presence may have come back


async def test_client_and_server_ack_requests_are_answered_with_counts(
    start_server: StartServer,
) -> None:
    server = await start_server(**PLAINTEXT)
    raw = await Raw.signed_in(server)
    await raw.bind()
    await raw.send(
        f"<presence/><enable xmlns='{NS_SM}'/><iq type='get' id='p1' to='localhost'>"
        f"<ping xmlns='urn:xmpp:ping'/></iq><r xmlns='{NS_SM}'/>"
    )
    await raw.next(q("presence"))  # before <enabled/>: not counted
    await raw.next(f"{{{NS_SM}}}enabled")
    answer = await raw.until(f"{{{NS_SM}}}a")
    assert answer.get("h") == "1"
    await raw.until(f"{{{NS_SM}}}r")  # the server asks about its ping result
    await raw.send(f"<a xmlns='{NS_SM}' h='1'/>")
    await raw.send(f"<r xmlns='{NS_SM}'/>")
    assert (await raw.until(f"{{{NS_SM}}}a")).get("h") == "1"
    assert not sm_of(session_of(server)).unacked
    await raw.stream.close()


async def test_what_an_ack_leaves_unacknowledged_is_asked_about_with_the_next_write(
    start_server: StartServer,
) -> None:
    """A request written alone would cost a write, and the client's answer a read, of
    their own: the server asks with what it writes next instead (every write may ask,
    with ``request_ack_after = 1``)."""
    server = await start_server(**PLAINTEXT, stream_management={"request_ack_after": 1})
    raw, _ = await raw_managed(server)
    sm = sm_of(session_of(server))
    await raw.until(q("presence"))  # its own presence, and a request after it
    await raw.next(f"{{{NS_SM}}}r")

    def ping(number: int) -> str:
        return f"<iq type='get' id='p{number}' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>"

    await raw.send(ping(1))
    assert (await raw.next(q("iq"))).get("id") == "p1"  # no request: one is out
    await raw.send(f"<a xmlns='{NS_SM}' h='{sm.sent - 1}'/>")  # all but the ping's result
    await raw.send(ping(2))
    assert (await raw.next(q("iq"))).get("id") == "p2"
    await raw.next(f"{{{NS_SM}}}r")
    await raw.send(f"<a xmlns='{NS_SM}' h='{sm.sent}'/>")
    await eventually(lambda: not sm.unacked, "everything acknowledged")
    await raw.stream.close()


async def test_a_busy_stream_is_asked_once_per_request_ack_after_stanzas(
    start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A request and its answer cost the server about what a short stanza does: a client
    sent stanza after stanza is asked once per ``request_ack_after`` (10) of them, not
    with every write; what the burst leaves is asked about by the ping sweep, in a
    request of its own (here the sweep runs every 0.25 s, and a second after the last
    request is never reached)."""
    monkeypatch.setattr(stream_management, "REQUEST_SPACING_SECONDS", 3600.0)
    server = await start_server(
        **PLAINTEXT, limits={"ping_after_seconds": 1, "ping_timeout_seconds": 5}
    )
    raw, _ = await raw_managed(server)
    sm = sm_of(session_of(server))
    await raw.until(q("presence"))
    await raw.next(f"{{{NS_SM}}}r")  # the first request: none before it
    await raw.send(f"<a xmlns='{NS_SM}' h='{sm.sent}'/>")
    handled = sm.sent
    bob = await login(new_client, server, "bob", "desk")
    loop = asyncio.get_running_loop()
    started, requests = loop.time(), 0

    async def next_message() -> None:
        nonlocal handled, requests
        while (element := await raw.take()).tag != q("message"):
            if element.tag == f"{{{NS_SM}}}r":
                requests += 1
                await raw.send(f"<a xmlns='{NS_SM}' h='{handled}'/>")
            else:  # bob's presence
                handled += 1
        handled += 1

    for number in range(25):  # one at a time: each goes out in a write of its own
        bob.send(numbered(ALICE, number))
        await next_message()
    sweeps = (loop.time() - started) / 0.25 + 1  # each may ask about what is left
    assert 1 <= requests <= 25 // 10 + sweeps, (requests, sweeps)
    await raw.next(f"{{{NS_SM}}}r")  # the sweep's, for the last few
    await raw.send(f"<a xmlns='{NS_SM}' h='{handled}'/>")
    await eventually(lambda: not sm.unacked, "everything acknowledged")
    await raw.stream.close()


async def test_an_inactive_client_is_asked_with_every_write(
    start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """XEP-0352: what an inactive client is sent is seldom, and a request written alone
    later could wake its radio again, so each write asks until it is active again."""
    monkeypatch.setattr(stream_management, "REQUEST_SPACING_SECONDS", 3600.0)
    server = await start_server(**PLAINTEXT, limits={"ping_after_seconds": 0})  # no sweep
    raw, _ = await raw_managed(server)
    sm = sm_of(session_of(server))
    await raw.until(q("presence"))
    await raw.next(f"{{{NS_SM}}}r")  # the first request: none before it
    await raw.send(f"<a xmlns='{NS_SM}' h='{sm.sent}'/><inactive xmlns='{NS_CSI}'/>")
    await eventually(lambda: sm.request_after == 1, "inactive")
    bob = await login(new_client, server, "bob", "desk")
    await each_write_asks(raw, bob, sm, 3)
    await raw.send(f"<active xmlns='{NS_CSI}'/>")
    await eventually(lambda: sm.request_after == 10, "active")
    bob.send(numbered(ALICE, 3))
    assert body(await raw.next(q("message"))) == "3"
    assert sm.unacked and not sm.awaiting  # fewer than ten, and the last request is new
    await raw.stream.close()


async def each_write_asks(raw: Raw, sender: Peer, sm: StreamManagement, count: int) -> None:
    """``count`` messages from ``sender``, one at a time, each followed by a request."""
    for number in range(count):
        sender.send(numbered(ALICE, number))
        assert body(await raw.until(q("message"))) == str(number)
        await raw.next(f"{{{NS_SM}}}r")
        await raw.send(f"<a xmlns='{NS_SM}' h='{sm.sent}'/>")


async def test_a_client_inactive_before_it_enables_stream_management_is_asked_with_every_write(
    start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(stream_management, "REQUEST_SPACING_SECONDS", 3600.0)
    server = await start_server(**PLAINTEXT, limits={"ping_after_seconds": 0})  # no sweep
    raw = await Raw.signed_in(server)
    await raw.bind()
    await raw.send(f"<inactive xmlns='{NS_CSI}'/><enable xmlns='{NS_SM}'/><presence/>")
    await raw.next(f"{{{NS_SM}}}enabled")
    sm = sm_of(session_of(server))
    assert sm.request_after == 1
    bob = await login(new_client, server, "bob", "desk")
    await each_write_asks(raw, bob, sm, 3)
    await raw.stream.close()


async def test_the_answer_to_a_request_waits_for_the_next_write_to_ride_in(
    start_server: StartServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Written at once, the answer to a client's <r/> would often be a write of its own:
    it goes with what the client is sent next, or alone after ``ANSWER_HOLD_SECONDS``
    (the other tests answer within the usual hold)."""
    monkeypatch.setattr(c2s, "ANSWER_HOLD_SECONDS", TIMEOUT * 2)
    server = await start_server(**PLAINTEXT)
    raw, _ = await raw_managed(server)
    sm = sm_of(session_of(server))
    await raw.until(q("presence"))
    await raw.next(f"{{{NS_SM}}}r")
    request = f"<r xmlns='{NS_SM}'/>"
    await raw.send(f"<a xmlns='{NS_SM}' h='{sm.sent}'/>{request}")
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(raw.next(f"{{{NS_SM}}}a"), 0.3)
    await raw.send(request)
    await raw.send("<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert (await raw.next(q("iq"))).get("id") == "p1"
    for _request in range(2):  # each its own answer, counting the presence, not the ping
        assert (await raw.next(f"{{{NS_SM}}}a")).get("h") == "1"
    await raw.stream.close()


async def test_what_a_held_stanza_s_dispatch_holds_in_turn_is_waited_for_too(
    start_server: StartServer,
) -> None:
    """A module that holds a stanza and dispatches it later (a block list being read)
    may have the stream held again by that dispatch (in a cluster, a stanza for another
    node waits for its XADD): the <r/> the client sent after it is answered only once
    that is done too, so that the <a/> never counts a stanza not yet handed on."""
    server = await start_server(**PLAINTEXT)
    assert server.app is not None
    api = server.app.xmpp.modules["message"]
    handed_on = asyncio.Event()
    taken: list[Element] = []

    def hold_twice(routed: Routed) -> bool:
        stanza, origin = routed.stanza, routed.origin
        text = stanza.find("body")
        if origin is None or text is None or text.text != "held":
            return False
        if any(stanza is held for held in taken):
            origin.connection.hold(handed_on.wait())
            return False
        taken.append(stanza)
        origin.connection.hold(dispatch_again(routed))
        return True

    async def dispatch_again(routed: Routed) -> None:
        await asyncio.sleep(0)
        api.dispatch(routed.stanza, routed.to, routed.origin)

    api.hook(ROUTE_BEFORE, hold_twice, 200)
    raw, _ = await raw_managed(server)
    await raw.until(q("presence"))
    await raw.send(
        "<message to='alice@localhost/phone' type='chat'><body>held</body></message>"
        f"<r xmlns='{NS_SM}'/>"
    )
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(raw.until(f"{{{NS_SM}}}a"), 0.5)
    handed_on.set()
    assert (await raw.until(f"{{{NS_SM}}}a")).get("h") == "2"  # the presence and the message
    await raw.stream.close()


async def test_a_request_the_client_sends_before_closing_is_not_answered_after_the_end(
    start_server: StartServer,
) -> None:
    """The stream's closing tag is the last thing written: an answer still held then is
    dropped, not written after it."""
    server = await start_server(**PLAINTEXT)
    raw, _ = await raw_managed(server)
    await raw.until(q("presence"))
    await raw.send(f"<r xmlns='{NS_SM}'/></stream:stream>")
    tail = await raw.stream.read_until_closed()
    assert tail.rstrip().endswith(b"</stream:stream>"), tail


# --- how a stream ends decides what becomes of its session ------------------------------


async def raw_managed(server: ServerHandle) -> tuple[Raw, str]:
    """alice by hand, bound, with resumable stream management and initial presence."""
    raw = await Raw.signed_in(server)
    await raw.bind()
    await raw.send(f"<enable xmlns='{NS_SM}' resume='true'/><presence/>")
    enabled = await raw.next(f"{{{NS_SM}}}enabled")
    return raw, enabled.get("id") or ""


async def test_a_stream_timed_out_leaves_its_session_waiting_a_closed_one_ends_it(
    start_server: StartServer,
) -> None:
    server = await start_server(**PLAINTEXT)
    assert server.app is not None
    timed_out, _ = await raw_managed(server)
    session = session_of(server)
    (connection,) = [c for c in server.app.xmpp.connections if c.session is session]

    connection.close_stream(StreamError(StreamCondition.CONNECTION_TIMEOUT, "no answer"))

    assert condition(await timed_out.stream_error(), NS_STREAM_ERRORS) == "connection-timeout"
    assert session.state is SessionState.DETACHED
    await timed_out.stream.close()

    closing, sm_id = await raw_managed(server)
    second = session_of(server)
    assert session.state is SessionState.ENDED and second is not session  # replaced
    await closing.send("</stream:stream>")
    await eventually(lambda: second.state is SessionState.ENDED, "a closed stream ends it")
    resumer = await Raw.signed_in(server)
    await resumer.send(f"<resume xmlns='{NS_SM}' previd='{sm_id}' h='0'/>")
    assert condition(await resumer.next(f"{{{NS_SM}}}failed"), NS_STANZAS) == "item-not-found"
    await resumer.stream.close()


async def test_resuming_while_the_old_stream_is_open_closes_it_with_conflict(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**PLAINTEXT)
    old, sm_id = await raw_managed(server)
    session = session_of(server)
    await old.next(q("presence"))  # its own, which the client will acknowledge
    bob = await login(new_client, server, "bob", "desk")
    bob.send(numbered(ALICE, 1))
    await old.until(q("message"))  # after bob's presence; neither acknowledged

    new = await Raw.signed_in(server)
    await new.send(f"<resume xmlns='{NS_SM}' previd='{sm_id}' h='1'/>")

    resumed = await new.next(f"{{{NS_SM}}}resumed")
    assert resumed.get("h") == "1"  # the server handled its presence
    assert condition(await old.stream_error(), NS_STREAM_ERRORS) == "conflict"
    presence = await new.next(q("presence"))
    assert presence.get("from") == "bob@localhost/desk"
    assert body(await new.next(q("message"))) == "1"
    assert session_of(server) is session and session.state is SessionState.BOUND
    await new.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert (await new.until(q("iq"))).get("id") == "p"
    await new.stream.close()


async def test_another_account_cannot_resume_a_session(start_server: StartServer) -> None:
    server = await start_server(**PLAINTEXT)
    alice, sm_id = await raw_managed(server)
    session = session_of(server)
    alice.stream.abort()
    await eventually(lambda: session.state is SessionState.DETACHED, "the session waits")

    bob = await Raw.signed_in(server, "bob")
    await bob.send(f"<resume xmlns='{NS_SM}' previd='{sm_id}' h='0'/>")

    failed = await bob.next(f"{{{NS_SM}}}failed")
    assert condition(failed, NS_STANZAS) == "item-not-found" and failed.get("h") is None
    assert session.state is SessionState.DETACHED and session_of(server) is session
    await bob.bind("desk")
    await bob.stream.close()


# --- what a session that expires leaves behind ---------------------------------------------

SHORT_WINDOW = {"resume_timeout_seconds": 1, "max_resume_timeout_seconds": 1}


async def expire_unacknowledged(peer: Peer, server: ServerHandle, jid: str) -> None:
    """Cut ``peer``'s connection, whose client acknowledged nothing since it was told to
    stop, and wait, bounded, for its session's window to close."""
    session = session_of(server, jid)
    await cut(peer)
    await eventually(lambda: session.state is SessionState.ENDED, "the window closed")


async def test_a_bare_jid_message_another_resource_got_is_not_sent_it_again(
    start_server: StartServer, new_client: NewClient
) -> None:
    """RFC 6121 §8.5.2.1.1: delivered to one available resource is delivered. The phone's
    session ends with the message unacknowledged; the laptop, which has it, gets it once
    and nothing is stored."""
    server = await start_server(stream_management=SHORT_WINDOW)
    phone = await managed(new_client, server, "phone")
    phone.client.remove_handler("Stream Management Request Ack")  # it never acknowledges
    laptop = await managed(new_client, server, "laptop")
    bob = await login(new_client, server, "bob", "desk")
    bob.send(numbered("alice@localhost", 1))
    await eventually(lambda: bodies(phone) == bodies(laptop) == ["1"], "both got it")

    await expire_unacknowledged(phone, server, ALICE)
    await laptop.sync()

    assert bodies(laptop) == ["1"]
    assert await stored_bodies(server, "alice", 0) == []


async def test_a_message_whose_carbon_copy_another_resource_got_is_not_sent_it_again(
    start_server: StartServer, new_client: NewClient
) -> None:
    """The laptop got a <received/> copy (slixmpp's xep_0280) of bob's message to the phone;
    when the phone's session ends with the message unacknowledged, the laptop is not sent
    the message itself as well, nor is it stored."""
    server = await start_server(stream_management=SHORT_WINDOW)
    phone = await managed(new_client, server, "phone")
    phone.client.remove_handler("Stream Management Request Ack")
    laptop = await managed(new_client, server, "laptop")
    laptop.client.register_plugin("xep_0280")
    await asyncio.wait_for(laptop.client.plugin["xep_0280"].enable(), TIMEOUT)
    bob = await login(new_client, server, "bob", "desk")
    bob.send(numbered(ALICE, 1))
    await eventually(lambda: bodies(phone) == ["1"], "the phone got it")
    await bob.sync()
    await laptop.sync()
    copies = [e for e in laptop.inbox if e.tag == q("message")]
    assert len(copies) == 1 and body(copies[0]) is None  # the copy, wrapped

    await expire_unacknowledged(phone, server, ALICE)
    await laptop.sync()

    assert [e for e in laptop.inbox if e.tag == q("message")] == copies
    assert await stored_bodies(server, "alice", 0) == []


async def test_resuming_replays_more_than_the_unacknowledged_bound(
    start_server: StartServer, new_client: NewClient
) -> None:
    """What waited while the client was away, on top of what it had not acknowledged, is
    more than ``max_unacked_stanzas``: all of it comes, and the stream stays open."""
    server = await start_server(**PLAINTEXT, stream_management={"max_unacked_stanzas": 4})
    old, sm_id = await raw_managed(server)
    session = session_of(server)
    bob = await login(new_client, server, "bob", "desk")
    for number in (1, 2):
        bob.send(numbered(ALICE, number))
    await bob.sync()
    old.stream.abort()
    await eventually(lambda: session.state is SessionState.DETACHED, "the session waits")
    for number in (3, 4, 5):
        bob.send(numbered(ALICE, number))
    await bob.sync()

    new = await Raw.signed_in(server)
    await new.send(f"<resume xmlns='{NS_SM}' previd='{sm_id}' h='0'/>")
    await new.next(f"{{{NS_SM}}}resumed")
    got = [body(await new.until(q("message"))) for _ in range(5)]

    assert got == ["1", "2", "3", "4", "5"]
    await new.send(f"<a xmlns='{NS_SM}' h='{len(sm_of(session).unacked)}'/>")
    await new.send("<iq type='get' id='p' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert (await new.until(q("iq"))).get("id") == "p"
    assert session.state is SessionState.BOUND
    await new.stream.close()


async def test_an_unanswered_ack_request_is_a_dead_connection_and_the_session_waits(
    start_server: StartServer, new_client: NewClient
) -> None:
    """ejabberd's ack timeout, on the ping timeout: a client that leaves the server's <r/>
    unanswered for ``ping_timeout_seconds`` is closed with <connection-timeout/>, long
    before a silent stream would be pinged, and its session waits for resumption."""
    server = await start_server(**PLAINTEXT, limits={"ping_timeout_seconds": 0.5})
    raw, _ = await raw_managed(server)
    session = session_of(server)
    bob = await login(new_client, server, "bob", "desk")
    bob.send(numbered(ALICE, 1))
    await raw.until(f"{{{NS_SM}}}r")  # and it never answers

    error = await raw.stream_error()

    assert condition(error, NS_STREAM_ERRORS) == "connection-timeout"
    assert session.state is SessionState.DETACHED
