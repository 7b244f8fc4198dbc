"""Bad input over raw sockets: each gets the stream error RFC 6120 names, then the socket closes.

The raw client speaks plaintext on the c2s port, and negotiates STARTTLS itself
where a test needs SASL. After every bad input the server must have dropped the
bad connection and must still serve: a fresh slixmpp client signs in
(``assert_serving``).
"""

from __future__ import annotations

import asyncio
import base64
import re
import time
import xml.etree.ElementTree as ET

import pytest

from chinwag.server import c2s
from chinwag.xmpp.jid import JID

from .support import (
    NS_SASL,
    TIMEOUT,
    AssertServing,
    Connect,
    RawStream,
    ServerHandle,
    StartServer,
    stream_error_condition,
    stream_header,
    watch,
)

HEADER = stream_header()
FAILURE = re.compile(rb"<failure\b[^>]*/>|<failure\b[^>]*>.*?</failure>", re.S)


async def no_connections_left(server: ServerHandle) -> None:
    """Wait (bounded) until the server holds no client connection at all."""
    assert server.app is not None
    connections = server.app.xmpp.connections
    deadline = time.monotonic() + TIMEOUT
    while connections and time.monotonic() < deadline:
        await asyncio.sleep(0.02)
    assert not connections, f"connections still open on the server: {connections}"


async def stream_error_after(server: ServerHandle, *chunks: bytes) -> str:
    """Send ``chunks`` on a fresh plaintext connection; the condition of the error that ends it."""
    raw = await RawStream.open(server.host, server.port)
    try:
        for chunk in chunks:
            await raw.send(chunk)
        reply = await raw.read_until_closed()
    finally:
        await raw.close()
    condition = stream_error_condition(reply)
    await no_connections_left(server)
    return condition


async def open_stream(raw: RawStream) -> bytes:
    """Send a stream header; returns what came back up to the end of the features."""
    await raw.send(HEADER)
    features = await raw.read_until(b"</stream:features>")
    assert b"</stream:features>" in features, features
    return features


def sasl_failures(data: bytes) -> list[str]:
    """The condition of each SASL <failure/> in ``data``, in order."""
    conditions = []
    for fragment in re.findall(FAILURE, data):
        failure = ET.fromstring(fragment)
        assert failure.tag == f"{{{NS_SASL}}}failure", fragment
        (condition,) = [child for child in failure if child.tag != f"{{{NS_SASL}}}text"]
        conditions.append(condition.tag.partition("}")[2])
    return conditions


def plain(user: str, password: str) -> bytes:
    token = base64.b64encode(f"\0{user}\0{password}".encode()).decode()
    return f"<auth xmlns='{NS_SASL}' mechanism='PLAIN'>{token}</auth>".encode()


# --- malformed streams ---------------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([b"hello there"], id="garbage-instead-of-a-header"),
        pytest.param([HEADER, b"<message><body>hi</message>"], id="mismatched-tag"),
        pytest.param([HEADER, b"<message to='a' to='b'/>"], id="duplicate-attribute"),
        pytest.param([HEADER, b"<message><</message>"], id="stray-angle-bracket"),
        pytest.param([HEADER, b"<message>\xff\xfe</message>"], id="invalid-utf8"),
        pytest.param([HEADER[:40], b"\x00", HEADER[40:]], id="nul-byte-in-header"),
    ],
)
async def test_not_well_formed(
    server: ServerHandle, assert_serving: AssertServing, chunks: list[bytes]
) -> None:
    assert await stream_error_after(server, *chunks) == "not-well-formed"
    await assert_serving(server)


@pytest.mark.parametrize(
    "header",
    [
        pytest.param(stream_header(stream_ns="urn:example:not-streams"), id="stream-namespace"),
        pytest.param(stream_header(content_ns="jabber:server"), id="content-namespace-server"),
        pytest.param(stream_header(content_ns="urn:example:other"), id="content-namespace-other"),
    ],
)
async def test_invalid_namespace(
    server: ServerHandle, assert_serving: AssertServing, header: bytes
) -> None:
    assert await stream_error_after(server, header) == "invalid-namespace"
    await assert_serving(server)


@pytest.mark.parametrize(
    "to", [pytest.param("example.org", id="other-domain"), pytest.param(None, id="no-to")]
)
async def test_host_unknown(
    server: ServerHandle, assert_serving: AssertServing, to: str | None
) -> None:
    assert await stream_error_after(server, stream_header(to=to)) == "host-unknown"
    await assert_serving(server)


@pytest.mark.parametrize(
    "version", [pytest.param("2.0", id="2.0"), pytest.param(None, id="missing")]
)
async def test_unsupported_version(
    server: ServerHandle, assert_serving: AssertServing, version: str | None
) -> None:
    assert await stream_error_after(server, stream_header(version=version)) == (
        "unsupported-version"
    )
    await assert_serving(server)


async def test_unsupported_encoding(server: ServerHandle, assert_serving: AssertServing) -> None:
    header = HEADER.replace(b"<?xml version='1.0'?>", b"<?xml version='1.0' encoding='UTF-16'?>")

    assert await stream_error_after(server, header) == "unsupported-encoding"
    await assert_serving(server)


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param(
            [b"<?xml version='1.0'?><!DOCTYPE stream:stream>", stream_header(declaration=False)],
            id="doctype",
        ),
        pytest.param(
            [b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY boom 'boom'>]>"],
            id="internal-entity-declaration",
        ),
        pytest.param([HEADER, b"<!-- a comment -->"], id="comment"),
        pytest.param([HEADER, b"<message><!-- inside --></message>"], id="comment-in-stanza"),
        pytest.param([HEADER, b"<?evil instruction?>"], id="processing-instruction"),
        pytest.param([HEADER, b"<message><body>&foo;</body></message>"], id="entity-reference"),
    ],
)
async def test_restricted_xml(
    server: ServerHandle, assert_serving: AssertServing, chunks: list[bytes]
) -> None:
    assert await stream_error_after(server, *chunks) == "restricted-xml"
    await assert_serving(server)


# --- stanzas where they do not belong ------------------------------------------------------


@pytest.mark.parametrize(
    "stanza",
    [
        pytest.param(b"<message to='bob@localhost'><body>hi</body></message>", id="message"),
        pytest.param(b"<presence/>", id="presence"),
        pytest.param(b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>", id="iq"),
    ],
)
async def test_stanza_before_authentication_is_not_authorized(
    server: ServerHandle, assert_serving: AssertServing, stanza: bytes
) -> None:
    assert await stream_error_after(server, HEADER, stanza) == "not-authorized"
    await assert_serving(server)


@pytest.mark.parametrize(
    "element",
    [
        pytest.param(b"<strange xmlns='urn:example:strange'/>", id="unknown-element"),
        pytest.param(b"<message xmlns='urn:example:strange'/>", id="stanza-name-other-ns"),
        pytest.param(b"<bind xmlns='urn:ietf:params:xml:ns:xmpp-bind'/>", id="bare-bind"),
    ],
)
async def test_strange_top_level_element_is_an_unsupported_stanza_type(
    server: ServerHandle, assert_serving: AssertServing, element: bytes
) -> None:
    assert await stream_error_after(server, HEADER, element) == "unsupported-stanza-type"
    await assert_serving(server)


# --- size limits --------------------------------------------------------------------


async def test_oversized_stanza_with_a_small_limit(
    start_server: StartServer, assert_serving: AssertServing
) -> None:
    server = await start_server(limits={"max_stanza_bytes": 4096})
    stanza = b"<message><body>" + b"x" * 8192 + b"</body></message>"

    assert await stream_error_after(server, HEADER, stanza) == "policy-violation"
    await assert_serving(server)


async def test_stanza_just_under_a_small_limit_is_fine(
    start_server: StartServer, connect: Connect
) -> None:
    server = await start_server(limits={"max_stanza_bytes": 4096})
    alice = await connect(server, "alice", "desk")
    bob = await connect(server, "bob", "phone")
    received = watch(bob, "message")

    alice.send_message(mto="bob@localhost/phone", mbody="y" * 3000)

    message = await asyncio.wait_for(received, TIMEOUT)
    assert message["body"] == "y" * 3000


async def test_oversized_stanza_from_a_signed_in_client(
    start_server: StartServer, connect: Connect, assert_serving: AssertServing
) -> None:
    server = await start_server(limits={"max_stanza_bytes": 4096})
    alice = await connect(server, "alice", "desk")
    stream_error = watch(alice, "stream_error")
    disconnected = watch(alice, "disconnected")

    alice.send_message(mto="bob@localhost", mbody="z" * 8192)

    error = await asyncio.wait_for(stream_error, TIMEOUT)
    assert error["condition"] == "policy-violation"
    await asyncio.wait_for(disconnected, TIMEOUT)
    await assert_serving(server)


async def test_a_message_sent_in_the_same_write_as_bad_xml_is_still_delivered(
    server: ServerHandle, connect: Connect, assert_serving: AssertServing
) -> None:
    """The stream error ends the stream after the stanzas that came before the bad XML."""
    alice = await connect(server, "alice", "desk")
    bob = await connect(server, "bob", "phone")
    received = watch(bob, "message")
    stream_error = watch(alice, "stream_error")
    assert alice.transport is not None
    last = b"<message to='bob@localhost/phone' type='chat'><body>last words</body></message>"

    alice.transport.write(last + b"<message><</message>")

    message = await asyncio.wait_for(received, TIMEOUT)
    assert message["body"] == "last words" and message["from"] == "alice@localhost/desk"
    error = await asyncio.wait_for(stream_error, TIMEOUT)
    assert error["condition"] == "not-well-formed"
    await assert_serving(server)


async def test_oversized_stanza_with_the_default_limit_sent_in_chunks(
    server: ServerHandle, assert_serving: AssertServing
) -> None:
    """300 KiB against the default 256 KiB: the server must stop it without reading it all."""
    raw = await RawStream.open(server.host, server.port)
    reader = asyncio.ensure_future(raw.read_until_closed())
    await raw.send(HEADER + b"<message><body>")
    chunk = b"x" * 16384
    for _ in range(300 * 1024 // len(chunk)):
        if reader.done():
            break
        await raw.send(chunk)
        await asyncio.sleep(0)
    await raw.send(b"</body></message>")
    reply = await asyncio.wait_for(reader, TIMEOUT)
    await raw.close()

    assert stream_error_condition(reply) == "policy-violation"
    await no_connections_left(server)
    await assert_serving(server)


# --- authentication ------------------------------------------------------------------


AUTH_TIMEOUT_SECONDS = 2.0
"""Short, yet long enough for the client that then checks the server still serves to
sign in (TLS, SASL) on a loaded machine: at 0.5 s it was once cut off mid-handshake."""


async def test_idle_unauthenticated_connection_times_out(
    start_server: StartServer, assert_serving: AssertServing
) -> None:
    server = await start_server(limits={"auth_timeout_seconds": AUTH_TIMEOUT_SECONDS})
    started = time.monotonic()

    assert await stream_error_after(server, HEADER) == "connection-timeout"
    assert time.monotonic() - started < 5
    await assert_serving(server)


async def test_silent_connection_times_out(
    start_server: StartServer, assert_serving: AssertServing
) -> None:
    server = await start_server(limits={"auth_timeout_seconds": AUTH_TIMEOUT_SECONDS})

    assert await stream_error_after(server) == "connection-timeout"
    await assert_serving(server)


async def test_plain_is_refused_before_tls(
    server: ServerHandle, assert_serving: AssertServing
) -> None:
    raw = await RawStream.open(server.host, server.port)
    features = await open_stream(raw)
    assert b"<required" in features  # STARTTLS is required ...
    assert b"mechanisms" not in features  # ... so no SASL mechanism is offered yet

    await raw.send(plain("alice", server.users["alice"]))
    reply = await raw.read_until(b"</failure>")

    assert sasl_failures(reply) == ["encryption-required"]
    assert b"<success" not in reply
    await raw.send(b"</stream:stream>")
    reply = await raw.read_until_closed()
    assert reply.rstrip().endswith(b"</stream:stream>")
    await raw.close()
    await no_connections_left(server)
    await assert_serving(server)


async def test_too_many_sasl_failures_is_a_policy_violation(
    server: ServerHandle, assert_serving: AssertServing
) -> None:
    raw = await RawStream.open(server.host, server.port)
    await open_stream(raw)
    await raw.start_tls()
    features = await open_stream(raw)
    assert b"PLAIN" in features

    for attempt in range(3):
        await raw.send(plain("alice", f"wrong-{attempt}"))
    reply = await raw.read_until_closed()
    await raw.close()

    assert sasl_failures(reply) == ["not-authorized"] * 3
    assert stream_error_condition(reply) == "policy-violation"
    await no_connections_left(server)
    await assert_serving(server)


async def test_failures_below_the_limit_still_allow_signing_in(
    server: ServerHandle, assert_serving: AssertServing
) -> None:
    raw = await RawStream.open(server.host, server.port)
    await open_stream(raw)
    await raw.start_tls()
    await open_stream(raw)

    await raw.send(plain("alice", "wrong") + plain("alice", server.users["alice"]))
    reply = await raw.read_until(b"<success")

    assert sasl_failures(reply) == ["not-authorized"]
    assert b"<success" in reply
    await raw.close()
    await assert_serving(server)


# --- connections that just go away -------------------------------------------------------


@pytest.mark.parametrize(
    "chunks",
    [
        pytest.param([], id="nothing-sent"),
        pytest.param([HEADER[:50]], id="half-a-header"),
        pytest.param([HEADER, b"<message><body>unfinished"], id="half-a-stanza"),
    ],
)
@pytest.mark.parametrize("how", ["reset", "close"])
async def test_dropped_connection_is_cleaned_up(
    server: ServerHandle, assert_serving: AssertServing, chunks: list[bytes], how: str
) -> None:
    raw = await RawStream.open(server.host, server.port)
    for chunk in chunks:
        await raw.send(chunk)
    await asyncio.sleep(0.05)

    if how == "reset":
        raw.abort()
    else:
        await raw.close()

    await no_connections_left(server)
    await assert_serving(server)


async def test_connection_dropped_during_the_tls_handshake(
    server: ServerHandle, assert_serving: AssertServing
) -> None:
    raw = await RawStream.open(server.host, server.port)
    await open_stream(raw)
    await raw.send(b"<starttls xmlns='urn:ietf:params:xml:ns:xmpp-tls'/>")
    await raw.read_until(b"proceed")
    await raw.send(b"\x16\x03\x01\x00\xff")  # the start of a ClientHello, then nothing

    raw.abort()

    await no_connections_left(server)
    await assert_serving(server)


async def test_signed_in_client_that_vanishes_is_unbound(
    server: ServerHandle, connect: Connect, assert_serving: AssertServing
) -> None:
    assert server.app is not None
    alice = await connect(server, "alice", "vanishing")
    jid = JID.parse("alice@localhost/vanishing")
    assert server.app.xmpp.router.session(jid) is not None

    alice.transport.abort()  # no </stream:stream>, no FIN handshake worth the name

    await no_connections_left(server)
    assert server.app.xmpp.router.session(jid) is None
    await assert_serving(server)


async def test_a_client_that_stops_reading_is_cut_off_and_others_are_served(
    server: ServerHandle,
    connect: Connect,
    assert_serving: AssertServing,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Output waiting for a client beyond the limit ends its stream (policy-violation)."""
    monkeypatch.setattr(c2s, "MAX_WRITE_BUFFER", 64 * 1024)
    assert server.app is not None
    router = server.app.xmpp.router
    bob = await connect(server, "bob", "sleepy")
    sleepy = JID.parse("bob@localhost/sleepy")
    assert bob.transport is not None
    bob.transport.pause_reading()  # bob's socket fills, then the server's buffer for him
    alice = await connect(server, "alice", "desk")
    body = "z" * 60_000
    for _ in range(700):  # at most ~42 MB: far beyond what the kernel buffers hold
        alice.send_message(mto=str(sleepy), mbody=body)
        await asyncio.sleep(0.005)
        if router.session(sleepy) is None:
            break
    assert router.session(sleepy) is None, "the server kept writing to a client that never read"
    await assert_serving(server)
