"""XEP-0153 avatar hashes in presence, put there by the server (XEP-0398 §4), seen by
slixmpp's own xep_0153 plugin: an avatar published through XEP-0084 (xep_0084) and a
photo set with ``chinwag profile set --photo`` both reach a contact's client as a new
hash, with the presence sent again; a client's own empty ``<photo/>`` is kept.

alice and bob are contacts with a subscription both ways (``add_mutual``).
"""

from __future__ import annotations

import asyncio
import hashlib
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP

from .im_support import cli_config, run_cli
from .support import TIMEOUT, NewClient, ServerHandle
from .test_pep import PNG, pep_client

OTHER_PNG = PNG + b"other"


class AvatarHashes:
    """The hashes a client's xep_0153 plugin reports, as (from, hash); with ``empty``,
    the empty ``<photo/>``s too, which the plugin does not report, as (from, "")."""

    def __init__(self, client: ClientXMPP, *, empty: bool = False) -> None:
        client.register_plugin("xep_0153")
        self.queue: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
        client.add_event_handler("vcard_avatar_update", self._update)
        if empty:
            client.add_event_handler("presence_available", self._empty)

    def _update(self, presence: Any) -> None:
        self.queue.put_nowait((str(presence["from"]), presence["vcard_temp_update"]["photo"]))

    def _empty(self, presence: Any) -> None:
        photo = presence.xml.find("{vcard-temp:x:update}x/{vcard-temp:x:update}photo")
        if photo is not None and not photo.text:
            self.queue.put_nowait((str(presence["from"]), ""))

    async def expect(self, sender: str, digest: str) -> None:
        """Wait until ``sender``'s presence carries ``digest``."""
        while await asyncio.wait_for(self.queue.get(), TIMEOUT) != (sender, digest):
            pass


async def test_a_published_avatar_reaches_contacts_as_a_presence_hash(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    hashes = AvatarHashes(alice, empty=True)
    bob, _ = await pep_client(new_client, server, "bob")
    bob_full = server.jid("bob", "desk")
    await hashes.expect(bob_full, "")  # no photo yet: an empty <photo/>
    avatar = bob.plugin["xep_0084"]
    avatar_id = avatar.generate_id(PNG)

    await avatar.publish_avatar(PNG, timeout=TIMEOUT)
    await avatar.publish_avatar_metadata(
        [{"id": avatar_id, "type": "image/png", "bytes": len(PNG)}], timeout=TIMEOUT
    )

    await hashes.expect(bob_full, hashlib.sha1(PNG).hexdigest())
    bob.send_presence(pstatus="later")  # and every presence after carries it
    await hashes.expect(bob_full, avatar_id)


async def test_chinwag_profile_set_photo_reaches_contacts_as_a_presence_hash(
    server: ServerHandle, new_client: NewClient, tmp_path: Path
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    hashes = AvatarHashes(alice)
    await pep_client(new_client, server, "bob")
    (tmp_path / "bob.png").write_bytes(OTHER_PNG)

    done = await run_cli(
        cli_config(server, tmp_path), "profile", "set", "bob", "--photo", str(tmp_path / "bob.png")
    )

    assert done.returncode == 0, done.stderr
    await hashes.expect(server.jid("bob", "desk"), hashlib.sha1(OTHER_PNG).hexdigest())


async def test_a_clients_empty_photo_is_kept(server: ServerHandle, new_client: NewClient) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields("bob", photo=PNG, photo_type="image/png")
    alice, _ = await pep_client(new_client, server, "alice")
    hashes = AvatarHashes(alice, empty=True)
    bob, _ = await pep_client(new_client, server, "bob")
    bob_full = server.jid("bob", "desk")
    await hashes.expect(bob_full, hashlib.sha1(PNG).hexdigest())

    bob.send_raw("<presence><x xmlns='vcard-temp:x:update'><photo/></x></presence>")

    await hashes.expect(bob_full, "")


async def test_directed_presence_carries_the_hash_too(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields("bob", photo=PNG, photo_type="image/png")
    alice, _ = await pep_client(new_client, server, "alice")
    statuses: asyncio.Queue[tuple[str, str]] = asyncio.Queue()
    alice.add_event_handler(
        "presence_available",
        lambda p: statuses.put_nowait(
            (p["status"], p.xml.findtext(".//{vcard-temp:x:update}photo"))
        ),
    )
    bob, _ = await pep_client(new_client, server, "bob")

    bob.send_presence(pto=server.jid("alice", "desk"), pstatus="directed")

    wanted = ("directed", hashlib.sha1(PNG).hexdigest())
    while await asyncio.wait_for(statuses.get(), TIMEOUT) != wanted:
        pass
