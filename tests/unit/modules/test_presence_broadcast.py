"""RFC 6121 presence (modules/presence.py) against the in-memory host: broadcast to
contacts and one's own resources, probes answered from routing records, directed
presence kept in the module's own session slot."""

from __future__ import annotations

from module_harness import Harness, MakeHarness

from chinwag.xmpp.jid import JID


async def contacts(harness: MakeHarness, **settings: object) -> Harness:
    host = await harness(("presence",), **settings)
    await host.add_users("alice", "bob", "carol")
    await host.add_contacts("alice", "bob")
    return host


async def test_initial_presence_reaches_contacts_and_probes_theirs(harness: MakeHarness) -> None:
    host = await contacts(harness)
    bob = await host.bind("bob", "desk")
    host.send(bob, "<presence><show>away</show></presence>")
    carol = await host.bind("carol", "desk")
    host.send(carol, "<presence/>")
    host.received(bob), host.received(carol)

    alice = await host.bind("alice", "phone")
    host.send(alice, "<presence/>")

    assert host.received(bob) == [
        '<presence from="alice@localhost/phone" to="bob@localhost/desk"/>'
    ]
    assert host.received(alice) == [
        '<presence from="alice@localhost/phone" to="alice@localhost/phone"/>',
        '<presence from="bob@localhost/desk" to="alice@localhost/phone"><show>away</show></presence>',
    ]
    assert host.received(carol) == []  # not a contact
    record = host.host.router.record(JID.parse("alice@localhost/phone"))
    assert record is not None and record.available and record.priority == 0


async def test_a_session_that_ends_is_seen_to_leave(harness: MakeHarness) -> None:
    host = await contacts(harness)
    bob = await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    alice = await host.bind("alice", "phone")
    host.send(alice, "<presence/>")
    host.received(bob)

    alice.close_stream()  # the transport went away

    assert host.received(bob) == [
        '<presence from="alice@localhost/phone" type="unavailable" to="bob@localhost/desk"/>'
    ]
    assert host.host.router.record(JID.parse("alice@localhost/phone")) is None


async def test_directed_presence_is_kept_in_the_module_slot_and_undone_on_leaving(
    harness: MakeHarness,
) -> None:
    host = await contacts(harness, messages={"from_strangers": True})
    carol = await host.bind("carol", "desk")
    host.send(carol, "<presence/>")
    alice = await host.bind("alice", "phone")
    host.send(alice, "<presence/>")
    host.received(carol)

    host.send(alice, "<presence to='carol@localhost/desk'/>")

    assert host.received(carol) == [
        '<presence to="carol@localhost/desk" from="alice@localhost/phone"/>'
    ]
    assert alice.session is not None
    assert alice.session.directed == {JID.parse("carol@localhost/desk")}

    host.send(alice, "<presence type='unavailable'/>")

    assert host.received(carol) == [
        '<presence type="unavailable" from="alice@localhost/phone" to="carol@localhost/desk"/>'
    ]
