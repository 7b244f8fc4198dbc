"""SASL messages and names are measured before they are decoded or normalised: whatever
is longer than a real client sends is refused with <malformed-request/> at once, and the
stream tells its driver when it refused a message itself (so the address is counted)."""

from __future__ import annotations

import base64
from collections.abc import Callable

import pytest
from scramp import ScramClient
from xmpp_helpers import open_client, sasl_condition

from chinwag.xmpp import ns
from chinwag.xmpp.events import AuthMalformed
from chinwag.xmpp.sasl import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    MAX_TOKEN_BYTES,
    SaslCondition,
    SaslFailure,
    encoded_length,
)
from chinwag.xmpp.sasl.oauth import (
    messenger_token_candidates,
    parse_oauthbearer,
    parse_x_oauth2,
)
from chinwag.xmpp.sasl.plain import parse_plain
from chinwag.xmpp.sasl.scram import ScramCredentials, ScramExchange, stand_in_credentials

pytestmark = pytest.mark.security

HUGE_NAME = "İ" * 90000
"""About 180 KB of UTF-8 whose SASLprep and PRECIS took ~0.6 s of CPU."""
LONGEST = "a" * MAX_NAME_BYTES
TOO_LONG = "a" * (MAX_NAME_BYTES + 1)


def malformed(parse: Callable[..., object], *args: object) -> str:
    """Call ``parse``; it must refuse with malformed-request. Returns the failure's text."""
    with pytest.raises(SaslFailure) as caught:
        parse(*args)
    assert caught.value.condition is SaslCondition.MALFORMED_REQUEST, caught.value
    return caught.value.text


def stand_in(mechanism: str, name: str) -> ScramCredentials:
    return stand_in_credentials(b"k" * 32, mechanism, name, salt_bytes=32, iterations=4096)


def client_first(name: str, authzid: str = "") -> bytes:
    return f"n,{'a=' + authzid if authzid else ''},n={name},r=abcdef".encode()


# --- SCRAM ---------------------------------------------------------------------------------


def test_a_huge_scram_username_is_refused_before_scramp_parses_it() -> None:
    text = malformed(ScramExchange("SCRAM-SHA-256").receive_client_first, client_first(HUGE_NAME))
    assert "longer than" in text


def test_a_scram_username_may_have_1023_bytes_not_more() -> None:
    assert ScramExchange("SCRAM-SHA-256").receive_client_first(client_first(LONGEST)) == LONGEST
    text = malformed(ScramExchange("SCRAM-SHA-256").receive_client_first, client_first(TOO_LONG))
    assert text == "the username is longer than 1023 bytes"


def test_a_scram_username_is_measured_unescaped() -> None:
    """1023 commas are 1023 bytes of name, though 3069 on the wire (each one ``=2C``)."""
    commas = "=2C" * MAX_NAME_BYTES
    assert ScramExchange("SCRAM-SHA-1").receive_client_first(client_first(commas)) == "," * 1023


def test_a_scram_username_that_saslprep_lengthens_past_the_limit_is_refused() -> None:
    # U+FDFA is 3 bytes of UTF-8 and becomes 18 characters under NFKC.
    name = "\ufdfa" * (MAX_NAME_BYTES // 3)
    assert len(name.encode()) <= MAX_NAME_BYTES
    text = malformed(ScramExchange("SCRAM-SHA-256").receive_client_first, client_first(name))
    assert text == "the username is longer than 1023 bytes"


def test_a_long_scram_authzid_is_refused() -> None:
    message = client_first("juliet", authzid=TOO_LONG)
    assert malformed(ScramExchange("SCRAM-SHA-1").receive_client_first, message) == (
        "the authzid is longer than 1023 bytes"
    )


def test_a_huge_scram_client_final_is_refused_before_it_is_decoded() -> None:
    server = ScramExchange("SCRAM-SHA-256")
    server.receive_client_first(client_first("juliet"))
    server.server_first([stand_in("SCRAM-SHA-256", "juliet")])
    final = b"c=biws,r=abcdef,p=" + b"A" * MAX_MESSAGE_BYTES
    assert "longer than" in malformed(server.receive_client_final, final)


def test_wrong_scram_proofs_are_refused_as_a_wrong_password() -> None:
    mechanism = "SCRAM-SHA-256"
    client = ScramClient([mechanism], "juliet", "guess")
    server = ScramExchange(mechanism)
    server.receive_client_first(client.get_client_first().encode())
    client.set_server_first(server.server_first([stand_in(mechanism, "juliet")]).decode())
    with pytest.raises(SaslFailure) as caught:
        server.receive_client_final(client.get_client_final().encode())
    assert caught.value.condition is SaslCondition.NOT_AUTHORIZED
    assert caught.value.text == "wrong username or password"


# --- the stand-in for unknown names ----------------------------------------------------------


def test_the_stand_in_salt_depends_on_the_key_the_mechanism_and_the_name() -> None:
    def salt(key: bytes, mechanism: str, name: str) -> bytes:
        return stand_in_credentials(key, mechanism, name, salt_bytes=32, iterations=4096)[0]

    one = salt(b"k" * 32, "SCRAM-SHA-256", "nobody")
    assert one == salt(b"k" * 32, "SCRAM-SHA-256", "nobody")
    assert len(one) == 32
    assert one != salt(b"j" * 32, "SCRAM-SHA-256", "nobody")
    assert one != salt(b"k" * 32, "SCRAM-SHA-1", "nobody")
    assert one != salt(b"k" * 32, "SCRAM-SHA-256", "somebody")


def test_the_stand_in_has_the_shape_asked_for_and_never_the_same_keys() -> None:
    first = stand_in_credentials(b"k" * 32, "SCRAM-SHA-1", "nobody", salt_bytes=24, iterations=8192)
    second = stand_in_credentials(
        b"k" * 32, "SCRAM-SHA-1", "nobody", salt_bytes=24, iterations=8192
    )
    assert (len(first[0]), first[3]) == (24, 8192)
    assert first[1:3] != second[1:3]


# --- PLAIN and the token mechanisms ----------------------------------------------------------


def test_a_huge_plain_message_is_refused_before_it_is_decoded() -> None:
    message = f"\0{HUGE_NAME}\0secret".encode()
    assert malformed(parse_plain, message) == (
        f"the PLAIN message is longer than {MAX_MESSAGE_BYTES} bytes"
    )


@pytest.mark.parametrize(
    ("message", "text"),
    [
        (f"\0{TOO_LONG}\0secret", "the username is longer than 1023 bytes"),
        (f"{TOO_LONG}\0juliet\0secret", "the authzid is longer than 1023 bytes"),
    ],
    ids=["authcid", "authzid"],
)
def test_plain_names_may_have_1023_bytes_not_more(message: str, text: str) -> None:
    assert parse_plain(f"{LONGEST}\0{LONGEST}\0secret".encode()).authcid == LONGEST
    assert malformed(parse_plain, message.encode()) == text


def test_oauthbearer_authzid_and_token_are_measured() -> None:
    token = "t" * MAX_TOKEN_BYTES
    accepted = parse_oauthbearer(f"n,a={LONGEST},\x01auth=Bearer {token}\x01\x01".encode())
    assert (accepted.authzid, accepted.token) == (LONGEST, token)
    long_authzid = f"n,a={TOO_LONG},\x01auth=Bearer token\x01\x01".encode()
    assert malformed(parse_oauthbearer, long_authzid) == "the authzid is longer than 1023 bytes"
    long_token = f"n,,\x01auth=Bearer {token}t\x01\x01".encode()
    assert malformed(parse_oauthbearer, long_token) == "the token is longer than 4096 bytes"


def test_x_oauth2_tokens_are_measured() -> None:
    assert parse_x_oauth2(b"\0juliet\0" + b"t" * MAX_TOKEN_BYTES).password == "t" * 4096
    assert "token" in malformed(parse_x_oauth2, b"\0juliet\0" + b"t" * (MAX_TOKEN_BYTES + 1))


def test_x_messenger_oauth2_tokens_are_measured_as_sent() -> None:
    encoded = base64.b64encode(b"t" * MAX_TOKEN_BYTES)
    assert messenger_token_candidates(encoded)[1] == "t" * MAX_TOKEN_BYTES
    assert "token" in malformed(messenger_token_candidates, encoded + b"AAAA")


# --- the stream ----------------------------------------------------------------------------


def long_text() -> str:
    """Valid base64, one quantum longer than the longest message the stream decodes."""
    return "QUFB" * (encoded_length(MAX_MESSAGE_BYTES) // 4 + 1)


def test_the_stream_refuses_a_too_long_initial_response_and_tells_the_driver() -> None:
    client = open_client()
    events = client.send(f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{long_text()}</auth>")
    assert events == [AuthMalformed(SaslCondition.MALFORMED_REQUEST)]
    [failure] = client.read().elements
    assert sasl_condition(failure) == SaslCondition.MALFORMED_REQUEST


def test_the_stream_refuses_a_too_long_response_and_tells_the_driver() -> None:
    client = open_client()
    client.send(f"<auth xmlns='{ns.SASL}' mechanism='SCRAM-SHA-1'>biwsbj1qLHI9YQ==</auth>")
    client.stream.sasl_challenge(b"r=a,s=c2FsdHNhbHRzYWx0,i=4096")
    client.read()
    events = client.send(f"<response xmlns='{ns.SASL}'>{long_text()}</response>")
    assert events == [AuthMalformed(SaslCondition.MALFORMED_REQUEST)]
    [failure] = client.read().elements
    assert sasl_condition(failure) == SaslCondition.MALFORMED_REQUEST
