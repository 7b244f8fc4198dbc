"""PEP with a second library: aioxmpp's AvatarService (XEP-0084 over its PEP client,
which checks the account's disco#info for the pubsub/pep identity first) publishes an
avatar that a slixmpp contact is notified of and fetches, and reads the one the slixmpp
contact publishes; aioxmpp's BookmarkClient (XEP-0048 in XEP-0049 private storage)
shares one list of bookmarks with a slixmpp resource of the same user that uses
XEP-0402; aioxmpp's PubSubClient subscribes to a contact's node explicitly."""

from __future__ import annotations

import asyncio
from typing import Any

import aioxmpp
import aioxmpp.avatar
import aioxmpp.bookmarks
from slixmpp.plugins.xep_0402.stanza import Conference

from .support import TIMEOUT, NewClient, ServerHandle
from .test_other_client import aioxmpp_client
from .test_pep import PNG, payload, pep_client

METADATA = "urn:xmpp:avatar:metadata"
BOOKMARKS2 = "urn:xmpp:bookmarks:1"


async def test_aioxmpp_publishes_and_reads_avatars(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob, bob_events = await pep_client(new_client, server, "bob")
    async with aioxmpp_client(server, "alice") as alice:
        avatars = alice.client.summon(aioxmpp.avatar.AvatarService)
        avatar_set = aioxmpp.avatar.AvatarSet()
        avatar_set.add_avatar_image("image/png", image_bytes=PNG)

        await asyncio.wait_for(avatars.publish_avatar_set(avatar_set), TIMEOUT)

        event = await bob_events.next(METADATA, server.jid("alice"))
        info = event.find(f".//{{{METADATA}}}info")
        assert info is not None and info.get("bytes") == str(len(PNG))
        fetched = await bob.plugin["xep_0084"].retrieve_avatar(
            server.jid("alice"), info.get("id"), timeout=TIMEOUT
        )
        assert fetched.xml.find(".//{urn:xmpp:avatar:data}data") is not None

        other = b"\x89PNG\r\n\x1a\n" + bytes(range(100, 140))
        plugin = bob.plugin["xep_0084"]
        await plugin.publish_avatar(other, timeout=TIMEOUT)
        await plugin.publish_avatar_metadata(
            [{"id": plugin.generate_id(other), "type": "image/png", "bytes": len(other)}],
            timeout=TIMEOUT,
        )
        # The server then announces the new photo in bob's presence (XEP-0398): one that
        # came while the query below waited would take its place in aioxmpp's cache.
        await photo_announced(alice.client, server.jid("bob"), plugin.generate_id(other))
        metadata = await asyncio.wait_for(
            avatars.get_avatar_metadata(aioxmpp.JID.fromstr(server.jid("bob")), require_fresh=True),
            TIMEOUT,
        )
        assert [d.nbytes for d in metadata] == [len(other)]
        assert await asyncio.wait_for(metadata[0].get_image_bytes(), TIMEOUT) == other


async def photo_announced(client: aioxmpp.Client, jid: str, photo: str) -> None:
    """Wait, bounded, until ``client`` has had ``jid``'s presence carry ``photo`` as its
    XEP-0153 hash."""
    presences = client.summon(aioxmpp.PresenceClient)
    contact = aioxmpp.JID.fromstr(jid)
    loop = asyncio.get_running_loop()
    deadline = loop.time() + TIMEOUT
    while True:
        stanza = presences.get_most_available_stanza(contact)
        update = getattr(stanza, "xep0153_x", None)
        if update is not None and update.photo == photo:
            return
        assert loop.time() < deadline, f"{jid}'s presence never announced photo {photo}"
        await asyncio.sleep(0.01)


async def test_aioxmpp_bookmarks_and_xep_0402_are_one_list(
    server: ServerHandle, new_client: NewClient
) -> None:
    me = server.jid("alice")
    phone, phone_events = await pep_client(
        new_client, server, "alice", "phone", interests=(BOOKMARKS2,)
    )
    phone.register_plugin("xep_0402")
    async with aioxmpp_client(server, "alice") as desk:
        bookmarks = desk.client.summon(aioxmpp.bookmarks.BookmarkClient)
        room = aioxmpp.JID.fromstr("room@conference.example")
        await asyncio.wait_for(
            bookmarks.add_bookmark(aioxmpp.bookmarks.Conference("Room", room, nick="ali")),
            TIMEOUT,
        )

        event = await phone_events.next(BOOKMARKS2, me)
        item = event.find("{*}event/{*}items/{*}item")
        assert item is not None and item.get("id") == str(room)
        conference = Conference(xml=item.find(f"{{{BOOKMARKS2}}}conference"))
        assert (conference["name"], conference["nick"]) == ("Room", "ali")

        other = Conference()
        other["name"] = "Other"
        await phone.plugin["xep_0060"].publish(
            None, BOOKMARKS2, id="other@conference.example", payload=other.xml, timeout=TIMEOUT
        )
        listed = await asyncio.wait_for(bookmarks.get_bookmarks(), TIMEOUT)
        assert {(str(b.jid), b.name) for b in listed} == {
            ("room@conference.example", "Room"),
            ("other@conference.example", "Other"),
        }


async def test_aioxmpp_subscribes_hears_of_items_and_unsubscribes(
    server: ServerHandle, new_client: NewClient
) -> None:
    """aioxmpp's PubSubClient, which wants nothing by caps here: its explicit subscription
    (XEP-0060 §6.1) alone brings the last item and each new one, until it ends."""
    node = "urn:example:subscribed"
    alice, _ = await pep_client(new_client, server, "alice")
    publisher = alice.plugin["xep_0060"]
    await publisher.publish(None, node, id="i1", payload=_item(node, 1), timeout=TIMEOUT)
    service = aioxmpp.JID.fromstr(server.jid("alice"))
    async with aioxmpp_client(server, "bob") as bob:
        pubsub = bob.client.summon(aioxmpp.PubSubClient)
        heard: asyncio.Queue[str] = asyncio.Queue()
        pubsub.on_item_published.connect(
            lambda jid, node_, item, **_: heard.put_nowait(f"{jid}/{node_}/{item.id_}")
        )

        response = await asyncio.wait_for(pubsub.subscribe(service, node), TIMEOUT)

        assert response.payload.subscription == "subscribed"
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == f"{service}/{node}/i1"
        await publisher.publish(None, node, id="i2", payload=_item(node, 2), timeout=TIMEOUT)
        assert await asyncio.wait_for(heard.get(), TIMEOUT) == f"{service}/{node}/i2"
        listed = await asyncio.wait_for(pubsub.get_subscriptions(service), TIMEOUT)
        assert [(s.node, s.subscription) for s in listed.subscriptions] == [(node, "subscribed")]
        await asyncio.wait_for(pubsub.unsubscribe(service, node), TIMEOUT)
        await publisher.publish(None, node, id="i3", payload=_item(node, 3), timeout=TIMEOUT)
        await asyncio.sleep(0.5)
        assert heard.empty()


def _item(node: str, n: int) -> Any:
    return payload(f"<n xmlns='{node}'>{n}</n>")
