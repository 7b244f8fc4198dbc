"""The session registry: what one node publishes, every other node mirrors in memory;
a removal takes out only the remover's own record; and a node that missed changes
loads the registry again."""

from __future__ import annotations

import asyncio

from chinwag.cluster.registry import Registry
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import parse_stanza

from .support import Host, Record, eventually

ALICE_PHONE = JID.parse("alice@localhost/phone")
ALICE_DESK = JID.parse("alice@localhost/desk")
ALICE = ALICE_PHONE.bare


async def test_what_one_node_publishes_another_mirrors(cluster) -> None:
    a, _ = await cluster.start("a")
    b, _ = await cluster.start("b")
    phone = Record(ALICE_PHONE, app="app-1")

    a.registry.publish(phone)
    await eventually(lambda: b.registry.record(ALICE_PHONE) is not None)

    mirrored = b.registry.record(ALICE_PHONE)
    assert mirrored is not None
    assert (mirrored.node, mirrored.available, mirrored.interested, mirrored.app) == (
        "a",
        False,
        False,
        "app-1",
    )
    assert mirrored.presence is None
    assert (mirrored.notify, mirrored.directed) == (frozenset(), frozenset())

    phone.available, phone.priority, phone.interested = True, 5, True
    phone.notify = frozenset({"urn:xmpp:omemo:2:devices", "urn:xmpp:avatar:metadata"})
    phone.directed = frozenset({JID.parse("room@localhost/alice"), JID.parse("bob@localhost")})
    phone.presence = parse_stanza(
        "<presence from='alice@localhost/phone'><show>away</show><priority>5</priority></presence>"
    )
    a.registry.publish(phone)
    a.registry.publish(Record(ALICE_DESK))
    await eventually(lambda: len(b.registry.resources(ALICE.text) or {}) == 2)

    mirrored = b.registry.record(ALICE_PHONE)
    assert mirrored is not None
    assert (mirrored.available, mirrored.priority, mirrored.interested) == (True, 5, True)
    assert mirrored.presence is not None and mirrored.presence.find("show").text == "away"  # type: ignore[union-attr]
    assert (mirrored.notify, mirrored.directed) == (phone.notify, phone.directed)
    assert a.registry.record(ALICE_PHONE) is None  # a node's own sessions are the local router's

    a.registry.remove(phone)
    await eventually(lambda: b.registry.record(ALICE_PHONE) is None)
    assert list(b.registry.resources(ALICE.text) or {}) == ["desk"]


async def test_a_node_that_joins_later_loads_what_is_registered(cluster) -> None:
    a, _ = await cluster.start("a")
    a.registry.publish(Record(ALICE_PHONE, available=True, priority=-1))
    await a.writer.drain()

    b, _ = await cluster.start("b")

    mirrored = b.registry.record(ALICE_PHONE)
    assert mirrored is not None and (mirrored.node, mirrored.priority) == ("a", -1)


async def test_changes_in_one_turn_go_in_one_round_trip_once_per_resource(cluster, redis) -> None:
    a, _ = await cluster.start("a")
    before, changes_before = a.writer.round_trips, await redis.xlen(cluster.prefix + "changes")
    phone, desk = Record(ALICE_PHONE), Record(ALICE_DESK)

    for priority in range(50):
        phone.priority = priority
        a.registry.publish(phone)
    a.registry.publish(desk)
    a.registry.remove(desk)
    await a.writer.drain()

    assert a.writer.round_trips - before == 1
    assert await redis.xlen(cluster.prefix + "changes") - changes_before == 1  # desk never showed
    assert await redis.hkeys(cluster.prefix + "sessions:alice@localhost") == [b"phone"]
    assert (await redis.hget(cluster.prefix + "sessions:alice@localhost", "phone")).startswith(
        b"a\x1f\x1f49\x1f"
    )


async def test_the_later_bind_of_a_resource_wins_and_the_earlier_node_is_told(
    cluster, redis
) -> None:
    a, a_host = await cluster.start("a")
    b, b_host = await cluster.start("b")
    c, _ = await cluster.start("c")
    on_a, on_b = Record(ALICE_PHONE), Record(ALICE_PHONE, available=True)
    a.registry.publish(on_a)
    await eventually(lambda: c.registry.record(ALICE_PHONE) is not None)

    b.registry.publish(on_b)
    await eventually(lambda: a_host.replaced == [ALICE_PHONE])

    on_a.available = True
    a.registry.publish(on_a)  # a presence change that crossed the news on the way
    a.registry.remove(on_a)  # a ends its session with <conflict/>: b's record stays
    await a.writer.drain()
    await asyncio.sleep(0.1)
    mirrored = c.registry.record(ALICE_PHONE)
    assert mirrored is not None and mirrored.node == "b"
    assert (await redis.hget(cluster.prefix + "sessions:alice@localhost", "phone")).startswith(
        b"b\x1f"
    )
    assert b_host.replaced == []
    assert await redis.smembers(cluster.prefix + "node-sessions:a") == set()


async def test_a_node_that_lost_its_lease_cannot_publish(cluster, redis) -> None:
    a, _ = await cluster.start("a")
    await redis.set(cluster.prefix + "lease:a", "another process", px=10_000)

    a.registry.publish(Record(ALICE_PHONE))
    await a.writer.drain()

    assert await redis.exists(cluster.prefix + "sessions:alice@localhost") == 0


async def test_a_mirror_that_missed_trimmed_changes_loads_the_registry_again(
    cluster, redis
) -> None:
    a, _ = await cluster.start("a", changes_kept=10)
    late = Registry(redis, a.keys, "late", "token", a.writer, Host())
    await late.load()  # then it falls behind: it reads no changes for a while

    for n in range(400):  # trimming (MAXLEN ~) drops whole blocks of a hundred
        a.registry.publish(Record(JID.parse(f"user{n}@localhost/r")))
        await a.writer.drain()
    a.registry.publish(Record(ALICE_PHONE))
    await a.writer.drain()
    following = asyncio.get_running_loop().create_task(follow_forever(late))
    try:
        await eventually(lambda: late.reloads == 2)
        await eventually(lambda: late.record(ALICE_PHONE) is not None)
        assert late.record(JID.parse("user0@localhost/r")) is not None
    finally:
        following.cancel()


async def test_two_nodes_binding_a_resource_at_once_keep_one_session(cluster, redis) -> None:
    a, a_host = await cluster.start("a")
    b, b_host = await cluster.start("b")

    for _ in range(10):
        a.registry.publish(Record(ALICE_PHONE))
        b.registry.publish(Record(ALICE_PHONE))
        await asyncio.gather(a.writer.drain(), b.writer.drain())
        holder = (await redis.hget(cluster.prefix + "sessions:alice@localhost", "phone"))[:1]
        loser = a_host if holder == b"b" else b_host
        await eventually(lambda loser=loser: loser.replaced == [ALICE_PHONE])
        await asyncio.sleep(0.05)
        assert (a_host.replaced + b_host.replaced) == [ALICE_PHONE]
        a_host.replaced.clear()
        b_host.replaced.clear()


async def test_a_newer_local_session_of_a_resource_outlives_the_older_ones_end(
    cluster, redis
) -> None:
    a, a_host = await cluster.start("a")
    b, _ = await cluster.start("b")
    older, newer = Record(ALICE_PHONE), Record(ALICE_PHONE, available=True)
    a.registry.publish(older)
    await a.writer.drain()

    a.registry.publish(newer)  # bound again on the same node: the older one ends
    a.registry.remove(older)
    await a.writer.drain()

    await eventually(lambda: b.registry.record(ALICE_PHONE) is not None)
    assert (await redis.hget(cluster.prefix + "sessions:alice@localhost", "phone")).startswith(
        b"a\x1fa\x1f"
    )
    a.registry.remove(older)
    await a.writer.drain()
    assert await redis.hexists(cluster.prefix + "sessions:alice@localhost", "phone")
    assert a_host.replaced == []


async def follow_forever(registry: Registry) -> None:
    while True:
        await registry.follow()
