"""RFC 6121 §4 presence with real clients: initial presence and probes, every resource,
updates, unavailable however a session ends, directed presence, and presence errors.

alice and bob are mutual contacts; carol, when a test adds her, is nobody's contact.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from .im_support import (
    add_user,
    error_condition,
    login,
    presence,
    q,
    settle,
    text_of,
)
from .support import NewClient, ServerHandle, StartServer, close_client


async def test_initial_presence_reaches_contacts_and_brings_theirs(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone", available=False)

    bob.send("<presence><show>chat</show><status>hello</status><priority>2</priority></presence>")

    seen = await alice.next(presence(from_=bob.jid))
    assert seen.get("type") is None
    assert seen.get("to") == alice.jid
    assert (text_of(seen, "show"), text_of(seen, "status"), text_of(seen, "priority")) == (
        "chat",
        "hello",
        "2",
    )
    answer = await bob.next(presence(from_=alice.jid))  # the probe, answered by the server
    assert answer.get("type") is None
    assert answer.get("to") == bob.jid
    echo = await bob.next(presence(from_=bob.jid))  # RFC 6121 4.2.2: to itself too
    assert text_of(echo, "status") == "hello"


async def test_every_available_resource_of_a_contact_answers(
    server: ServerHandle, new_client: NewClient
) -> None:
    desk = await login(new_client, server, "alice", "desk")
    phone = await login(new_client, server, "alice", "phone", priority=-1)
    idle = await login(new_client, server, "alice", "idle", available=False)  # no presence yet

    bob = await login(new_client, server, "bob", "phone")

    for resource in (desk, phone):
        await bob.next(presence(from_=resource.jid, type=None))
    await desk.next(presence(from_=phone.jid, type=None))  # one's own resources see each other
    await phone.next(presence(from_=desk.jid, type=None))
    for peer in (desk, phone):
        await peer.next(presence(from_=bob.jid, type=None))
    await settle(bob, idle)
    bob.assert_none(presence(from_=idle.jid))
    idle.assert_none(presence(from_=bob.jid))  # not available: no presence for it


async def test_presence_updates_are_broadcast(server: ServerHandle, new_client: NewClient) -> None:
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")
    await alice.next(presence(from_=bob.jid))

    bob.send("<presence><show>away</show><status>lunch</status></presence>")

    update = await alice.next(presence(from_=bob.jid))
    assert update.get("type") is None
    assert (text_of(update, "show"), text_of(update, "status")) == ("away", "lunch")


@pytest.mark.parametrize("ending", ["unavailable", "stream-closed", "socket-killed"])
async def test_unavailable_is_broadcast_however_the_session_ends(
    server: ServerHandle, new_client: NewClient, ending: str
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    other = await login(new_client, server, "bob", "laptop")
    bob = await login(new_client, server, "bob", "phone")
    await alice.next(presence(from_=bob.jid, type=None))

    if ending == "unavailable":
        bob.send("<presence type='unavailable'><status>bye</status></presence>")
    elif ending == "stream-closed":
        await close_client(bob.client)
    else:
        bob.kill()

    for watcher in (alice, other):
        gone = await watcher.next(presence(from_=bob.jid, type="unavailable"))
        if ending == "unavailable":
            assert text_of(gone, "status") == "bye"
    if ending == "unavailable":  # closing the stream afterwards says nothing more
        await close_client(bob.client)
        await settle(other, alice)
        alice.assert_none(presence(from_=bob.jid))


async def test_directed_presence_and_unavailable_when_its_sender_leaves(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(messages={"from_strangers": True})  # carol is no contact
    await add_user(server, "carol")
    carol = await login(new_client, server, "carol", "phone")
    tablet = await login(new_client, server, "carol", "tablet")
    bob = await login(new_client, server, "bob", "phone")
    alice = await login(new_client, server, "alice", "desk")

    alice.send("<presence to='carol@localhost/phone'><status>psst</status></presence>")

    directed = await carol.next(presence(from_=alice.jid))
    assert text_of(directed, "status") == "psst"
    await settle(alice, tablet)
    tablet.assert_none(presence(from_=alice.jid))  # a full JID: that resource only

    alice.kill()

    await carol.next(presence(from_=alice.jid, type="unavailable"))
    await bob.next(presence(from_=alice.jid, type="unavailable"))
    await settle(tablet)
    tablet.assert_none(presence(from_=alice.jid))


async def test_directed_unavailable_ends_a_directed_presence(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(messages={"from_strangers": True})  # carol is no contact
    await add_user(server, "carol")
    carol = await login(new_client, server, "carol", "phone")
    alice = await login(new_client, server, "alice", "desk")

    alice.send("<presence to='carol@localhost'/>")  # the bare JID: every available resource
    await carol.next(presence(from_=alice.jid, type=None))
    alice.send("<presence to='carol@localhost' type='unavailable'/>")
    await carol.next(presence(from_=alice.jid, type="unavailable"))

    alice.send("<presence type='unavailable'/>")
    await close_client(alice.client)
    await settle(carol)
    carol.assert_none(presence(from_=alice.jid))


async def test_presence_is_not_broadcast_to_non_contacts(
    server: ServerHandle, new_client: NewClient
) -> None:
    await add_user(server, "carol")
    carol = await login(new_client, server, "carol", "phone")
    alice = await login(new_client, server, "alice", "desk")

    alice.send("<presence><show>dnd</show></presence>")
    alice.kill()

    bob = await login(new_client, server, "bob", "phone")
    await settle(bob, carol)
    carol.assert_none(lambda e: e.get("from", "").startswith("alice@"))  # not a contact
    bob.assert_none(presence(from_=alice.jid))  # alice left before bob came


async def test_a_probe_from_a_client_is_answered_by_the_server(
    server: ServerHandle, new_client: NewClient
) -> None:
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")
    carol = await login(new_client, server, "carol", "phone")
    await settle(alice, bob)
    alice.inbox.clear()
    bob.inbox.clear()

    bob.send("<presence to='alice@localhost' type='probe'/>")
    answer = await bob.next(presence(from_=alice.jid))
    assert answer.get("type") is None
    carol.send("<presence to='alice@localhost' type='probe'/>")  # not subscribed: nothing

    await settle(bob, carol, alice)
    alice.assert_none(presence(type="probe"))
    carol.assert_none(presence(from_=alice.jid))

    alice.send("<presence type='unavailable'/>")
    await bob.next(presence(from_=alice.jid, type="unavailable"))
    bob.send("<presence to='alice@localhost' type='probe'/>")
    answer = await bob.next(presence(from_="alice@localhost"))
    assert answer.get("type") == "unavailable"  # RFC 6121 4.3.2: nobody available


async def test_presence_errors(server: ServerHandle, new_client: NewClient) -> None:
    alice = await login(new_client, server, "alice", "desk")
    cases = [
        ("<presence to='bob@@localhost'/>", "jid-malformed"),
        ("<presence to='bob@localhost/'/>", "jid-malformed"),
        ("<presence to='bob@example.org'/>", "remote-server-not-found"),
        ("<presence to='example.org' type='unavailable'/>", "remote-server-not-found"),
        ("<presence type='away'/>", "bad-request"),
    ]
    for index, (stanza, condition) in enumerate(cases):
        alice.send(stanza.replace("<presence ", f"<presence id='e{index}' ", 1))
        error = await alice.next(presence(type="error", id=f"e{index}"))
        assert error_condition(error) == condition, ET.tostring(error)
        assert error.find(q("error")).get("type") in ("modify", "cancel")  # type: ignore[union-attr]
    await alice.sync()  # the stream is still fine
