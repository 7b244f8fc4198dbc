"""Real slixmpp clients against a real chinwag over loopback TCP.

Clients use STARTTLS on the c2s port unless a test says direct TLS (XEP-0368);
they trust the server's self-signed certificate. Each test starts its own
server, so no state leaks from one to the next.
"""

from __future__ import annotations

import asyncio

import pytest
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError

from chinwag.xmpp.jid import JID

from .support import (
    TIMEOUT,
    AssertServing,
    Connect,
    NewClient,
    ServerHandle,
    StartServer,
    sign_in,
    watch,
)

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")


def transport_kind(server: ServerHandle, client: ClientXMPP) -> str:
    """How the server sees the client's session: "starttls", "tls", ..."""
    assert server.app is not None
    session = server.app.xmpp.router.session(JID.parse(str(client.boundjid)))
    assert session is not None, f"no session bound for {client.boundjid}"
    return session.transport_kind


async def iq_error_condition(pending: asyncio.Future) -> str:
    """Await an IQ expected to fail; returns its error condition."""
    with pytest.raises(IqError) as failure:
        await asyncio.wait_for(pending, TIMEOUT)
    return failure.value.iq["error"]["condition"]


# --- signing in ------------------------------------------------------------------


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_sign_in_with_each_mechanism(
    server: ServerHandle, connect: Connect, mechanism: str
) -> None:
    client = await connect(server, "alice", "laptop", sasl_mech=mechanism)

    assert client.plugin["feature_mechanisms"].mech.name == mechanism
    assert str(client.boundjid) == "alice@localhost/laptop"
    assert transport_kind(server, client) == "starttls"


@pytest.mark.parametrize("mechanism", MECHANISMS)
async def test_wrong_password_fails_and_server_keeps_serving(
    server: ServerHandle, new_client: NewClient, assert_serving: AssertServing, mechanism: str
) -> None:
    client = new_client(server, "alice", "laptop", password="not-the-password", sasl_mech=mechanism)
    failed = watch(client, "failed_auth")
    started = watch(client, "session_start")
    client.connect(server.host, server.port)

    failure = await asyncio.wait_for(failed, TIMEOUT)

    assert failure["condition"] == "not-authorized"
    assert not started.done()
    await assert_serving(server)


async def test_unknown_user_fails_like_a_wrong_password(
    server: ServerHandle, new_client: NewClient, assert_serving: AssertServing
) -> None:
    client = new_client(server, "mallory", password="whatever")
    failed = watch(client, "failed_auth")
    client.connect(server.host, server.port)

    failure = await asyncio.wait_for(failed, TIMEOUT)

    assert failure["condition"] == "not-authorized"
    await assert_serving(server)


async def test_server_generates_a_resource_when_none_is_asked_for(
    server: ServerHandle, connect: Connect
) -> None:
    first = await connect(server, "alice", None)
    second = await connect(server, "alice", None)

    for client in (first, second):
        assert client.boundjid.bare == "alice@localhost"
        assert client.boundjid.resource
    assert first.boundjid.resource != second.boundjid.resource


async def test_direct_tls(server: ServerHandle, connect: Connect) -> None:
    client = await connect(server, "alice", "direct", direct_tls=True)

    assert str(client.boundjid) == "alice@localhost/direct"
    assert transport_kind(server, client) == "tls"
    await asyncio.wait_for(client.plugin["xep_0199"].send_ping(server.domain, timeout=5), TIMEOUT)


async def test_same_full_jid_replaces_the_first_session_with_conflict(
    server: ServerHandle, connect: Connect
) -> None:
    first = await connect(server, "alice", "phone")
    stream_error = watch(first, "stream_error")
    disconnected = watch(first, "disconnected")

    second = await connect(server, "alice", "phone")

    error = await asyncio.wait_for(stream_error, TIMEOUT)
    assert error["condition"] == "conflict"
    await asyncio.wait_for(disconnected, TIMEOUT)
    assert not first.is_connected()
    assert second.is_connected()
    await asyncio.wait_for(second.plugin["xep_0199"].send_ping(server.domain, timeout=5), TIMEOUT)


# --- messages ----------------------------------------------------------------------


async def _online_pair(server: ServerHandle, connect: Connect) -> tuple[ClientXMPP, ClientXMPP]:
    """alice and bob signed in, bob available (initial presence processed by the server)."""
    alice = await connect(server, "alice", "desk")
    bob = await connect(server, "bob", "phone")
    bob.send_presence()
    # The ping is answered after the presence was handled: they share bob's stream.
    await asyncio.wait_for(bob.plugin["xep_0199"].send_ping(server.domain, timeout=5), TIMEOUT)
    return alice, bob


@pytest.mark.parametrize("to", ["bob@localhost/phone", "bob@localhost"])
async def test_message_reaches_bob_from_alices_full_jid(
    server: ServerHandle, connect: Connect, to: str
) -> None:
    alice, bob = await _online_pair(server, connect)
    received = watch(bob, "message")

    alice.send_message(mto=to, mbody="hello bob", mtype="chat")

    message = await asyncio.wait_for(received, TIMEOUT)
    assert message["body"] == "hello bob"
    assert message["type"] == "chat"
    assert str(message["from"]) == "alice@localhost/desk"


async def test_spoofed_from_is_replaced_by_the_server(
    server: ServerHandle, connect: Connect
) -> None:
    alice, bob = await _online_pair(server, connect)
    received = watch(bob, "message")

    message = alice.make_message(mto="bob@localhost/phone", mbody="trust me", mtype="chat")
    message["from"] = "mallory@localhost/evil"
    message.send()

    delivered = await asyncio.wait_for(received, TIMEOUT)
    assert delivered["body"] == "trust me"
    assert str(delivered["from"]) == "alice@localhost/desk"


# --- the server's own services --------------------------------------------------------


async def test_ping_to_the_server(server: ServerHandle, connect: Connect) -> None:
    client = await connect(server)

    reply = await asyncio.wait_for(
        client.plugin["xep_0199"].send_ping(server.domain, timeout=5), TIMEOUT
    )

    assert reply["type"] == "result"
    assert str(reply["from"]) == "localhost"


async def test_disco_info_on_the_server(server: ServerHandle, connect: Connect) -> None:
    client = await connect(server)

    reply = await asyncio.wait_for(
        client.plugin["xep_0030"].get_info(jid=server.domain, local=False, cached=False),
        TIMEOUT,
    )

    info = reply["disco_info"]
    identities = {(category, kind) for category, kind, _lang, _name in info["identities"]}
    assert ("server", "im") in identities
    assert {
        "http://jabber.org/protocol/disco#info",
        "http://jabber.org/protocol/disco#items",
        "urn:xmpp:ping",
        "jabber:iq:version",
    } <= set(info["features"])


async def test_disco_items_on_the_server(server: ServerHandle, connect: Connect) -> None:
    client = await connect(server)

    reply = await asyncio.wait_for(
        client.plugin["xep_0030"].get_items(jid=server.domain, local=False), TIMEOUT
    )

    assert reply["type"] == "result"
    assert reply["disco_items"]["items"] is not None


async def test_software_version(server: ServerHandle, connect: Connect) -> None:
    client = await connect(server)

    reply = await asyncio.wait_for(client.plugin["xep_0092"].get_version(server.domain), TIMEOUT)

    assert reply["software_version"]["name"] == "chinwag"
    assert reply["software_version"]["version"]


async def test_software_version_hidden(start_server: StartServer, connect: Connect) -> None:
    server = await start_server(server_info={"show_version": False})
    client = await connect(server)

    condition = await iq_error_condition(client.plugin["xep_0092"].get_version(server.domain))
    assert condition == "service-unavailable"

    info = await asyncio.wait_for(
        client.plugin["xep_0030"].get_info(jid=server.domain, local=False, cached=False),
        TIMEOUT,
    )
    assert "jabber:iq:version" not in set(info["disco_info"]["features"])


@pytest.mark.parametrize("to", ["localhost", "alice@localhost"], ids=["server", "own-account"])
async def test_unknown_iq_payload_gets_service_unavailable(
    server: ServerHandle, connect: Connect, to: str
) -> None:
    client = await connect(server)

    iq = client.make_iq_get(queryxmlns="urn:example:nothing-handles-this", ito=to)
    condition = await iq_error_condition(iq.send(timeout=5))

    assert condition == "service-unavailable"
    # The stream is still fine afterwards.
    await asyncio.wait_for(client.plugin["xep_0199"].send_ping(server.domain, timeout=5), TIMEOUT)


async def test_many_clients_at_once(server: ServerHandle, new_client: NewClient) -> None:
    clients = [new_client(server, "alice" if n % 2 else "bob", f"r{n}") for n in range(8)]

    await asyncio.gather(*(sign_in(client, server.host, server.port) for client in clients))

    assert {str(client.boundjid) for client in clients} == {
        f"{'alice' if n % 2 else 'bob'}@localhost/r{n}" for n in range(8)
    }
