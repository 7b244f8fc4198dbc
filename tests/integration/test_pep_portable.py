"""PEP nodes moved between two chinwags through an XEP-0227 export, with slixmpp's own
xep_0060 plugin on both sides: a node's affiliations go with it, so a member still
reads a whitelisted node and an outcast is still kept out of an open one.

alice and bob are contacts with a subscription both ways (``add_mutual``).
"""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from slixmpp.exceptions import IqError

from chinwag.network.portable import ImportLimits, export_users, import_users
from chinwag.network.portable_files import ExportFiles

from .support import TIMEOUT, NewClient, StartServer
from .test_pep import options, payload, pep_client
from .test_pep_owner import item_ids

CLUB = "urn:example:club"
"""Whitelisted: bob reads it as a member."""
NOTICES = "urn:example:notices"
"""Open: bob, an outcast, may not read it."""


async def test_affiliations_survive_an_export_and_an_import_into_a_fresh_server(
    start_server: StartServer, new_client: NewClient
) -> None:
    old = await start_server()
    alice, _ = await pep_client(new_client, old, "alice")
    pubsub, me, bob = alice.plugin["xep_0060"], old.jid("alice"), old.jid("bob")
    for node, access_model in ((CLUB, "whitelist"), (NOTICES, "open")):
        await pubsub.publish(
            None,
            node,
            id="first",
            payload=payload(f"<n xmlns='{node}'/>"),
            options=options(access_model=access_model),
            timeout=TIMEOUT,
        )
    await pubsub.modify_affiliations(me, CLUB, [(bob, "member")], timeout=TIMEOUT)
    await pubsub.modify_affiliations(me, NOTICES, [(bob, "outcast")], timeout=TIMEOUT)
    assert old.app is not None
    exported = io.StringIO()
    await export_users(old.app.database, old.domain, exported.write)

    new = await start_server(with_users=False)
    assert new.app is not None
    users = ExportFiles(new.domain, Path()).users(
        io.BytesIO(exported.getvalue().encode()), "export.xml", Path()
    )
    report = await import_users(new.app.database, users, new.domain, ImportLimits(1000, 262144))
    assert report.users == 2 and not report.left_out

    alice, _ = await pep_client(new_client, new, "alice", "phone")
    bob_client, _ = await pep_client(new_client, new, "bob")
    pubsub, theirs = alice.plugin["xep_0060"], bob_client.plugin["xep_0060"]
    listed = await pubsub.get_node_affiliations(me, CLUB, timeout=TIMEOUT)
    assert [(str(a["jid"]), a["affiliation"]) for a in listed["pubsub_owner"]["affiliations"]] == [
        (me, "owner"),
        (bob, "member"),
    ]
    assert item_ids(await theirs.get_items(me, CLUB, timeout=TIMEOUT)) == ["first"]
    with pytest.raises(IqError) as raised:
        await theirs.get_items(me, NOTICES, timeout=TIMEOUT)
    assert raised.value.condition == "forbidden"
