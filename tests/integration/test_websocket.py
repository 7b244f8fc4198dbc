"""XMPP over WebSocket (RFC 7395) at /xmpp-websocket, against a real chinwag.

RFC 7395 is driven by hand with the ``websockets`` library (neither slixmpp nor
aioxmpp speaks it), and by a real third-party client, xmpp.js (``@xmpp/client``),
run by node when node is installed: ``tests/js`` holds its package files, and
the first test that needs it runs ``npm ci`` there. WebSocket users meet TCP
users (slixmpp) on the same server: same SASL, routing, presence and sessions.

Every wait is bounded by ``TIMEOUT``; every bad input is followed by a check
that the server still serves a fresh client, over TCP and over WebSocket.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import json
import os
import shutil
import subprocess
import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator, Awaitable, Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from scramp import ScramClient
from slixmpp import ClientXMPP
from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from tests.machine_lock import machine_lock

from .support import (
    DOMAIN,
    HOST,
    NS_SASL,
    NS_STREAM_ERRORS,
    NS_STREAMS,
    NS_TLS,
    TIMEOUT,
    AssertServing,
    Connect,
    ServerHandle,
    SignInFailed,
    StartServer,
)

NS_FRAMING = "urn:ietf:params:xml:ns:xmpp-framing"
NS_CLIENT = "jabber:client"
NS_BIND = "urn:ietf:params:xml:ns:xmpp-bind"
NS_PING = "urn:xmpp:ping"
NS_XRD = "http://docs.oasis-open.org/ns/xri/xrd-1.0"
ALT_WEBSOCKET = "urn:xmpp:alt-connections:websocket"
OPEN = f"<open xmlns='{NS_FRAMING}' to='{DOMAIN}' version='1.0'/>"
CLOSE = f"<close xmlns='{NS_FRAMING}'/>"
JS_DIR = Path(__file__).resolve().parent.parent / "js"
NPM_TIMEOUT = 300.0


def q(tag: str, namespace: str = NS_CLIENT) -> str:
    return f"{{{namespace}}}{tag}"


def http_port(server: ServerHandle) -> int:
    assert server.app is not None
    return server.app.http.port


def ws_url(server: ServerHandle) -> str:
    return f"ws://{HOST}:{http_port(server)}/xmpp-websocket"


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


# --- a hand-driven RFC 7395 client ----------------------------------------------------------


class WSStream:
    """One XMPP stream over a WebSocket, message by message.

    Every message received is parsed on its own, with ElementTree: RFC 7395
    makes each one a complete document, its namespaces declared in it.
    """

    def __init__(self, websocket: ClientConnection) -> None:
        self.websocket = websocket
        self.jid = ""

    @classmethod
    async def connect(cls, server: ServerHandle, **options: Any) -> WSStream:
        options.setdefault("subprotocols", ["xmpp"])
        websocket = await asyncio.wait_for(
            connect(ws_url(server), proxy=None, open_timeout=TIMEOUT, **options), TIMEOUT
        )
        return cls(websocket)

    async def send(self, message: str | bytes) -> None:
        with contextlib.suppress(ConnectionClosed):
            await self.websocket.send(message)

    async def recv(self) -> ET.Element:
        message = await asyncio.wait_for(self.websocket.recv(), TIMEOUT)
        assert isinstance(message, str), f"RFC 7395 messages are text: {message!r}"
        return ET.fromstring(message)

    async def recv_until(self, match: Callable[[ET.Element], bool]) -> ET.Element:
        while not match(element := await self.recv()):
            pass
        return element

    async def open(self) -> ET.Element:
        """Send <open/>; returns the stream features."""
        await self.send(OPEN)
        opened = await self.recv()
        assert opened.tag == q("open", NS_FRAMING), ET.tostring(opened)
        assert opened.get("from") == DOMAIN and opened.get("version") == "1.0"
        assert opened.get("id")
        features = await self.recv()
        assert features.tag == q("features", NS_STREAMS), ET.tostring(features)
        assert features.find(q("starttls", NS_TLS)) is None
        return features

    async def authenticate(self, user: str, password: str, mechanism: str = "PLAIN") -> None:
        features = await self.open()
        offered = [m.text for m in features.iter(q("mechanism", NS_SASL))]
        assert mechanism in offered, offered
        if mechanism == "PLAIN":
            initial = f"\0{user}\0{password}".encode()
            await self.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{b64(initial)}</auth>")
        else:
            scram = ScramClient([mechanism], user, password)
            first = scram.get_client_first().encode()
            await self.send(f"<auth xmlns='{NS_SASL}' mechanism='{mechanism}'>{b64(first)}</auth>")
            challenge = await self.recv()
            assert challenge.tag == q("challenge", NS_SASL), ET.tostring(challenge)
            scram.set_server_first(base64.b64decode(challenge.text or "").decode())
            final = scram.get_client_final().encode()
            await self.send(f"<response xmlns='{NS_SASL}'>{b64(final)}</response>")
        success = await self.recv()
        assert success.tag == q("success", NS_SASL), ET.tostring(success)
        if mechanism != "PLAIN":
            scram.set_server_final(base64.b64decode(success.text or "").decode())

    async def sign_in(
        self,
        user: str = "alice",
        password: str = "alice-secret",
        *,
        mechanism: str = "PLAIN",
        resource: str = "web",
    ) -> str:
        """Authenticate, restart, bind ``resource``; returns the bound JID."""
        await self.authenticate(user, password, mechanism)
        features = await self.open()
        assert features.find(q("bind", NS_BIND)) is not None
        await self.send(
            f"<iq type='set' id='bind' xmlns='{NS_CLIENT}'><bind xmlns='{NS_BIND}'>"
            f"<resource>{resource}</resource></bind></iq>"
        )
        result = await self.recv()
        assert result.tag == q("iq") and result.get("type") == "result", ET.tostring(result)
        self.jid = result.findtext(f"{q('bind', NS_BIND)}/{q('jid', NS_BIND)}") or ""
        assert self.jid == f"{user}@{DOMAIN}/{resource}"
        return self.jid

    async def ping(self) -> None:
        await self.send(f"<iq type='get' id='ping' to='{DOMAIN}'><ping xmlns='{NS_PING}'/></iq>")
        reply = await self.recv_until(lambda e: e.tag == q("iq") and e.get("id") == "ping")
        assert reply.get("type") == "result", ET.tostring(reply)

    async def closed(self) -> list[ET.Element]:
        """What the server sends until it closes the WebSocket, which it must."""
        received = []
        with contextlib.suppress(ConnectionClosed):
            while True:
                received.append(await self.recv())
        return received

    async def stream_error(self) -> str:
        """The condition of the stream error that ends the stream: error, <close/>, closed."""
        received = await self.closed()
        assert len(received) >= 2, received
        error, close = received[-2:]
        assert error.tag == q("error", NS_STREAMS), ET.tostring(error)
        assert close.tag == q("close", NS_FRAMING), ET.tostring(close)
        assert self.websocket.close_code == 1000
        conditions = [c.tag for c in error if c.tag != q("text", NS_STREAM_ERRORS)]
        assert len(conditions) == 1, conditions
        namespace, _, condition = conditions[0][1:].partition("}")
        assert namespace == NS_STREAM_ERRORS
        return condition

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await asyncio.wait_for(self.websocket.close(), TIMEOUT)


@pytest.fixture
async def ws_streams() -> AsyncIterator[Callable[..., Awaitable[WSStream]]]:
    """A factory of WebSocket streams, all closed at teardown (before the servers stop)."""
    opened: list[WSStream] = []

    async def open_stream(server: ServerHandle, **options: Any) -> WSStream:
        stream = await WSStream.connect(server, **options)
        opened.append(stream)
        return stream

    yield open_stream
    await asyncio.gather(*(stream.close() for stream in opened))


WSStreams = Callable[..., Awaitable[WSStream]]


@pytest.fixture
def assert_ws_serving(ws_streams: WSStreams, assert_serving: AssertServing) -> AssertServing:
    """The server still serves: a fresh TCP client and a fresh WebSocket client sign in."""

    async def check(server: ServerHandle) -> None:
        await assert_serving(server)
        stream = await ws_streams(server)
        await stream.sign_in("bob", "bob-secret", resource="survivor-ws")
        await stream.ping()
        await stream.close()

    return check


class Inbox:
    """What a slixmpp client receives: available presence, unavailable presence, messages."""

    def __init__(self, client: ClientXMPP) -> None:
        self.available: asyncio.Queue[str] = asyncio.Queue()
        self.unavailable: asyncio.Queue[str] = asyncio.Queue()
        self.messages: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        client.add_event_handler(
            "presence_available", lambda p: self.available.put_nowait(str(p["from"]))
        )
        client.add_event_handler(
            "presence_unavailable", lambda p: self.unavailable.put_nowait(str(p["from"]))
        )
        client.add_event_handler(
            "message", lambda m: self.messages.put_nowait((str(m["from"]), m["body"]))
        )

    @staticmethod
    async def wait_for(queue: asyncio.Queue[Any], wanted: Any) -> None:
        async def until() -> None:
            while await queue.get() != wanted:
                pass

        try:
            await asyncio.wait_for(until(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"{wanted!r} did not arrive within {TIMEOUT}s") from None


# --- signing in and closing -----------------------------------------------------------------


async def test_plain_sign_in_bind_ping_and_close_from_the_client(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    stream = await ws_streams(server)
    assert stream.websocket.subprotocol == "xmpp"
    await stream.sign_in()
    await stream.ping()
    await stream.send(CLOSE)
    (close,) = await stream.closed()
    assert close.tag == q("close", NS_FRAMING) and len(close) == 0
    assert stream.websocket.close_code == 1000


async def test_a_sign_in_and_its_end_are_logged_as_over_websocket(
    server: ServerHandle, ws_streams: WSStreams, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="chinwag")
    stream = await ws_streams(server)
    await stream.sign_in("bob", "bob-secret", resource="browser")
    await stream.send(CLOSE)
    await stream.closed()

    [signed_in] = [line for line in caplog.records if line.getMessage() == "signed in"]
    [ended] = [line for line in caplog.records if line.getMessage() == "session ended"]
    assert signed_in.fields == {  # type: ignore[attr-defined]
        "user": "bob",
        "resource": "browser",
        "mechanism": "PLAIN",
        "client_id": None,
        "transport": "websocket",
        "address": "127.0.0.1",
    }
    assert ended.fields["reason"] == "closed by client"  # type: ignore[attr-defined]
    assert ended.fields["transport"] == "websocket"  # type: ignore[attr-defined]


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "SCRAM-SHA-1"])
async def test_scram_over_websocket(
    server: ServerHandle, ws_streams: WSStreams, mechanism: str
) -> None:
    stream = await ws_streams(server)
    await stream.sign_in("bob", "bob-secret", mechanism=mechanism)
    await stream.ping()


async def test_wrong_password_is_a_sasl_failure(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    stream = await ws_streams(server)
    await stream.open()
    initial = b64(b"\0alice\0wrong")
    await stream.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{initial}</auth>")
    failure = await stream.recv()
    assert failure.tag == q("failure", NS_SASL)
    assert failure.find(q("not-authorized", NS_SASL)) is not None


async def test_failed_sign_ins_over_websocket_count_against_the_clients_address(
    start_server: StartServer, ws_streams: WSStreams, connect: Connect
) -> None:
    server = await start_server(limits={"max_auth_failures_per_address": 2})
    wrong = b64(b"\0alice\0wrong")
    for _ in range(2):
        stream = await ws_streams(server)
        await stream.open()
        await stream.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{wrong}</auth>")
        failure = await stream.recv()
        assert failure.find(q("not-authorized", NS_SASL)) is not None
        await stream.close()

    stream = await ws_streams(server)
    await stream.open()
    right = b64(b"\0alice\0alice-secret")
    await stream.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{right}</auth>")
    assert await stream.stream_error() == "policy-violation"
    with pytest.raises(SignInFailed):  # the same address over TCP: refused as well
        await connect(server, "alice", sasl_mech="PLAIN")


async def test_close_from_the_server_a_new_session_replaces_the_old(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    first = await ws_streams(server)
    await first.sign_in(resource="same")
    second = await ws_streams(server)
    await second.sign_in(resource="same")
    assert await first.stream_error() == "conflict"
    await second.ping()


async def test_shutdown_ends_websocket_streams_with_system_shutdown(
    start_server: StartServer, ws_streams: WSStreams
) -> None:
    server = await start_server()
    stream = await ws_streams(server)
    await stream.sign_in()
    assert server.app is not None
    stopping = asyncio.ensure_future(server.app.xmpp.stop())
    assert await stream.stream_error() == "system-shutdown"
    await asyncio.wait_for(stopping, TIMEOUT)


# --- WebSocket users and TCP users together --------------------------------------------------


async def test_websocket_and_tcp_users_chat_and_see_each_others_presence(
    server: ServerHandle, connect: Connect, ws_streams: WSStreams
) -> None:
    bob = await connect(server, "bob", "phone")
    inbox = Inbox(bob)
    bob.send_presence()
    alice = await ws_streams(server)
    alice_jid = await alice.sign_in(resource="browser")
    bob_jid = server.jid("bob", "phone")

    await alice.send("<presence/>")
    await inbox.wait_for(inbox.available, alice_jid)
    seen = await alice.recv_until(lambda e: e.tag == q("presence") and e.get("from") == bob_jid)
    assert seen.get("type") is None

    await alice.send(
        f"<message xmlns='{NS_CLIENT}' to='{bob_jid}' type='chat'><body>hi bob</body></message>"
    )
    await inbox.wait_for(inbox.messages, (alice_jid, "hi bob"))

    bob.send_message(mto=alice_jid, mbody="hi alice", mtype="chat")
    message = await alice.recv_until(lambda e: e.tag == q("message"))
    assert message.get("from") == bob_jid and message.get("to") == alice_jid
    assert message.findtext(q("body")) == "hi alice"

    await alice.send(CLOSE)
    await alice.closed()
    await inbox.wait_for(inbox.unavailable, alice_jid)


async def test_two_websocket_users_chat(server: ServerHandle, ws_streams: WSStreams) -> None:
    alice = await ws_streams(server)
    alice_jid = await alice.sign_in()
    bob = await ws_streams(server)
    bob_jid = await bob.sign_in("bob", "bob-secret", mechanism="SCRAM-SHA-1")
    await bob.send(f"<message to='{alice_jid}' type='chat'><body>over the web</body></message>")
    message = await alice.recv_until(lambda e: e.tag == q("message"))
    assert message.get("from") == bob_jid and message.findtext(q("body")) == "over the web"


# --- a real WebSocket client: xmpp.js ----------------------------------------------------------


def _node_websocket_flags(node: str) -> list[str] | None:
    """Flags that give node a global WebSocket (built in from node 22, a flag in 20), or None."""
    probe = "process.exit(typeof WebSocket === 'function' ? 0 : 1)"
    for flags in ([], ["--experimental-websocket"]):
        result = subprocess.run(
            [node, *flags, "-e", probe], capture_output=True, timeout=30, check=False
        )
        if result.returncode == 0:
            return flags
    return None


@pytest.fixture(scope="session")
def xmpp_js() -> list[str]:
    """The command that runs ``tests/js/ws_client.mjs``; installs xmpp.js first if needed."""
    node = shutil.which("node")
    if node is None:
        pytest.skip("node is not installed: the xmpp.js client test needs it")
    flags = _node_websocket_flags(node)
    if flags is None:
        pytest.skip("this node has no WebSocket client (node 20.10 or later is needed)")
    with machine_lock("npm", JS_DIR):
        if not (JS_DIR / "node_modules" / "@xmpp" / "client" / "package.json").exists():
            _install_xmpp_js()
    return [node, *flags, str(JS_DIR / "ws_client.mjs")]


def _install_xmpp_js() -> None:
    npm = shutil.which("npm")
    if npm is None:
        pytest.skip("npm is not installed: cannot install xmpp.js (@xmpp/client)")
    try:
        result = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=JS_DIR,
            capture_output=True,
            text=True,
            timeout=NPM_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"npm ci did not install xmpp.js within {NPM_TIMEOUT}s")
    if result.returncode != 0:
        pytest.skip(f"npm ci could not install xmpp.js: {result.stderr.strip()[-500:]}")


class NodeClient:
    """``ws_client.mjs`` in a subprocess: JSON commands in, JSON events out."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.events: list[dict[str, Any]] = []

    @classmethod
    async def start(cls, command: list[str], *args: str) -> NodeClient:
        process = await asyncio.create_subprocess_exec(
            *command,
            *args,
            cwd=JS_DIR,
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env={**os.environ, "NODE_NO_WARNINGS": "1"},
        )
        return cls(process)

    async def event(self, kind: str, **fields: str) -> dict[str, Any]:
        """The next event of ``kind`` with ``fields``; fails on an error event or exit."""
        assert self.process.stdout is not None

        async def next_match() -> dict[str, Any]:
            while True:
                line = await self.process.stdout.readline()  # type: ignore[union-attr]
                if not line:
                    raise AssertionError(f"xmpp.js exited; events: {self.events}")
                event = json.loads(line)
                self.events.append(event)
                if event["event"] == "error":
                    raise AssertionError(f"xmpp.js: {event['message']}")
                if event["event"] == kind and all(event.get(k) == v for k, v in fields.items()):
                    return event

        try:
            return await asyncio.wait_for(next_match(), TIMEOUT)
        except TimeoutError:
            raise AssertionError(f"no {kind} {fields} from xmpp.js: {self.events}") from None

    async def command(self, **command: Any) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(json.dumps(command).encode() + b"\n")
        await asyncio.wait_for(self.process.stdin.drain(), TIMEOUT)

    async def close(self) -> None:
        if self.process.returncode is None:
            with contextlib.suppress(ProcessLookupError):
                self.process.kill()
        await asyncio.wait_for(self.process.wait(), TIMEOUT)


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "PLAIN"])
async def test_xmpp_js_over_websocket_chats_with_a_tcp_user(
    server: ServerHandle,
    connect: Connect,
    xmpp_js: list[str],
    assert_ws_serving: AssertServing,
    mechanism: str,
) -> None:
    bob = await connect(server, "bob", "phone")
    inbox = Inbox(bob)
    bob.send_presence()
    bob_jid, alice_jid = server.jid("bob", "phone"), server.jid("alice", "node")
    node = await NodeClient.start(
        xmpp_js, ws_url(server), DOMAIN, "alice", server.users["alice"], mechanism
    )
    try:
        await node.event("online", jid=alice_jid)
        await node.command(presence=True)
        await node.event("presence", **{"from": bob_jid, "type": "available"})
        await inbox.wait_for(inbox.available, alice_jid)

        await node.command(message={"to": bob_jid, "body": "hello from xmpp.js"})
        await inbox.wait_for(inbox.messages, (alice_jid, "hello from xmpp.js"))
        bob.send_message(mto=alice_jid, mbody="hello from slixmpp", mtype="chat")
        await node.event("message", **{"from": bob_jid, "body": "hello from slixmpp"})

        await node.command(stop=True)
        await node.event("offline")
        await inbox.wait_for(inbox.unavailable, alice_jid)
    finally:
        await node.close()
    await assert_ws_serving(server)


# --- the handshake: subprotocol and Origin ------------------------------------------------------


@pytest.mark.parametrize("subprotocols", [None, ["chat"], ["xmpp-legacy", "mqtt"]])
async def test_a_websocket_without_the_xmpp_subprotocol_is_refused(
    server: ServerHandle, assert_ws_serving: AssertServing, subprotocols: list[str] | None
) -> None:
    with pytest.raises(InvalidStatus) as refused:
        await WSStream.connect(server, subprotocols=subprotocols)
    assert refused.value.response.status_code == 400
    assert b"xmpp" in refused.value.response.body
    await assert_ws_serving(server)


async def test_xmpp_among_other_subprotocols_is_chosen(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    stream = await ws_streams(server, subprotocols=["chat", "xmpp"])
    assert stream.websocket.subprotocol == "xmpp"
    await stream.open()


async def test_any_origin_is_accepted_by_default(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    stream = await ws_streams(server, origin="https://anywhere.example")
    await stream.sign_in()


async def test_origin_checking(
    start_server: StartServer, ws_streams: WSStreams, assert_ws_serving: AssertServing
) -> None:
    server = await start_server(http={"websocket_origins": ["https://chat.example/"]})
    allowed = await ws_streams(server, origin="https://chat.example")
    await allowed.sign_in()
    with pytest.raises(InvalidStatus) as refused:
        await WSStream.connect(server, origin="https://evil.example")
    assert refused.value.response.status_code == 403
    no_origin = await ws_streams(server)  # not a browser: nothing to check
    await no_origin.sign_in("bob", "bob-secret")
    await assert_ws_serving(server)


# --- secure or not: require_tls over WebSocket --------------------------------------------------


async def test_a_proxy_saying_plain_http_gets_no_sasl_when_tls_is_required(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    stream = await ws_streams(server, additional_headers={"X-Forwarded-Proto": "http"})
    features = await stream.open()
    assert features.find(q("mechanisms", NS_SASL)) is None
    initial = b64(b"\0alice\0alice-secret")
    await stream.send(f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{initial}</auth>")
    failure = await stream.recv()
    assert failure.find(q("encryption-required", NS_SASL)) is not None


async def test_a_local_proxy_that_terminated_tls_is_secure(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    stream = await ws_streams(server, additional_headers={"X-Forwarded-Proto": "https"})
    await stream.sign_in()


async def test_plain_http_is_fine_when_tls_is_not_required(
    start_server: StartServer, ws_streams: WSStreams
) -> None:
    server = await start_server(c2s={"require_tls": False})
    stream = await ws_streams(server, additional_headers={"X-Forwarded-Proto": "http"})
    await stream.sign_in()


# --- framing errors -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        ("this is not XML", "not-well-formed"),
        ('{"type": "json"}', "not-well-formed"),
        ("<message><body>half a stanza", "not-well-formed"),
        ("<presence/><presence/>", "not-well-formed"),
        (f"<message to='bob@{DOMAIN}'><body>1</body></message><message/>", "not-well-formed"),
        ("<message><!-- comment --></message>", "restricted-xml"),
        (f"<starttls xmlns='{NS_TLS}'/>", "unsupported-stanza-type"),
    ],
)
async def test_bad_messages_after_binding_end_the_stream(
    server: ServerHandle,
    ws_streams: WSStreams,
    assert_ws_serving: AssertServing,
    message: str,
    condition: str,
) -> None:
    stream = await ws_streams(server)
    await stream.sign_in()
    await stream.send(message)
    assert await stream.stream_error() == condition
    await assert_ws_serving(server)


@pytest.mark.parametrize(
    ("first", "condition"),
    [
        ("not XML at all", "not-well-formed"),
        (OPEN + OPEN, "not-well-formed"),
        (
            f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' to='{DOMAIN}' "
            "version='1.0'>",
            "not-well-formed",
        ),
        (
            f"<stream:stream xmlns='{NS_CLIENT}' xmlns:stream='{NS_STREAMS}' to='{DOMAIN}' "
            "version='1.0'/>",
            "invalid-namespace",
        ),
        (f"<open xmlns='{NS_FRAMING}' to='elsewhere.example' version='1.0'/>", "host-unknown"),
    ],
)
async def test_a_bad_first_message_gets_open_then_the_error(
    server: ServerHandle,
    ws_streams: WSStreams,
    assert_ws_serving: AssertServing,
    first: str,
    condition: str,
) -> None:
    """RFC 7395 3.7: the server's <open/>, then the error, then <close/>."""
    stream = await ws_streams(server)
    await stream.send(first)
    opened = await stream.recv()
    assert opened.tag == q("open", NS_FRAMING)
    assert await stream.stream_error() == condition
    await assert_ws_serving(server)


async def test_a_binary_message_ends_the_stream(
    server: ServerHandle, ws_streams: WSStreams, assert_ws_serving: AssertServing
) -> None:
    stream = await ws_streams(server)
    await stream.open()
    await stream.send(b"<presence/>")
    assert await stream.stream_error() == "bad-format"
    await assert_ws_serving(server)


async def test_a_message_over_the_stanza_limit(
    start_server: StartServer, ws_streams: WSStreams, assert_ws_serving: AssertServing
) -> None:
    server = await start_server(limits={"max_stanza_bytes": 4096})
    stream = await ws_streams(server)
    await stream.sign_in()
    body = "x" * 3000
    await stream.send(f"<message to='bob@{DOMAIN}'><body>{body}</body></message>")
    await stream.ping()  # under the limit: delivered (offline), the stream goes on
    await stream.send(f"<message to='bob@{DOMAIN}'><body>{body * 2}</body></message>")
    assert await stream.stream_error() == "policy-violation"

    # Far over the limit, the WebSocket server refuses the message itself.
    huge = await ws_streams(server)
    await huge.sign_in(resource="huge")
    await huge.send(f"<message to='bob@{DOMAIN}'><body>{'x' * 20000}</body></message>")
    assert await huge.closed() == []
    assert huge.websocket.close_code == 1009
    await assert_ws_serving(server)


async def test_several_bad_clients_at_once_leave_good_ones_alone(
    server: ServerHandle, ws_streams: WSStreams, assert_ws_serving: AssertServing
) -> None:
    good = await ws_streams(server)
    await good.sign_in(resource="good")
    bad = [await ws_streams(server) for _ in range(5)]
    await asyncio.gather(*(stream.send("<a/><b/>") for stream in bad))
    for stream in bad:
        assert [e.tag for e in await stream.closed()][-1] == q("close", NS_FRAMING)
    await good.ping()
    await assert_ws_serving(server)


# --- discovery: XEP-0156 host-meta -------------------------------------------------------------


async def _get(server: ServerHandle, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(trust_env=False, timeout=TIMEOUT) as client:
        return await client.get(f"http://{HOST}:{http_port(server)}{path}", headers=headers)


async def test_host_meta_xrd_advertises_the_websocket_endpoint(server: ServerHandle) -> None:
    response = await _get(server, "/.well-known/host-meta")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/xrd+xml")
    assert response.headers["access-control-allow-origin"] == "*"
    xrd = ET.fromstring(response.content)
    assert xrd.tag == q("XRD", NS_XRD)
    links = [link.attrib for link in xrd.iter(q("Link", NS_XRD))]
    assert links == [{"rel": ALT_WEBSOCKET, "href": ws_url(server)}]


async def test_host_meta_json_advertises_the_websocket_endpoint(
    server: ServerHandle, ws_streams: WSStreams
) -> None:
    response = await _get(server, "/.well-known/host-meta.json")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert response.headers["access-control-allow-origin"] == "*"
    assert response.json() == {"links": [{"rel": ALT_WEBSOCKET, "href": ws_url(server)}]}
    # What it advertises works.
    href = response.json()["links"][0]["href"]
    websocket = await asyncio.wait_for(connect(href, subprotocols=["xmpp"], proxy=None), TIMEOUT)
    stream = WSStream(websocket)
    try:
        await stream.sign_in()
    finally:
        await stream.close()


async def test_host_meta_follows_the_public_url_never_the_host(start_server: StartServer) -> None:
    # A Host header must not send clients elsewhere: the address is [http] public_url's.
    headers = {"Host": "evil.example", "X-Forwarded-Proto": "https"}
    for server, expected in (
        (await start_server(), None),
        (
            await start_server(http={"public_url": "https://chat.example"}),
            "wss://chat.example/xmpp-websocket",
        ),
    ):
        href = expected or ws_url(server)
        response = await _get(server, "/.well-known/host-meta.json", **headers)
        assert response.json()["links"][0]["href"] == href
        response = await _get(server, "/.well-known/host-meta", **headers)
        link = ET.fromstring(response.content).find(q("Link", NS_XRD))
        assert link is not None and link.get("href") == href
