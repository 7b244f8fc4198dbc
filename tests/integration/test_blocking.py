"""XEP-0191 blocking with slixmpp's own ``xep_0191`` plugin against a real chinwag.

alice and bob are contacts the network assigned (``add_mutual``, subscription both).
alice blocks bob: each sees the other go offline, bob's messages bounce with
<service-unavailable/>, alice's to bob with <not-acceptable/> and <blocked/>, and no
presence passes either way; the list says so; then she unblocks him and all of it
comes back.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

from slixmpp import JID

from .im_support import Peer, error_condition, message, presence, q, settle
from .support import TIMEOUT, NewClient, ServerHandle, sign_in

NS_BLOCKING = "urn:xmpp:blocking"
NS_BLOCKING_ERRORS = "urn:xmpp:blocking:errors"


async def blocking_client(new_client: NewClient, server: ServerHandle, user: str) -> Peer:
    """A signed-in, available :class:`Peer` with slixmpp's XEP-0191 plugin."""
    client = new_client(server, user, "desk")
    client.register_plugin("xep_0191")
    peer = Peer(client)
    await sign_in(client, server.host, server.port)
    peer.send("<presence/>")
    await peer.sync()
    return peer


async def test_block_a_contact_then_unblock(server: ServerHandle, new_client: NewClient) -> None:
    alice = await blocking_client(new_client, server, "alice")
    bob = await blocking_client(new_client, server, "bob")
    await alice.next(presence(from_=bob.jid, type=None))
    await bob.next(presence(from_=alice.jid, type=None))
    plugin = alice.client.plugin["xep_0191"]
    info = await alice.client.plugin["xep_0030"].get_info(jid=server.domain, timeout=TIMEOUT)
    assert NS_BLOCKING in info["disco_info"]["features"]
    assert await plugin.get_blocked_jids(timeout=TIMEOUT) == set()
    pushes: asyncio.Queue[ET.Element] = asyncio.Queue()
    alice.client.add_event_handler("blocked", lambda iq: pushes.put_nowait(iq.xml))
    alice.client.add_event_handler("unblocked", lambda iq: pushes.put_nowait(iq.xml))

    result = await plugin.block(JID("bob@localhost"), timeout=TIMEOUT)

    assert result["type"] == "result"
    push = await asyncio.wait_for(pushes.get(), TIMEOUT)  # alice asked for the list
    assert [i.get("jid") for i in push.iter(q("item", NS_BLOCKING))] == ["bob@localhost"]
    await bob.next(presence(from_=alice.jid, type="unavailable"))
    await alice.next(presence(from_=bob.jid, type="unavailable"))
    assert await plugin.get_blocked_jids(timeout=TIMEOUT) == {JID("bob@localhost")}

    bob.send("<message to='alice@localhost' type='chat' id='b1'><body>hello?</body></message>")
    refused = await bob.next(message(id="b1", type="error"))
    assert error_condition(refused) == "service-unavailable"
    alice.send("<message to='bob@localhost' type='chat' id='a1'><body>psst</body></message>")
    blocked = await alice.next(message(id="a1", type="error"))
    assert error_condition(blocked) == "not-acceptable"
    assert blocked.find(f"{q('error')}/{q('blocked', NS_BLOCKING_ERRORS)}") is not None
    bob.send("<presence><show>away</show></presence>")
    alice.send("<presence><show>dnd</show></presence>")
    await settle(bob, alice, bob)
    alice.assert_none(message(id="b1"))
    alice.assert_none(presence(from_=bob.jid))
    bob.assert_none(presence(from_=alice.jid))
    bob.assert_none(message(id="a1"))

    result = await plugin.unblock(JID("bob@localhost"), timeout=TIMEOUT)

    assert result["type"] == "result"
    push = await asyncio.wait_for(pushes.get(), TIMEOUT)
    assert push.find(q("unblock", NS_BLOCKING)) is not None
    shown = await bob.next(presence(from_=alice.jid, type=None))
    assert shown.findtext(q("show")) == "dnd"
    shown = await alice.next(presence(from_=bob.jid, type=None))
    assert shown.findtext(q("show")) == "away"
    assert await plugin.get_blocked_jids(timeout=TIMEOUT) == set()
    bob.send("<message to='alice@localhost' type='chat' id='b2'><body>back</body></message>")
    assert (await alice.next(message(id="b2"))).get("type") == "chat"
    alice.send("<message to='bob@localhost' type='chat' id='a2'><body>yes</body></message>")
    assert (await bob.next(message(id="a2"))).get("type") == "chat"


async def test_blocking_one_resource_keeps_bare_jid_messages_from_it_only(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0191 JID matching: alice blocks bob's desk by its full JID; what she sends to his
    bare JID reaches his laptop and not the desk."""
    alice = await blocking_client(new_client, server, "alice")
    desk = await blocking_client(new_client, server, "bob")
    laptop = Peer(new_client(server, "bob", "laptop"))
    await sign_in(laptop.client, server.host, server.port)
    laptop.send("<presence/>")
    await laptop.sync()
    plugin = alice.client.plugin["xep_0191"]
    await plugin.block(JID("bob@localhost/desk"), timeout=TIMEOUT)

    alice.send("<message to='bob@localhost' type='chat' id='a1'><body>hi</body></message>")

    assert (await laptop.next(message(id="a1"))).get("type") == "chat"
    await settle(alice, desk)
    desk.assert_none(message(id="a1"))
    alice.assert_none(message(id="a1", type="error"))


async def test_a_blocked_contact_cannot_tell_by_a_probe_whether_the_user_is_online(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await blocking_client(new_client, server, "alice")
    bob = await blocking_client(new_client, server, "bob")
    await alice.client.plugin["xep_0191"].block(JID("bob@localhost"), timeout=TIMEOUT)
    await alice.client.disconnect()
    await bob.next(presence(from_=alice.jid, type="unavailable"))

    bob.send("<presence type='probe' to='alice@localhost'/>")

    await settle(bob)
    bob.assert_none(presence(from_="alice@localhost"))
