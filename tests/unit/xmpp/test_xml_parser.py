"""XMLStreamParser: bytes in, stream header / top-level elements / stream end out,
and the RFC 6120 11 rules on what XML a stream may contain."""

from __future__ import annotations

import tracemalloc

import pytest
from xmpp_helpers import CLOSE, header

from chinwag.xmpp import ns, xml
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.xml import MAX_DEPTH, Parsed, StreamEnd, StreamHeader, XMLStreamParser

LIMIT = 4096


def opened(limit: int = LIMIT) -> XMLStreamParser:
    """A parser that has already consumed a normal client stream header."""
    parser = XMLStreamParser(limit)
    [parsed] = parser.feed(header())
    assert isinstance(parsed, StreamHeader)
    return parser


def feed_all(parser: XMLStreamParser, *chunks: bytes) -> list[Parsed]:
    out: list[Parsed] = []
    for chunk in chunks:
        out.extend(parser.feed(chunk))
    return out


def elements_of(data: bytes) -> list[Element]:
    out = opened().feed(data)
    assert all(isinstance(item, Element) for item in out), out
    return out  # type: ignore[return-value]


def one_element(data: bytes) -> Element:
    [element] = elements_of(data)
    return element


def stream_error(parser: XMLStreamParser, *chunks: bytes) -> StreamCondition:
    with pytest.raises(StreamError) as caught:
        feed_all(parser, *chunks)
    return caught.value.condition


# --- the stream header and its end ---------------------------------------------


def test_header_is_reported_with_namespaces_and_attributes() -> None:
    [parsed] = XMLStreamParser(LIMIT).feed(header())
    assert parsed == StreamHeader(
        ns=ns.STREAMS,
        tag="stream",
        attrs={"to": "example.com", "version": "1.0", "xml:lang": "en"},
        default_ns=ns.CLIENT,
    )


def test_header_without_default_namespace() -> None:
    [parsed] = XMLStreamParser(LIMIT).feed(header(content_ns=None))
    assert isinstance(parsed, StreamHeader)
    assert parsed.default_ns is None
    assert "xmlns" not in parsed.attrs


def test_header_without_xml_declaration() -> None:
    [parsed] = XMLStreamParser(LIMIT).feed(header(xml_decl=False))
    assert isinstance(parsed, StreamHeader) and parsed.tag == "stream"


def test_header_fed_byte_by_byte_is_reported_once_complete() -> None:
    data = header()
    parser = XMLStreamParser(LIMIT)
    for i in range(len(data) - 1):
        assert parser.feed(data[i : i + 1]) == []
    [parsed] = parser.feed(data[-1:])
    assert isinstance(parsed, StreamHeader)


def test_stream_end() -> None:
    parser = opened()
    assert parser.feed(b"<presence/>" + CLOSE) == [Element("presence"), StreamEnd()]


def test_header_stanzas_and_end_in_one_chunk_keep_their_order() -> None:
    out = XMLStreamParser(LIMIT).feed(header() + b"<message/><iq/>" + CLOSE)
    assert [type(item) for item in out] == [StreamHeader, Element, Element, StreamEnd]
    assert [item.tag for item in out if isinstance(item, Element)] == ["message", "iq"]


def test_uppercase_utf8_encoding_declaration_is_fine() -> None:
    parser = XMLStreamParser(LIMIT)
    data = b"<?xml version='1.0' encoding='utf-8'?>" + header(xml_decl=False)
    assert isinstance(parser.feed(data)[0], StreamHeader)


# --- elements -------------------------------------------------------------------


def test_stanza_inherits_the_stream_default_namespace() -> None:
    element = one_element(b"<message to='romeo@example.net' type='chat'><body>hi</body></message>")
    assert element == Element(
        "message",
        ns.CLIENT,
        {"to": "romeo@example.net", "type": "chat"},
        [Element("body", ns.CLIENT, children=["hi"])],
    )


def test_child_default_namespace_declaration() -> None:
    element = one_element(b"<iq type='get' id='1'><query xmlns='jabber:iq:version'/></iq>")
    [query] = element.elements()
    assert (query.tag, query.ns) == ("query", "jabber:iq:version")
    assert query.attrs == {}


def test_prefixed_elements_resolve_to_their_namespace() -> None:
    element = one_element(b"<p:x xmlns:p='urn:example:p'><p:y/><z/></p:x>")
    assert (element.tag, element.ns) == ("x", "urn:example:p")
    y, z = element.elements()
    assert (y.tag, y.ns) == ("y", "urn:example:p")
    assert (z.tag, z.ns) == ("z", ns.CLIENT)
    assert element.attrs == {}, "namespace declarations are not attributes"


def test_stream_prefix_declared_on_the_header_is_usable_in_stanzas() -> None:
    element = one_element(b"<stream:error><x/></stream:error>")
    assert (element.tag, element.ns) == ("error", ns.STREAMS)


def test_prefixed_attribute_is_written_with_its_namespace() -> None:
    element = one_element(b"<message xmlns:p='urn:example:p' p:a='1' b='2'/>")
    assert element.attrs == {"{urn:example:p}a": "1", "b": "2"}


def test_xml_lang_keeps_its_conventional_name() -> None:
    element = one_element(b"<message xml:lang='fr'><body xml:lang='de'>x</body></message>")
    assert element.attrs == {"xml:lang": "fr"}
    body = element.find("body")
    assert body is not None and body.attrs == {"xml:lang": "de"}


def test_namespaced_attributes_are_named_so_after_plain_ones_of_the_same_local_name() -> None:
    """Plain names are remembered for speed; that must never let a namespaced one pass."""
    elements = elements_of(
        b"<message a='1' lang='x'/><message xmlns:p='urn:example:p' p:a='2' xml:lang='en'/>"
    )
    assert [element.attrs for element in elements] == [
        {"a": "1", "lang": "x"},
        {"{urn:example:p}a": "2", "xml:lang": "en"},
    ]


def test_long_names_chosen_by_a_peer_are_not_remembered() -> None:
    name = "n" * 300
    [element] = elements_of(f"<message {name}='1'><{name} xmlns='urn:{name}'/></message>".encode())
    child = element.first_element()
    assert element.attrs == {name: "1"} and child is not None and child.tag == name
    assert name not in xml._plain_attr_names
    assert f"urn:{name} {name}" not in xml._name_cache and name not in xml._tag_bytes_cache


def test_a_stream_holds_no_more_memory_for_names_however_many_it_has_seen() -> None:
    """Every element and attribute name may be new: what the parser remembers of them is
    bounded by its renewal, not by the length of the stream."""
    parser = XMLStreamParser(1 << 16, keep_wire=True)
    parser.feed(header())
    name = "n" * 300  # longer than any name the process-wide caches keep

    def feed(count: int) -> None:
        for index in range(count):
            parser.feed(f"<message {name}{index}='1'><{name}{index}/></message>".encode())

    feed(10)
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        feed(4000)  # 2.4 MiB of input
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 1024 * 1024, f"{grown} bytes kept after 4,000 stanzas"


def test_text_cdata_and_character_references() -> None:
    element = one_element(
        b"<message><body>a<![CDATA[<b>&amp;</b>]]>&#65;&#x42;&#x1F600;</body></message>"
    )
    body = element.find("body")
    assert body is not None
    assert body.text == "a<b>&amp;</b>AB\U0001f600"


def test_the_five_predefined_entities_in_text_and_attributes() -> None:
    element = one_element(
        b"<message a='&lt;&gt;&amp;&apos;&quot;'>&lt;&gt;&amp;&apos;&quot;</message>"
    )
    assert element.text == "<>&'\""
    assert element.attrs == {"a": "<>&'\""}


def test_multibyte_utf8_text() -> None:
    element = one_element("<message>héllo ☃ \U0001f600</message>".encode())
    assert element.text == "héllo ☃ \U0001f600"


def test_mixed_content_keeps_its_order() -> None:
    element = one_element(b"<body>a<b/>c</body>")
    assert element.children == ["a", Element("b"), "c"]


def test_whitespace_between_stanzas_is_dropped() -> None:
    out = elements_of(b"\n  <message/>\r\n\t <presence/>  \n")
    assert out == [Element("message"), Element("presence")]


def test_whitespace_keepalive_alone_yields_nothing() -> None:
    parser = opened()
    assert parser.feed(b" ") == []
    assert parser.feed(b"\n\n") == []


def test_whitespace_inside_stanzas_is_kept() -> None:
    element = one_element(b"<message> <body> x </body> </message>")
    assert element.children[0] == " "
    body = element.find("body")
    assert body is not None and body.text == " x "


def test_text_directly_in_the_stream_is_a_stream_error() -> None:
    assert stream_error(opened(), b"hello") is StreamCondition.BAD_FORMAT


def test_only_top_level_elements_are_returned() -> None:
    parser = opened()
    assert parser.feed(b"<message><body>hi</body>") == []
    assert parser.feed(b"<x xmlns='urn:x'><y/></x>") == []
    [message] = parser.feed(b"</message>")
    assert isinstance(message, Element)
    assert [child.tag for child in message.elements()] == ["body", "x"]


def test_stanza_is_returned_by_the_feed_that_completes_it() -> None:
    parser = opened(limit=1 << 20)
    assert parser.feed(b"<message><body>") == []
    for _ in range(50):
        assert parser.feed(b"x" * 200) == []
    [message] = parser.feed(b"</body></message>")
    assert isinstance(message, Element)
    body = message.find("body")
    assert body is not None and body.text == "x" * 10000


def test_multibyte_character_split_across_feeds() -> None:
    data = "<message>☃</message>".encode()
    split = data.index("☃".encode()) + 1
    parser = opened()
    assert parser.feed(data[:split]) == []
    [message] = parser.feed(data[split:])
    assert isinstance(message, Element) and message.text == "☃"


def test_text_split_across_feeds_is_one_text_child() -> None:
    """The element must not depend on how TCP happened to cut the bytes."""
    parser = opened()
    out = feed_all(parser, b"<message><body>hel", b"lo</body></message>")
    assert out == [Element("message", children=[Element("body", children=["hello"])])]


# --- restricted XML (RFC 6120 11.1) ---------------------------------------------


@pytest.mark.parametrize(
    "before_root",
    [
        b"<!DOCTYPE stream:stream>",
        b"<!DOCTYPE stream:stream [<!ENTITY x 'y'>]>",
        b"<!-- hello -->",
        b"<?app data?>",
    ],
    ids=["doctype", "internal-subset", "comment", "processing-instruction"],
)
def test_restricted_xml_before_the_header(before_root: bytes) -> None:
    parser = XMLStreamParser(LIMIT)
    data = b"<?xml version='1.0'?>" + before_root + header(xml_decl=False)
    assert stream_error(parser, data) is StreamCondition.RESTRICTED_XML


@pytest.mark.parametrize(
    "data",
    [
        b"<!-- between stanzas -->",
        b"<message><!-- inside --></message>",
        b"<?app data?>",
        b"<message><?app data?></message>",
        b"<message>&foo;</message>",
        b"<message a='&foo;'/>",
    ],
    ids=[
        "comment-between",
        "comment-inside",
        "pi-between",
        "pi-inside",
        "entity-in-text",
        "entity-in-attribute",
    ],
)
def test_restricted_xml_in_the_stream(data: bytes) -> None:
    assert stream_error(opened(), data) is StreamCondition.RESTRICTED_XML


def test_comment_split_across_feeds_is_restricted() -> None:
    parser = opened()
    assert stream_error(parser, b"<message><!-", b"- x -", b"-></message>") is (
        StreamCondition.RESTRICTED_XML
    )


@pytest.mark.parametrize("encoding", [b"ISO-8859-1", b"UTF-16", b"US-ASCII", b"latin1"])
def test_non_utf8_encoding_declaration(encoding: bytes) -> None:
    data = b"<?xml version='1.0' encoding='" + encoding + b"'?>" + header(xml_decl=False)
    assert stream_error(XMLStreamParser(LIMIT), data) is StreamCondition.UNSUPPORTED_ENCODING


def test_utf16_encoded_stream_is_an_unsupported_encoding() -> None:
    """RFC 6120 11.6: a stream must be UTF-8, even when the bytes announce UTF-16 by a BOM."""
    data = header(xml_decl=False).decode().encode("utf-16")
    assert stream_error(XMLStreamParser(LIMIT), data) is StreamCondition.UNSUPPORTED_ENCODING


# --- not well-formed --------------------------------------------------------------


@pytest.mark.parametrize(
    "data",
    [
        b"<message><body></message>",
        b"</message>",
        b"<message a='1' a='2'/>",
        b"<message a=1/>",
        b"<1message/>",
        b"<message>\xff\xfe</message>",
        b"<message>&#0;</message>",
        b"<message>&#xD800;</message>",
        b"<message>]]></message>",
        b"<message>\x01</message>",
        b"< message/>",
    ],
)
def test_not_well_formed(data: bytes) -> None:
    assert stream_error(opened(), data) is StreamCondition.NOT_WELL_FORMED


def test_garbage_instead_of_a_header_is_not_well_formed() -> None:
    assert stream_error(XMLStreamParser(LIMIT), b"hello world") is StreamCondition.NOT_WELL_FORMED


def test_anything_after_the_stream_end_is_not_well_formed() -> None:
    parser = opened()
    assert parser.feed(CLOSE) == [StreamEnd()]
    assert stream_error(parser, b"<message/>") is StreamCondition.NOT_WELL_FORMED


@pytest.mark.parametrize(
    "data", [b"<foo:bar/>", b"<message foo:a='1'/>", b"<message><foo:bar/></message>"]
)
def test_unbound_prefix(data: bytes) -> None:
    assert stream_error(opened(), data) is StreamCondition.BAD_NAMESPACE_PREFIX


def test_unbound_prefix_on_the_root() -> None:
    data = b"<stream:stream xmlns='jabber:client' to='example.com' version='1.0'>"
    assert stream_error(XMLStreamParser(LIMIT), data) is StreamCondition.BAD_NAMESPACE_PREFIX


# --- size and depth limits ---------------------------------------------------------


def big_message(size: int) -> bytes:
    """A <message/> of exactly ``size`` bytes."""
    head, tail = b"<message><body>", b"</body></message>"
    return head + b"x" * (size - len(head) - len(tail)) + tail


def test_stanza_under_the_limit_passes() -> None:
    parser = opened(limit=1000)
    assert len(parser.feed(big_message(900))) == 1


def test_many_small_stanzas_adding_up_past_the_limit_pass() -> None:
    parser = opened(limit=1000)
    out = feed_all(parser, *(big_message(600) for _ in range(10)))
    assert len(out) == 10


def test_oversized_stanza_in_one_chunk() -> None:
    parser = opened(limit=1000)
    assert stream_error(parser, big_message(1500)) is StreamCondition.POLICY_VIOLATION


def test_oversized_stanza_trickling_in_fails_before_it_is_complete() -> None:
    parser = opened(limit=1000)
    data = big_message(5000)
    fed = 0
    with pytest.raises(StreamError) as caught:
        for start in range(0, len(data), 50):
            fed += 50
            parser.feed(data[start : start + 50])
    assert caught.value.condition is StreamCondition.POLICY_VIOLATION
    assert fed <= 1000 + 100, f"refused only after {fed} bytes"


def test_oversized_start_tag_trickling_in_fails_before_it_is_complete() -> None:
    """Expat buffers an unfinished start tag: its size must be bounded too."""
    parser = opened(limit=1000)
    data = b"<message to='" + b"a" * 20000 + b"'/>"
    fed = 0
    with pytest.raises(StreamError) as caught:
        for start in range(0, len(data), 50):
            fed += 50
            parser.feed(data[start : start + 50])
    assert caught.value.condition is StreamCondition.POLICY_VIOLATION
    assert fed <= 2000, f"refused only after {fed} bytes"


def test_oversized_unterminated_comment_fails_before_it_is_complete() -> None:
    parser = opened(limit=1000)
    with pytest.raises(StreamError):
        parser.feed(b"<!--")
        for _ in range(400):
            parser.feed(b"x" * 50)


def nested(levels: int) -> bytes:
    return b"<a>" * levels + b"</a>" * levels


def test_deep_but_allowed_nesting() -> None:
    [element] = elements_of(nested(MAX_DEPTH // 2))
    depth = 0
    node: Element | None = element
    while node is not None:
        depth += 1
        node = node.first_element()
    assert depth == MAX_DEPTH // 2


def test_nesting_deeper_than_the_limit() -> None:
    assert stream_error(opened(), nested(MAX_DEPTH + 1)) is StreamCondition.POLICY_VIOLATION


def test_nesting_limit_counts_depth_not_size() -> None:
    parser = opened(limit=1 << 20)
    # Wide but shallow: fine.
    assert len(parser.feed(b"<a>" + b"<b/>" * 5000 + b"</a>")) == 1


# --- after a failure -------------------------------------------------------------------


@pytest.mark.parametrize("bad", [b"<message><!-- x --></message>", b"<a></b>", b"<foo:bar/>"])
def test_feeding_after_a_failure_keeps_failing(bad: bytes) -> None:
    parser = opened()
    with pytest.raises(StreamError):
        parser.feed(bad)
    for _ in range(2):
        with pytest.raises(StreamError):
            parser.feed(b"<message/>")


def test_elements_parsed_in_the_failing_chunk_are_not_returned_later() -> None:
    parser = opened()
    with pytest.raises(StreamError):
        parser.feed(b"<message/><a></b>")
    with pytest.raises(StreamError):
        parser.feed(b"")
