"""RFC 6121 §8.5 message routing with real clients, the strangers policy, XEP-0085 chat
states, and the server's disco features.

bob signs in on four resources: ``high`` and ``high2`` (priority 5), ``low`` (1) and
``negative`` (-1); alice, his contact, sends.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest

from chinwag.server import xmpp_server

from .im_support import (
    NS_CHATSTATES,
    NS_DISCO_INFO,
    Peer,
    add_user,
    body,
    error_condition,
    login,
    message,
    q,
    settle,
)
from .support import NewClient, ServerHandle, StartServer

STATES = ("active", "composing", "paused", "inactive", "gone")


async def bob_four_ways(server: ServerHandle, new_client: NewClient) -> dict[str, Peer]:
    return {
        name: await login(new_client, server, "bob", name, priority=priority)
        for name, priority in (("high", 5), ("high2", 5), ("low", 1), ("negative", -1))
    }


def chat(to: str, text: str, kind: str | None = "chat", extra: str = "") -> str:
    type_attr = "" if kind is None else f" type='{kind}'"
    return f"<message to='{to}'{type_attr} id='{text}'><body>{text}</body>{extra}</message>"


async def received_by(bob: dict[str, Peer], sender: Peer, text: str, expected: set[str]) -> None:
    """Exactly the resources named in ``expected`` got the message ``text``."""
    for name in expected:
        got = await bob[name].next(message(id=text))
        assert body(got) == text
        assert got.get("from") == sender.jid
    await settle(sender, *bob.values())
    for name, peer in bob.items():
        if name not in expected:
            peer.assert_none(message(id=text))


# --- to a bare JID ---------------------------------------------------------------------


async def test_chat_and_normal_to_a_bare_jid_reach_the_highest_priority_resources(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await bob_four_ways(server, new_client)
    alice = await login(new_client, server, "alice", "desk")

    for text, kind in (("c1", "chat"), ("n1", "normal"), ("n2", None)):
        alice.send(chat("bob@localhost", text, kind))
        await received_by(bob, alice, text, {"high", "high2"})  # both: they tie

    await bob["high"].client.disconnect()  # now high2 alone is the highest
    alice.send(chat("bob@localhost", "c2"))
    await received_by({k: v for k, v in bob.items() if k != "high"}, alice, "c2", {"high2"})


async def test_headline_to_a_bare_jid_reaches_every_non_negative_resource(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await bob_four_ways(server, new_client)
    alice = await login(new_client, server, "alice", "desk")

    alice.send(chat("bob@localhost", "h1", "headline"))

    await received_by(bob, alice, "h1", {"high", "high2", "low"})


# --- to a full JID -------------------------------------------------------------------------


async def test_full_jid_reaches_that_resource_whatever_its_priority(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await bob_four_ways(server, new_client)
    alice = await login(new_client, server, "alice", "desk")

    for name, kind in (("negative", "chat"), ("low", "normal"), ("negative", "headline")):
        text = f"{name}-{kind}"
        alice.send(chat(f"bob@localhost/{name}", text, kind))
        await received_by(bob, alice, text, {name})


async def test_unknown_resource_falls_back_per_message_type(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await bob_four_ways(server, new_client)
    alice = await login(new_client, server, "alice", "desk")

    for text, kind in (("gone-chat", "chat"), ("gone-normal", "normal")):
        alice.send(chat("bob@localhost/gone", text, kind))
        await received_by(bob, alice, text, {"high", "high2"})  # as if to the bare JID

    alice.send(chat("bob@localhost/gone", "gone-headline", "headline"))
    alice.send(chat("bob@localhost/gone", "gone-error", "error"))
    await received_by(bob, alice, "gone-headline", set())  # silently dropped
    await received_by(bob, alice, "gone-error", set())
    alice.assert_none(message(type="error"))

    alice.send(chat("bob@localhost/gone", "gone-groupchat", "groupchat"))
    error = await alice.next(message(type="error", id="gone-groupchat"))
    assert error_condition(error) == "service-unavailable"
    assert error.get("from") == "bob@localhost/gone"


async def test_groupchat_to_a_bare_jid_gets_service_unavailable(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await bob_four_ways(server, new_client)
    alice = await login(new_client, server, "alice", "desk")

    alice.send(chat("bob@localhost", "room", "groupchat"))

    error = await alice.next(message(type="error", id="room"))
    assert error_condition(error) == "service-unavailable"
    await received_by(bob, alice, "room", set())


async def test_error_messages_reach_a_full_jid_and_are_dropped_for_a_bare_one(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await bob_four_ways(server, new_client)
    alice = await login(new_client, server, "alice", "desk")

    alice.send(chat("bob@localhost/low", "e-full", "error"))
    await received_by(bob, alice, "e-full", {"low"})
    alice.send(chat("bob@localhost", "e-bare", "error"))
    await received_by(bob, alice, "e-bare", set())
    alice.assert_none(message(type="error"))  # no error is ever answered with an error


# --- who may send --------------------------------------------------------------------------


@pytest.mark.parametrize("from_strangers", [False, True])
async def test_message_to_a_user_that_does_not_exist_gets_service_unavailable(
    start_server: StartServer, new_client: NewClient, from_strangers: bool
) -> None:
    server = await start_server(messages={"from_strangers": from_strangers})
    alice = await login(new_client, server, "alice", "desk")

    for index, (to, kind) in enumerate(
        [
            ("nobody@localhost", "chat"),
            ("nobody@localhost", "normal"),
            ("nobody@localhost", "headline"),
            ("nobody@localhost/phone", "chat"),
        ]
    ):
        alice.send(chat(to, f"m{index}", kind))
        error = await alice.next(message(type="error", id=f"m{index}"))
        assert error_condition(error) == "service-unavailable", ET.tostring(error)
        assert error.get("from") == to
        assert body(error) == f"m{index}"  # RFC 6120 8.3.1: the original payload comes back
    assert await server.app.services.offline.count("nobody") == 0  # type: ignore[union-attr]


async def test_message_from_a_stranger_gets_service_unavailable_by_default(
    server: ServerHandle, new_client: NewClient
) -> None:
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", "desk")
    carol = await login(new_client, server, "carol", "phone")

    for index, to in enumerate(("alice@localhost", "alice@localhost/desk")):
        carol.send(chat(to, f"hi{index}"))
        error = await carol.next(message(type="error", id=f"hi{index}"))
        assert error_condition(error) == "service-unavailable"
    alice.send(chat("carol@localhost", "back"))  # and the other way
    error = await alice.next(message(type="error", id="back"))
    assert error_condition(error) == "service-unavailable"

    await settle(carol, alice)
    alice.assert_none(message(from_=carol.jid))
    carol.assert_none(message(from_=alice.jid))
    assert await server.app.services.offline.count("carol") == 0  # type: ignore[union-attr]


async def test_message_from_a_stranger_is_delivered_when_allowed(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(messages={"from_strangers": True})
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", "desk")
    carol = await login(new_client, server, "carol", "phone")

    carol.send(chat("alice@localhost", "hi"))
    alice.send(chat("carol@localhost/phone", "hello"))

    assert body(await alice.next(message(from_=carol.jid, id="hi"))) == "hi"
    assert body(await carol.next(message(from_=alice.jid, id="hello"))) == "hello"


# --- XEP-0085 chat states ---------------------------------------------------------------------


async def test_chat_states_pass_between_contacts_unchanged(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")

    for state in STATES:
        alice.send(
            f"<message to='bob@localhost' type='chat' id='{state}'><{state} xmlns='{NS_CHATSTATES}'/></message>"
        )
        alice.send(
            chat(
                "bob@localhost/phone", f"{state}-body", extra=f"<{state} xmlns='{NS_CHATSTATES}'/>"
            )
        )

    for state in STATES:
        alone = await bob.next(message(id=state))
        assert [child.tag for child in alone] == [q(state, NS_CHATSTATES)]
        assert alone.get("from") == alice.jid
        assert alone.get("type") == "chat"
        with_body = await bob.next(message(id=f"{state}-body"))
        assert [child.tag for child in with_body] == [
            q("body"),
            q(state, NS_CHATSTATES),
            q("stanza-id", "urn:xmpp:sid:0"),  # the archive's id (XEP-0313, XEP-0359)
        ]
        assert body(with_body) == f"{state}-body"


# --- XEP-0030: what the server says it supports -------------------------------------------------

EXPECTED_FEATURES = {
    "http://jabber.org/protocol/disco#info",
    "http://jabber.org/protocol/disco#items",
    "urn:xmpp:ping",
    "jabber:iq:version",
    "vcard-temp",
    "http://jabber.org/protocol/chatstates",
    "urn:xmpp:carbons:2",
    "urn:xmpp:carbons:rules:0",
    "urn:xmpp:blocking",
    "jabber:iq:register",
    "msgoffline",
    "jabber:iq:private",
    "urn:xmpp:pep-vcard-conversion:0",
}


@pytest.mark.parametrize(
    "settings",
    [{}, {"roster": {"management": True}, "vcard": {"updates": True}}],
    ids=["default", "everything-on"],
)
async def test_disco_lists_exactly_what_is_supported(
    start_server: StartServer, new_client: NewClient, settings: dict[str, object]
) -> None:
    server = await start_server(**settings)
    alice = await login(new_client, server, "alice", available=False)

    reply = await alice.iq(f"<iq type='get' to='localhost'><query xmlns='{NS_DISCO_INFO}'/></iq>")

    assert reply.get("type") == "result", ET.tostring(reply)
    query = reply.find(q("query", NS_DISCO_INFO))
    assert query is not None
    features = [feature.get("var") for feature in query.findall(q("feature", NS_DISCO_INFO))]
    assert sorted(features) == sorted(EXPECTED_FEATURES)  # each once, nothing else
    identities = {
        (i.get("category"), i.get("type")) for i in query.findall(q("identity", NS_DISCO_INFO))
    }
    assert identities == {("server", "im")}


# --- idle streams ----------------------------------------------------------------------


async def test_streams_that_went_quiet_give_up_their_parser_and_read_on(
    start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A sweep releases the XML parser of every stream silent since the last one; the next
    stanza, split across writes, makes a new parser that knows the stream's namespaces."""
    monkeypatch.setattr(xmpp_server, "IDLE_SWEEP_SECONDS", 0.2)
    server = await start_server()
    alice = await login(new_client, server, "alice")
    bob = await login(new_client, server, "bob")
    assert server.app is not None
    streams = [connection.stream for connection in server.app.xmpp.connections]
    await asyncio.sleep(0.6)
    assert all(stream._parser._parser is None for stream in streams)
    half = chat(bob.jid, "after-the-sweep")
    alice.send(half[:20])
    await asyncio.sleep(0.05)
    alice.send(half[20:])
    got = await bob.next(message(id="after-the-sweep"))
    assert body(got) == "after-the-sweep" and got.get("from") == alice.jid
