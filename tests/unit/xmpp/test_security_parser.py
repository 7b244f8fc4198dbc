"""Issue 16, point 3: the parser's CPU is bounded whatever the chunking.

Expat scans a token it could not finish again from its first byte at every feed, so a
large token sent a few bytes at a time cost time quadratic in its size (a 250 KB
attribute in the stream header, fed 16 bytes at a time, cost ~2.4 s of CPU). Before
authentication a stream header, an unfinished tag and a top-level element are small
and bounded; after it, the reads that continue a large token are held back from expat
until they may finish it, so its work stays linear and a read that finishes a stanza
still yields it at once. Work is counted (bytes expat is given to scan), never timed.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_stream_websocket import WSClient
from xmpp_helpers import Client, closed_with, header, open_client

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.events import Event, StanzaReceived
from chinwag.xmpp.stream import PREAUTH_MAX_ELEMENT_BYTES, PREAUTH_MAX_TOKEN_BYTES
from chinwag.xmpp.xml import LARGE_TOKEN_BYTES, MAX_HEADER_BYTES, Parsed, XMLStreamParser

pytestmark = pytest.mark.security

READ = 16
"""Bytes per read, as the issue's attacker sent them."""
HUGE = 250_000
"""The attribute's length in the issue."""


def trickle(client: Client, data: bytes, budget: int) -> tuple[list[Event], int]:
    """Send ``data`` READ bytes at a time until the stream closes or ``budget`` bytes went;
    returns the events and how many bytes were sent."""
    events: list[Event] = []
    sent = 0
    while sent < min(len(data), budget) and client.stream.state.name != "CLOSED":
        events += client.send(data[sent : sent + READ])
        sent += READ
    return events, sent


class CountingExpat:
    """The real expat parser, counting the bytes it is given to scan: at each ``Parse``,
    the unfinished bytes it holds from before and the new ones."""

    def __init__(self, parser: Any) -> None:
        object.__setattr__(self, "_parser", parser)
        object.__setattr__(self, "fed", 0)
        object.__setattr__(self, "scanned", 0)
        object.__setattr__(self, "calls", 0)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._parser, name)

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(self._parser, name, value)

    def Parse(self, data: bytes, final: bool = False) -> int:
        unfinished = self.fed - self._parser.CurrentByteIndex if self.fed else 0
        object.__setattr__(self, "scanned", self.scanned + unfinished + len(data))
        object.__setattr__(self, "fed", self.fed + len(data))
        object.__setattr__(self, "calls", self.calls + 1)
        return int(self._parser.Parse(data, final))


class CountedParser(XMLStreamParser):
    """A bound stream's parser (the default stanza limit, wire forms kept) whose expat
    counts its work."""

    def __init__(self) -> None:
        self.expats: list[CountingExpat] = []
        super().__init__(262144, keep_wire=True)

    def _make_expat(self) -> Any:
        expat = CountingExpat(super()._make_expat())
        self.expats.append(expat)
        return expat

    @property
    def scanned(self) -> int:
        return sum(expat.scanned for expat in self.expats)


def opened() -> CountedParser:
    parser = CountedParser()
    parser.feed(header())
    return parser


def linear_work(size: int) -> int:
    """The most bytes expat may scan for a token of ``size`` bytes fed READ bytes at a
    time: quadratic only up to LARGE_TOKEN_BYTES (each read scans what is held, at most
    that), linear beyond."""
    return LARGE_TOKEN_BYTES * LARGE_TOKEN_BYTES // READ + 4 * size


def feed_in_reads(parser: XMLStreamParser, data: bytes, size: int = READ) -> list[Parsed]:
    out: list[Parsed] = []
    for start in range(0, len(data), size):
        out += parser.feed(data[start : start + size])
    return out


# --- before authentication ------------------------------------------------------------


def test_a_huge_stream_header_trickling_in_is_refused_after_a_few_kib() -> None:
    client = Client(secure=True)
    data = header()[:-1] + b" a='" + b"x" * HUGE + b"'>"
    events, sent = trickle(client, data, budget=4 * MAX_HEADER_BYTES)
    assert closed_with(events, StreamCondition.POLICY_VIOLATION), events
    assert sent <= MAX_HEADER_BYTES + READ
    assert b"stream header longer than" in client.stream.data_to_send()


def test_a_huge_stream_header_in_one_read_is_refused_too() -> None:
    client = Client(secure=True)
    events = client.send(header()[:-1] + b" a='" + b"x" * (2 * MAX_HEADER_BYTES) + b"'>")
    assert closed_with(events, StreamCondition.POLICY_VIOLATION), events


def test_a_huge_tag_before_authentication_is_refused_after_a_few_kib() -> None:
    client = open_client()
    data = f"<auth xmlns='{ns.SASL}' mechanism='PLAIN' a='".encode() + b"x" * HUGE
    events, sent = trickle(client, data, budget=4 * PREAUTH_MAX_TOKEN_BYTES)
    assert closed_with(events, StreamCondition.POLICY_VIOLATION), events
    assert sent <= PREAUTH_MAX_TOKEN_BYTES + READ


def test_a_large_element_before_authentication_is_refused() -> None:
    client = open_client()
    text = b"A" * PREAUTH_MAX_ELEMENT_BYTES
    events = client.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>".encode() + text)
    assert closed_with(events, StreamCondition.POLICY_VIOLATION), events


def test_a_large_message_before_authentication_is_refused_over_websocket_too() -> None:
    client = WSClient()
    client.open()
    body = "x" * PREAUTH_MAX_ELEMENT_BYTES
    events = client.send(f"<message to='a@example.com'><body>{body}</body></message>")
    assert closed_with(events, StreamCondition.POLICY_VIOLATION), events


def test_after_authentication_the_stanza_limit_applies_again_over_websocket() -> None:
    client = WSClient()
    client.open()
    client.authenticate()
    client.bind()
    body = "x" * (2 * PREAUTH_MAX_ELEMENT_BYTES)
    events = client.send(f"<message to='a@example.com'><body>{body}</body></message>")
    [received] = events
    assert isinstance(received, StanzaReceived)
    assert received.stanza.find("body") is not None


# --- after authentication -------------------------------------------------------------


def test_a_huge_start_tag_trickling_in_costs_expat_linear_work() -> None:
    parser = opened()
    before = parser.scanned
    value = b"x" * 100_000
    data = b"<message to='a@example.com' a='" + value + b"'><body>hi</body></message>"
    [element] = feed_in_reads(parser, data)
    assert isinstance(element, Element) and element.attrs["a"] == value.decode()
    assert element.wire is not None and element.wire.endswith(b"<body>hi</body></message>")
    assert parser.scanned - before <= linear_work(len(data)), parser.scanned - before


def test_a_huge_end_tag_trickling_in_costs_expat_linear_work() -> None:
    parser = opened()
    before = parser.scanned
    data = b"<message><body>hi</body></message" + b" " * 100_000 + b">"
    [element] = feed_in_reads(parser, data)
    assert isinstance(element, Element) and element.text == ""
    assert parser.scanned - before <= linear_work(len(data)), parser.scanned - before


def test_a_comment_trickling_in_is_refused_with_linear_work() -> None:
    """A comment is refused once expat sees it end: at the latest when the reads held back
    since are as long as what expat holds of it (a '>' may be anywhere in a comment)."""
    parser = opened()
    before = parser.scanned
    comment = b"<message><!--" + b"-> " * 40_000 + b"-->"
    with pytest.raises(StreamError) as caught:
        feed_in_reads(parser, comment + b" " * len(comment))
    assert caught.value.condition is StreamCondition.RESTRICTED_XML
    assert parser.scanned - before <= linear_work(len(comment))


@pytest.mark.parametrize(
    "last_read",
    [b"'>", b"' b='>'/>", b"'/>", b"'\n>"],
    ids=["end", "another attribute with '>'", "empty element", "newline"],
)
def test_a_small_read_that_finishes_a_large_tag_yields_its_stanza_at_once(
    last_read: bytes,
) -> None:
    """Held-back reads never include the one that finishes the tag."""
    parser = opened()
    assert feed_in_reads(parser, b"<message a='" + b'x>"' * 5000) == []
    parsed = parser.feed(last_read)
    if not last_read.endswith(b"/>"):
        assert parsed == []
        parsed = parser.feed(b"</message>")
    [element] = parsed
    assert isinstance(element, Element) and element.attrs["a"] == 'x>"' * 5000


def test_a_small_read_that_finishes_a_large_end_tag_yields_its_stanza_at_once() -> None:
    parser = opened()
    assert feed_in_reads(parser, b"<message/><message></message" + b" " * 10_000) != []
    [element] = parser.feed(b">")
    assert isinstance(element, Element) and element.tag == "message"


def test_an_oversized_tag_trickling_in_is_still_refused_at_the_stanza_limit() -> None:
    parser = opened()
    with pytest.raises(StreamError) as caught:
        feed_in_reads(parser, b"<message a='" + b"x" * 300_000, size=1000)
    assert caught.value.condition is StreamCondition.POLICY_VIOLATION


LARGE_STANZA = (
    b"<message to='a@example.com'"
    + b" a='"
    + b'x>"&amp;' * 1500
    + b"' b=\""
    + b"'>y" * 1500
    + b"\"><body c='"
    + b"z" * 6000
    + b"'>"
    + b"t" * 5000
    + b"</body></message"
    + b" " * 5000
    + b"><presence/>"
)


@settings(max_examples=40, deadline=None)
@given(cuts=st.lists(st.integers(0, len(LARGE_STANZA)), max_size=40))
def test_large_tokens_parse_the_same_however_they_are_chunked(cuts: list[int]) -> None:
    whole = opened().feed(LARGE_STANZA)
    bounds = sorted({0, len(LARGE_STANZA), *cuts})
    parser = opened()
    chunked: list[Parsed] = []
    for start, stop in itertools.pairwise(bounds):
        chunked += parser.feed(LARGE_STANZA[start:stop])
    assert chunked == whole
    assert [item.wire for item in chunked if isinstance(item, Element)] == [
        item.wire for item in whole if isinstance(item, Element)
    ]
