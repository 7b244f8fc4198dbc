"""Property tests for the parser and the stream, with hypothesis.

(a) Chunking never changes what a valid stream parses to, and a serialised
    element parses back to itself.
(b) Arbitrary and mutated input only ever yields parser values or a StreamError
    with a named condition.
(c) ServerStream.receive_data never raises on any input, returns only stream
    events, and a closed stream has sent its closing tag.
"""

from __future__ import annotations

import itertools
import typing
from collections.abc import Callable

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from xmpp_helpers import CLOSE, DOMAIN, XML_DECL, bind_request, header, plain_auth

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.events import (
    AuthRequested,
    AuthResponse,
    BindRequested,
    Event,
    StanzaReceived,
    StartTLSRequested,
    StreamClosed,
)
from chinwag.xmpp.jid import JID
from chinwag.xmpp.sasl import SaslCondition
from chinwag.xmpp.stream import ServerStream, StreamConfig
from chinwag.xmpp.xml import Parsed, StreamEnd, StreamHeader, XMLStreamParser
from chinwag.xmpp.xml import parse_stanza as parse_stanza_text

PROPERTY = settings(
    max_examples=75,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
)
LIMIT = 1 << 20
EVENT_TYPES = typing.get_args(Event)

# --- strategies -----------------------------------------------------------------------------


def _xml_char(c: str) -> bool:
    """XML 1.0 Char production."""
    o = ord(c)
    return o in (0x9, 0xA, 0xD) or 0x20 <= o <= 0xD7FF or 0xE000 <= o <= 0xFFFD or o >= 0x10000


xml_chars = st.one_of(
    st.sampled_from("<>&'\"\r\n\t ]=;/{}"),
    st.characters(codec="utf-8").filter(_xml_char),
    st.sampled_from("é☃\U0001f600\u00a0\u200b"),
)
xml_text = st.text(xml_chars, min_size=1, max_size=12)
_NAME_START = "abcdefghijklmnopqrstuvwyzABCDEFGHIJKLMNOPQRSTUVWYZ_é"  # no x: 'xml' is reserved
names = st.builds(
    str.__add__,
    st.sampled_from(_NAME_START),
    st.text(_NAME_START + "x0123456789.-", max_size=6),
)
namespaces = st.one_of(
    st.sampled_from([ns.CLIENT, "urn:example:a", "urn:example:b", "http://jabber.org/protocol/x"]),
    st.builds("urn:{}".format, st.text("abcxyz0123456789:#/.-", min_size=1, max_size=10)),
)
attr_keys = st.one_of(
    names,
    st.just("xml:lang"),
    st.builds(lambda uri, name: f"{{{uri}}}{name}", namespaces, names),
)
attributes = st.dictionaries(attr_keys, st.text(xml_chars, max_size=8), max_size=3)


def _merge_text(children: list[Element | str]) -> list[Element | str]:
    """What a parser gives back: no empty strings, no two strings side by side."""
    merged: list[Element | str] = []
    for child in children:
        if isinstance(child, str):
            if not child:
                continue
            if merged and isinstance(merged[-1], str):
                merged[-1] += child
                continue
        merged.append(child)
    return merged


def _element(tag: str, uri: str, attrs: dict[str, str], children: list) -> Element:
    return Element(tag, uri, attrs, _merge_text(children))


elements = st.recursive(
    st.builds(_element, names, namespaces, attributes, st.lists(xml_text, max_size=1)),
    lambda inner: st.builds(
        _element, names, namespaces, attributes, st.lists(inner | xml_text, max_size=3)
    ),
    max_leaves=4,
)
stanzas = st.builds(
    _element,
    st.sampled_from(["message", "presence", "iq"]) | names,
    st.just(ns.CLIENT) | namespaces,
    attributes,
    st.lists(elements | xml_text, max_size=3),
)
whitespace = st.text(st.sampled_from(" \t\r\n"), max_size=3)


def stream_bytes(items: list[tuple[str, Element]], close: bool) -> bytes:
    body = b"".join(space.encode() + stanza.serialize().encode() for space, stanza in items)
    return header() + body + (CLOSE if close else b"")


def chunked(data: bytes, cuts: list[int]) -> list[bytes]:
    points = sorted({0, len(data), *(cut % (len(data) + 1) for cut in cuts)})
    return [data[a:b] for a, b in itertools.pairwise(points)]


def parse_stanza(stanza: Element) -> Element:
    parser = XMLStreamParser(LIMIT)
    parser.feed(header())
    [parsed] = parser.feed(stanza.serialize().encode())
    assert isinstance(parsed, Element)
    return parsed


def feed_chunks(parser: XMLStreamParser, chunks: list[bytes]) -> list[Parsed]:
    out: list[Parsed] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


# --- (a) chunking and round trips ------------------------------------------------------------------


@PROPERTY
@given(
    st.lists(st.tuples(whitespace, stanzas), max_size=3),
    st.booleans(),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30),
)
def test_chunking_does_not_change_what_is_parsed(
    items: list[tuple[str, Element]], close: bool, cuts: list[int]
) -> None:
    data = stream_bytes(items, close)
    whole = XMLStreamParser(LIMIT).feed(data)
    assert feed_chunks(XMLStreamParser(LIMIT), chunked(data, cuts)) == whole


@settings(PROPERTY, max_examples=40)
@given(st.lists(st.tuples(whitespace, stanzas), min_size=1, max_size=2))
def test_byte_by_byte_is_the_same_as_whole(items: list[tuple[str, Element]]) -> None:
    """One byte at a time splits every multi-byte UTF-8 character."""
    data = stream_bytes(items, close=True)
    whole = XMLStreamParser(LIMIT).feed(data)
    single = feed_chunks(XMLStreamParser(LIMIT), [data[i : i + 1] for i in range(len(data))])
    assert single == whole


@PROPERTY
@given(
    st.lists(st.tuples(whitespace, stanzas), min_size=1, max_size=3),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30),
)
def test_wire_form_is_the_bytes_each_element_arrived_as(
    items: list[tuple[str, Element]], cuts: list[int]
) -> None:
    parser = XMLStreamParser(LIMIT, keep_wire=True)
    parsed = feed_chunks(parser, chunked(stream_bytes(items, close=True), cuts))
    elements = [item for item in parsed if isinstance(item, Element)]
    assert [element.wire for element in elements] == [
        # the same bytes, with the header's xmlns; none outside the stream's namespace
        stanza.serialize(parent_ns="").encode() if stanza.ns == ns.CLIENT else None
        for _space, stanza in items
    ]
    for element in elements:
        if element.wire is not None:
            assert parse_stanza_text(element.wire.decode()) == element


@PROPERTY
@given(
    st.lists(st.tuples(whitespace, stanzas), max_size=3),
    st.lists(st.integers(min_value=0, max_value=1 << 16), max_size=30),
)
def test_releasing_the_parser_between_reads_changes_nothing(
    items: list[tuple[str, Element]], cuts: list[int]
) -> None:
    data = stream_bytes(items, close=True)
    whole = XMLStreamParser(LIMIT, keep_wire=True).feed(data)
    parser = XMLStreamParser(LIMIT, keep_wire=True)
    parsed: list[Parsed] = []
    for chunk in chunked(data, cuts):
        parsed.extend(parser.feed(chunk))
        parser.release()
    assert parsed == whole
    assert [getattr(item, "wire", None) for item in parsed] == [
        getattr(item, "wire", None) for item in whole
    ]


@PROPERTY
@given(stanzas)
@example(Element("message", children=["line\r\nbreak"]))
def test_serialise_then_parse_is_the_identity(stanza: Element) -> None:
    parser = XMLStreamParser(LIMIT)
    parser.feed(header())
    assert parser.feed(stanza.serialize().encode()) == [stanza]


# --- (b) robustness of the parser ------------------------------------------------------------------


def mutate(data: bytes, operations: list[tuple[int, int, int]]) -> bytes:
    """Apply byte flips, insertions, deletions and a truncation."""
    buffer = bytearray(data)
    for kind, where, value in operations:
        if not buffer:
            buffer.append(value)
            continue
        position = where % len(buffer)
        if kind == 0:
            buffer[position] ^= value or 1
        elif kind == 1:
            buffer.insert(position, value)
        elif kind == 2:
            del buffer[position]
        else:
            del buffer[position:]
    return bytes(buffer)


mutations = st.lists(
    st.tuples(
        st.integers(0, 3),
        st.integers(0, 1 << 16),
        st.sampled_from(b"<>/&;'\"=!?[]-: \x00\xff\xc3") | st.integers(0, 255),
    ),
    min_size=1,
    max_size=6,
)


def assert_only_parser_values(parser: XMLStreamParser, chunks: list[bytes]) -> None:
    for chunk in chunks:
        try:
            out = parser.feed(chunk)
        except StreamError as error:
            assert isinstance(error.condition, StreamCondition)
            assert error.condition in set(StreamCondition)
            # A failed parser keeps failing the same way.
            try:
                parser.feed(b"<presence/>")
            except StreamError as again:
                assert isinstance(again.condition, StreamCondition)
            else:
                raise AssertionError("a failed parser accepted more input")
            return
        for item in out:
            assert isinstance(item, StreamHeader | Element | StreamEnd), item


@PROPERTY
@given(st.binary(max_size=300), st.lists(st.integers(0, 1 << 16), max_size=10))
def test_random_bytes_only_yield_values_or_stream_errors(data: bytes, cuts: list[int]) -> None:
    assert_only_parser_values(XMLStreamParser(2048), chunked(data, cuts))


@PROPERTY
@given(st.binary(max_size=200), st.lists(st.integers(0, 1 << 16), max_size=10))
def test_random_bytes_after_a_header(data: bytes, cuts: list[int]) -> None:
    parser = XMLStreamParser(2048)
    parser.feed(header())
    assert_only_parser_values(parser, chunked(data, cuts))


@settings(PROPERTY, max_examples=60)
@given(
    st.lists(st.tuples(whitespace, stanzas), max_size=2),
    mutations,
    st.lists(st.integers(0, 1 << 16), max_size=20),
)
def test_mutated_streams_only_yield_values_or_stream_errors(
    items: list[tuple[str, Element]], operations: list, cuts: list[int]
) -> None:
    data = mutate(stream_bytes(items, close=True), operations)
    assert_only_parser_values(XMLStreamParser(1024), chunked(data, cuts))


# --- (c) robustness of the stream --------------------------------------------------------------------


def client_phases(starttls: bool, stanza_items: list[Element]) -> list[bytes]:
    """What a well-behaved client sends over a session, split where it waits for the server
    (after <starttls/> and after <auth/>, since a restart discards what was pipelined)."""
    phases = [header()]
    if starttls:
        phases[-1] += f"<starttls xmlns='{ns.TLS}'/>".encode()
        phases.append(header())
    phases[-1] += plain_auth()
    last = header() + bind_request()
    last += b"".join(stanza.serialize().encode() for stanza in stanza_items)
    phases.append(last + CLOSE)
    return phases


class AutoDriver:
    """Answers every question a stream asks, as the server's glue would."""

    def __init__(self, stream: ServerStream, choose: Callable[[], bool]) -> None:
        self.stream = stream
        self.choose = choose

    def answer(self, events: list[Event]) -> list[Event]:
        """All events, including those caused by the answers."""
        seen: list[Event] = []
        pending = list(events)
        while pending:
            event = pending.pop(0)
            seen.append(event)
            pending.extend(self._reply(event))
        return seen

    def _reply(self, event: Event) -> list[Event]:
        stream = self.stream
        if isinstance(event, StartTLSRequested):
            return stream.tls_established()
        if isinstance(event, AuthRequested | AuthResponse):
            if self.choose():
                return stream.sasl_success("juliet")
            if self.choose():
                return stream.sasl_challenge(b"more")
            return stream.sasl_failure(SaslCondition.NOT_AUTHORIZED)
        if isinstance(event, BindRequested):
            resource = event.resource or "generated"
            return stream.bind_result(event.iq_id, JID.parse(f"juliet@{DOMAIN}/{resource}"))
        return []


def check_stream(stream: ServerStream, driver: AutoDriver, chunks: list[bytes]) -> list[Event]:
    """Feed ``chunks``, answering every event; check the invariants; return all events."""
    sent = b""
    closed = False
    everything: list[Event] = []
    for number, chunk in enumerate(chunks):
        events = driver.answer(stream.receive_data(chunk, float(number)))
        everything += events
        sent += stream.data_to_send()
        for event in events:
            assert isinstance(event, EVENT_TYPES), event
        if closed:
            assert events == [], "a closed stream reports nothing more"
        if any(isinstance(event, StreamClosed) for event in events):
            closed = True
            assert sent.endswith(CLOSE), sent[-200:]
            assert sum(isinstance(event, StreamClosed) for event in events) == 1
    if closed:
        assert stream.receive_data(b"<presence/>", 1e6) == []
        assert stream.data_to_send() == b""
    assert_well_formed_output(sent)
    return everything


def assert_well_formed_output(sent: bytes) -> None:
    """Whatever the client sent, what the server sent is well-formed XMPP."""
    for segment in sent.split(XML_DECL)[1:]:
        parser = XMLStreamParser(LIMIT)
        for item in parser.feed(XML_DECL + segment):
            assert isinstance(item, StreamHeader | Element | StreamEnd)


client_stanzas = st.builds(
    _element,
    st.sampled_from(["message", "presence"]),
    st.just(ns.CLIENT),
    st.dictionaries(names.filter(lambda name: name not in ("to", "from")), xml_text, max_size=3),
    st.lists(elements | xml_text, max_size=3),
)


@PROPERTY
@given(
    st.booleans(),
    st.lists(client_stanzas, max_size=3),
    st.lists(st.lists(st.integers(0, 1 << 16), max_size=10), min_size=3, max_size=3),
)
def test_stream_accepts_a_valid_session_in_any_chunking(
    starttls: bool, stanza_items: list[Element], cuts: list[list[int]]
) -> None:
    stream = ServerStream(StreamConfig(DOMAIN, tls_required=True), 0.0, secure=not starttls)
    driver = AutoDriver(stream, lambda: True)
    events: list[Event] = []
    for phase, phase_cuts in zip(client_phases(starttls, stanza_items), cuts, strict=False):
        events += check_stream(stream, driver, chunked(phase, phase_cuts))
    full = JID.parse(f"juliet@{DOMAIN}/balcony")
    assert stream.jid == full
    received = [event.stanza for event in events if isinstance(event, StanzaReceived)]
    # What went over the wire, with the bound JID stamped as 'from'.
    expected = [parse_stanza(stanza) for stanza in stanza_items]
    for stanza in expected:
        stanza.attrs["from"] = str(full)
    assert [s.serialize() for s in received] == [s.serialize() for s in expected]
    assert events[-1] == StreamClosed(None)


@settings(PROPERTY, max_examples=60)
@given(
    st.booleans(),
    st.lists(stanzas, max_size=2),
    st.integers(0, 2),
    mutations,
    st.lists(st.integers(0, 1 << 16), max_size=20),
    st.randoms(use_true_random=False),
)
def test_stream_never_raises_on_mutated_sessions(
    starttls: bool,
    stanza_items: list[Element],
    which: int,
    operations: list,
    cuts: list[int],
    rng,
) -> None:
    stream = ServerStream(StreamConfig(DOMAIN, max_stanza_bytes=2048), 0.0, secure=not starttls)
    driver = AutoDriver(stream, lambda: rng.random() < 0.7)
    phases = client_phases(starttls, stanza_items)
    which %= len(phases)
    phases[which] = mutate(phases[which], operations)
    for number, phase in enumerate(phases):
        check_stream(stream, driver, chunked(phase, cuts) if number == which else [phase])


@PROPERTY
@given(st.binary(max_size=300), st.lists(st.integers(0, 1 << 16), max_size=10), st.booleans())
def test_stream_never_raises_on_random_bytes(data: bytes, cuts: list[int], secure: bool) -> None:
    stream = ServerStream(StreamConfig(DOMAIN, max_stanza_bytes=2048), 0.0, secure=secure)
    check_stream(stream, AutoDriver(stream, lambda: True), chunked(data, cuts))


@PROPERTY
@given(st.binary(max_size=200), st.lists(st.integers(0, 1 << 16), max_size=10))
def test_bound_stream_never_raises_on_random_bytes(data: bytes, cuts: list[int]) -> None:
    stream = ServerStream(StreamConfig(DOMAIN, max_stanza_bytes=2048), 0.0, secure=True)
    driver = AutoDriver(stream, lambda: True)
    driver.answer(stream.receive_data(header() + plain_auth(), 0.0))
    driver.answer(stream.receive_data(header() + bind_request(), 0.0))
    assert stream.jid is not None
    stream.data_to_send()
    check_stream(stream, driver, chunked(data, cuts))
