"""SASL mechanisms, sans-IO: PLAIN message parsing, and server-side SCRAM-SHA-1 /
SCRAM-SHA-256 exchanges driven by scramp's client."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scramp import ScramClient, ScramMechanism

from chinwag.xmpp.sasl import SaslCondition, SaslFailure
from chinwag.xmpp.sasl.plain import PlainMessage, parse_plain
from chinwag.xmpp.sasl.scram import (
    MECHANISMS,
    ScramCredentials,
    ScramExchange,
    stand_in_credentials,
)

# --- PLAIN ----------------------------------------------------------------------------


def test_plain_without_authzid() -> None:
    assert parse_plain(b"\0juliet\0s3cret") == PlainMessage("", "juliet", "s3cret")


def test_plain_with_authzid() -> None:
    message = parse_plain(b"juliet@example.com\0juliet\0pass word")
    assert message == PlainMessage("juliet@example.com", "juliet", "pass word")


def test_plain_utf8() -> None:
    message = parse_plain("\0élodie\0☃ pässwörd".encode())
    assert (message.authcid, message.password) == ("élodie", "☃ pässwörd")


@pytest.mark.parametrize(
    "data",
    [
        None,
        b"",
        b"juliet",
        b"\0juliet",
        b"\0juliet\0",
        b"\0\0secret",
        b"\0juliet\0secret\0extra",
        b"juliet\0secret",
    ],
    ids=repr,
)
def test_plain_malformed(data: bytes | None) -> None:
    with pytest.raises(SaslFailure) as caught:
        parse_plain(data)
    assert caught.value.condition is SaslCondition.MALFORMED_REQUEST


@pytest.mark.parametrize("data", [b"\0jul\xffiet\0secret", b"\0juliet\0\xc3", b"\xfe\0a\0b"])
def test_plain_not_utf8(data: bytes) -> None:
    with pytest.raises(SaslFailure) as caught:
        parse_plain(data)
    assert caught.value.condition is SaslCondition.MALFORMED_REQUEST


@settings(max_examples=200, deadline=None)
@given(st.binary(max_size=40))
def test_plain_only_ever_raises_sasl_failure(data: bytes) -> None:
    try:
        message = parse_plain(data)
    except SaslFailure as failure:
        assert failure.condition is SaslCondition.MALFORMED_REQUEST
    else:
        assert message.authcid and message.password


def test_sasl_failure_carries_condition_and_text() -> None:
    failure = SaslFailure(SaslCondition.NOT_AUTHORIZED, "nope")
    assert failure.condition is SaslCondition.NOT_AUTHORIZED
    assert failure.text == "nope"
    assert "not-authorized" in str(failure)


# --- SCRAM ----------------------------------------------------------------------------------

PASSWORD = "correct horse"


def credentials(mechanism: str, password: str = PASSWORD) -> ScramCredentials:
    return ScramMechanism(mechanism).make_auth_info(password, 4096)


def stand_in(mechanism: str, username: str) -> ScramCredentials:
    """What the server passes for an unknown user (the key is the server's secret)."""
    return stand_in_credentials(b"k" * 32, mechanism, username, salt_bytes=32, iterations=4096)


def exchange(
    mechanism: str,
    client_password: str,
    stored: ScramCredentials | None,
    username: str = "juliet",
) -> tuple[ScramClient, ScramExchange, bytes]:
    """Run an exchange up to the server's check of the client proof; returns its final."""
    client = ScramClient([mechanism], username, client_password)
    server = ScramExchange(mechanism)
    assert server.receive_client_first(client.get_client_first().encode()) == username
    client.set_server_first(
        server.server_first([stored] if stored else [stand_in(mechanism, username)]).decode()
    )
    _index, final = server.receive_client_final(client.get_client_final().encode())
    return client, server, final


def test_both_mechanisms_are_offered() -> None:
    assert set(MECHANISMS) == {"SCRAM-SHA-1", "SCRAM-SHA-256"}


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_right_password(mechanism: str) -> None:
    client, server, final = exchange(mechanism, PASSWORD, credentials(mechanism))
    assert final.startswith(b"v=")
    client.set_server_final(final.decode())  # raises if the server signature is wrong
    assert server.username == "juliet"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_wrong_password(mechanism: str) -> None:
    with pytest.raises(SaslFailure) as caught:
        exchange(mechanism, "wrong horse", credentials(mechanism))
    assert caught.value.condition is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_credentials_of_the_other_mechanism_fail(mechanism: str) -> None:
    other = next(m for m in MECHANISMS if m != mechanism)
    with pytest.raises(SaslFailure) as caught:
        exchange(mechanism, PASSWORD, credentials(other))
    assert caught.value.condition is SaslCondition.NOT_AUTHORIZED


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_unknown_user_fails_like_a_wrong_password(mechanism: str) -> None:
    with pytest.raises(SaslFailure) as caught:
        exchange(mechanism, PASSWORD, None, username="nobody")
    assert caught.value.condition is SaslCondition.NOT_AUTHORIZED


def server_first_attributes(mechanism: str, username: str, stored: ScramCredentials | None) -> dict:
    client = ScramClient([mechanism], username, PASSWORD)
    server = ScramExchange(mechanism)
    server.receive_client_first(client.get_client_first().encode())
    text = server.server_first([stored] if stored else [stand_in(mechanism, username)]).decode()
    return dict(part.split("=", 1) for part in text.split(","))


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_unknown_user_gets_a_stable_salt(mechanism: str) -> None:
    one = server_first_attributes(mechanism, "nobody", None)
    two = server_first_attributes(mechanism, "nobody", None)
    other = server_first_attributes(mechanism, "someone-else", None)
    assert one["s"] == two["s"], "the same unknown user must always see the same salt"
    assert one["s"] != other["s"]
    assert one["r"] != two["r"], "nonces are fresh"


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_unknown_user_looks_like_a_real_one(mechanism: str) -> None:
    real = server_first_attributes(mechanism, "juliet", credentials(mechanism))
    fake = server_first_attributes(mechanism, "nobody", None)
    assert real.keys() == fake.keys()
    assert real["i"] == fake["i"] == "4096"
    assert len(real["s"]) == len(fake["s"])


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_username_escapes_are_decoded(mechanism: str) -> None:
    server = ScramExchange(mechanism)
    assert server.receive_client_first(b"n,,n=a=2Cb=3Dc,r=abcdef") == "a,b=c"


@pytest.mark.parametrize(
    "data",
    [None, b"", b"garbage", b"n,,r=abc", b"x,,n=juliet,r=abc", b"n,,n=juliet", b"n,,\xff\xfe"],
    ids=repr,
)
def test_scram_malformed_client_first(data: bytes | None) -> None:
    with pytest.raises(SaslFailure) as caught:
        ScramExchange("SCRAM-SHA-256").receive_client_first(data)
    assert caught.value.condition is SaslCondition.MALFORMED_REQUEST


def test_scram_client_final_before_server_first() -> None:
    server = ScramExchange("SCRAM-SHA-1")
    with pytest.raises(SaslFailure) as caught:
        server.receive_client_final(b"c=biws,r=abc,p=xyz")
    assert caught.value.condition is SaslCondition.MALFORMED_REQUEST


@pytest.mark.parametrize("data", [None, b"", b"\xff"], ids=repr)
def test_scram_empty_or_undecodable_client_final(data: bytes | None) -> None:
    server = ScramExchange("SCRAM-SHA-1")
    server.receive_client_first(b"n,,n=juliet,r=abcdef")
    server.server_first([credentials("SCRAM-SHA-1")])
    with pytest.raises(SaslFailure) as caught:
        server.receive_client_final(data)
    assert caught.value.condition is SaslCondition.MALFORMED_REQUEST


def test_scram_tampered_client_final() -> None:
    mechanism = "SCRAM-SHA-256"
    client = ScramClient([mechanism], "juliet", PASSWORD)
    server = ScramExchange(mechanism)
    server.receive_client_first(client.get_client_first().encode())
    client.set_server_first(server.server_first([credentials(mechanism)]).decode())
    final = client.get_client_final()
    tampered = final.replace("r=", "r=x", 1)
    with pytest.raises(SaslFailure) as caught:
        server.receive_client_final(tampered.encode())
    assert caught.value.condition is SaslCondition.NOT_AUTHORIZED


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([b"", b"n,,", b"n,,n=juliet,r=", b"y,,n=", b"p=tls-unique,,n=a,r="]),
    st.binary(max_size=30),
)
def test_scram_client_first_only_ever_raises_sasl_failure(prefix: bytes, tail: bytes) -> None:
    server = ScramExchange("SCRAM-SHA-1")
    try:
        server.receive_client_first(prefix + tail)
        server.server_first([stand_in("SCRAM-SHA-1", server.username)])
    except SaslFailure:
        pass


@settings(max_examples=150, deadline=None)
@given(
    st.sampled_from([b"", b"c=biws,r=", b"c=biws,r=abcdef,p=", b"c=", b"c=biws,"]),
    st.binary(max_size=40),
)
def test_scram_client_final_only_ever_raises_sasl_failure(prefix: bytes, tail: bytes) -> None:
    server = ScramExchange("SCRAM-SHA-1")
    server.receive_client_first(b"n,,n=juliet,r=abcdef")
    server.server_first([stand_in("SCRAM-SHA-1", "juliet")])
    with pytest.raises(SaslFailure):
        server.receive_client_final(prefix + tail)


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_scram_tells_which_of_several_candidates_the_client_knows(mechanism: str) -> None:
    """An account password and app passwords share one salt, so one challenge serves all."""
    scram = ScramMechanism(mechanism)
    first = scram.make_auth_info("first-password", 4096)
    salt = first[0]
    second = scram.make_auth_info("second-password", 4096, salt=salt)
    other_salt = scram.make_auth_info("second-password", 4096)
    client = ScramClient([mechanism], "juliet", "second-password")
    server = ScramExchange(mechanism)
    server.receive_client_first(client.get_client_first().encode())
    client.set_server_first(server.server_first([first, other_salt, second]).decode())
    index, final = server.receive_client_final(client.get_client_final().encode())
    assert index == 2
    client.set_server_final(final.decode())
