"""RFC 6121 8.5 message routing (modules/message.py) against the in-memory host: the
module routes by records through the router, and the dispatcher keeps no copy of it."""

from __future__ import annotations

from module_harness import Harness, MakeHarness, MemoryConnection


def chat(to: str, body: str = "hi") -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


def from_alice(to: str, body: str = "hi") -> str:
    return (
        f'<message to="{to}" type="chat" from="alice@localhost/phone"><body>{body}</body></message>'
    )


async def online(host: Harness, user: str, resource: str, priority: int) -> MemoryConnection:
    client = await host.bind(user, resource)
    host.send(client, f"<presence><priority>{priority}</priority></presence>")
    return client


async def contacts(harness: MakeHarness, *modules: str) -> Harness:
    host = await harness(("presence", "message", *modules))
    await host.add_users("alice", "bob", "carol")
    await host.add_contacts("alice", "bob")
    return host


async def test_a_bare_jid_reaches_the_highest_priority_resources(harness: MakeHarness) -> None:
    host = await contacts(harness)
    alice = await host.bind("alice", "phone")
    desk, laptop, phone = [
        await online(host, "bob", resource, priority)
        for resource, priority in (("desk", 5), ("laptop", 5), ("phone", 1))
    ]
    for client in (desk, laptop, phone):
        host.received(client)

    host.send(alice, chat("bob@localhost"))

    assert host.received(desk) == [from_alice("bob@localhost")]
    assert host.received(laptop) == [from_alice("bob@localhost")]
    assert host.received(phone) == []


async def test_a_full_jid_reaches_that_resource_alone(harness: MakeHarness) -> None:
    host = await contacts(harness)
    alice = await host.bind("alice", "phone")
    desk, phone = await online(host, "bob", "desk", 5), await online(host, "bob", "phone", 1)
    host.received(desk), host.received(phone)

    host.send(alice, chat("bob@localhost/phone"))

    assert host.received(phone) == [from_alice("bob@localhost/phone")]
    assert host.received(desk) == []


async def test_a_chat_to_an_unknown_resource_goes_to_the_bare_jid(harness: MakeHarness) -> None:
    host = await contacts(harness)
    alice = await host.bind("alice", "phone")
    desk = await online(host, "bob", "desk", 0)
    host.received(desk)

    host.send(alice, chat("bob@localhost/gone"))

    assert host.received(desk) == [from_alice("bob@localhost/gone")]


async def test_negative_priority_and_unavailable_resources_get_no_bare_message(
    harness: MakeHarness,
) -> None:
    host = await contacts(harness)
    offline_messages: list[str] = []
    host.hooks.add("deliver/offline", lambda routed: offline_messages.append(routed.to.text))
    alice = await host.bind("alice", "phone")
    shy = await online(host, "bob", "shy", -1)
    silent = await host.bind("bob", "silent")  # no initial presence
    host.received(shy)

    host.send(alice, chat("bob@localhost"))

    assert host.received(shy) == host.received(silent) == []
    assert offline_messages == ["bob@localhost"]


async def test_a_stranger_gets_service_unavailable(harness: MakeHarness) -> None:
    host = await contacts(harness)
    carol = await host.bind("carol", "desk")
    bob = await online(host, "bob", "desk", 0)
    host.received(bob)

    host.send(carol, chat("bob@localhost"))

    assert host.received(bob) == []
    [answer] = host.received(carol)
    assert 'type="error"' in answer and "service-unavailable" in answer


async def test_without_the_message_module_no_message_is_routed(harness: MakeHarness) -> None:
    """Message routing is the module's alone: the dispatcher keeps no second copy, and
    nothing else needed one (the rest of the server goes on serving)."""
    host = await harness(("presence", "ping"), messages={"from_strangers": True})
    await host.add_users("alice", "bob")
    alice = await host.bind("alice", "phone")
    bob = await online(host, "bob", "desk", 0)
    host.received(bob)

    host.send(alice, chat("bob@localhost"))
    host.send(alice, chat("bob@localhost/desk"))
    host.send(alice, "<iq type='get' id='p1' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")

    assert host.received(bob) == []
    assert host.received(alice) == [
        '<iq type="result" to="alice@localhost/phone" from="localhost" id="p1"/>'
    ]
