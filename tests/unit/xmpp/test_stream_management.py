"""XEP-0198 stream management in the sans-IO stream: the <sm/> feature, <enable/> and
<resume/> with the driver's answers, <failed/> conditions, and the count of the
client's stanzas (h), which covers stanzas only, includes what the stream answers
itself, and wraps at 2**32. Also the wire helpers of ``xmpp/sm.py``."""

from __future__ import annotations

import pytest
from xmpp_helpers import (
    DOMAIN,
    FULL_JID,
    Client,
    authenticated_client,
    bound_client,
    closed_with,
)

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition
from chinwag.xmpp.events import (
    Acked,
    AckRequested,
    EnableRequested,
    Event,
    ResumeRequested,
    StanzaReceived,
)
from chinwag.xmpp.sm import MASK, HandledCountTooHigh, ack, parse_count
from chinwag.xmpp.states import State
from chinwag.xmpp.xml import Parsed, XMLStreamParser, parse_stanza

SM = ns.SM
ENABLE = f"<enable xmlns='{SM}'/>"
ENABLE_RESUME = f"<enable xmlns='{SM}' resume='true'/>"
R = f"<r xmlns='{SM}'/>"
MESSAGE = f"<message to='romeo@{DOMAIN}'><body>hi</body></message>"


def managed(handled: int | None = None) -> Client:
    """A bound client with stream management on; or resumed, its count at ``handled``."""
    if handled is not None:
        client = authenticated_client()
        client.send(f"<resume xmlns='{SM}' previd='sm-1' h='0'/>")
        client.stream.sm_resumed("sm-1", handled, FULL_JID)
    else:
        client = bound_client()
        assert client.send(ENABLE_RESUME) == [EnableRequested(True, None)]
        client.stream.sm_enabled("sm-1", 300)
    client.read()
    assert client.stream.state is State.MANAGED
    return client


def failure(element: Element) -> tuple[str, str | None]:
    """The stanza error condition of a <failed/>, and its h."""
    assert element.tag == "failed" and element.ns == SM, element
    (condition,) = [
        c.tag for c in element.elements() if c.ns == ns.STANZA_ERRORS and c.tag != "text"
    ]
    return condition, element.get("h")


def only(client: Client, tag: str) -> Element:
    (element,) = client.read().elements
    assert element.tag == tag and element.ns == SM, element
    return element


# --- the feature and <enable/> ------------------------------------------------------------


def test_sm_is_a_feature_after_authentication_only() -> None:
    client = Client(secure=True)
    before = client.open()
    assert before.features is not None and before.features.find("sm", SM) is None
    after = client.authenticate()
    assert after.features is not None and after.features.find("sm", SM) is not None


def test_enable_before_binding_fails_and_binding_still_works() -> None:
    client = authenticated_client()
    assert client.send(ENABLE_RESUME) == []
    assert failure(client.read().elements[0]) == ("unexpected-request", None)
    assert client.stream.state is State.AUTHENTICATED
    client.bind()
    assert client.stream.state is State.BOUND


@pytest.mark.parametrize(
    ("attrs", "expected"),
    [
        ("", EnableRequested(False, None)),
        (" resume='true'", EnableRequested(True, None)),
        (" resume='1' max='60'", EnableRequested(True, 60)),
        (" resume='false' max='0'", EnableRequested(False, None)),
        (" max='soon'", EnableRequested(False, None)),
    ],
)
def test_enable_asks_the_driver(attrs: str, expected: EnableRequested) -> None:
    client = bound_client()
    assert client.send(f"<enable xmlns='{SM}'{attrs}/>") == [expected]


def test_stanzas_after_enable_wait_for_the_answer_and_are_then_counted() -> None:
    client = bound_client()
    events = client.send(ENABLE_RESUME + MESSAGE + R)
    assert events == [EnableRequested(True, None)]
    assert client.stream.state is State.BOUND
    events = client.stream.sm_enabled("an-id", 120)
    assert [type(event) for event in events] == [StanzaReceived, AckRequested]
    assert events[1] == AckRequested(1)
    enabled = only(client, "enabled")
    assert enabled.attrs == {"id": "an-id", "resume": "true", "max": "120"}


def test_enabled_without_resumption_names_no_id() -> None:
    client = bound_client()
    client.send(ENABLE)
    client.stream.sm_enabled(None)
    assert only(client, "enabled").attrs == {}


def test_enable_twice_fails_and_the_stream_goes_on() -> None:
    client = managed()
    assert client.send(ENABLE) == []
    assert failure(only(client, "failed")) == ("unexpected-request", None)
    assert client.send(R) == [AckRequested(0)]


def test_resume_once_bound_fails() -> None:
    for client in (bound_client(), managed()):
        assert client.send(f"<resume xmlns='{SM}' previd='x' h='0'/>") == []
        assert failure(only(client, "failed")) == ("unexpected-request", None)


@pytest.mark.parametrize("element", [R, f"<a xmlns='{SM}' h='0'/>"])
def test_acks_before_enable_end_the_stream(element: str) -> None:
    client = bound_client()
    events = client.send(element)
    assert closed_with(events, StreamCondition.UNSUPPORTED_STANZA_TYPE)


# --- counting ---------------------------------------------------------------------------------


def test_only_stanzas_are_counted_from_enable_on() -> None:
    client = bound_client()
    client.send(MESSAGE + "<presence/>")  # before <enable/>: not counted
    client.send(ENABLE)
    client.stream.sm_enabled(None)
    events = client.send(R + MESSAGE + "<presence/>" + R + f"<a xmlns='{SM}' h='0'/>" + R)
    requests = [event for event in events if isinstance(event, AckRequested)]
    assert requests == [AckRequested(0), AckRequested(2), AckRequested(2)]
    assert client.stream.sm_handled == 2


def test_stanzas_the_stream_answers_itself_count_and_are_handed_over() -> None:
    client = managed()
    events = client.send(
        "<message to='not a jid@@'/>"  # bounced by the stream: jid-malformed
        f"<iq type='set' id='s1'><session xmlns='{ns.SESSION}'/></iq>" + R  # answered by it
    )
    assert events == [AckRequested(2)]
    sent = [parse_stanza(data.decode()) for data in client.stream.take_stanzas_sent()]
    assert [(stanza.tag, stanza.get("type")) for stanza in sent] == [
        ("message", "error"),
        ("iq", "result"),
    ]
    assert client.stream.take_stanzas_sent() == []


def test_nothing_is_handed_over_without_stream_management() -> None:
    client = bound_client()
    client.send("<message to='not a jid@@'/>")
    assert client.stream.take_stanzas_sent() == []


def test_the_count_wraps_at_two_to_the_32() -> None:
    client = managed(handled=MASK - 1)
    assert client.send(R) == [AckRequested(MASK - 1)]
    events = client.send(MESSAGE + R + MESSAGE + MESSAGE + R)
    requests = [event for event in events if isinstance(event, AckRequested)]
    assert requests == [AckRequested(MASK), AckRequested(1)]


@pytest.mark.parametrize("h", ["0", "7", str(MASK)])
def test_an_ack_is_handed_to_the_driver(h: str) -> None:
    client = managed()
    assert client.send(f"<a xmlns='{SM}' h='{h}'/>") == [Acked(int(h))]


@pytest.mark.parametrize("attrs", ["", " h='-1'", " h='x'", f" h='{MASK + 1}'", " h='٣'"])
def test_an_ack_without_a_count_ends_the_stream(attrs: str) -> None:
    client = managed()
    events = client.send(f"<a xmlns='{SM}'{attrs}/>")
    assert closed_with(events, StreamCondition.BAD_FORMAT)


# --- <r/> and <a/> read without the parser -------------------------------------------------
# Their usual spellings (sm.SHORT_FORM) are read from the bytes where they end a read and
# stand between top-level elements; every other spelling, and every other place, goes
# through the parser. Both must give the same events.

A = f"<a xmlns='{SM}' h='%s'/>"
REQUESTS = [
    R,
    f'<r xmlns="{SM}" />',  # as slixmpp writes it
    f"<r\n\txmlns='{SM}'\r\n/>",
    f"<r xmlns='{SM}'></r>",  # parsed
    f"<sm:r xmlns:sm='{SM}'/>",  # parsed
    f"<r xmlns = '{SM}'/>",  # parsed
    f"<r xmlns='{SM}' id='x'/>",  # parsed
]
ACKS = [
    A,
    f'<a xmlns="{SM}" h="%s" />',
    f"<a xmlns='{SM}'\n h='%s'/>",
    f"<a h='%s' xmlns='{SM}'/>",  # parsed
    f"<a xmlns='{SM}' h='%s'></a>",  # parsed
    f"<sm:a xmlns:sm='{SM}' h='%s'/>",  # parsed
]


def described(events: list[Event]) -> list[tuple[str, object]]:
    return [
        (
            type(event).__name__,
            event.stanza.encoded() if isinstance(event, StanzaReceived) else event,
        )
        for event in events
    ]


@pytest.mark.parametrize("request_", REQUESTS)
def test_every_spelling_of_a_request_counts_the_stanzas_before_it(request_: str) -> None:
    events = managed().send(MESSAGE + request_ + "<presence/>" + MESSAGE + request_ + request_)
    assert [type(event) for event in events] == [
        StanzaReceived,
        AckRequested,
        StanzaReceived,
        StanzaReceived,
        AckRequested,
        AckRequested,
    ]
    requests = [event for event in events if isinstance(event, AckRequested)]
    assert requests == [AckRequested(1), AckRequested(3), AckRequested(3)]


@pytest.mark.parametrize("ack_", ACKS)
@pytest.mark.parametrize(("h", "handled"), [("0", 0), ("0042", 42), (str(MASK), MASK)])
def test_every_spelling_of_an_ack_is_handed_over(ack_: str, h: str, handled: int) -> None:
    events = managed().send(MESSAGE + ack_ % h + MESSAGE)
    assert [type(event) for event in events] == [StanzaReceived, Acked, StanzaReceived]
    assert events[1] == Acked(handled)


@pytest.mark.parametrize("ack_", ACKS)
@pytest.mark.parametrize("h", [str(MASK + 1), "99999999999", "", "-1", "4e3"])
def test_every_spelling_of_an_ack_without_a_count_ends_the_stream(ack_: str, h: str) -> None:
    client = managed()
    events = client.send(MESSAGE + ack_ % h + R + MESSAGE)
    assert isinstance(events[0], StanzaReceived)  # what came before is handled
    assert closed_with(events[1:], StreamCondition.BAD_FORMAT)  # and nothing after
    assert len(events) == 2
    assert client.stream.state is State.CLOSED


def test_a_request_inside_a_stanza_is_its_payload_not_a_request() -> None:
    client = managed()
    for stanza in (
        f"<message to='romeo@{DOMAIN}'>{R}</message>",
        f"<message to='romeo@{DOMAIN}'><body><![CDATA[{R}{A % 9}]]></body></message>",
    ):
        (event,) = client.send(stanza)
        assert isinstance(event, StanzaReceived)
    assert event.stanza.find("body") is not None
    assert event.stanza.find("body").text == R + A % 9  # type: ignore[union-attr]
    assert client.send(R) == [AckRequested(2)]


def test_a_request_after_text_outside_a_stanza_is_not_read_first() -> None:
    client = managed()
    events = client.send(MESSAGE + "text" + R)
    assert isinstance(events[0], StanzaReceived)
    assert closed_with(events[1:], StreamCondition.BAD_FORMAT)


def test_a_request_in_an_unfinished_tag_is_not_well_formed() -> None:
    client = managed()
    events = client.send(f"<message to='romeo@{DOMAIN}' id='{R}'/>")
    assert closed_with(events, StreamCondition.NOT_WELL_FORMED)


def test_requests_and_acks_read_in_any_chunks_give_the_same_events() -> None:
    data = MESSAGE + R + "\n " + A % 0 + "<presence/>" + f'<r xmlns="{SM}" />' + MESSAGE + R
    whole = described(managed().send(data))
    assert [name for name, _ in whole].count("AckRequested") == 3
    for cut in range(1, len(data)):
        client = managed()
        assert described(client.send(data[:cut]) + client.send(data[cut:])) == whole, cut
    client = managed()
    one_by_one = [event for byte in data.encode() for event in client.send(bytes([byte]))]
    assert described(one_by_one) == whole


def test_the_usual_spellings_that_end_a_read_are_not_given_to_the_parser(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    client = managed()
    fed: list[bytes] = []
    feed = XMLStreamParser.feed

    def recording(parser: XMLStreamParser, data: bytes) -> list[Parsed]:
        fed.append(data)
        return feed(parser, data)

    monkeypatch.setattr(XMLStreamParser, "feed", recording)
    spelled_out = f"<r xmlns='{SM}'></r>"
    reads = [MESSAGE + R, R + MESSAGE + R + A % 0 + "\n" + R, spelled_out, A % 0]
    events = [event for data in reads for event in client.send(data)]
    assert [type(event) for event in events] == [
        StanzaReceived,
        AckRequested,
        AckRequested,  # in mid-read: parsed
        StanzaReceived,
        AckRequested,
        Acked,
        AckRequested,
        AckRequested,  # spelled out: parsed
        Acked,
    ]
    assert fed == [MESSAGE.encode(), (R + MESSAGE).encode(), spelled_out.encode()]


def test_a_usual_spelling_inside_an_unfinished_stanza_is_its_child() -> None:
    client = managed()
    assert client.send(f"<message to='romeo@{DOMAIN}'>" + R) == []
    (event,) = client.send("</message>" + R)[:1]
    assert isinstance(event, StanzaReceived)
    assert event.stanza.find("r", SM) is not None
    assert client.send(A % 0) == [Acked(0)]


def test_a_spelled_out_request_is_read_to_its_end_tag() -> None:
    client = managed()
    assert client.send(f"<r xmlns='{SM}'></r  >" + MESSAGE)[0] == AckRequested(0)
    assert client.send(R) == [AckRequested(1)]  # read without the parser: it was at rest


def test_a_request_after_the_parser_was_released_needs_none() -> None:
    client = managed()
    client.send(MESSAGE)
    assert client.stream.release_parser()
    assert client.send(R) == [AckRequested(1)]
    assert client.send(MESSAGE + R)[-1] == AckRequested(2)


def test_the_answer_to_a_request_is_the_drivers() -> None:
    """The stream reports the request; <a/> goes out when the driver has dispatched what
    came before it (c2s.py), so the stream itself writes nothing."""
    client = managed()
    assert client.send(MESSAGE + R)[-1] == AckRequested(1)
    assert client.stream.data_to_send() == b""


# --- resumption ---------------------------------------------------------------------------------


def test_resume_asks_the_driver_and_resumed_binds_the_stream() -> None:
    client = authenticated_client()
    events = client.send(f"<resume xmlns='{SM}' previd='sm-9' h='41'/>" + MESSAGE)
    assert events == [ResumeRequested("sm-9", 41)]
    events = client.stream.sm_resumed("sm-9", 5, FULL_JID)
    (received,) = events
    assert isinstance(received, StanzaReceived)
    assert received.stanza.get("from") == str(FULL_JID)
    assert b"from=" in received.stanza.encoded()
    resumed = only(client, "resumed")
    assert resumed.attrs == {"previd": "sm-9", "h": "5"}
    assert client.stream.state is State.MANAGED and client.stream.jid == FULL_JID
    assert client.stream.auth_deadline is None
    assert client.send(R) == [AckRequested(6)]


def test_a_failed_resumption_says_so_and_lets_the_client_bind() -> None:
    client = authenticated_client()
    client.send(f"<resume xmlns='{SM}' previd='gone' h='3'/>")
    client.stream.sm_resume_failed(handled=12)
    assert failure(only(client, "failed")) == ("item-not-found", "12")
    assert client.stream.state is State.AUTHENTICATED
    client.bind()


def test_an_unknown_session_fails_without_a_count() -> None:
    client = authenticated_client()
    client.send(f"<resume xmlns='{SM}' previd='gone' h='3'/>")
    client.stream.sm_resume_failed()
    assert failure(only(client, "failed")) == ("item-not-found", None)


@pytest.mark.parametrize("attrs", ["h='1'", "previd='x'", "previd='' h='1'", "previd='x' h='no'"])
def test_a_resume_without_previd_and_h_is_a_bad_request(attrs: str) -> None:
    client = authenticated_client()
    assert client.send(f"<resume xmlns='{SM}' {attrs}/>") == []
    assert failure(only(client, "failed")) == ("bad-request", None)
    assert client.stream.state is State.AUTHENTICATED


def test_the_resumed_answer_binds_nothing_when_not_asked() -> None:
    client = bound_client()
    events = client.stream.sm_resumed("sm-1", 0, FULL_JID)
    assert closed_with(events, StreamCondition.INTERNAL_SERVER_ERROR)


# --- wire helpers ---------------------------------------------------------------------------


def test_counts_parse_as_unsigned_32_bit_integers() -> None:
    assert [parse_count(text) for text in ("0", "42", str(MASK))] == [0, 42, MASK]
    assert [parse_count(text) for text in (None, "", "+1", "1.0", str(MASK + 1))] == [None] * 5
    assert ack(7) == f"<a xmlns='{SM}' h='7'/>".encode()


def test_too_high_a_count_is_undefined_condition_with_both_counts() -> None:
    error = HandledCountTooHigh(10, 8)
    assert error.condition is StreamCondition.UNDEFINED_CONDITION
    element = error.to_element()
    detail = element.find("handled-count-too-high", SM)
    assert detail is not None and detail.attrs == {"h": "10", "send-count": "8"}
    assert element.find("undefined-condition", ns.STREAM_ERRORS) is element.first_element()
