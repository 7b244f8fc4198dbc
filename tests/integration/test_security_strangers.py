"""Strangers are kept out (issue 16, point 5) and a vCard fetch enumerates no accounts
(the vCard half of point 9), with real clients.

With ``messages.from_strangers = false`` (the default) a user who is nobody's contact
reaches nobody by any stanza kind, and every answer they get is the one RFC 6121 §8.5.1
gives for an account that does not exist: the same whether the account exists, is
online, or has the resource they guessed. The replies are compared whole, serialized,
with only the address asked about (and the id) written the same.

alice and bob are mutual contacts; carol is nobody's contact; nobody has no account.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from .im_support import (
    NS_DISCO_INFO,
    NS_PING,
    NS_ROSTER,
    NS_STANZAS,
    NS_VCARD,
    Match,
    Peer,
    add_user,
    body,
    error_condition,
    login,
    message,
    presence,
    settle,
    stanza,
    text_of,
)
from .support import NewClient, ServerHandle, StartServer, close_client

pytestmark = pytest.mark.security

PING = f"<ping xmlns='{NS_PING}'/>"
FLOOD = 200
"""IQs a stranger sends at once to a user's full JID (the issue saw 20,000 get through)."""


async def alice_and_carol(server: ServerHandle, new_client: NewClient) -> tuple[Peer, Peer]:
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", "desk")
    carol = await login(new_client, server, "carol", "phone")
    await settle(alice, carol)
    alice.inbox.clear()
    carol.inbox.clear()
    return alice, carol


def from_user(username: str) -> Match:
    """Any stanza from any address of the account ``username``."""
    return lambda element: element.get("from", "").partition("/")[0] == f"{username}@localhost"


def as_asked(reply: ET.Element, to: str) -> bytes:
    """``reply`` serialized, with the address it was asked of and its id written the same."""
    reply.set("id", "ID")
    return ET.tostring(reply).replace(to.encode(), b"TO")


async def ask(peer: Peer, to: str, iq: str) -> bytes:
    """Send ``iq`` (an ``<iq`` with no id and no to) to ``to``; its reply, :func:`as_asked`."""
    peer.send(iq.replace("<iq ", f"<iq id='asked' to='{to}' ", 1))
    return as_asked(await peer.next(stanza("iq", id="asked", from_=to)), to)


async def test_presence_from_a_stranger_is_ignored_with_or_without_status(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, carol = await alice_and_carol(server, new_client)
    bob = await login(new_client, server, "bob", "phone")
    await settle(alice, bob)
    alice.inbox.clear()

    for to in ("alice@localhost/desk", "alice@localhost"):
        carol.send(f"<presence to='{to}'><status>cheap pills at spam.example</status></presence>")
        carol.send(
            f"<presence to='{to}' type='unavailable'><status>spam.example</status></presence>"
        )
        carol.send(f"<presence to='{to}' type='probe'/>")
    alice.send("<presence to='carol@localhost/phone'><status>who are you?</status></presence>")
    bob.send("<presence to='alice@localhost/desk'><status>from a contact</status></presence>")

    directed = await alice.next(presence(from_=bob.jid))  # between contacts it still arrives
    assert text_of(directed, "status") == "from a contact"
    await settle(carol, alice)
    alice.assert_none(from_user("carol"))
    carol.assert_none(from_user("alice"))  # no presence, no probe answer, no error either

    alice.kill()  # nor is alice's refused directed presence followed by her unavailable
    await bob.next(presence(from_=alice.jid, type="unavailable"))
    await settle(carol)
    carol.assert_none(from_user("alice"))


async def test_an_error_message_with_a_body_from_a_stranger_is_dropped(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, carol = await alice_and_carol(server, new_client)
    error = f"<error type='cancel'><undefined-condition xmlns='{NS_STANZAS}'/></error>"

    for to in ("alice@localhost/desk", "alice@localhost"):
        carol.send(
            f"<message type='error' to='{to}'><body>visit spam.example</body>{error}</message>"
        )
    alice.send(f"<message type='error' to='carol@localhost/phone'><body>no</body>{error}</message>")

    await settle(carol, alice)
    alice.assert_none(from_user("carol"))
    carol.assert_none(from_user("alice"))  # an error is never answered with an error


async def test_an_iq_from_a_stranger_gets_one_answer_online_or_not(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, carol = await alice_and_carol(server, new_client)
    get, set_ = f"<iq type='get'>{PING}</iq>", f"<iq type='set'>{PING}</iq>"

    online = await ask(carol, "alice@localhost/desk", get)
    assert b"service-unavailable" in online, online
    assert await ask(carol, "alice@localhost/desk", set_) == online
    assert await ask(carol, "alice@localhost/guessed", get) == online
    assert await ask(carol, "nobody@localhost/desk", get) == online

    for index in range(FLOOD):
        carol.send(f"<iq type='get' id='flood{index}' to='alice@localhost/desk'>{PING}</iq>")
    for index in range(FLOOD):
        reply = await carol.next(stanza("iq", id=f"flood{index}"))
        assert as_asked(reply, "alice@localhost/desk") == online
    for iq_type in ("result", "error"):  # answers to nothing alice asked: dropped
        carol.send(f"<iq type='{iq_type}' id='{iq_type}' to='alice@localhost/desk'/>")
    await settle(carol, alice)
    alice.assert_none(from_user("carol"))
    carol.assert_none(stanza("iq", from_="alice@localhost/desk"))

    await close_client(alice.client)
    assert await ask(carol, "alice@localhost/desk", get) == online


async def test_a_message_from_a_stranger_gets_the_answer_of_an_account_that_does_not_exist(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, carol = await alice_and_carol(server, new_client)
    targets = (
        "alice@localhost/desk",
        "alice@localhost/guessed",
        "alice@localhost",
        "nobody@localhost/desk",
        "nobody@localhost",
    )

    for kind in ("chat", "normal", "headline", "groupchat", "error"):
        for to in targets:
            carol.send(f"<message type='{kind}' id='{kind}' to='{to}'><body>hi</body></message>")
        await settle(carol)
        answers = {
            to: [as_asked(reply, to) for reply in carol.take_all(message(id=kind, from_=to))]
            for to in targets
        }
        assert len(set(map(tuple, answers.values()))) == 1, answers
        if kind == "error":  # dropped, as to an account that does not exist
            assert answers["nobody@localhost"] == [], answers
        else:
            (reply,) = answers["nobody@localhost"]
            assert b"service-unavailable" in reply and b">hi<" in reply, reply
    await settle(alice)
    alice.assert_none(from_user("carol"))
    assert await server.app.services.offline.count("alice") == 0  # type: ignore[union-attr]


async def test_strangers_become_contacts_by_subscription_and_only_then_reach_each_other(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(roster={"management": True})
    alice, carol = await alice_and_carol(server, new_client)

    carol.send("<presence to='alice@localhost' type='subscribe'/>")  # a request passes
    await alice.next(presence(type="subscribe", from_="carol@localhost"))
    pending = await carol.iq(f"<iq type='get' to='{alice.jid}'>{PING}</iq>")
    assert error_condition(pending) == "service-unavailable", ET.tostring(pending)
    await settle(alice)
    alice.assert_none(from_user("carol"))  # a pending request makes no contact

    alice.send("<presence to='carol@localhost' type='subscribed'/>")
    await carol.next(presence(type="subscribed", from_="alice@localhost"))
    await carol.next(presence(type=None, from_=alice.jid))  # both rosters are updated
    # carol sees alice's presence, alice not carol's: contacts, both ways round.
    carol.send(f"<message type='chat' id='hi' to='{alice.jid}'><body>hi</body></message>")
    alice.send(f"<message type='chat' id='hello' to='{carol.jid}'><body>hello</body></message>")
    assert body(await alice.next(message(from_=carol.jid, id="hi"))) == "hi"
    assert body(await carol.next(message(from_=alice.jid, id="hello"))) == "hello"
    answered = await carol.iq(f"<iq type='get' to='{alice.jid}'>{PING}</iq>")
    assert answered.get("type") == "result", ET.tostring(answered)


ACCOUNT_SCOPE = {
    "vCard get": f"<iq type='get'><vCard xmlns='{NS_VCARD}'/></iq>",
    "vCard set": f"<iq type='set'><vCard xmlns='{NS_VCARD}'><FN>x</FN></vCard></iq>",
    "roster get": f"<iq type='get'><query xmlns='{NS_ROSTER}'/></iq>",
    "ping": f"<iq type='get'>{PING}</iq>",
    "disco#info": f"<iq type='get'><query xmlns='{NS_DISCO_INFO}'/></iq>",
    "version": "<iq type='get'><query xmlns='jabber:iq:version'/></iq>",
    "disco#items": "<iq type='get'><query xmlns='http://jabber.org/protocol/disco#items'/></iq>",
    "PEP items": "<iq type='get'><pubsub xmlns='http://jabber.org/protocol/pubsub'>"
    "<items node='urn:xmpp:avatar:metadata'/></pubsub></iq>",
    "private storage": "<iq type='get'><query xmlns='jabber:iq:private'>"
    "<storage xmlns='storage:bookmarks'/></query></iq>",
}


async def test_iqs_to_a_bare_jid_tell_a_stranger_nothing_of_who_has_an_account(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields("alice", fn="Alice Liddell", nickname="ali")
    _alice, carol = await alice_and_carol(server, new_client)

    for name, iq in ACCOUNT_SCOPE.items():
        existing = await ask(carol, "alice@localhost", iq)
        assert existing == await ask(carol, "nobody@localhost", iq), name
        assert b'type="error"' in existing, (name, existing)
    card = await ask(carol, "alice@localhost", ACCOUNT_SCOPE["vCard get"])
    assert error_condition(ET.fromstring(card)) == "service-unavailable", card
