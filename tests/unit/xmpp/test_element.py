"""Element: the serializer's escaping and namespace declarations, a round trip
through the parser, and the small tree API (find, find_all, text, copy, ==)."""

from __future__ import annotations

import pytest
from xmpp_helpers import header

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element, escape_attr, escape_text
from chinwag.xmpp.xml import XMLStreamParser


def reparse(element: Element) -> Element:
    """Serialise ``element`` into a jabber:client stream and parse it back."""
    parser = XMLStreamParser(1 << 20)
    parser.feed(header())
    out = parser.feed(element.serialize().encode())
    assert len(out) == 1, f"{element.serialize()!r} parsed as {out!r}"
    parsed = out[0]
    assert isinstance(parsed, Element)
    return parsed


# --- escaping -----------------------------------------------------------------------


def test_escape_text() -> None:
    assert escape_text("a < b && c > d") == "a &lt; b &amp;&amp; c &gt; d"
    assert escape_text("plain 'quoted' \"text\"") == "plain 'quoted' \"text\""


def test_escape_attr() -> None:
    assert escape_attr('<&>"') == "&lt;&amp;&gt;&quot;"
    assert escape_attr("a\tb\nc\rd") == "a&#9;b&#10;c&#13;d"


def test_text_is_escaped() -> None:
    element = Element("body", children=["1 < 2 & 3 > 2 ]]>"])
    assert element.serialize() == "<body>1 &lt; 2 &amp; 3 &gt; 2 ]]&gt;</body>"


def test_attribute_values_are_escaped() -> None:
    element = Element("message", attrs={"a": "say \"hi\" & 'bye' <now>"})
    assert element.serialize() == ("<message a=\"say &quot;hi&quot; &amp; 'bye' &lt;now&gt;\"/>")


@pytest.mark.parametrize("value", ["line1\nline2", "tab\there", "cr\rhere", "  spaces  ", "'\""])
def test_attribute_whitespace_and_quotes_survive_a_round_trip(value: str) -> None:
    element = Element("message", attrs={"a": value})
    assert reparse(element).attrs == {"a": value}


@pytest.mark.parametrize(
    "text", ["a\nb", "a\tb", " lead and trail ", "<&>\"'", "]]>", "☃ \U0001f600"]
)
def test_text_survives_a_round_trip(text: str) -> None:
    element = Element("body", children=[text])
    assert reparse(element).text == text


@pytest.mark.parametrize("text", ["a\rb", "a\r\nb"])
def test_carriage_return_in_text_survives_a_round_trip(text: str) -> None:
    """A parser turns a literal CR into LF (XML 1.0 2.11), so it must be written &#13;."""
    element = Element("body", children=[text])
    assert reparse(element).text == text


def test_empty_element_is_self_closing() -> None:
    assert Element("presence").serialize() == "<presence/>"
    assert Element("presence", attrs={"type": "unavailable"}).serialize() == (
        '<presence type="unavailable"/>'
    )


def test_bytes_is_the_utf8_serialisation() -> None:
    element = Element("body", children=["☃"])
    assert bytes(element) == element.serialize().encode("utf-8")


# --- namespaces ----------------------------------------------------------------------


def test_no_declaration_when_the_namespace_is_the_parents() -> None:
    message = Element("message")
    message.add("body").append("hi")
    assert message.serialize() == "<message><body>hi</body></message>"


def test_declaration_where_the_namespace_changes_only() -> None:
    iq = Element("iq", attrs={"type": "get", "id": "1"})
    query = iq.add("query", "jabber:iq:roster")
    query.add("item", attrs={"jid": "a@b"})
    query.add("group", ns.CLIENT)
    assert iq.serialize() == (
        '<iq type="get" id="1"><query xmlns="jabber:iq:roster">'
        '<item jid="a@b"/><group xmlns="jabber:client"/></query></iq>'
    )


def test_parent_namespace_argument() -> None:
    element = Element("features", ns.STREAMS)
    assert element.serialize() == f'<features xmlns="{ns.STREAMS}"/>'
    assert element.serialize(parent_ns=ns.STREAMS) == "<features/>"
    assert Element("message").serialize(parent_ns="jabber:server") == (
        '<message xmlns="jabber:client"/>'
    )


def test_namespace_uri_is_escaped() -> None:
    element = Element("x", 'urn:a"b<c')
    assert reparse(element).ns == 'urn:a"b<c'


def test_namespaced_attributes_get_a_prefix_each() -> None:
    element = Element("x", attrs={"{urn:a}one": "1", "{urn:b}two": "2", "plain": "3"})
    text = element.serialize()
    assert 'xmlns:ns1="urn:a" ns1:one="1"' in text
    assert 'xmlns:ns2="urn:b" ns2:two="2"' in text
    assert reparse(element).attrs == element.attrs


def test_xml_lang_needs_no_declaration() -> None:
    element = Element("body", attrs={"xml:lang": "fr"}, children=["salut"])
    assert element.serialize() == '<body xml:lang="fr">salut</body>'
    assert reparse(element).attrs == {"xml:lang": "fr"}


def test_namespaced_attribute_with_a_closing_brace_in_its_uri_round_trips() -> None:
    """Namespace URIs may contain '}': the serialiser must not cut the key at it."""
    element = Element("x", "urn:x", {"{urn:a}b}c": "1"})
    assert reparse(element) == element


def test_parsed_attribute_namespace_cannot_inject_markup() -> None:
    """A peer-chosen namespace URI must not turn into markup when the stanza is re-sent."""
    uri = (
        "u}z=&quot;1&quot;/&gt;&lt;/message&gt;&lt;message&#9;"
        "from=&quot;admin@example.com&quot;&gt;&lt;body&gt;spoof&lt;/body&gt;&lt;y&#9;c=&quot;"
    )
    data = f"<message to='bob@example.com'><x xmlns:a='{uri}' a:b=' d='/></message>"
    parser = XMLStreamParser(1 << 20)
    parser.feed(header())
    [original] = parser.feed(data.encode())
    assert isinstance(original, Element)
    assert reparse(original) == original


# --- round trip ------------------------------------------------------------------------


def test_round_trip_of_a_mixed_tree() -> None:
    message = Element(
        "message",
        attrs={"to": "romeo@example.net", "type": "chat", "id": "m&1", "xml:lang": "en"},
    )
    message.add("body").append("Wherefore art thou, <Romeo>?")
    html = message.add("html", "http://jabber.org/protocol/xhtml-im")
    body = html.add("body", "http://www.w3.org/1999/xhtml")
    body.append("Where")
    body.add("em").append("fore")
    body.append(" art thou")
    message.add("active", "http://jabber.org/protocol/chatstates")
    message.add("x", "urn:x", {"{urn:attr}flag": "on"})
    assert reparse(message) == message


def test_parse_then_serialise_is_stable() -> None:
    data = (
        b"<iq type='set' id='a'><query xmlns='jabber:iq:roster' ver='1'>"
        b"<item jid='a@b' name='A &amp; B'><group>Friends</group></item></query></iq>"
    )
    parser = XMLStreamParser(1 << 20)
    parser.feed(header())
    [element] = parser.feed(data)
    assert isinstance(element, Element)
    once = element.serialize()
    assert reparse(element).serialize() == once


# --- tree API -----------------------------------------------------------------------------


def sample() -> Element:
    message = Element("message", attrs={"type": "chat"})
    message.append("lead ")
    message.add("body").append("one")
    message.add("body", "urn:other").append("two")
    message.append("tail")
    message.add("thread").append("t")
    message.add("body").append("three")
    return message


def test_find_first_match_with_and_without_namespace() -> None:
    message = sample()
    found = message.find("body")
    assert found is not None and found.text == "one"
    other = message.find("body", "urn:other")
    assert other is not None and other.text == "two"
    assert message.find("body", "urn:missing") is None
    assert message.find("nothing") is None


def test_find_all() -> None:
    message = sample()
    assert [e.text for e in message.find_all("body")] == ["one", "two", "three"]
    assert [e.text for e in message.find_all("body", ns.CLIENT)] == ["one", "three"]
    assert message.find_all("nothing") == []


def test_find_looks_at_direct_children_only() -> None:
    outer = Element("a")
    outer.add("b").add("c")
    assert outer.find("c") is None


def test_elements_and_first_element() -> None:
    message = sample()
    assert [e.tag for e in message.elements()] == ["body", "body", "thread", "body"]
    first = message.first_element()
    assert first is not None and first.text == "one"
    assert Element("empty", children=["text only"]).first_element() is None


def test_text_joins_direct_text_children_only() -> None:
    assert sample().text == "lead tail"
    assert Element("x").text == ""


def test_get_and_add_and_append() -> None:
    element = Element("x", "urn:x", {"a": "1"})
    assert element.get("a") == "1"
    assert element.get("b") is None
    assert element.get("b", "d") == "d"
    child = element.add("y")
    assert child.ns == "urn:x", "add() defaults to the parent's namespace"
    assert element.append("t") == "t"
    assert element.children == [child, "t"]


def test_default_namespace_is_jabber_client() -> None:
    assert Element("message").ns == ns.CLIENT


def test_copy_is_deep() -> None:
    original = sample()
    duplicate = original.copy()
    assert duplicate == original
    assert duplicate is not original
    duplicate.attrs["type"] = "normal"
    first = duplicate.find("body")
    assert first is not None
    first.children.append("!")
    duplicate.children.append(Element("extra"))
    assert original == sample()


def test_equality() -> None:
    base = Element("a", "urn:a", {"k": "v"}, ["t", Element("b")])
    assert base == Element("a", "urn:a", {"k": "v"}, ["t", Element("b")])
    assert base != Element("z", "urn:a", {"k": "v"}, ["t", Element("b")])
    assert base != Element("a", "urn:z", {"k": "v"}, ["t", Element("b")])
    assert base != Element("a", "urn:a", {"k": "w"}, ["t", Element("b")])
    assert base != Element("a", "urn:a", {"k": "v"}, ["t", Element("c")])
    assert base != Element("a", "urn:a", {"k": "v"}, [Element("b"), "t"])
    assert base != "a"
    assert (base == object()) is False


def test_elements_are_unhashable() -> None:
    with pytest.raises(TypeError):
        hash(Element("a"))


def test_independent_default_containers() -> None:
    one, two = Element("a"), Element("a")
    one.attrs["x"] = "1"
    one.children.append("t")
    assert two.attrs == {} and two.children == []
