"""Stored messages go out to one session at a time: every session of the account that
sends initial presence while a delivery runs waits its turn, and none is left holding
its live messages back for good."""

from __future__ import annotations

import asyncio

from module_harness import MakeHarness

CHAT = "<message to='{to}' type='chat'><body>{body}</body></message>"


async def test_each_session_that_waited_for_a_delivery_gets_live_messages(
    harness: MakeHarness,
) -> None:
    host = await harness(("presence", "message", "offline"))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice = await host.bind("alice", "desk")
    host.send(alice, "<presence/>")
    host.send(alice, CHAT.format(to="bob@localhost", body="stored"))
    await host.settle()

    phones = [await host.bind("bob", f"phone{n}") for n in range(3)]
    for phone in phones:  # all three before the first delivery has ended
        host.send(phone, "<presence/>")
    for _turn in range(50):  # each answers the ping that follows stored messages
        for phone in phones:
            phone.heard()
        await asyncio.sleep(0.02)
    await host.settle()
    for phone in phones:
        host.received(phone)

    for n, phone in enumerate(phones):
        host.send(alice, CHAT.format(to=f"bob@localhost/phone{n}", body=f"live {n}"))
        received = await host.arrived(phone, 1)
        assert any(f"<body>live {n}</body>" in stanza for stanza in received), received
