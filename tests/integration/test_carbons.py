"""XEP-0280 Message Carbons with slixmpp's own ``xep_0280`` plugin.

alice is signed in three times: ``laptop`` and ``phone`` enable carbons through the
plugin, ``tablet`` does not. bob, her contact, is at ``desk``. Every peer records
what it gets, so a test can also tell what did not arrive (after ``settle``).
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

from .im_support import Peer, body, login, message, q, settle
from .support import TIMEOUT, NewClient, ServerHandle, watch

NS_CARBONS = "urn:xmpp:carbons:2"
NS_FORWARD = "urn:xmpp:forward:0"
PRIVATE = f"<private xmlns='{NS_CARBONS}'/>"
NO_COPY = "<no-copy xmlns='urn:xmpp:hints'/>"


async def with_carbons(peer: Peer) -> Peer:
    peer.client.register_plugin("xep_0280")
    await asyncio.wait_for(peer.client.plugin["xep_0280"].enable(), TIMEOUT)
    return peer


async def alice_three_ways(
    server: ServerHandle, new_client: NewClient, *, phone_priority: int = 0
) -> dict[str, Peer]:
    laptop = await with_carbons(await login(new_client, server, "alice", "laptop"))
    phone = await with_carbons(
        await login(new_client, server, "alice", "phone", priority=phone_priority)
    )
    tablet = await login(new_client, server, "alice", "tablet")
    return {"laptop": laptop, "phone": phone, "tablet": tablet}


def chat(to: str, message_id: str, extra: str = "") -> str:
    return f"<message to='{to}' type='chat' id='{message_id}'><body>{message_id}</body>{extra}</message>"


def carbon(wrapper: str, message_id: str) -> Any:
    """Matches a copy, wrapped in ``<wrapper/>``, of the message ``message_id``."""

    def forwarded(element: ET.Element) -> bool:
        inner = element.find(
            f"{q(wrapper, NS_CARBONS)}/{q('forwarded', NS_FORWARD)}/{q('message')}"
        )
        return inner is not None and inner.get("id") == message_id

    return message(from_="alice@localhost", where=forwarded)


def any_carbon(element: ET.Element) -> bool:
    return element.tag == q("message") and any(
        child.tag.startswith(f"{{{NS_CARBONS}}}") for child in element
    )


async def test_a_message_to_the_laptop_reaches_the_phone_as_received(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await alice_three_ways(server, new_client)
    bob = await login(new_client, server, "bob", "desk")
    copied = watch(alice["phone"].client, "carbon_received")

    bob.send(chat("alice@localhost/laptop", "r1"))

    copy = await asyncio.wait_for(copied, TIMEOUT)  # the plugin took it as alice's own
    assert str(copy["to"]) == "alice@localhost/phone"
    forwarded = copy["carbon_received"]
    assert (str(forwarded["from"]), str(forwarded["to"])) == (
        "bob@localhost/desk",
        "alice@localhost/laptop",
    )
    assert forwarded["body"] == "r1" and forwarded["type"] == "chat"
    original = await alice["laptop"].next(message(id="r1"))
    assert body(original) == "r1"
    await settle(bob, *alice.values())
    assert len(alice["phone"].take_all(any_carbon)) == 1  # the one the plugin took
    for peer in alice.values():
        peer.assert_none(any_carbon)
    alice["tablet"].assert_none(message(id="r1"))


async def test_what_the_laptop_sends_reaches_the_phone_as_sent(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await alice_three_ways(server, new_client)
    bob = await login(new_client, server, "bob", "desk")
    copied = watch(alice["phone"].client, "carbon_sent")

    alice["laptop"].client.send_message(mto="bob@localhost", mbody="s1", mtype="chat")

    copy = await asyncio.wait_for(copied, TIMEOUT)
    forwarded = copy["carbon_sent"]
    assert (str(forwarded["from"]), str(forwarded["to"])) == (
        "alice@localhost/laptop",
        "bob@localhost",
    )
    assert forwarded["body"] == "s1"
    await bob.next(message(from_="alice@localhost/laptop", where=lambda e: body(e) == "s1"))
    await settle(bob, *alice.values())
    assert len(alice["phone"].take_all(any_carbon)) == 1  # the one the plugin took
    for peer in alice.values():
        peer.assert_none(any_carbon)


async def test_a_message_sent_while_bob_is_offline_is_still_copied(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await alice_three_ways(server, new_client)

    alice["laptop"].send(chat("bob@localhost", "o1"))

    await alice["phone"].next(carbon("sent", "o1"))


async def test_private_and_no_copy_messages_are_not_copied(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await alice_three_ways(server, new_client)
    bob = await login(new_client, server, "bob", "desk")

    for message_id, hints in (("p1", PRIVATE + NO_COPY), ("p2", PRIVATE), ("p3", NO_COPY)):
        alice["laptop"].send(chat("bob@localhost/desk", message_id, hints))
        bob.send(chat("alice@localhost/laptop", message_id, hints))
    delivered = await bob.next(message(id="p1"))
    await settle(bob, *alice.values())

    assert delivered.find(q("private", NS_CARBONS)) is not None  # delivered as sent
    alice["phone"].assert_none(any_carbon)


async def test_disabling_stops_the_copies(server: ServerHandle, new_client: NewClient) -> None:
    alice = await alice_three_ways(server, new_client)
    bob = await login(new_client, server, "bob", "desk")
    await asyncio.wait_for(alice["phone"].client.plugin["xep_0280"].disable(), TIMEOUT)

    bob.send(chat("alice@localhost/laptop", "d1"))
    alice["laptop"].send(chat("bob@localhost/desk", "d2"))
    await alice["laptop"].next(message(id="d1"))
    await bob.next(message(id="d2"))
    await settle(bob, *alice.values())

    alice["phone"].assert_none(any_carbon)


async def test_a_message_to_the_bare_jid_is_not_duplicated(
    server: ServerHandle, new_client: NewClient
) -> None:
    """Every resource at the top priority gets the message itself and no copy; one below
    them, with carbons, gets a copy instead."""
    alice = await alice_three_ways(server, new_client)
    bob = await login(new_client, server, "bob", "desk")

    bob.send(chat("alice@localhost", "b1"))
    for peer in alice.values():
        await peer.next(message(id="b1"))
    await settle(bob, *alice.values())
    for peer in alice.values():
        peer.assert_none(any_carbon)
        peer.assert_none(message(id="b1"))

    alice["phone"].send("<presence><priority>-1</priority></presence>")
    await alice["phone"].sync()
    bob.send(chat("alice@localhost", "b2"))
    await alice["phone"].next(carbon("received", "b2"))
    for name in ("laptop", "tablet"):
        await alice[name].next(message(id="b2"))
    await settle(bob, *alice.values())
    alice["phone"].assert_none(message(id="b2"))
    for peer in alice.values():
        peer.assert_none(any_carbon)
