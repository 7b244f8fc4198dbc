"""PEP with a second library: aioxmpp's AvatarService (XEP-0084 over its PEP client,
which checks the account's disco#info for the pubsub/pep identity first) publishes an
avatar that a slixmpp contact is notified of and fetches, and reads the one the slixmpp
contact publishes."""

from __future__ import annotations

import asyncio

import aioxmpp
import aioxmpp.avatar

from .support import TIMEOUT, NewClient, ServerHandle
from .test_other_client import aioxmpp_client
from .test_pep import PNG, pep_client

METADATA = "urn:xmpp:avatar:metadata"


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
        metadata = await asyncio.wait_for(
            avatars.get_avatar_metadata(aioxmpp.JID.fromstr(server.jid("bob")), require_fresh=True),
            TIMEOUT,
        )
        assert [d.nbytes for d in metadata] == [len(other)]
        assert await asyncio.wait_for(metadata[0].get_image_bytes(), TIMEOUT) == other
