"""ServerStream, the RFC 6120 client-to-server stream: bytes in, events and bytes
out. Every stream-level rule the server enforces: header checks, features,
STARTTLS, SASL, resource binding, stanza checks once bound, closing, timers
and bad XML."""

from __future__ import annotations

import pytest
from xmpp_helpers import (
    CLOSE,
    DOMAIN,
    FULL_JID,
    Client,
    Output,
    authenticated_client,
    b64,
    bind_request,
    bound_client,
    closed_with,
    header,
    open_client,
    plain_auth,
    sasl_condition,
    stanza_error_condition,
)

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError, StreamCondition, StreamError
from chinwag.xmpp.events import (
    AuthAborted,
    AuthMalformed,
    AuthRequested,
    AuthResponse,
    BindRequested,
    StanzaReceived,
    StartTLSRequested,
    StreamClosed,
)
from chinwag.xmpp.jid import JID
from chinwag.xmpp.sasl import SaslCondition
from chinwag.xmpp.stream import ServerStream, StreamConfig
from chinwag.xmpp.xml import StreamEnd, StreamHeader

STARTTLS = f"<starttls xmlns='{ns.TLS}'/>".encode()
ABORT = f"<abort xmlns='{ns.SASL}'/>".encode()


def auth(mechanism: str, payload: str = "") -> bytes:
    return f"<auth xmlns='{ns.SASL}' mechanism='{mechanism}'>{payload}</auth>".encode()


def response(payload: str) -> bytes:
    return f"<response xmlns='{ns.SASL}'>{payload}</response>".encode()


def assert_stream_error(client: Client, events: list, condition: StreamCondition) -> Output:
    """The stream ended with exactly one StreamClosed(condition) and sent the error, then closed."""
    assert closed_with(events, condition), events
    output = client.read()
    assert output.stream_error == condition.value, output
    assert output.raw.endswith(CLOSE)
    assert output.ended
    errors = [e for e in output.elements if e.tag == "error" and e.ns == ns.STREAMS]
    assert len(errors) == 1
    assert output.raw.index(b"<stream:error>") < output.raw.index(CLOSE)
    return output


def features_of(output: Output) -> Element:
    assert output.features is not None, output
    return output.features


def mechanisms_of(features: Element) -> list[str] | None:
    mechanisms = features.find("mechanisms", ns.SASL)
    if mechanisms is None:
        return None
    return [m.text for m in mechanisms.find_all("mechanism")]


# --- the stream header ------------------------------------------------------------------


def test_header_is_answered_with_our_header_and_features() -> None:
    client = Client()
    assert client.send(header()) == []
    output = client.read()
    assert output.raw.startswith(b"<?xml version='1.0'?><stream:stream ")
    [ours] = output.headers
    assert (ours.ns, ours.tag, ours.default_ns) == (ns.STREAMS, "stream", ns.CLIENT)
    assert ours.attrs["from"] == DOMAIN
    assert ours.attrs["version"] == "1.0"
    assert ours.attrs["id"] == client.stream.stream_id != ""
    assert "to" not in ours.attrs
    assert isinstance(output.items[0], StreamHeader)
    assert output.items[1] is output.features
    assert not output.ended


def test_header_split_into_single_bytes() -> None:
    client = Client()
    data = header()
    for i in range(len(data) - 1):
        assert client.send(data[i : i + 1]) == []
        assert client.read().raw == b""
    assert client.send(data[-1:]) == []
    assert client.read().features is not None


def test_stream_ids_are_unpredictable_and_fresh_on_restart() -> None:
    one, two = Client(secure=True), Client(secure=True)
    first = one.open().headers[0].attrs["id"]
    assert first != two.open().headers[0].attrs["id"]
    after_auth = one.authenticate().headers[0].attrs["id"]
    assert after_auth != first
    assert len(first) >= 16


def test_header_to_is_compared_after_preparation() -> None:
    client = Client()
    client.open(header(to="EXAMPLE.COM"))


def test_header_with_a_newer_minor_version_is_accepted() -> None:
    client = Client()
    client.open(header(version="1.5"))


@pytest.mark.parametrize(
    ("data", "condition"),
    [
        (header(to=None), StreamCondition.HOST_UNKNOWN),
        (header(to="example.org"), StreamCondition.HOST_UNKNOWN),
        (header(to="juliet@example.com"), StreamCondition.HOST_UNKNOWN),
        (header(to="exa mple.com"), StreamCondition.HOST_UNKNOWN),
        (header(stream_ns="urn:wrong"), StreamCondition.INVALID_NAMESPACE),
        (header(content_ns=ns.SERVER), StreamCondition.INVALID_NAMESPACE),
        (header(content_ns=None), StreamCondition.INVALID_NAMESPACE),
        (header(version=None), StreamCondition.UNSUPPORTED_VERSION),
        (header(version="2.0"), StreamCondition.UNSUPPORTED_VERSION),
        (header(version="0.9"), StreamCondition.UNSUPPORTED_VERSION),
    ],
    ids=[
        "no-to",
        "other-domain",
        "to-is-a-user",
        "to-malformed",
        "root-namespace",
        "jabber-server",
        "no-content-namespace",
        "no-version",
        "version-2",
        "version-0.9",
    ],
)
def test_bad_header(data: bytes, condition: StreamCondition) -> None:
    client = Client()
    events = client.send(data)
    output = assert_stream_error(client, events, condition)
    # Our own header comes first (RFC 6120 4.9.1.3), and no features are offered.
    [ours] = output.headers
    assert isinstance(output.items[0], StreamHeader)
    assert ours.attrs["from"] == DOMAIN
    assert output.features is None
    assert [type(item) for item in output.items] == [StreamHeader, Element, StreamEnd]


def test_wrong_root_element_is_refused() -> None:
    client = Client()
    events = client.send(b"<message xmlns='jabber:client' to='example.com' version='1.0'>")
    assert closed_with(events, StreamCondition.INVALID_NAMESPACE)


def test_stream_error_text_is_included() -> None:
    client = Client()
    client.send(header(to="example.org"))
    error = client.read().find("error", ns.STREAMS)
    assert error is not None
    text = error.find("text", ns.STREAM_ERRORS)
    assert text is not None and text.text


# --- features ------------------------------------------------------------------------------


def test_tls_required_and_not_secure_offers_only_starttls() -> None:
    client = Client(StreamConfig(DOMAIN, tls_required=True), secure=False)
    features = features_of(client.open())
    starttls = features.find("starttls", ns.TLS)
    assert starttls is not None
    assert starttls.find("required", ns.TLS) is not None
    assert mechanisms_of(features) is None
    assert [child.tag for child in features.elements()] == ["starttls"]


def test_secure_stream_offers_mechanisms_only() -> None:
    config = StreamConfig(DOMAIN, mechanisms=("SCRAM-SHA-256", "PLAIN"))
    features = features_of(Client(config, secure=True).open())
    assert features.find("starttls", ns.TLS) is None
    assert mechanisms_of(features) == ["SCRAM-SHA-256", "PLAIN"]


def test_tls_optional_offers_starttls_and_mechanisms() -> None:
    client = Client(StreamConfig(DOMAIN, tls_required=False), secure=False)
    features = features_of(client.open())
    starttls = features.find("starttls", ns.TLS)
    assert starttls is not None and starttls.find("required", ns.TLS) is None
    assert mechanisms_of(features) == list(StreamConfig(DOMAIN).mechanisms)


def test_tls_unavailable_offers_no_starttls() -> None:
    client = Client(StreamConfig(DOMAIN, tls_available=False, tls_required=False))
    features = features_of(client.open())
    assert features.find("starttls", ns.TLS) is None
    assert mechanisms_of(features) is not None


def test_features_after_authentication_are_bind_and_optional_session() -> None:
    client = open_client()
    features = features_of(client.authenticate())
    bind = features.find("bind", ns.BIND)
    session = features.find("session", ns.SESSION)
    assert bind is not None
    assert session is not None and session.find("optional", ns.SESSION) is not None
    assert mechanisms_of(features) is None
    assert features.find("starttls", ns.TLS) is None


# --- STARTTLS -------------------------------------------------------------------------------------


def test_starttls_proceeds_and_asks_the_driver() -> None:
    client = Client()
    client.open()
    assert client.send(STARTTLS) == [StartTLSRequested()]
    output = client.read()
    assert output.raw == f"<proceed xmlns='{ns.TLS}'/>".encode()


def test_after_tls_the_client_restarts_and_gets_mechanisms() -> None:
    client = Client()
    client.open()
    features = features_of(client.starttls())
    assert client.stream.secure
    assert features.find("starttls", ns.TLS) is None
    assert mechanisms_of(features) is not None


def test_nothing_is_sent_until_the_restart_header() -> None:
    client = Client()
    client.open()
    client.send(STARTTLS)
    client.read()
    assert client.stream.tls_established() == []
    assert client.read().raw == b""


def test_starttls_injection_is_discarded() -> None:
    """Plaintext that followed <starttls/> in the same read must not be processed after TLS."""
    client = Client(StreamConfig(DOMAIN, tls_required=False))
    client.open()
    injected = plain_auth() + b"<message to='romeo@example.com'><body>x</body></message>"
    assert client.send(STARTTLS + injected) == [StartTLSRequested()]
    client.read()
    assert client.stream.tls_established() == []
    assert client.read().raw == b""
    features = features_of(client.open())
    assert mechanisms_of(features) is not None, "a fresh negotiation, not the injected auth"


def test_plaintext_received_during_the_handshake_is_discarded() -> None:
    client = Client()
    client.open()
    client.send(STARTTLS)
    assert client.send(plain_auth()) == []
    assert client.send(b"<presence/>") == []
    client.read()
    assert client.stream.tls_established() == []
    assert client.read().raw == b""
    client.open()


def test_starttls_on_a_secure_stream_is_refused() -> None:
    client = open_client(secure=True)
    events = client.send(STARTTLS)
    assert len(events) == 1 and isinstance(events[0], StreamClosed)
    assert events[0].error is not None
    output = client.read()
    assert output.find("proceed", ns.TLS) is None
    assert output.ended


def test_starttls_when_tls_is_unavailable_is_refused() -> None:
    client = Client(StreamConfig(DOMAIN, tls_available=False, tls_required=False))
    client.open()
    events = client.send(STARTTLS)
    assert len(events) == 1 and isinstance(events[0], StreamClosed)
    assert client.read().find("proceed", ns.TLS) is None


# --- SASL ---------------------------------------------------------------------------------------


def failure_condition(client: Client) -> str:
    output = client.read()
    [failure] = output.elements
    return sasl_condition(failure)


def test_auth_with_initial_response() -> None:
    client = open_client()
    events = client.send(plain_auth("juliet", "pw"))
    assert events == [AuthRequested("PLAIN", b"\0juliet\0pw")]
    assert client.read().raw == b""


def test_auth_without_initial_response() -> None:
    client = open_client()
    assert client.send(auth("SCRAM-SHA-1")) == [AuthRequested("SCRAM-SHA-1", None)]


def test_auth_with_empty_initial_response() -> None:
    client = open_client()
    assert client.send(auth("PLAIN", "=")) == [AuthRequested("PLAIN", b"")]


def test_auth_with_unknown_mechanism() -> None:
    client = open_client()
    assert client.send(auth("DIGEST-MD5", b64(b"x"))) == []
    assert failure_condition(client) == SaslCondition.INVALID_MECHANISM
    # The client may try again.
    assert client.send(plain_auth()) != []


def test_auth_without_mechanism_attribute() -> None:
    client = open_client()
    assert client.send(f"<auth xmlns='{ns.SASL}'/>") == []
    assert failure_condition(client) == SaslCondition.INVALID_MECHANISM


def test_auth_before_tls_when_tls_is_required() -> None:
    client = Client()
    client.open()
    assert client.send(plain_auth()) == []
    assert failure_condition(client) == SaslCondition.ENCRYPTION_REQUIRED


def test_auth_without_tls_when_tls_is_optional() -> None:
    client = Client(StreamConfig(DOMAIN, tls_required=False), secure=False)
    client.open()
    assert client.send(plain_auth("juliet", "pw")) == [AuthRequested("PLAIN", b"\0juliet\0pw")]


@pytest.mark.parametrize("payload", ["not base64!", "AAA", "AA==AA==", "ÿÿ"])
def test_auth_with_bad_base64(payload: str) -> None:
    client = open_client()
    assert client.send(auth("PLAIN", payload)) == [AuthMalformed(SaslCondition.INCORRECT_ENCODING)]
    assert failure_condition(client) == SaslCondition.INCORRECT_ENCODING


def test_challenge_and_response() -> None:
    client = open_client()
    client.send(auth("SCRAM-SHA-1", b64(b"n,,n=juliet,r=abc")))
    assert client.stream.sasl_challenge(b"r=abcdef,s=c2FsdA==,i=4096") == []
    [challenge] = client.read().elements
    assert (challenge.tag, challenge.ns) == ("challenge", ns.SASL)
    assert challenge.text == b64(b"r=abcdef,s=c2FsdA==,i=4096")
    assert client.send(response(b64(b"c=biws,r=abcdef,p=x"))) == [
        AuthResponse(b"c=biws,r=abcdef,p=x")
    ]


def test_empty_challenge_is_an_equals_sign() -> None:
    client = open_client()
    client.send(auth("PLAIN"))
    client.stream.sasl_challenge(b"")
    [challenge] = client.read().elements
    assert challenge.text == "="


@pytest.mark.parametrize("payload", ["", "="])
def test_empty_response(payload: str) -> None:
    client = open_client()
    client.send(auth("PLAIN"))
    client.stream.sasl_challenge(b"")
    client.read()
    assert client.send(response(payload)) == [AuthResponse(b"")]


def test_response_with_bad_base64() -> None:
    client = open_client()
    client.send(auth("SCRAM-SHA-1", b64(b"n,,n=juliet,r=abc")))
    client.stream.sasl_challenge(b"r=abc")
    client.read()
    assert client.send(response("%%%")) == [AuthMalformed(SaslCondition.INCORRECT_ENCODING)]
    assert failure_condition(client) == SaslCondition.INCORRECT_ENCODING


def test_success_with_additional_data() -> None:
    client = open_client()
    client.send(auth("SCRAM-SHA-256", b64(b"n,,n=juliet,r=abc")))
    assert client.stream.sasl_success("juliet", b"v=signature") == []
    [success] = client.read().elements
    assert (success.tag, success.ns) == ("success", ns.SASL)
    assert success.text == b64(b"v=signature")
    assert client.stream.username == "juliet"


def test_success_without_additional_data_is_empty() -> None:
    client = open_client()
    client.send(plain_auth())
    client.stream.sasl_success("juliet")
    [success] = client.read().elements
    assert success.children == []


def test_abort() -> None:
    client = open_client()
    client.send(auth("SCRAM-SHA-1", b64(b"n,,n=juliet,r=abc")))
    client.stream.sasl_challenge(b"r=abc")
    client.read()
    assert client.send(ABORT) == [AuthAborted()]
    assert failure_condition(client) == SaslCondition.ABORTED
    # A new attempt is allowed.
    assert client.send(plain_auth()) != []


def test_driver_reported_failure_and_retry() -> None:
    client = open_client()
    client.send(plain_auth())
    assert client.stream.sasl_failure(SaslCondition.NOT_AUTHORIZED, "bad password") == []
    [failure] = client.read().elements
    assert sasl_condition(failure) == SaslCondition.NOT_AUTHORIZED
    text = failure.find("text", ns.SASL)
    assert text is not None and text.text == "bad password"
    assert client.send(plain_auth()) == [AuthRequested("PLAIN", b"\0juliet\0secret")]


def test_elements_sent_while_the_driver_decides_wait_their_turn() -> None:
    client = open_client()
    events = client.send(plain_auth() + ABORT)
    assert events == [AuthRequested("PLAIN", b"\0juliet\0secret")]
    assert client.stream.sasl_challenge(b"more") == [AuthAborted()]


def test_too_many_failures_end_the_stream() -> None:
    client = open_client(StreamConfig(DOMAIN, max_auth_failures=3))
    for _ in range(2):
        client.send(plain_auth())
        assert client.stream.sasl_failure(SaslCondition.NOT_AUTHORIZED) == []
        client.read()
    client.send(plain_auth())
    events = client.stream.sasl_failure(SaslCondition.NOT_AUTHORIZED)
    output = assert_stream_error(client, events, StreamCondition.POLICY_VIOLATION)
    assert sasl_condition(output.elements[0]) == SaslCondition.NOT_AUTHORIZED


def test_failures_of_any_kind_count_towards_the_limit() -> None:
    client = open_client(StreamConfig(DOMAIN, max_auth_failures=3))
    assert client.send(auth("NOPE")) == []
    assert client.send(auth("PLAIN", "***")) == [AuthMalformed(SaslCondition.INCORRECT_ENCODING)]
    events = client.send(auth("NOPE"))
    assert closed_with(events, StreamCondition.POLICY_VIOLATION)


def test_restart_after_success_offers_bind() -> None:
    client = open_client()
    client.send(plain_auth())
    client.stream.sasl_success("juliet")
    client.read()
    assert client.send(header()) == []
    output = client.read()
    assert len(output.headers) == 1
    assert features_of(output).find("bind", ns.BIND) is not None


def test_sasl_elements_after_success_are_refused() -> None:
    client = authenticated_client()
    events = client.send(plain_auth())
    assert len(events) == 1 and isinstance(events[0], StreamClosed)


# --- resource binding ---------------------------------------------------------------------------


def test_bind_with_a_resource() -> None:
    client = authenticated_client()
    assert client.send(bind_request("balcony", "b1")) == [BindRequested("b1", "balcony")]


def test_bind_resource_is_prepared() -> None:
    client = authenticated_client()
    assert client.send(bind_request("Balc\u00f3ny\u00a0Door", "b1")) == [
        BindRequested("b1", "Balc\u00f3ny Door")
    ]


@pytest.mark.parametrize("resource", [None, ""])
def test_bind_without_a_resource(resource: str | None) -> None:
    client = authenticated_client()
    assert client.send(bind_request(resource, "b1")) == [BindRequested("b1", None)]


@pytest.mark.parametrize("resource", ["r" * 1024, "bad\u200bchar", "\u0378"])
def test_bind_with_a_malformed_resource(resource: str) -> None:
    client = authenticated_client()
    assert client.send(bind_request(resource, "b1")) == []
    [error] = client.read().elements
    assert error.tag == "iq" and error.get("id") == "b1"
    assert stanza_error_condition(error) == ("modify", StanzaCondition.BAD_REQUEST)
    # The client may try again.
    assert client.send(bind_request("ok", "b2")) == [BindRequested("b2", "ok")]


def test_bind_result() -> None:
    client = authenticated_client()
    client.send(bind_request("balcony", "b1"))
    assert client.stream.bind_result("b1", FULL_JID) == []
    [result] = client.read().elements
    assert result.tag == "iq"
    assert result.get("type") == "result" and result.get("id") == "b1"
    bind = result.find("bind", ns.BIND)
    assert bind is not None
    jid = bind.find("jid", ns.BIND)
    assert jid is not None and jid.text == str(FULL_JID)
    assert client.stream.jid == FULL_JID


def test_bind_error_from_the_driver() -> None:
    client = authenticated_client()
    client.send(bind_request("balcony", "b1"))
    assert client.stream.bind_error("b1", StanzaError(StanzaCondition.CONFLICT)) == []
    [error] = client.read().elements
    assert error.get("id") == "b1"
    assert stanza_error_condition(error) == ("cancel", StanzaCondition.CONFLICT)
    assert client.send(bind_request("other", "b2")) == [BindRequested("b2", "other")]


@pytest.mark.parametrize(
    "data",
    [
        b"<message to='romeo@example.com'><body>hi</body></message>",
        b"<presence/>",
        b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
        f"<iq type='get' id='1'><bind xmlns='{ns.BIND}'/></iq>".encode(),
        f"<iq type='set'><bind xmlns='{ns.BIND}'/></iq>".encode(),
    ],
    ids=["message", "presence", "iq", "bind-get", "bind-without-id"],
)
def test_stanzas_before_bind_are_not_authorized(data: bytes) -> None:
    client = authenticated_client()
    events = client.send(data)
    assert_stream_error(client, events, StreamCondition.NOT_AUTHORIZED)


def test_stanza_pipelined_after_the_bind_request_is_processed_after_binding() -> None:
    client = authenticated_client()
    message = b"<message to='romeo@example.com' id='m1'><body>hi</body></message>"
    events = client.send(bind_request("balcony", "b1") + message)
    assert events == [BindRequested("b1", "balcony")]
    events = client.stream.bind_result("b1", FULL_JID)
    assert len(events) == 1 and isinstance(events[0], StanzaReceived)
    assert events[0].stanza.get("id") == "m1"
    assert events[0].stanza.get("from") == str(FULL_JID)
    output = client.read()
    assert [e.get("id") for e in output.elements] == ["b1"], "the bind result comes first"


def test_timer_after_bind() -> None:
    client = bound_client()
    assert client.stream.get_timer() is None
    assert client.stream.handle_timer(10_000.0) == []
    assert client.read().raw == b""


# --- stanzas on a bound stream ---------------------------------------------------------------------


def one_stanza(client: Client, data: bytes | str) -> StanzaReceived:
    events = client.send(data)
    assert len(events) == 1 and isinstance(events[0], StanzaReceived), events
    return events[0]


def test_message_is_received_with_from_stamped_and_to_parsed() -> None:
    client = bound_client()
    event = one_stanza(client, b"<message to='Romeo@Example.com/Orchard'><body>hi</body></message>")
    assert event.to == JID.parse("romeo@example.com/Orchard")
    assert event.stanza.get("from") == str(FULL_JID)
    body = event.stanza.find("body")
    assert body is not None and body.text == "hi"
    assert client.read().raw == b""


def test_spoofed_from_is_overwritten() -> None:
    client = bound_client()
    event = one_stanza(client, b"<message from='romeo@example.com/x' to='nurse@example.com'/>")
    assert event.stanza.get("from") == str(FULL_JID)


def test_stanza_without_to_is_for_the_account() -> None:
    client = bound_client()
    assert one_stanza(client, b"<presence/>").to is None


@pytest.mark.parametrize("tag", ["message", "presence"])
def test_malformed_to_is_bounced_with_jid_malformed(tag: str) -> None:
    client = bound_client()
    data = f"<{tag} to='bad@@jid' id='x1'><body>hi</body></{tag}>"
    assert client.send(data) == []
    [bounce] = client.read().elements
    assert bounce.tag == tag and bounce.get("id") == "x1"
    assert bounce.get("to") == str(FULL_JID)
    assert bounce.get("from") is None
    assert stanza_error_condition(bounce) == ("modify", StanzaCondition.JID_MALFORMED)
    assert bounce.find("body") is not None, "the payload of a non-IQ is returned"


def test_malformed_to_on_an_iq_is_bounced() -> None:
    client = bound_client()
    assert (
        client.send(b"<iq type='get' id='q1' to='a@b@c'><ping xmlns='urn:xmpp:ping'/></iq>") == []
    )
    [bounce] = client.read().elements
    assert bounce.get("id") == "q1"
    assert stanza_error_condition(bounce) == ("modify", StanzaCondition.JID_MALFORMED)


def test_malformed_to_on_an_error_stanza_is_dropped_silently() -> None:
    client = bound_client()
    assert client.send(b"<message type='error' to='bad@@jid'/>") == []
    assert client.read().raw == b""


@pytest.mark.parametrize(
    "data",
    [
        b"<iq type='get'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq type='get' id=''><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq id='i1'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq type='fetch' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq type='get' id='i1'/>",
        b"<iq type='set' id='i1'>text only</iq>",
        b"<iq type='set' id='i1'><a xmlns='urn:a'/><b xmlns='urn:b'/></iq>",
    ],
    ids=["no-id", "empty-id", "no-type", "bad-type", "get-no-payload", "set-text", "two-payloads"],
)
def test_invalid_iq_is_bad_request(data: bytes) -> None:
    client = bound_client()
    assert client.send(data) == []
    [bounce] = client.read().elements
    assert bounce.tag == "iq"
    assert stanza_error_condition(bounce) == ("modify", StanzaCondition.BAD_REQUEST)
    assert bounce.get("to") == str(FULL_JID)


@pytest.mark.parametrize(
    "data",
    [
        b"<iq type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>",
        b"<iq type='set' id='i1' to='example.com'><query xmlns='jabber:iq:roster'/></iq>",
        b"<iq type='result' id='i1'/>",
        b"<iq type='error' id='i1'><error type='cancel'/></iq>",
    ],
)
def test_valid_iqs_are_received(data: bytes) -> None:
    client = bound_client()
    event = one_stanza(client, data)
    assert event.stanza.get("id") == "i1"
    assert client.read().raw == b""


def test_session_iq_is_answered_immediately() -> None:
    client = bound_client()
    data = f"<iq type='set' id='s1'><session xmlns='{ns.SESSION}'/></iq>"
    assert client.send(data) == []
    [result] = client.read().elements
    assert result.tag == "iq"
    assert result.get("type") == "result" and result.get("id") == "s1"
    assert result.get("to") == str(FULL_JID)
    assert result.children == []


def test_session_iq_to_the_domain_is_answered_immediately() -> None:
    client = bound_client()
    data = f"<iq type='set' id='s1' to='{DOMAIN}'><session xmlns='{ns.SESSION}'/></iq>"
    assert client.send(data) == []
    [result] = client.read().elements
    assert result.get("type") == "result" and result.get("from") == DOMAIN


@pytest.mark.parametrize(
    "data",
    [
        b"<foo xmlns='urn:example:foo'/>",
        f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>=</auth>".encode(),
        b"<message xmlns='urn:not-client'/>",
    ],
    ids=["unknown", "sasl-auth", "message-in-other-namespace"],
)
def test_non_stanza_top_level_element_when_bound(data: bytes) -> None:
    client = bound_client()
    events = client.send(data)
    assert_stream_error(client, events, StreamCondition.UNSUPPORTED_STANZA_TYPE)


@pytest.mark.parametrize(
    "data",
    [
        b"<message to='romeo@example.com'><body>hi</body></message>",
        b"<presence/>",
        b"<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>",
    ],
    ids=["message", "presence", "iq"],
)
@pytest.mark.parametrize("secure", [False, True], ids=["before-tls", "before-sasl"])
def test_stanzas_before_auth_are_not_authorized(data: bytes, secure: bool) -> None:
    client = Client(secure=secure)
    client.open()
    events = client.send(data)
    assert_stream_error(client, events, StreamCondition.NOT_AUTHORIZED)


def test_unknown_element_before_auth_is_unsupported() -> None:
    client = open_client()
    events = client.send(b"<foo xmlns='urn:example:foo'/>")
    assert_stream_error(client, events, StreamCondition.UNSUPPORTED_STANZA_TYPE)


def test_stanzas_in_one_chunk_are_all_received_in_order() -> None:
    client = bound_client()
    events = client.send(
        b"<message id='1'/><presence id='2'/><iq type='result' id='3'/><message id='4'/>"
    )
    assert [e.stanza.get("id") for e in events if isinstance(e, StanzaReceived)] == [
        "1",
        "2",
        "3",
        "4",
    ]


def test_bounced_payload_cannot_inject_markup() -> None:
    """A bounce re-serialises the sender's payload: the output must stay one stanza."""
    client = bound_client()
    uri = "u}z=&quot;1&quot;/&gt;&lt;/message&gt;&lt;message&#9;from=&quot;admin@example.com&quot;&gt;&lt;y&#9;c=&quot;"
    data = f"<message to='bad@@jid' id='m1'><x xmlns:a='{uri}' a:b=' d='/></message>"
    assert client.send(data) == []
    output = client.read()
    assert len(output.elements) == 1
    assert not any(e.get("from") == "admin@example.com" for e in output.elements)


# --- closing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("make", [open_client, authenticated_client, bound_client])
def test_client_closes_the_stream(make) -> None:
    client = make()
    events = client.send(CLOSE)
    assert events == [StreamClosed(None)]
    output = client.read()
    assert output.raw == CLOSE
    assert client.send(b"<presence/>") == []


def test_close_before_the_header_sends_a_header_first() -> None:
    client = Client()
    client.stream.close(StreamError(StreamCondition.SYSTEM_SHUTDOWN, "bye"))
    output = client.read()
    assert output.raw.startswith(b"<?xml version='1.0'?><stream:stream ")
    assert isinstance(output.items[0], StreamHeader)
    assert output.stream_error == StreamCondition.SYSTEM_SHUTDOWN
    assert output.ended


def test_close_without_error() -> None:
    client = open_client()
    client.stream.close()
    output = client.read()
    assert output.raw == CLOSE


def test_close_twice_sends_once() -> None:
    client = open_client()
    client.stream.close(StreamError(StreamCondition.RESET))
    assert client.read().stream_error == StreamCondition.RESET
    client.stream.close(StreamError(StreamCondition.RESET))
    assert client.read().raw == b""


def closed_stream() -> ServerStream:
    client = open_client()
    client.send(plain_auth())
    client.stream.close()
    client.read()
    return client.stream


@pytest.mark.parametrize(
    "answer",
    [
        lambda s: s.tls_established(),
        lambda s: s.sasl_challenge(b"x"),
        lambda s: s.sasl_success("juliet"),
        lambda s: s.sasl_failure(SaslCondition.NOT_AUTHORIZED),
        lambda s: s.bind_result("b1", FULL_JID),
        lambda s: s.bind_error("b1", StanzaError(StanzaCondition.CONFLICT)),
        lambda s: s.receive_data(b"<presence/>", 0.0),
        lambda s: s.receive_data(CLOSE, 0.0),
        lambda s: s.handle_timer(1e9),
    ],
    ids=[
        "tls_established",
        "sasl_challenge",
        "sasl_success",
        "sasl_failure",
        "bind_result",
        "bind_error",
        "receive_data",
        "receive_close",
        "handle_timer",
    ],
)
def test_answers_after_close_change_nothing(answer) -> None:
    stream = closed_stream()
    assert answer(stream) == []
    assert stream.data_to_send() == b""
    assert stream.get_timer() is None
    assert stream.username is None and stream.jid is None


# --- timers ---------------------------------------------------------------------------------------


def test_timer_is_the_auth_deadline() -> None:
    stream = ServerStream(StreamConfig(DOMAIN, auth_timeout=30.0), 100.0)
    assert stream.get_timer() == 130.0


def test_timer_before_the_deadline_does_nothing() -> None:
    client = Client(StreamConfig(DOMAIN, auth_timeout=30.0), now=100.0)
    client.open()
    assert client.stream.handle_timer(129.9) == []
    assert client.read().raw == b""
    assert client.stream.get_timer() == 130.0


def test_timer_at_the_deadline_times_out() -> None:
    client = Client(StreamConfig(DOMAIN, auth_timeout=30.0), now=100.0)
    client.open()
    events = client.stream.handle_timer(130.0)
    assert_stream_error(client, events, StreamCondition.CONNECTION_TIMEOUT)
    assert client.stream.get_timer() is None


def test_timeout_before_any_header_sends_a_header_first() -> None:
    client = Client(now=0.0)
    events = client.stream.handle_timer(31.0)
    output = assert_stream_error(client, events, StreamCondition.CONNECTION_TIMEOUT)
    assert isinstance(output.items[0], StreamHeader)


def test_deadline_still_runs_between_sasl_and_bind() -> None:
    client = Client(StreamConfig(DOMAIN, auth_timeout=30.0), secure=True, now=0.0)
    client.open()
    client.authenticate()
    assert client.stream.get_timer() == 30.0
    events = client.stream.handle_timer(45.0)
    assert closed_with(events, StreamCondition.CONNECTION_TIMEOUT)


def test_deadline_while_the_driver_is_deciding() -> None:
    client = open_client()
    client.send(plain_auth())
    events = client.stream.handle_timer(1000.0)
    assert closed_with(events, StreamCondition.CONNECTION_TIMEOUT)
    assert client.stream.sasl_success("juliet") == []


# --- bad XML on a live stream ------------------------------------------------------------------------


BAD_XML = [
    (b"<message><body></message>", StreamCondition.NOT_WELL_FORMED),
    (b"<message>\xff</message>", StreamCondition.NOT_WELL_FORMED),
    (b"<message><!-- c --></message>", StreamCondition.RESTRICTED_XML),
    (b"<?php x?>", StreamCondition.RESTRICTED_XML),
    (b"<message>&custom;</message>", StreamCondition.RESTRICTED_XML),
    (b"<p:message/>", StreamCondition.BAD_NAMESPACE_PREFIX),
    (b"<message><body>" + b"x" * 2000 + b"</body></message>", StreamCondition.POLICY_VIOLATION),
    (b"<a>" * 100 + b"</a>" * 100, StreamCondition.POLICY_VIOLATION),
    (b"stray text", StreamCondition.BAD_FORMAT),
]
BAD_XML_IDS = [
    "mismatched",
    "invalid-utf8",
    "comment",
    "pi",
    "entity",
    "unbound-prefix",
    "oversized",
    "too-deep",
    "text",
]


@pytest.mark.parametrize(("data", "condition"), BAD_XML, ids=BAD_XML_IDS)
@pytest.mark.parametrize("make", [open_client, bound_client], ids=["negotiating", "bound"])
def test_bad_xml_on_a_live_stream(make, data: bytes, condition: StreamCondition) -> None:
    client = make(StreamConfig(DOMAIN, max_stanza_bytes=1000))
    events = client.send(data)
    assert_stream_error(client, events, condition)


@pytest.mark.parametrize(("data", "condition"), BAD_XML, ids=BAD_XML_IDS)
def test_stanzas_completed_in_the_same_read_before_bad_xml_are_handled(
    data: bytes, condition: StreamCondition
) -> None:
    client = bound_client(StreamConfig(DOMAIN, max_stanza_bytes=1000))
    first = b"<message to='romeo@example.net' id='m1'><body>last</body></message>"
    events = client.send(first + b"<presence/>" + data)
    stanzas = [event for event in events if isinstance(event, StanzaReceived)]
    assert events[:2] == stanzas
    assert [event.stanza.tag for event in stanzas] == ["message", "presence"]
    assert_stream_error(client, events[2:], condition)


def test_a_stream_closed_before_bad_xml_in_the_same_read_ends_cleanly() -> None:
    client = bound_client()
    events = client.send(CLOSE + b"<<")
    assert closed_with(events, None)


def test_oversized_stanza_trickling_in() -> None:
    client = bound_client(StreamConfig(DOMAIN, max_stanza_bytes=1000))
    assert client.send(b"<message><body>") == []
    events: list = []
    for _ in range(100):
        events = client.send(b"x" * 50)
        if events:
            break
    assert_stream_error(client, events, StreamCondition.POLICY_VIOLATION)


def test_garbage_before_any_header() -> None:
    client = Client()
    events = client.send(b"GET / HTTP/1.1\r\n")
    output = assert_stream_error(client, events, StreamCondition.NOT_WELL_FORMED)
    assert isinstance(output.items[0], StreamHeader)


def test_doctype_before_the_header() -> None:
    client = Client()
    events = client.send(b"<?xml version='1.0'?><!DOCTYPE x>" + header(xml_decl=False))
    assert_stream_error(client, events, StreamCondition.RESTRICTED_XML)


def test_non_utf8_stream() -> None:
    client = Client()
    data = b"<?xml version='1.0' encoding='ISO-8859-1'?>" + header(xml_decl=False)
    events = client.send(data)
    assert_stream_error(client, events, StreamCondition.UNSUPPORTED_ENCODING)
