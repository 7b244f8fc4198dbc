"""XEP-0352 client state indication with slixmpp's own xep_0352 plugin: an inactive
client is not sent presence updates and chat states until something urgent comes for
it or it says it is active again; then it gets the latest of them, in order.

Whatever the inactive client itself sends to the server would be answered, and an
answer releases what waits. So "nothing arrived" is checked after the sender has
synced and a short quiet spell (``QUIET``); the order of what arrives later shows
that nothing else came.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from slixmpp import ClientXMPP

from .im_support import NS_CHATSTATES, Match, Peer, body, drop_and_resume, login, q, text_of
from .support import TIMEOUT, NewClient, ServerHandle, sign_in

QUIET = 0.3
"""How long an inactive client is watched for what it should not get: far longer than
a stanza takes on the loopback."""


async def csi_login(
    new_client: NewClient,
    server: ServerHandle,
    user: str,
    resource: str,
    *,
    client: ClientXMPP | None = None,
) -> Peer:
    """A signed-in, available :class:`Peer` whose client (a new one unless given) loads
    slixmpp's xep_0352."""
    if client is None:
        client = new_client(server, user, resource)
    client.register_plugin("xep_0352")
    peer = Peer(client)
    await sign_in(client, server.host, server.port)
    peer.send("<presence/>")
    await peer.sync()
    return peer


async def go_inactive(peer: Peer) -> None:
    csi = peer.client.plugin["xep_0352"]
    assert csi.enabled, "the server did not announce <csi xmlns='urn:xmpp:csi:0'/>"
    csi.send_inactive()
    await peer.sync()  # the server has read <inactive/>


def said(element: ET.Element) -> str:
    """What a stanza from a contact says: "presence:dnd", "composing", "body:hi", "iq:get"."""
    if element.tag == q("iq"):
        return f"iq:{element.get('type')}"
    if element.tag == q("presence"):
        return f"presence:{text_of(element, 'show') or element.get('type') or 'available'}"
    text = body(element)
    if text is not None:
        return f"body:{text}"
    states = [child.tag for child in element if child.tag.startswith(f"{{{NS_CHATSTATES}}}")]
    return states[0].partition("}")[2] if states else ET.tostring(element, encoding="unicode")


async def arrivals_until(peer: Peer, last: Match, sender: str) -> list[str]:
    """What ``sender`` sent ``peer``, in the order it arrived, up to the first stanza that
    matches ``last`` (which must come within ``TIMEOUT``); they are taken from the inbox."""
    async with asyncio.timeout(TIMEOUT):
        while not any(last(element) for element in peer.inbox):
            await asyncio.sleep(0.01)
    end = next(index for index, element in enumerate(peer.inbox) if last(element))
    arrived, peer.inbox = peer.inbox[: end + 1], peer.inbox[end + 1 :]
    return [said(element) for element in arrived if element.get("from") == sender]


def message_with_body(element: ET.Element) -> bool:
    return element.tag == q("message") and body(element) is not None


def chat_state(peer: Peer, to: str, state: str) -> None:
    peer.send(f"<message to='{to}' type='chat'><{state} xmlns='{NS_CHATSTATES}'/></message>")


async def quiet_spell(peer: Peer, sender: str) -> None:
    await asyncio.sleep(QUIET)
    got = [said(element) for element in peer.inbox if element.get("from") == sender]
    assert got == [], f"an inactive client was sent {got}"


async def test_an_inactive_client_gets_the_latest_presence_with_the_next_message(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await csi_login(new_client, server, "alice", "phone")
    bob = await login(new_client, server, "bob", "desk")
    assert await arrivals_until(alice, lambda e: e.get("from") == bob.jid, bob.jid) == [
        "presence:available"
    ]
    await go_inactive(alice)

    for show in ("away", "xa", "dnd"):
        bob.send(f"<presence><show>{show}</show></presence>")
    chat_state(bob, alice.jid, "composing")
    chat_state(bob, alice.jid, "paused")
    await bob.sync()
    await quiet_spell(alice, bob.jid)

    bob.client.send_message(mto=alice.jid, mbody="are you there?", mtype="chat")

    assert await arrivals_until(alice, message_with_body, bob.jid) == [
        "presence:dnd",
        "paused",
        "body:are you there?",
    ]
    chat_state(bob, alice.jid, "composing")  # still inactive: it waits again
    await bob.sync()
    await quiet_spell(alice, bob.jid)


async def test_active_releases_what_waited_in_order(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await csi_login(new_client, server, "alice", "phone")
    bob = await login(new_client, server, "bob", "desk")
    await arrivals_until(alice, lambda e: e.get("from") == bob.jid, bob.jid)
    await go_inactive(alice)
    bob.send("<presence><show>away</show></presence>")
    chat_state(bob, alice.jid, "composing")
    bob.send("<presence><show>xa</show></presence>")
    await bob.sync()
    await quiet_spell(alice, bob.jid)

    alice.client.plugin["xep_0352"].send_active()

    # "xa" replaced "away", so it comes after the chat state sent in between.
    assert await arrivals_until(alice, lambda e: e.tag == q("presence"), bob.jid) == [
        "composing",
        "presence:xa",
    ]
    bob.send("<presence><show>dnd</show></presence>")  # active again: at once
    assert await arrivals_until(alice, lambda e: e.tag == q("presence"), bob.jid) == [
        "presence:dnd"
    ]


async def test_an_inactive_client_answers_iqs_at_once(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await csi_login(new_client, server, "alice", "phone")
    bob = await login(new_client, server, "bob", "desk")
    await arrivals_until(alice, lambda e: e.get("from") == bob.jid, bob.jid)
    await go_inactive(alice)
    bob.send("<presence><show>away</show></presence>")

    pong = bob.client.plugin["xep_0199"].send_ping(alice.jid, timeout=TIMEOUT)
    await asyncio.wait_for(pong, TIMEOUT)

    assert await arrivals_until(alice, lambda e: e.tag == q("iq"), bob.jid) == [
        "presence:away",
        "iq:get",
    ]


async def test_a_resumed_stream_starts_active_and_gets_what_waited_at_once(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0352 §5.2: the state does not survive into a resumed stream (XEP-0198, with
    slixmpp's xep_0198), so what waited is written on resumption, with nothing else coming
    for it."""
    client = new_client(server, "alice", "phone")
    client.register_plugin("xep_0198")
    alice = await csi_login(new_client, server, "alice", "phone", client=client)
    bob = await login(new_client, server, "bob", "desk")
    await arrivals_until(alice, lambda e: e.get("from") == bob.jid, bob.jid)
    await go_inactive(alice)
    bob.send("<presence><show>away</show></presence>")
    await bob.sync()
    await quiet_spell(alice, bob.jid)
    sm = client.plugin["xep_0198"]
    sm.request_ack()
    async with asyncio.timeout(TIMEOUT):  # nothing of alice's to send again on resumption
        while sm.last_ack != sm.seq:
            await asyncio.sleep(0.01)

    await drop_and_resume(alice, server)

    assert await arrivals_until(alice, lambda e: e.tag == q("presence"), bob.jid) == [
        "presence:away"
    ]
