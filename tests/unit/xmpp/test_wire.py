"""The wire form of received stanzas: the bytes a stanza arrived as, its namespace and
``from`` stamped in, so that routing it needs no serialisation; the cases that must fall
back to it; and releasing the parser of a stream that is between stanzas."""

from __future__ import annotations

import pytest
from xmpp_helpers import DOMAIN, FULL_JID, USERNAME, authenticated_client, bound_client, header

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamError
from chinwag.xmpp.events import BindRequested, StanzaReceived
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import XMLFrameParser, XMLStreamParser, parse_stanza

LIMIT = 1 << 16
MESSAGE = b"<message to='romeo@example.net' type='chat' id='m1'><body>hi &amp; bye</body></message>"


def standalone(raw: bytes) -> bytes:
    """``raw`` with the namespace the stream header gave it declared in its own tag."""
    name_end = next(i for i, byte in enumerate(raw) if i and byte in b" \t\r\n/>")
    return raw[:name_end] + b' xmlns="jabber:client"' + raw[name_end:]


def wires(parser: XMLStreamParser, *chunks: bytes) -> list[bytes | None]:
    parsed = [item for chunk in chunks for item in parser.feed(chunk)]
    return [item.wire for item in parsed if isinstance(item, Element)]


def header_parser(data: bytes = header()) -> XMLStreamParser:
    parser = XMLStreamParser(LIMIT, keep_wire=True)
    parser.feed(data)
    return parser


def test_parser_keeps_the_bytes_of_each_top_level_element_with_its_namespace() -> None:
    presence = b"<presence/>"
    iq = b"<iq type='get' id='1'\n><ping xmlns='urn:xmpp:ping'/></iq >"
    assert wires(header_parser(), MESSAGE + b" \n" + presence + iq) == [
        standalone(MESSAGE),
        b'<presence xmlns="jabber:client"/>',
        standalone(iq),
    ]


def test_an_element_that_declares_its_namespace_is_kept_as_it_came() -> None:
    own = b"<message xmlns='jabber:client' to='a@b'/>"
    assert wires(header_parser(), own + MESSAGE) == [own, standalone(MESSAGE)]


@pytest.mark.parametrize(
    "nonza", [b"<r xmlns='urn:xmpp:sm:3'/>", b"<r xmlns='urn:xmpp:sm:3'><x/></r  >"]
)
def test_an_element_outside_the_streams_namespace_has_none_and_ends_where_it_ends(
    nonza: bytes,
) -> None:
    parser = header_parser()
    assert wires(parser, nonza) == [None]
    assert parser.at_rest()
    assert wires(parser, nonza + MESSAGE) == [None, standalone(MESSAGE)]


@pytest.mark.parametrize(
    "element",
    [b"<message/>", b"<message></message>", b"<message><a/></message>", b"<message a='/'/>"],
)
def test_empty_and_end_tags_followed_by_the_end_of_the_stream(element: bytes) -> None:
    assert wires(header_parser(), element + b"</stream:stream>") == [standalone(element)]


@pytest.mark.parametrize("cut", range(1, len(MESSAGE)))
def test_an_element_split_across_reads_keeps_all_its_bytes(cut: int) -> None:
    parser = header_parser()
    assert wires(parser, b"<presence/>" + MESSAGE[:cut], MESSAGE[cut:] + b"<presence/>") == [
        standalone(b"<presence/>"),
        standalone(MESSAGE),
        standalone(b"<presence/>"),
    ]


def test_an_element_over_many_reads() -> None:
    parser = header_parser()
    chunks = (MESSAGE[i : i + 3] for i in range(0, len(MESSAGE), 3))
    assert wires(parser, *chunks) == [standalone(MESSAGE)]


def test_without_keep_wire_nothing_is_kept() -> None:
    parser = XMLStreamParser(LIMIT)
    parser.feed(header())
    assert wires(parser, MESSAGE) == [None]
    assert parse_stanza(MESSAGE.decode()).wire is None


def test_a_prefixed_top_level_tag_has_no_wire_form() -> None:
    """Its prefix is declared on the stream header, which the recipient never sees."""
    opening = header().replace(b"<stream:stream ", b"<stream:stream xmlns:c='jabber:client' ")
    parser = header_parser(opening)
    assert wires(parser, b"<c:message to='a@b'><c:body>x</c:body></c:message>") == [None]
    assert parser.release()  # nothing of it is held back as unfinished


def test_a_prefix_of_the_stream_header_inside_an_element_means_no_wire_form() -> None:
    parser = header_parser()
    assert wires(parser, b"<message to='a@b'><stream:x/></message>") == [None]


def test_prefixes_declared_inside_the_element_keep_the_wire_form() -> None:
    own = b"<message to='a@b'><x:y xmlns:x='urn:example' x:z='1'/></message>"
    assert wires(header_parser(), own) == [standalone(own)]


def test_websocket_frames_keep_their_element() -> None:
    parser = XMLFrameParser(LIMIT, keep_wire=True)
    frame = b"<message xmlns='jabber:client' to='a@b'><body>x</body></message>"
    element = parser.feed_frame(frame)
    assert element is not None and element.wire == frame


def test_changing_an_element_through_its_methods_drops_the_wire_form() -> None:
    [element] = header_parser().feed(MESSAGE)
    assert isinstance(element, Element) and element.wire is not None
    element.add("delay", ns.DELAY)
    assert element.wire is None


def received(data: bytes) -> Element:
    client = bound_client()
    events = client.send(data)
    [event] = events
    assert isinstance(event, StanzaReceived)
    return event.stanza


def test_the_stream_stamps_from_into_the_wire_form() -> None:
    stanza = received(MESSAGE)
    stamped = f'<message from="{FULL_JID}" '.encode()
    assert stanza.wire == standalone(MESSAGE).replace(b"<message ", stamped, 1)
    assert parse_stanza(stanza.wire.decode()) == stanza


def test_a_from_written_by_the_client_is_replaced_and_never_forwarded_as_is() -> None:
    stanza = received(b"<message from='mallory@evil.example' to='romeo@example.net'/>")
    assert stanza.attrs["from"] == str(FULL_JID)
    assert stanza.wire is None
    assert b"mallory" not in stanza.serialize().encode()


def test_the_stamped_from_is_escaped() -> None:
    stream = authenticated_client().stream
    resource = 'a"b&c<d'
    bind = f"<bind xmlns='{ns.BIND}'><resource>a\"b&amp;c&lt;d</resource></bind>"
    assert stream.receive_data(f"<iq type='set' id='b1'>{bind}</iq>".encode(), 0) == [
        BindRequested("b1", resource)
    ]
    jid = JID(USERNAME, DOMAIN, resource)
    stream.bind_result("b1", jid)
    [event] = stream.receive_data(MESSAGE, 0)
    assert isinstance(event, StanzaReceived) and event.stanza.wire is not None
    assert parse_stanza(event.stanza.wire.decode()).attrs["from"] == str(jid)


def test_a_stanza_sent_in_the_same_read_as_the_bind_request_carries_the_stamped_from() -> None:
    """It was parsed before the bound JID was known, so its wire form cannot carry it."""
    stream = authenticated_client().stream
    bind = f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'/></iq>".encode()
    assert stream.receive_data(bind + MESSAGE, 0) == [BindRequested("b1", None)]
    [event] = stream.bind_result("b1", FULL_JID)
    assert isinstance(event, StanzaReceived) and event.stanza.attrs["from"] == str(FULL_JID)
    assert parse_stanza(event.stanza.encoded().decode()).attrs["from"] == str(FULL_JID)


def test_the_parser_stamps_an_attribute_into_each_wire_form_from_then_on() -> None:
    parser = header_parser()
    [before] = parser.feed(MESSAGE)
    parser.stamp_wire("from", "juliet@example.com/balcony")
    own = b"<message xmlns='jabber:client' to='a@b'/>"
    [after, declared, claimed] = parser.feed(MESSAGE + own + b"<presence from='x@y'/>")
    assert isinstance(before, Element) and before.wire == standalone(MESSAGE)
    stamp = b'<message from="juliet@example.com/balcony" '
    assert isinstance(after, Element) and after.wire == standalone(MESSAGE).replace(
        b"<message ", stamp, 1
    )
    assert isinstance(declared, Element) and declared.wire == own.replace(b"<message ", stamp, 1)
    assert isinstance(claimed, Element) and claimed.wire is None  # it carries its own


def test_a_released_parser_is_renewed_with_the_header_declarations() -> None:
    opening = header().replace(b"<stream:stream ", b"<stream:stream xmlns:x='urn:example' ")
    parser = header_parser(opening)
    assert parser.release()
    [element] = parser.feed(b"<message to='a@b'><x:y/></message>")
    assert isinstance(element, Element) and element.ns == ns.CLIENT
    assert element.children == [Element("y", "urn:example")]
    assert element.wire is None  # x: is the header's, which the recipient never sees
    [again] = parser.feed(MESSAGE)
    assert isinstance(again, Element) and again.wire == standalone(MESSAGE)


@pytest.mark.parametrize("unfinished", [b"<message><body>half", b"<mess", b"<message to='a"])
def test_a_parser_in_the_middle_of_an_element_is_kept(unfinished: bytes) -> None:
    parser = header_parser()
    parser.feed(unfinished)
    assert not parser.release()


def test_a_failed_parser_is_not_released_and_stays_failed() -> None:
    parser = header_parser()
    with pytest.raises(StreamError):
        parser.feed(b"<message><</message>")
    assert not parser.release()
    with pytest.raises(StreamError):
        parser.feed(MESSAGE)


def test_a_bound_stream_releases_its_parser_and_reads_on() -> None:
    client = bound_client()
    assert client.stream.release_parser()
    [event] = client.send(MESSAGE)
    assert isinstance(event, StanzaReceived) and event.stanza.get("id") == "m1"
    assert event.stanza.wire is not None


def test_a_websocket_frame_parser_releases_and_renews() -> None:
    parser = XMLFrameParser(LIMIT, keep_wire=True)
    assert parser.release()
    frame = b"<message to='a@b'><body>x</body></message>"
    element = parser.feed_frame(frame)
    assert element is not None and element.ns == ns.CLIENT and element.wire == standalone(frame)


def test_encoded_is_the_wire_form_or_else_the_serialisation() -> None:
    [element] = header_parser().feed(MESSAGE)
    assert isinstance(element, Element) and element.encoded() == standalone(MESSAGE)
    element.add("delay", ns.DELAY)
    assert element.encoded() == element.serialize().encode()
    assert element.encoded("") == element.serialize("").encode()
