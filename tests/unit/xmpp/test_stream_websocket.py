"""ServerStream in websocket framing (RFC 7395): one element per message in and out,
<open/> and <close/> in place of the stream's tags, every message a document of its
own; everything after the header goes through the same states and handlers as TCP."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass

import pytest
from xmpp_helpers import DOMAIN, b64, closed_with, plain_auth, sasl_condition

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.events import (
    Acked,
    AckRequested,
    AuthRequested,
    BindRequested,
    EnableRequested,
    Event,
    StanzaReceived,
    StreamClosed,
)
from chinwag.xmpp.jid import JID
from chinwag.xmpp.sm import MASK
from chinwag.xmpp.states import State
from chinwag.xmpp.stream import ServerStream, StreamConfig
from chinwag.xmpp.xml import XMLFrameParser

OPEN = f"<open xmlns='{ns.FRAMING}' to='{DOMAIN}' version='1.0'/>"
CLOSE = f"<close xmlns='{ns.FRAMING}'/>"
BIND = f"<iq type='set' id='b1'><bind xmlns='{ns.BIND}'><resource>web</resource></bind></iq>"
FULL_JID = JID.parse(f"juliet@{DOMAIN}/web")


def q(namespace: str, tag: str) -> str:
    return f"{{{namespace}}}{tag}"


@dataclass
class Frame:
    raw: bytes
    tree: ET.Element
    """Parsed on its own, with nothing declared around it: a message is a whole document."""

    @property
    def tag(self) -> str:
        return self.tree.tag


class WSClient:
    """Drives one websocket-framed ServerStream, one message at a time."""

    def __init__(self, config: StreamConfig | None = None, *, secure: bool = True) -> None:
        self.stream = ServerStream(
            config or StreamConfig(DOMAIN), 0.0, secure=secure, framing="websocket"
        )

    def send(self, message: str | bytes, now: float = 0.0) -> list[Event]:
        data = message.encode() if isinstance(message, str) else message
        return self.stream.receive_frame(data, now)

    def read(self) -> list[Frame]:
        return [Frame(raw, ET.fromstring(raw)) for raw in self.stream.frames_to_send()]

    def open(self) -> list[Frame]:
        assert self.send(OPEN) == []
        frames = self.read()
        assert [frame.tag for frame in frames] == [
            q(ns.FRAMING, "open"),
            q(ns.STREAMS, "features"),
        ], frames
        return frames

    def authenticate(self) -> list[Frame]:
        events = self.send(plain_auth())
        assert len(events) == 1 and isinstance(events[0], AuthRequested), events
        assert self.stream.sasl_success("juliet") == []
        assert [frame.tag for frame in self.read()] == [q(ns.SASL, "success")]
        return self.open()

    def bind(self) -> None:
        assert self.send(BIND) == [BindRequested("b1", "web")]
        self.stream.bind_result("b1", FULL_JID)
        (result,) = self.read()
        assert result.tag == q(ns.CLIENT, "iq") and result.tree.get("type") == "result"


def bound() -> WSClient:
    client = WSClient()
    client.open()
    client.authenticate()
    client.bind()
    return client


def assert_closed_with(client: WSClient, events: list[Event], condition: StreamCondition) -> None:
    """A stream error, as a message of its own, then <close/> (RFC 7395 3.6, 3.7)."""
    assert closed_with(events, condition), events
    frames = client.read()
    error, close = frames[-2:]
    assert error.tag == q(ns.STREAMS, "error"), frames
    assert error.tree[0].tag == q(ns.STREAM_ERRORS, condition.value), error.raw
    assert close.tag == q(ns.FRAMING, "close") and len(close.tree) == 0
    assert client.stream.state is State.CLOSED


# --- opening, features, negotiation ---------------------------------------------------------


def test_open_is_answered_with_open_then_features_each_a_document_of_its_own():
    client = WSClient(StreamConfig(DOMAIN, tls_available=True))
    opened, features = client.open()
    assert opened.tree.attrib == {
        "id": client.stream.stream_id,
        "from": DOMAIN,
        "version": "1.0",
        q(ns.XML, "lang"): "en",
    }
    assert len(opened.tree) == 0
    assert b"xmlns:stream='http://etherx.jabber.org/streams'" in features.raw
    mechanisms = features.tree.find(q(ns.SASL, "mechanisms"))
    assert mechanisms is not None
    assert [m.text for m in mechanisms] == ["SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN"]


def test_starttls_is_never_offered_nor_accepted_over_websocket():
    client = WSClient(StreamConfig(DOMAIN, tls_available=True), secure=False)
    _, features = client.open()
    assert features.tree.find(q(ns.TLS, "starttls")) is None
    events = client.send(f"<starttls xmlns='{ns.TLS}'/>")
    assert_closed_with(client, events, StreamCondition.UNSUPPORTED_STANZA_TYPE)


def test_an_insecure_websocket_gets_no_sasl_when_tls_is_required():
    client = WSClient(StreamConfig(DOMAIN, tls_available=True, tls_required=True), secure=False)
    _, features = client.open()
    assert len(features.tree) == 0
    assert client.send(plain_auth()) == []
    (failure,) = client.read()
    condition = sasl_condition(XMLFrameParser(1 << 20).feed_frame(failure.raw) or Element("x"))
    assert condition == "encryption-required"


def test_insecure_websocket_may_authenticate_when_tls_is_not_required():
    client = WSClient(StreamConfig(DOMAIN, tls_required=False), secure=False)
    client.open()
    client.authenticate()


def test_sasl_restart_and_bind_over_the_same_handlers_as_tcp():
    client = WSClient()
    client.open()
    _, features = client.authenticate()
    assert features.tree.find(q(ns.BIND, "bind")) is not None
    client.bind()
    assert client.stream.state is State.BOUND
    assert client.stream.jid == FULL_JID


def test_sasl_challenges_are_messages_of_their_own():
    client = WSClient()
    client.open()
    events = client.send(f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-1'>{b64(b'n,,n=j')}</auth>")
    assert events == [AuthRequested("SCRAM-SHA-1", b"n,,n=j")]
    client.stream.sasl_challenge(b"r=abc")
    (challenge,) = client.read()
    assert challenge.tag == q(ns.SASL, "challenge") and challenge.tree.text == b64(b"r=abc")


# --- stanzas ------------------------------------------------------------------------------


@pytest.mark.parametrize("xmlns", ["", f" xmlns='{ns.CLIENT}'"])
def test_stanzas_are_jabber_client_whether_or_not_the_message_declares_it(xmlns: str):
    client = bound()
    events = client.send(f"<message{xmlns} to='romeo@{DOMAIN}'><body>hi</body></message>")
    (event,) = events
    assert isinstance(event, StanzaReceived)
    assert event.stanza.ns == ns.CLIENT and event.stanza.find("body") is not None
    assert event.stanza.attrs["from"] == str(FULL_JID)
    assert event.to == JID.parse(f"romeo@{DOMAIN}")


def test_what_the_stream_writes_declares_jabber_client():
    client = bound()
    assert client.stream.stanza_parent_ns == ""
    session = f"<iq type='get' id='s1'><session xmlns='{ns.SESSION}'/></iq>"
    assert client.send(session) == []
    (reply,) = client.read()
    assert reply.tag == q(ns.CLIENT, "iq") and reply.tree.get("type") == "result"
    assert client.send("<message to='not a jid@@'/>") == []
    (bounce,) = client.read()
    assert bounce.tag == q(ns.CLIENT, "message") and bounce.tree.get("type") == "error"


def test_namespace_prefixes_do_not_leak_from_one_message_into_the_next():
    client = bound()
    (event,) = client.send("<message xmlns:x='urn:example'><x:thing/></message>")
    assert isinstance(event, StanzaReceived)
    assert event.stanza.children[0] == Element("thing", "urn:example")
    events = client.send("<message><x:thing/></message>")
    assert_closed_with(client, events, StreamCondition.BAD_NAMESPACE_PREFIX)


def test_an_xml_declaration_may_start_a_message_and_whitespace_around_is_ignored():
    client = WSClient()
    assert client.send(f"<?xml version='1.0' encoding='UTF-8'?>\n{OPEN}\n") == []
    assert len(client.read()) == 2
    assert client.send("  \n") == []
    assert client.send("") == []
    assert client.read() == []
    assert client.stream.state is State.NEGOTIATING


# --- closing --------------------------------------------------------------------------------


def test_close_from_the_client_is_answered_with_close():
    client = bound()
    events = client.send(CLOSE)
    assert events == [StreamClosed(None)]
    (close,) = client.read()
    assert close.raw == CLOSE.encode()
    assert client.send("<message/>") == []


def test_close_from_the_server_sends_the_error_then_close():
    client = bound()
    client.stream.close(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "bye"))
    frames = client.read()
    assert [frame.tag for frame in frames] == [q(ns.STREAMS, "error"), q(ns.FRAMING, "close")]
    text = frames[0].tree.find(q(ns.STREAM_ERRORS, "text"))
    assert text is not None and text.text == "bye"


def test_auth_timeout_closes_with_connection_timeout():
    client = WSClient(StreamConfig(DOMAIN, auth_timeout=5.0))
    client.open()
    assert client.stream.get_timer() == 5.0
    events = client.stream.handle_timer(5.0)
    assert_closed_with(client, events, StreamCondition.CONNECTION_TIMEOUT)


# --- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "condition"),
    [
        ("<message/><message/>", StreamCondition.NOT_WELL_FORMED),
        ("<message><body>half", StreamCondition.NOT_WELL_FORMED),
        ("</message>", StreamCondition.NOT_WELL_FORMED),
        ("hello", StreamCondition.NOT_WELL_FORMED),
        ("<message/>trailing", StreamCondition.NOT_WELL_FORMED),
        ("<message/><message", StreamCondition.NOT_WELL_FORMED),
        ("<message/><a b='>", StreamCondition.NOT_WELL_FORMED),
        ("<message/><!--", StreamCondition.NOT_WELL_FORMED),
        ("<message/><![CDATA[", StreamCondition.NOT_WELL_FORMED),
        ("<message/>&amp;", StreamCondition.NOT_WELL_FORMED),
        ("<message", StreamCondition.NOT_WELL_FORMED),
        ("</stream>", StreamCondition.NOT_WELL_FORMED),
        ("{'json': true}", StreamCondition.NOT_WELL_FORMED),
        ("<message><!-- hi --></message>", StreamCondition.RESTRICTED_XML),
        ("<message>&ent;</message>", StreamCondition.RESTRICTED_XML),
        ("<?xml-stylesheet href='x'?><message/>", StreamCondition.RESTRICTED_XML),
        (
            "<?xml version='1.0' encoding='ISO-8859-1'?><message/>",
            StreamCondition.UNSUPPORTED_ENCODING,
        ),
    ],
)
def test_a_message_that_is_not_one_whole_element_ends_the_stream(
    message: str, condition: StreamCondition
):
    client = bound()
    events = client.send(message)
    assert_closed_with(client, events, condition)
    assert client.send("<message/>") == []  # a closed stream takes nothing more


@pytest.mark.parametrize(
    "message",
    ["hello", "<message/><message/>", "<open xmlns='urn:ietf:params:xml:ns:xmpp-framing'"],
)
def test_bad_first_message_is_answered_with_open_error_close(message: str):
    """RFC 7395 3.7: an error while opening comes after the server's own <open/>."""
    client = WSClient()
    events = client.send(message)
    assert closed_with(events, StreamCondition.NOT_WELL_FORMED), events
    assert [frame.tag for frame in client.read()] == [
        q(ns.FRAMING, "open"),
        q(ns.STREAMS, "error"),
        q(ns.FRAMING, "close"),
    ]


@pytest.mark.parametrize(
    ("first", "condition"),
    [
        ("<message/>", StreamCondition.INVALID_NAMESPACE),
        (
            f"<stream:stream xmlns:stream='{ns.STREAMS}' to='{DOMAIN}' version='1.0'/>",
            StreamCondition.INVALID_NAMESPACE,
        ),
        (
            f"<open xmlns='{ns.FRAMING}' to='elsewhere.example' version='1.0'/>",
            StreamCondition.HOST_UNKNOWN,
        ),
        (f"<open xmlns='{ns.FRAMING}' version='1.0'/>", StreamCondition.HOST_UNKNOWN),
        (
            f"<open xmlns='{ns.FRAMING}' to='{DOMAIN}' version='2.0'/>",
            StreamCondition.UNSUPPORTED_VERSION,
        ),
        (f"<open xmlns='{ns.FRAMING}' to='{DOMAIN}'/>", StreamCondition.UNSUPPORTED_VERSION),
    ],
)
def test_the_stream_must_open_with_a_valid_open(first: str, condition: StreamCondition):
    client = WSClient()
    events = client.send(first)
    assert_closed_with(client, events, condition)


def test_a_second_open_without_a_restart_is_bad_format():
    client = WSClient()
    client.open()
    assert_closed_with(client, client.send(OPEN), StreamCondition.BAD_FORMAT)


def test_a_message_over_the_stanza_limit_is_a_policy_violation():
    client = WSClient(StreamConfig(DOMAIN, max_stanza_bytes=1024))
    client.open()
    events = client.send(f"<message><body>{'x' * 1100}</body></message>")
    assert_closed_with(client, events, StreamCondition.POLICY_VIOLATION)


def test_a_message_just_under_the_limit_is_fine():
    client = WSClient(StreamConfig(DOMAIN, max_stanza_bytes=1024, tls_required=False))
    client.open()
    client.authenticate()
    client.bind()
    body = "x" * (1024 - len("<message><body></body></message>"))
    (event,) = client.send(f"<message><body>{body}</body></message>")
    assert isinstance(event, StanzaReceived)


def test_tcp_framing_is_unchanged_by_the_websocket_mode():
    stream = ServerStream(StreamConfig(DOMAIN), 0.0, secure=True)
    assert stream.framing == "tcp" and stream.stanza_parent_ns == ns.CLIENT
    with pytest.raises(TypeError):
        stream.receive_frame(OPEN.encode(), 0.0)


# --- the frame parser on its own ------------------------------------------------------------


def test_frame_parser_returns_each_element_and_keeps_going():
    parser = XMLFrameParser(4096)
    for index in range(100):
        element = parser.feed_frame(f"<message id='{index}'><body>b</body></message>".encode())
        assert element is not None and element.attrs["id"] == str(index)
        assert parser.between_elements()


def test_frame_parser_refuses_anything_after_a_failure():
    parser = XMLFrameParser(4096)
    with pytest.raises(StreamError):
        parser.feed_frame(b"<a/><b/>")
    with pytest.raises(StreamError):
        parser.feed_frame(b"<a/>")


# --- XEP-0198 requests and acknowledgements, one message each ------------------------------


@pytest.mark.parametrize(
    ("request_", "ack"),
    [
        (f'<r xmlns="{ns.SM}"/>', f"<a xmlns='{ns.SM}' h='%d'/>"),  # read without the parser
        (f"<r xmlns='{ns.SM}'></r>", f"<a h='%d' xmlns='{ns.SM}'></a>"),  # parsed
    ],
)
def test_stream_management_requests_and_acks_are_messages(request_: str, ack: str) -> None:
    client = bound()
    assert client.send(f"<enable xmlns='{ns.SM}'/>") == [EnableRequested(False, None)]
    client.stream.sm_enabled(None)
    client.read()
    (received,) = client.send(f"<message to='romeo@{DOMAIN}'/>")
    assert isinstance(received, StanzaReceived)
    assert client.send(request_) == [AckRequested(1)]
    assert client.send(ack % MASK) == [Acked(MASK)]
    assert client.read() == []
    assert_closed_with(client, client.send(ack % (MASK + 1)), StreamCondition.BAD_FORMAT)
