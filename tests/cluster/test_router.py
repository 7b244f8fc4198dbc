"""The router of a cluster node: local sessions as in one process, other nodes' records
from the mirror, and what is delivered to those carried by the bus to their node."""

from __future__ import annotations

from typing import Any

from chinwag.cluster.bus import Entry
from chinwag.server.hooks import Hooks
from chinwag.server.routing.cluster import ClusterRouter
from chinwag.server.routing.local import LocalRouter
from chinwag.server.session import Session
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID

from .support import Host, Record, eventually, message

ALICE = JID.parse("alice@localhost/phone")
BOB_DESK = JID.parse("bob@localhost/desk")
BOB_PHONE = JID.parse("bob@localhost/phone")


class Connection:
    transport_kind = "test"
    closed = False

    def __init__(self) -> None:
        self.sent: list[Element] = []

    def send(self, stanza: Element) -> None:
        self.sent.append(stanza)

    def close_stream(self, error: Any = None) -> None:
        self.closed = True

    def hold(self, work: Any) -> None:
        raise NotImplementedError

    def heard_after_output(self) -> Any:
        raise NotImplementedError


class RoutingHost(Host):
    """Hands what arrives to the node's router, and keeps what it could not deliver."""

    router: ClusterRouter

    def __init__(self) -> None:
        super().__init__()
        self.unrouted: list[JID] = []

    def inbound(self, entry: Entry) -> None:
        self.entries.append(entry)
        unrouted = self.router.receive(entry)
        self.unrouted.extend(to for to, _ in unrouted)
        if unrouted:
            entry.handed_on(len(unrouted))

    def signalled(self, event: str, sessions: list[JID]) -> None:
        super().signalled(event, sessions)
        self.router.signalled(event, sessions)


async def node_with_router(
    cluster, name: str, hooks: Hooks | None = None
) -> tuple[Any, RoutingHost, ClusterRouter]:
    host = RoutingHost()
    node, _ = await cluster.start(name, host=host)
    host.router = ClusterRouter(LocalRouter(hooks or Hooks(), node=name), node.registry, node.bus)
    return node, host, host.router


def bind(router: ClusterRouter, jid: JID) -> Connection:
    connection = Connection()
    router.local.add(Session(jid, connection, None, node=router.node))
    return connection


async def test_a_stanza_for_another_nodes_session_reaches_it_through_the_bus(
    cluster, redis
) -> None:
    _, _, a_router = await node_with_router(cluster, "a")
    b, b_host, b_router = await node_with_router(cluster, "b")
    desk = bind(b_router, BOB_DESK)
    b.registry.publish(Record(BOB_DESK, available=True))
    await eventually(lambda: a_router.record(BOB_DESK) is not None)

    assert a_router.route(BOB_DESK, message(BOB_DESK.text, "routed"))
    [record] = a_router.resources(BOB_DESK.bare)
    a_router.deliver(record, message(BOB_DESK.bare.text, "delivered"))

    await eventually(lambda: len(desk.sent) == 2)
    assert [stanza.find("body").text for stanza in desk.sent] == ["routed", "delivered"]  # type: ignore[union-attr]
    await b.writer.drain()
    assert await redis.xlen(cluster.prefix + "inbox:b") == 0  # acknowledged and deleted
    assert b_host.unrouted == []


async def test_local_sessions_are_served_as_in_one_process_without_redis(cluster) -> None:
    a, _, router = await node_with_router(cluster, "a")
    b, _, _ = await node_with_router(cluster, "b")
    phone = bind(router, ALICE)
    b.registry.publish(Record(JID.parse("alice@localhost/laptop")))
    await eventually(lambda: len(router.resources(ALICE.bare)) == 2)
    round_trips = a.writer.round_trips

    assert router.route(ALICE, message(ALICE.text, "local"))
    [session] = [record for record in router.resources(ALICE.bare) if record.node == "a"]
    router.deliver(session, message(ALICE.text, "again"))

    assert [stanza.find("body").text for stanza in phone.sent] == ["local", "again"]  # type: ignore[union-attr]
    assert router.record(ALICE) is session
    assert router.route(JID.parse("alice@localhost/nowhere"), message(ALICE.text, "x")) is False
    await a.writer.drain()
    assert a.writer.round_trips == round_trips


async def test_what_arrives_for_a_session_that_has_gone_is_left_to_the_server(
    cluster, redis
) -> None:
    _, _, a_router = await node_with_router(cluster, "a")
    b, b_host, b_router = await node_with_router(cluster, "b")
    phone = bind(b_router, BOB_PHONE)
    for jid in (BOB_DESK, BOB_PHONE):
        b.registry.publish(Record(jid))
    await eventually(lambda: len(a_router.resources(BOB_DESK.bare)) == 2)

    for record in a_router.resources(BOB_DESK.bare):  # desk ended on b meanwhile
        a_router.deliver(record, message(BOB_DESK.bare.text, "to both"))

    await eventually(lambda: b_host.unrouted == [BOB_DESK])
    assert len(phone.sent) == 1
    await b.writer.drain()  # the host handed the rest on: the entry is done
    assert await redis.xlen(cluster.prefix + "inbox:b") == 0


async def test_an_event_signalled_for_a_session_fires_on_the_node_it_lives_on(
    cluster, redis
) -> None:
    a_hooks, b_hooks = Hooks(), Hooks()
    fired: list[tuple[str, JID]] = []
    a_hooks.add("test/event", lambda session: fired.append(("a", session.jid)))
    b_hooks.add("test/event", lambda session: fired.append(("b", session.jid)))
    a, _, a_router = await node_with_router(cluster, "a", a_hooks)
    b, b_host, b_router = await node_with_router(cluster, "b", b_hooks)
    bind(a_router, ALICE)
    bind(b_router, BOB_DESK)
    for jid in (BOB_DESK, BOB_PHONE):  # bob's phone has gone from b, its record not yet
        b.registry.publish(Record(jid, available=True))
    await eventually(lambda: len(a_router.resources(BOB_DESK.bare)) == 2)
    round_trips = a.writer.round_trips

    [local] = a_router.resources(ALICE.bare)
    a_router.signal(local, "test/event")
    assert fired == [("a", ALICE)]  # at once, without Redis
    await a.writer.drain()
    assert a.writer.round_trips == round_trips
    for record in a_router.resources(BOB_DESK.bare):
        a_router.signal(record, "test/event")
    await eventually(lambda: len(fired) == 2)

    assert fired == [("a", ALICE), ("b", BOB_DESK)]
    assert b_host.signals == [("test/event", [BOB_DESK, BOB_PHONE])]  # one entry
    await b.writer.drain()
    assert await redis.xlen(cluster.prefix + "inbox:b") == 0  # acknowledged and deleted
