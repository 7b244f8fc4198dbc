"""Explicit subscriptions to PEP nodes (XEP-0060 §6.1, §6.2, §5.6, §8.8) and the
``roster`` access model, with slixmpp's own xep_0060 plugin against a real chinwag:
who may subscribe, where notifications go (XEP-0163 §4.3: a full JID once, a bare JID
at its interested resources or once at the bare JID, never twice to one resource),
the last item on subscription, subscriptions ending when access does, and the
owner's view and changes.

alice and bob are contacts with a subscription both ways (``add_mutual``); carol is
on nobody's roster, and strangers may reach each other on this module's server.
"""

from __future__ import annotations

import asyncio
from dataclasses import replace
from typing import Any

import pytest
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from chinwag.store.contacts import RosterChange

from .support import TIMEOUT, NewClient, ServerHandle, StartServer
from .test_pep import NS_PUBSUB_ERRORS, Events, error_of, options, payload, pep_client

NODE = "urn:example:subscribed"
PUBSUB = "http://jabber.org/protocol/pubsub"
CAROL = "carol-secret"
QUIET = 0.5
"""How long a client is watched for a notification that must not come."""


@pytest.fixture
async def server(start_server: StartServer) -> ServerHandle:
    """Strangers reach each other here (by default they are kept apart, and an IQ to a
    stranger's account gets ``<service-unavailable/>`` before PEP sees it)."""
    return await start_server(messages={"from_strangers": True})


@pytest.fixture
async def carol(server: ServerHandle) -> str:
    await server.app.accounts.add_user("carol", CAROL)
    return "carol"


async def publish(alice: ClientXMPP, n: int, access: str = "open") -> None:
    await alice.plugin["xep_0060"].publish(
        None,
        NODE,
        id=f"i{n}",
        payload=payload(f"<n xmlns='{NODE}'>{n}</n>"),
        options=options(access_model=access),
        timeout=TIMEOUT,
    )


async def ids_heard(events: Events, sender: str, count: int) -> list[str]:
    """The item ids of the next ``count`` notifications of ``NODE`` from ``sender``."""
    heard = []
    for _ in range(count):
        element = await events.next(NODE, sender)
        heard.extend(item.get("id") for item in element.iter(f"{{{PUBSUB}#event}}item"))
    return heard


def pubsub_error(raised: pytest.ExceptionInfo[IqError]) -> tuple[str, str]:
    """The condition and the pubsub-specific condition of an error."""
    condition, tags = error_of(raised)
    specific = [tag for tag in tags if tag.startswith(f"{{{NS_PUBSUB_ERRORS}}}")]
    assert len(specific) == 1, tags
    return condition, specific[0].split("}")[1]


async def nothing_heard(events: Events) -> None:
    await asyncio.sleep(QUIET)
    assert events.queue.empty(), events.queue.get_nowait()


def subscriptions_of(result: Any, ns: str = PUBSUB) -> list[tuple[str | None, str | None]]:
    return [
        (entry.get("node"), entry.get("jid"))
        for entry in result.xml.iter(f"{{{ns}}}subscription")
        if entry.get("subscription") == "subscribed"
    ]


async def test_a_stranger_subscribes_to_an_open_node_and_hears_of_it_until_it_unsubscribes(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    """carol wants nothing by caps: subscribed by her bare JID, she gets the last item at
    once and each new one at the bare JID, so at every resource of hers."""
    alice, _ = await pep_client(new_client, server, "alice")
    await publish(alice, 1)
    desk, desk_events = await pep_client(new_client, server, carol, "desk", password=CAROL)
    phone, phone_events = await pep_client(new_client, server, carol, "phone", password=CAROL)
    pubsub, service = desk.plugin["xep_0060"], server.jid("alice")

    result = await pubsub.subscribe(service, NODE, timeout=TIMEOUT)

    entry = result.xml.find(f"{{{PUBSUB}}}pubsub/{{{PUBSUB}}}subscription")
    assert entry is not None
    assert (entry.get("node"), entry.get("jid"), entry.get("subscription")) == (
        NODE,
        server.jid("carol"),
        "subscribed",
    )
    assert await ids_heard(desk_events, service, 1) == ["i1"]  # the last item (§6.1.7)
    assert await ids_heard(phone_events, service, 1) == ["i1"]
    await publish(alice, 2)
    assert await ids_heard(desk_events, service, 1) == ["i2"]
    assert await ids_heard(phone_events, service, 1) == ["i2"]
    listed = await phone.plugin["xep_0060"].get_subscriptions(service, timeout=TIMEOUT)
    assert subscriptions_of(listed) == [(NODE, server.jid("carol"))]

    await pubsub.unsubscribe(service, NODE, timeout=TIMEOUT)

    await publish(alice, 3)
    await nothing_heard(desk_events)
    await nothing_heard(phone_events)
    assert subscriptions_of(await pubsub.get_subscriptions(service, timeout=TIMEOUT)) == []
    with pytest.raises(IqError) as raised:
        await pubsub.unsubscribe(service, NODE, timeout=TIMEOUT)
    assert pubsub_error(raised) == ("unexpected-request", "not-subscribed")


async def test_a_full_jid_subscription_is_heard_by_that_resource_alone(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    await publish(alice, 1)
    desk, desk_events = await pep_client(new_client, server, carol, "desk", password=CAROL)
    _phone, phone_events = await pep_client(new_client, server, carol, "phone", password=CAROL)
    service = server.jid("alice")

    await desk.plugin["xep_0060"].subscribe(service, NODE, bare=False, timeout=TIMEOUT)
    assert await ids_heard(desk_events, service, 1) == ["i1"]
    await publish(alice, 2)

    assert await ids_heard(desk_events, service, 1) == ["i2"]
    await nothing_heard(phone_events)
    listed = await desk.plugin["xep_0060"].get_subscriptions(service, NODE, timeout=TIMEOUT)
    assert subscriptions_of(listed) == [(NODE, server.jid("carol", "desk"))]


async def test_a_bare_jid_subscription_goes_to_the_resources_that_want_the_node(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    """XEP-0163 §4.3: with a resource that names ``NODE+notify`` in its caps, a bare JID
    subscriber hears of items there only, the last item on subscription too."""
    alice, _ = await pep_client(new_client, server, "alice")
    await publish(alice, 1)
    _desk, desk_events = await pep_client(
        new_client, server, carol, "desk", interests=(NODE,), password=CAROL
    )
    phone, phone_events = await pep_client(new_client, server, carol, "phone", password=CAROL)
    service = server.jid("alice")
    await phone.plugin["xep_0060"].subscribe(service, NODE, timeout=TIMEOUT)
    assert await ids_heard(desk_events, service, 1) == ["i1"]  # the last item, there too

    await publish(alice, 2)

    assert await ids_heard(desk_events, service, 1) == ["i2"]
    await nothing_heard(phone_events)


async def test_a_contact_that_wants_the_node_and_subscribed_hears_once(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    await publish(alice, 1, access="presence")
    bob, bob_events = await pep_client(new_client, server, "bob", interests=(NODE,))
    service = server.jid("alice")
    assert await ids_heard(bob_events, service, 1) == ["i1"]  # on available presence
    await bob.plugin["xep_0060"].subscribe(service, NODE, bare=False, timeout=TIMEOUT)
    assert await ids_heard(bob_events, service, 1) == ["i1"]  # on subscription

    await publish(alice, 2, access="presence")

    assert await ids_heard(bob_events, service, 1) == ["i2"]
    await nothing_heard(bob_events)


async def test_who_may_not_read_may_not_subscribe(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    carol_client, _ = await pep_client(new_client, server, carol, password=CAROL)
    bob, _ = await pep_client(new_client, server, "bob")
    pubsub, service = carol_client.plugin["xep_0060"], server.jid("alice")
    await publish(alice, 1, access="presence")

    with pytest.raises(IqError) as raised:
        await pubsub.subscribe(service, NODE, timeout=TIMEOUT)
    assert pubsub_error(raised) == ("not-authorized", "presence-subscription-required")
    closed = "urn:example:closed"
    await alice.plugin["xep_0060"].publish(
        None,
        closed,
        payload=payload(f"<n xmlns='{closed}'/>"),
        options=options(access_model="whitelist"),
        timeout=TIMEOUT,
    )
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].subscribe(service, closed, timeout=TIMEOUT)
    assert pubsub_error(raised) == ("not-allowed", "closed-node")
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].subscribe(service, "urn:example:missing", timeout=TIMEOUT)
    assert raised.value.condition == "item-not-found"
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].subscribe(
            service, NODE, subscribee=server.jid("carol"), timeout=TIMEOUT
        )
    assert pubsub_error(raised) == ("bad-request", "invalid-jid")
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].unsubscribe(
            service, NODE, subscribee=server.jid("carol"), timeout=TIMEOUT
        )
    assert raised.value.condition == "forbidden"


async def test_a_subscription_ends_when_the_node_closes_to_its_subscriber(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    """XEP-0163 §7.3: access lost, subscription cancelled; one that may still read
    (a member) keeps it."""
    alice, _ = await pep_client(new_client, server, "alice")
    await publish(alice, 1)
    carol_client, carol_events = await pep_client(new_client, server, carol, password=CAROL)
    bob, bob_events = await pep_client(new_client, server, "bob")
    service, owner = server.jid("alice"), alice.plugin["xep_0060"]
    for client, events in ((carol_client, carol_events), (bob, bob_events)):
        await client.plugin["xep_0060"].subscribe(service, NODE, timeout=TIMEOUT)
        await ids_heard(events, service, 1)
    await owner.modify_affiliations(service, NODE, [(server.jid("bob"), "member")], timeout=TIMEOUT)
    config = Form()
    config["type"] = "submit"
    config.add_field("pubsub#access_model", value="whitelist")

    await owner.set_node_config(service, NODE, config, timeout=TIMEOUT)

    listed = await owner.get_node_subscriptions(service, NODE, timeout=TIMEOUT)
    assert subscriptions_of(listed, f"{PUBSUB}#owner") == [(None, server.jid("bob"))]
    await publish(alice, 2, access="whitelist")
    assert await ids_heard(bob_events, service, 1) == ["i2"]
    await nothing_heard(carol_events)
    await owner.modify_affiliations(
        service, NODE, [(server.jid("bob"), "outcast")], timeout=TIMEOUT
    )
    listed = await owner.get_node_subscriptions(service, NODE, timeout=TIMEOUT)
    assert subscriptions_of(listed, f"{PUBSUB}#owner") == []


async def test_the_owner_lists_adds_and_ends_subscriptions(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    await publish(alice, 1, access="presence")
    bob, bob_events = await pep_client(new_client, server, "bob")
    owner, service = alice.plugin["xep_0060"], server.jid("alice")
    bob_desk = server.jid("bob", "desk")

    await owner.modify_subscriptions(service, NODE, [(bob_desk, "subscribed")], timeout=TIMEOUT)

    listed = await owner.get_node_subscriptions(service, NODE, timeout=TIMEOUT)
    assert subscriptions_of(listed, f"{PUBSUB}#owner") == [(None, bob_desk)]
    await publish(alice, 2, access="presence")
    assert await ids_heard(bob_events, service, 1) == ["i2"]
    with pytest.raises(IqError) as raised:  # carol may not read a presence node
        await owner.modify_subscriptions(
            service, NODE, [(server.jid("carol"), "subscribed")], timeout=TIMEOUT
        )
    assert raised.value.condition == "not-acceptable"
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].get_node_subscriptions(service, NODE, timeout=TIMEOUT)
    assert raised.value.condition == "forbidden"

    await owner.modify_subscriptions(service, NODE, [(bob_desk, "none")], timeout=TIMEOUT)

    assert subscriptions_of(await owner.get_node_subscriptions(service, NODE)) == []
    await publish(alice, 3, access="presence")
    await nothing_heard(bob_events)


def roster_access(*groups: str) -> Form:
    form = options(access_model="roster")
    form.add_field("pubsub#roster_groups_allowed", ftype="list-multi", value=list(groups))
    return form


async def put_in_groups(server: ServerHandle, owner: str, contact: str, *groups: str) -> None:
    """Change ``owner``'s roster item for ``contact`` through the network, as an operator
    would; wait until this server has applied it."""
    contacts = server.app.services.contacts
    item = await contacts.item(owner, contact)
    assert item is not None
    await contacts.save([RosterChange(owner, contact, replace(item, groups=groups))])
    for _ in range(100):
        roster = server.app.xmpp.rosters.get(owner)
        if roster is not None and roster.items[contact].groups == groups:
            return
        await asyncio.sleep(0.05)
    raise AssertionError(f"{owner}'s roster was not updated")


async def test_a_roster_node_is_read_by_contacts_in_its_groups_alone(
    server: ServerHandle, new_client: NewClient, carol: str
) -> None:
    """XEP-0060 §4.5 ``roster``: the contacts in the owner's roster groups the node names
    read it and hear of it; others get ``<not-in-roster-group/>``; a contact moved out of
    those groups loses its subscription (XEP-0163 §7.3)."""
    alice, _ = await pep_client(new_client, server, "alice")
    await put_in_groups(server, "alice", "bob", "friends")
    bob, bob_events = await pep_client(new_client, server, "bob", interests=(NODE,))
    carol_client, _ = await pep_client(new_client, server, carol, password=CAROL)
    owner, service = alice.plugin["xep_0060"], server.jid("alice")

    await owner.publish(
        None,
        NODE,
        id="i1",
        payload=payload(f"<n xmlns='{NODE}'>1</n>"),
        options=roster_access("friends", "family"),
        timeout=TIMEOUT,
    )

    assert await ids_heard(bob_events, service, 1) == ["i1"]
    shown = await owner.get_node_config(service, NODE, timeout=TIMEOUT)
    values = shown["pubsub_owner"]["configure"]["form"].get_values()
    assert values["pubsub#access_model"] == "roster"
    assert values["pubsub#roster_groups_allowed"] == ["friends", "family"]
    with pytest.raises(IqError) as raised:  # 4 KiB of group names at most
        await owner.set_node_config(service, NODE, roster_access("x" * 5000), timeout=TIMEOUT)
    assert raised.value.condition == "not-acceptable"
    items = await bob.plugin["xep_0060"].get_items(service, NODE, timeout=TIMEOUT)
    assert [i.get("id") for i in items.xml.iter(f"{{{PUBSUB}}}item")] == ["i1"]
    await bob.plugin["xep_0060"].subscribe(service, NODE, bare=False, timeout=TIMEOUT)
    for request in ("get_items", "subscribe"):
        with pytest.raises(IqError) as raised:
            await getattr(carol_client.plugin["xep_0060"], request)(service, NODE, timeout=TIMEOUT)
        assert pubsub_error(raised) == ("not-authorized", "not-in-roster-group")

    await put_in_groups(server, "alice", "bob", "work")

    for _ in range(100):
        listed = await owner.get_node_subscriptions(service, NODE, timeout=TIMEOUT)
        if not subscriptions_of(listed, f"{PUBSUB}#owner"):
            break
        await asyncio.sleep(0.05)
    assert subscriptions_of(listed, f"{PUBSUB}#owner") == []
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].get_items(service, NODE, timeout=TIMEOUT)
    assert pubsub_error(raised) == ("not-authorized", "not-in-roster-group")
    while not bob_events.queue.empty():  # the last item again, on subscription
        bob_events.queue.get_nowait()
    await owner.publish(
        None, NODE, id="i2", payload=payload(f"<n xmlns='{NODE}'>2</n>"), timeout=TIMEOUT
    )
    await nothing_heard(bob_events)


async def test_the_owner_subscribes_no_stranger_while_strangers_are_kept_apart(
    start_server: StartServer, new_client: NewClient
) -> None:
    """Else an owner could send headlines, through an open node, to anyone at all."""
    apart = await start_server()
    await apart.app.accounts.add_user("carol", CAROL)
    alice, _ = await pep_client(new_client, apart, "alice")
    await publish(alice, 1)
    owner, service = alice.plugin["xep_0060"], apart.jid("alice")

    with pytest.raises(IqError) as raised:
        await owner.modify_subscriptions(
            service, NODE, [(apart.jid("carol"), "subscribed")], timeout=TIMEOUT
        )

    assert raised.value.condition == "not-acceptable"
    await owner.modify_subscriptions(
        service,
        NODE,
        [(apart.jid("bob"), "subscribed"), (apart.jid("alice", "phone"), "subscribed")],
        timeout=TIMEOUT,
    )
    listed = await owner.get_node_subscriptions(service, NODE, timeout=TIMEOUT)
    assert subscriptions_of(listed, f"{PUBSUB}#owner") == [
        (None, apart.jid("bob")),
        (None, apart.jid("alice", "phone")),
    ]


async def test_a_stranger_made_a_member_hears_nothing_while_strangers_are_kept_apart(
    start_server: StartServer, new_client: NewClient
) -> None:
    """Membership grants reading, which a stranger cannot ask for then: it must not
    bring the owner's notifications either."""
    apart = await start_server()
    await apart.app.accounts.add_user("carol", CAROL)
    alice, _ = await pep_client(new_client, apart, "alice")
    _carol, carol_events = await pep_client(
        new_client, apart, "carol", interests=(NODE,), password=CAROL
    )
    owner, service = alice.plugin["xep_0060"], apart.jid("alice")
    await publish(alice, 1)
    await owner.modify_affiliations(
        service, NODE, [(apart.jid("carol"), "member")], timeout=TIMEOUT
    )

    await publish(alice, 2)

    await nothing_heard(carol_events)


async def test_a_blocked_contact_hears_of_no_item(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0163 §4.3 (and XEP-0191): no notification to whom the owner blocks, whether it
    wants the node by caps or subscribed, nor the last item when it comes online; after
    the unblock, again."""
    alice, _ = await pep_client(new_client, server, "alice")
    alice.register_plugin("xep_0191")
    await publish(alice, 1, access="presence")
    bob, bob_events = await pep_client(new_client, server, "bob", interests=(NODE,))
    service = server.jid("alice")
    assert await ids_heard(bob_events, service, 1) == ["i1"]
    await bob.plugin["xep_0060"].subscribe(service, NODE, bare=False, timeout=TIMEOUT)
    assert await ids_heard(bob_events, service, 1) == ["i1"]
    await alice.plugin["xep_0191"].block(server.jid("bob"), timeout=TIMEOUT)

    await publish(alice, 2, access="presence")
    _phone, phone_events = await pep_client(new_client, server, "bob", "phone", interests=(NODE,))

    await nothing_heard(bob_events)
    await nothing_heard(phone_events)
    await alice.plugin["xep_0191"].unblock(server.jid("bob"), timeout=TIMEOUT)
    await publish(alice, 3, access="presence")
    assert await ids_heard(bob_events, service, 1) == ["i3"]
