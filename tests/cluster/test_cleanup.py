"""After a node dies: one survivor, however many race, removes its records (and tells
its host which sessions went away) and routes again every stanza in its inbox, read or
not; nothing is left behind that names the dead node."""

from __future__ import annotations

import asyncio

from chinwag.cluster.keys import GROUP
from chinwag.xmpp.jid import JID

from .support import FreezableProxy, Host, Record, eventually, message

DEAD_LEASE = 0.5
RESOURCES = [JID.parse(f"dora@localhost/r{n}") for n in range(5)]


async def test_three_survivors_racing_clean_up_after_a_dead_node_exactly_once(
    cluster, redis
) -> None:
    survivors = [await cluster.start(name, lease_seconds=3) for name in ("a", "b", "c")]
    (a, _), _, _ = survivors
    dead, dead_host = await cluster.start("d", host=Host(hand_on=False), lease_seconds=DEAD_LEASE)
    for jid in RESOURCES:
        dead.registry.publish(Record(jid, available=True))
    await eventually(
        lambda: all(len(n.registry.resources("dora@localhost") or {}) == 5 for n, _ in survivors)
    )
    a.bus.send("d", RESOURCES[0], message(RESOURCES[0].text, "read, never handed on"))
    await eventually(lambda: len(dead_host.entries) == 1)

    dead.halt()
    a.bus.send("d", RESOURCES[1], message(RESOURCES[1].text, "never read"))
    await a.writer.drain()
    await asyncio.sleep(DEAD_LEASE)
    for _ in range(3):  # besides their own sweeps, every third of their lease
        await asyncio.gather(*(node.cleaner.sweep() for node, _ in survivors))
    await eventually(lambda: sum(len(node.cleaner.cleaned) for node, _ in survivors) == 1)

    assert [node.cleaner.cleaned for node, _ in survivors].count(["d"]) == 1
    gone = [record.jid for _, host in survivors for record in host.gone]
    assert sorted(gone, key=str) == RESOURCES
    rerouted = [item for _, host in survivors for item in host.rerouted()]
    assert sorted(rerouted) == [
        (RESOURCES[0].text, "read, never handed on"),
        (RESOURCES[1].text, "never read"),
    ]
    assert await redis.smembers(cluster.prefix + "nodes") == {b"a", b"b", b"c"}
    for key in (
        "node-sessions:d",
        "inbox:d",
        "orphans:d",
        "cleanup:d",
        "lease:d",
        "sessions:dora@localhost",
    ):
        assert await redis.exists(cluster.prefix + key) == 0, key
    await eventually(
        lambda: all(node.registry.resources("dora@localhost") is None for node, _ in survivors)
    )


async def test_the_entries_a_dead_node_left_pending_are_claimed_and_routed_again(
    cluster, redis
) -> None:
    survivor, host = await cluster.start("a", lease_seconds=3)
    dead, dead_host = await cluster.start("d", host=Host(hand_on=False), lease_seconds=DEAD_LEASE)
    for n in range(3):
        survivor.bus.send("d", RESOURCES[n], message(RESOURCES[n].text, f"m{n}"))
        await survivor.writer.drain()
    await eventually(lambda: len(dead_host.entries) == 3)
    dead_host.entries[1].handed_on()  # delivered and acknowledged before it died
    await dead.writer.drain()
    pending = await redis.xpending(cluster.prefix + "inbox:d", GROUP)
    assert (pending["pending"], pending["consumers"]) == (2, [{"name": b"d", "pending": 2}])

    dead.halt()
    await eventually(lambda: survivor.cleaner.cleaned == ["d"])

    assert host.rerouted() == [(RESOURCES[0].text, "m0"), (RESOURCES[2].text, "m2")]
    survivor.bus.send("d", RESOURCES[0], message(RESOURCES[0].text, "too late"))
    await survivor.writer.drain()
    [(node, stanzas, node_gone)] = host.undelivered
    assert (node, node_gone, stanzas[0][0]) == ("d", True, RESOURCES[0])
    assert survivor.registry.resources("dora@localhost") is None
    assert await redis.exists(cluster.prefix + "inbox:d") == 0


async def test_a_cleanup_whose_stanzas_were_not_handed_on_in_time_is_done_again(
    cluster, redis
) -> None:
    survivor, host = await cluster.start(
        "a", host=Host(hand_on=False), lease_seconds=3, handoff_seconds=0.2
    )
    dead, _ = await cluster.start("d", host=Host(hand_on=False), lease_seconds=3)
    dead.registry.publish(Record(RESOURCES[0]))
    await eventually(lambda: survivor.registry.record(RESOURCES[0]) is not None)
    survivor.bus.send("d", RESOURCES[0], message(RESOURCES[0].text, "slow"))
    await survivor.writer.drain()
    dead.halt()
    await redis.delete(cluster.prefix + "lease:d")  # as when it runs out, without the wait

    assert await survivor.cleaner.sweep() == []  # its host sat on the stanza
    assert [record.jid for record in host.gone] == [RESOURCES[0]]
    assert await redis.sismember(cluster.prefix + "nodes", "d")

    host.hand_on = True
    assert await survivor.cleaner.sweep() == ["d"]
    assert host.rerouted() == [(RESOURCES[0].text, "slow")] * 2  # twice rather than never
    assert len(host.gone) == 1
    assert await redis.exists(cluster.prefix + "orphans:d") == 0
    assert not await redis.sismember(cluster.prefix + "nodes", "d")


async def test_a_node_that_leaves_routes_again_what_waited_for_it_and_is_gone(
    cluster, redis
) -> None:
    a, _ = await cluster.start("a")
    b, b_host = await cluster.start("b", host=Host(hand_on=False))
    b.registry.publish(Record(RESOURCES[0]))
    a.bus.send("b", RESOURCES[0], message(RESOURCES[0].text, "unanswered"))
    await eventually(lambda: len(b_host.entries) == 1)

    b_host.hand_on = True
    await b.stop()

    assert b_host.rerouted() == [(RESOURCES[0].text, "unanswered")]
    assert [record.jid for record in b_host.gone] == [RESOURCES[0]]
    assert await redis.smembers(cluster.prefix + "nodes") == {b"a"}
    for key in ("lease:b", "inbox:b", "orphans:b", "node-sessions:b", "cleanup:b"):
        assert await redis.exists(cluster.prefix + key) == 0, key
    await eventually(lambda: a.registry.record(RESOURCES[0]) is None)
    assert a.cleaner.cleaned == []


async def test_a_node_that_cannot_reach_redis_when_leaving_halts_and_is_cleaned_up_after(
    cluster, redis
) -> None:
    survivor, host = await cluster.start("a", lease_seconds=3)
    proxy = FreezableProxy()
    leaving, leaving_host = cluster.make(
        "b", url=await proxy.start(), lease_seconds=DEAD_LEASE, handoff_seconds=0.5
    )
    await leaving.start()
    leaving.registry.publish(Record(RESOURCES[0]))
    await eventually(lambda: survivor.registry.record(RESOURCES[0]) is not None)
    try:
        proxy.freeze()
        leaving.bus.send("a", RESOURCES[1], message(RESOURCES[1].text, "not written"))
        await asyncio.wait_for(leaving.stop(), 5)
    finally:
        await proxy.close()

    assert not leaving.running
    [(node, stanzas, node_gone)] = leaving_host.undelivered
    assert (node, node_gone, len(stanzas)) == ("a", False, 1)
    await eventually(lambda: survivor.cleaner.cleaned == ["b"])
    assert [record.jid for record in host.gone] == [RESOURCES[0]]
