"""XEP-0199 and XEP-0085, each module against the in-memory host."""

from __future__ import annotations

from module_harness import MakeHarness

from chinwag.xmpp import ns

COMPOSING = (
    "<message to='bob@localhost' type='chat'>"
    "<composing xmlns='http://jabber.org/protocol/chatstates'/></message>"
)


async def test_the_server_answers_a_ping(harness: MakeHarness) -> None:
    host = await harness(("ping",))
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(alice, "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")

    assert host.received(alice) == [
        '<iq type="result" to="alice@localhost/phone" from="localhost" id="p1"/>'
    ]
    assert ns.PING in host.modules["ping"].features()


async def test_a_ping_without_the_module_is_unavailable(harness: MakeHarness) -> None:
    host = await harness(())
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(alice, "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")

    [answer] = host.received(alice)
    assert 'type="error"' in answer and "service-unavailable" in answer


async def test_chat_states_pass_between_contacts_unchanged(harness: MakeHarness) -> None:
    host = await harness(("presence", "message", "chatstates"))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    host.received(bob)

    host.send(alice, COMPOSING)

    assert host.received(bob) == [
        '<message to="bob@localhost" type="chat" from="alice@localhost/phone">'
        '<composing xmlns="http://jabber.org/protocol/chatstates"/></message>'
    ]
    assert ns.CHATSTATES in host.modules["chatstates"].features()


async def test_a_message_with_only_a_chat_state_is_never_stored(harness: MakeHarness) -> None:
    host = await harness(("presence", "message", "offline", "chatstates"))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice = await host.bind("alice", "phone")

    host.send(alice, COMPOSING)  # bob is offline
    host.send(alice, COMPOSING.replace("</message>", "<body>hi</body></message>"))
    await host.settle()

    assert [m.stanza for m in await host.services.offline.fetch("bob")] == [
        '<message to="bob@localhost" type="chat" from="alice@localhost/phone">'
        '<composing xmlns="http://jabber.org/protocol/chatstates"/><body>hi</body></message>'
    ]
