"""XEP-0199 pings to an account's bare JID, answered by the server on the account's behalf
(RFC 6121 §8.5.2.1.3), against the in-memory host; strangers get what any IQ to a
stranger gets."""

from __future__ import annotations

import pytest
from module_harness import MakeHarness

PING = "<iq type='get' id='p1'{to}><ping xmlns='urn:xmpp:ping'/></iq>"


def ping(to: str | None) -> str:
    return PING.format(to="" if to is None else f" to='{to}'")


def result(to: str, sender: str | None) -> str:
    sent_from = "" if sender is None else f' from="{sender}"'
    return f'<iq type="result" to="{to}"{sent_from} id="p1"/>'


@pytest.mark.parametrize(
    ("target", "answered_from"),
    [
        ("bob@localhost", "bob@localhost"),  # a contact, online
        ("alice@localhost", "alice@localhost"),  # oneself
        (None, None),  # no 'to': the user's own account
    ],
)
async def test_a_ping_to_a_bare_jid_is_answered_by_the_server(
    harness: MakeHarness, target: str | None, answered_from: str | None
) -> None:
    host = await harness(("ping",))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")

    host.send(alice, ping(target))
    await host.settle()

    assert host.received(alice) == [result("alice@localhost/phone", answered_from)]
    assert host.received(bob) == []


async def test_a_ping_to_an_offline_contact_is_answered(harness: MakeHarness) -> None:
    host = await harness(("ping",))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice = await host.bind("alice", "phone")

    host.send(alice, ping("bob@localhost"))
    await host.settle()

    assert host.received(alice) == [result("alice@localhost/phone", "bob@localhost")]


@pytest.mark.parametrize("target", ["bob@localhost", "nobody@localhost"])
async def test_a_stranger_gets_service_unavailable(harness: MakeHarness, target: str) -> None:
    host = await harness(("ping",))
    await host.add_users("alice", "bob")
    alice = await host.bind("alice", "phone")

    host.send(alice, ping(target))
    await host.settle()

    [answer] = host.received(alice)
    assert 'type="error"' in answer and "service-unavailable" in answer


async def test_with_strangers_allowed_an_account_that_exists_is_answered(
    harness: MakeHarness,
) -> None:
    host = await harness(("ping",), messages={"from_strangers": True})
    await host.add_users("alice", "bob")
    alice = await host.bind("alice", "phone")

    host.send(alice, ping("bob@localhost"))
    await host.settle()
    assert host.received(alice) == [result("alice@localhost/phone", "bob@localhost")]

    host.send(alice, ping("nobody@localhost"))  # RFC 6121 §8.5.1: no such account
    await host.settle()
    [answer] = host.received(alice)
    assert 'type="error"' in answer and "service-unavailable" in answer
