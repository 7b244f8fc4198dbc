"""What a session's node knows and the others need, across ``chinwag serve`` processes:
the PEP nodes a client asked notifications of with its caps (XEP-0115, XEP-0163),
archiving preferences set on another node (XEP-0313), and who got a session's
directed presence (RFC 6121 §4.6) when its node dies. Slixmpp clients on loopback.

Nodes ``a`` and ``b`` live through the module; the directed-presence test starts a
node ``c`` of its own and kills it.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import pytest
from slixmpp import JID as SlixJID

from chinwag.store.contacts import Contact, RosterChange
from tests.integration.test_pep import (
    OMEMO2_DEVICES,
    Events,
    asked_for_caps,
    become_available,
    payload,
)

from .nodes import DOMAIN, Client, Clients, Node, NodeProcesses, clients, unique
from .support import TIMEOUT, eventually
from .test_nodes import contacts

pytestmark = pytest.mark.postgres

PEP_PLUGINS = ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084")
NS_MAM = "urn:xmpp:mam:2"


@pytest.fixture(scope="module")
def nodes(node_processes: NodeProcesses) -> NodeProcesses:
    node_processes.start("a")
    node_processes.start("b")
    return node_processes


# --- PEP interest (XEP-0163 with XEP-0115) ---------------------------------------------


async def pep_client(
    opened: Clients, node: Node, user: str, resource: str, interests: tuple[str, ...] = ()
) -> tuple[Client, Events]:
    """A client available with caps asking notifications of ``interests``, once its node
    has learnt what its caps stand for (they are new: a feature of its own)."""
    client = await opened.connect(node, user, resource, plugins=PEP_PLUGINS)
    events = Events(client.xmpp)
    asked = asked_for_caps(client.xmpp)
    await become_available(client.xmpp, asked, f"{user}:{resource}", interests, DOMAIN)
    return client, events


def devices(device_id: str) -> ET.Element:
    return payload(f"<devices xmlns='urn:xmpp:omemo:2'><device id='{device_id}'/></devices>")


async def test_pep_notifications_reach_interested_resources_on_other_nodes(
    nodes: NodeProcesses,
) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        bob_desk, _ = await pep_client(opened, b, bob, "desk")
        _alice_desk, alice_events = await pep_client(
            opened, a, alice, "desk", interests=(OMEMO2_DEVICES,)
        )
        _bob_phone, bob_events = await pep_client(
            opened, a, bob, "phone", interests=(OMEMO2_DEVICES,)
        )
        await nodes.settle()  # node b has read their records since

        await bob_desk.xmpp.plugin["xep_0060"].publish(
            None, OMEMO2_DEVICES, id="current", payload=devices("7"), timeout=TIMEOUT
        )
        bob_bare = f"{bob}@{DOMAIN}"
        event = await alice_events.next(OMEMO2_DEVICES, bob_bare)  # a contact on node a
        assert event.find(".//{*}device").get("id") == "7"  # type: ignore[union-attr]
        await bob_events.next(OMEMO2_DEVICES, bob_bare)  # bob's own resource on node a

        # The last item, to a resource that becomes available on the other node.
        _alice_phone, phone_events = await pep_client(
            opened, b, alice, "phone", interests=(OMEMO2_DEVICES,)
        )
        event = await phone_events.next(OMEMO2_DEVICES, bob_bare)
        assert event.find(".//{*}device").get("id") == "7"  # type: ignore[union-attr]


async def test_explicit_subscribers_hear_of_items_published_on_another_node(
    nodes: NodeProcesses,
) -> None:
    """XEP-0060 §6.1 subscriptions across nodes: bob's phone (no caps interest) on node a
    subscribes with its full JID, his desk on node b with his bare JID; alice publishes
    on node b. Each resource hears once: the bare JID's notification reaches the
    resources on both nodes, the full JID's only the phone."""
    alice, bob, a, b = await contacts(nodes)
    node_name = "urn:example:subscribed"
    async with clients() as opened:
        alice_desk, _ = await pep_client(opened, b, alice, "desk")
        bob_phone, phone_events = await pep_client(opened, a, bob, "phone")
        bob_desk, desk_events = await pep_client(opened, b, bob, "desk")
        service = f"{alice}@{DOMAIN}"
        await alice_desk.xmpp.plugin["xep_0060"].publish(
            None, node_name, id="i1", payload=payload(f"<n xmlns='{node_name}'/>"), timeout=TIMEOUT
        )
        await bob_phone.xmpp.plugin["xep_0060"].subscribe(
            service, node_name, bare=False, timeout=TIMEOUT
        )
        await phone_events.next(node_name, service)  # the last item
        await bob_desk.xmpp.plugin["xep_0060"].subscribe(service, node_name, timeout=TIMEOUT)
        await phone_events.next(node_name, service)  # the last item, at the bare JID
        await desk_events.next(node_name, service)
        await nodes.settle()

        await alice_desk.xmpp.plugin["xep_0060"].publish(
            None, node_name, id="i2", payload=payload(f"<n xmlns='{node_name}'/>"), timeout=TIMEOUT
        )

        for events in (phone_events, desk_events):
            event = await events.next(node_name, service)
            assert event.find(".//{*}item").get("id") == "i2"  # type: ignore[union-attr]
        await asyncio.sleep(0.5)
        assert phone_events.queue.empty() and desk_events.queue.empty()


# --- archiving preferences (XEP-0313) ----------------------------------------------------


async def prefs(client: Client, default: str | None = None) -> str:
    """Set the archiving default (or, None, ask for it); the default the node answers."""
    xmpp = client.xmpp
    iq = xmpp.make_iq_set() if default is not None else xmpp.make_iq_get()
    shown = f" default='{default}'" if default is not None else ""
    iq.append(ET.fromstring(f"<prefs xmlns='{NS_MAM}'{shown}/>"))
    reply = await iq.send(timeout=TIMEOUT)
    found = reply.xml.find(f"{{{NS_MAM}}}prefs")
    assert found is not None
    return found.get("default") or ""


async def test_archiving_preferences_set_on_one_node_apply_on_the_other(
    nodes: NodeProcesses,
) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        desk = await opened.connect(a, alice, "desk")
        phone = await opened.connect(b, alice, "phone", plugins=["xep_0313"])
        sender = await opened.connect(b, bob, "pc")
        for client in (desk, phone, sender):
            client.xmpp.send_presence()
        assert await prefs(phone) == "always"  # node b keeps alice's preferences

        assert await prefs(desk, "never") == "never"  # set on node a
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while await prefs(phone) != "never":
            assert asyncio.get_running_loop().time() < deadline, "node b kept the old ones"
            await asyncio.sleep(0.1)

        sender.send(phone.jid, "routed on node b, after alice archives nothing")
        await eventually(lambda: len(phone.bodies()) == 1)
        archive = phone.xmpp.plugin["xep_0313"]
        with_bob = SlixJID(f"{bob}@{DOMAIN}")
        result = await asyncio.wait_for(archive.retrieve(with_jid=with_bob), TIMEOUT)
    assert list(result["mam"]["results"]) == []


# --- directed presence when its node dies (RFC 6121 4.6) ----------------------------------


async def test_those_who_got_directed_presence_hear_once_when_its_node_dies(
    nodes: NodeProcesses,
) -> None:
    user = unique()
    alice, bob, carol, dave = user("alice"), user("bob"), user("carol"), user("dave")
    await nodes.prepare([alice, bob, carol, dave], [(alice, bob)])
    async with nodes.network() as (services, _oauth):
        # alice hears carol's and dave's presence; they do not hear hers.
        one_way = []
        for other in (carol, dave):
            one_way.append(RosterChange(alice, other, contact(other, "to")))
            one_way.append(RosterChange(other, alice, contact(alice, "from")))
        await services.contacts.save(one_way)
    a, b = nodes.nodes["a"], nodes.nodes["b"]
    c = nodes.start("c")
    async with clients() as opened:
        carol_on_a = await opened.connect(a, carol, "desk")
        dave_on_b = await opened.connect(b, dave, "pc")
        bob_on_b = await opened.connect(b, bob, "pc")
        for client in (carol_on_a, dave_on_b, bob_on_b):
            client.xmpp.send_presence()
        alice_on_c = await opened.connect(c, alice, "laptop")
        alice_on_c.xmpp.send_presence()
        await eventually(lambda: presence_kinds(bob_on_b, alice_on_c.jid) == [""])
        alice_on_c.xmpp.send_presence(pto=f"{carol}@{DOMAIN}", pstatus="to carol's bare JID")
        alice_on_c.xmpp.send_presence(pto=dave_on_b.jid, pstatus="to dave's resource")
        await eventually(lambda: presence_kinds(carol_on_a, alice_on_c.jid) == [""])
        await eventually(lambda: presence_kinds(dave_on_b, alice_on_c.jid) == [""])
        gone = alice_on_c.jid

        c.kill()
        watchers = (carol_on_a, dave_on_b, bob_on_b)
        # The lease runs out, then a survivor's sweep finds it: allow for a loaded machine.
        await eventually(lambda: all(heard_gone(w, gone) for w in watchers), 3 * TIMEOUT)
        await nodes.settle()  # a second one, if any, would come within this

    for watcher in watchers:
        assert presence_kinds(watcher, gone) == ["", "unavailable"], watcher.jid


def contact(username: str, subscription: str) -> Contact:
    return Contact(username, None, subscription, False, False, False, ())


def heard_gone(client: Client, jid: str) -> bool:
    return presence_kinds(client, jid)[-1:] == ["unavailable"]


def presence_kinds(client: Client, jid: str) -> list[str]:
    return [kind if kind == "unavailable" else "" for kind, _ in client.presence_from(jid)]
