"""The bus: stanzas for another node's sessions go to its inbox in the turn's pipeline,
one entry per node; the receiver acknowledges an entry once every stanza in it has been
handed on; and an entry whose receiver died before acknowledging it is not lost."""

from __future__ import annotations

import asyncio

from chinwag.cluster.bus import Decoder
from chinwag.cluster.keys import GROUP
from chinwag.xmpp.jid import JID

from .support import TIMEOUT, FreezableProxy, Host, Record, eventually, message

BOB = JID.parse("bob@localhost/desk")


async def test_many_stanzas_in_one_turn_take_one_round_trip_and_one_entry(cluster, redis) -> None:
    a, _ = await cluster.start("a")
    _, b_host = await cluster.start("b")
    before = a.writer.round_trips

    for n in range(200):
        a.bus.send("b", BOB, message(BOB.text, f"m{n}"))
    await a.writer.drain()

    assert a.writer.round_trips - before == 1
    await eventually(lambda: len(b_host.received()) == 200)
    assert len(b_host.entries) == 1
    assert b_host.received() == [(BOB.text, f"m{n}") for n in range(200)]
    stanza = b_host.entries[0].items[0][1]
    assert stanza.wire is not None and stanza.wire.startswith(b'<message xmlns="jabber:client"')


async def test_an_entry_is_acknowledged_and_deleted_once_all_its_stanzas_are_handed_on(
    cluster, redis
) -> None:
    a, _ = await cluster.start("a")
    b, b_host = await cluster.start("b", host=Host(hand_on=False))
    inbox = cluster.prefix + "inbox:b"

    a.bus.send("b", BOB, message(BOB.text, "one"))
    a.bus.send("b", BOB, message(BOB.text, "two"))
    await eventually(lambda: len(b_host.entries) == 1)
    entry = b_host.entries[0]
    entry.handed_on()
    await b.writer.drain()

    assert (await redis.xpending(inbox, GROUP))["pending"] == 1
    entry.handed_on()
    await b.writer.drain()
    assert (await redis.xpending(inbox, GROUP))["pending"] == 0
    assert await redis.xlen(inbox) == 0


async def test_stanzas_a_node_read_and_never_acknowledged_are_routed_again_when_it_restarts(
    cluster, redis
) -> None:
    a, _ = await cluster.start("a")
    b, b_host = await cluster.start("b", host=Host(hand_on=False), lease_seconds=0.5)
    a.bus.send("b", BOB, message(BOB.text, "in flight"))
    await eventually(lambda: len(b_host.entries) == 1)
    b.halt()  # the process dies before it hands the stanza on
    a.bus.send("b", BOB, message(BOB.text, "sent meanwhile"))
    await a.writer.drain()

    restarted, host = await cluster.start("b", lease_seconds=0.5)

    assert host.rerouted() == [(BOB.text, "in flight"), (BOB.text, "sent meanwhile")]
    assert host.entries == []
    await restarted.writer.drain()
    assert await redis.exists(cluster.prefix + "orphans:b") == 0
    assert await redis.xlen(cluster.prefix + "inbox:b") == 0


async def test_stanzas_for_a_node_that_is_gone_come_back_undelivered(cluster, redis) -> None:
    a, a_host = await cluster.start("a")
    b, _ = await cluster.start("b")
    b.registry.publish(Record(BOB))
    await eventually(lambda: a.registry.record(BOB) is not None)
    b.halt()
    await redis.delete(cluster.prefix + "inbox:b")  # a survivor is cleaning up after it

    a.bus.send("b", BOB, message(BOB.text, "hello?"))
    await a.writer.drain()

    [(node, stanzas, node_gone)] = a_host.undelivered
    assert (node, node_gone) == ("b", True)
    assert [(to, stanza.find("body").text) for to, stanza in stanzas] == [(BOB, "hello?")]  # type: ignore[union-attr]
    assert await redis.exists(cluster.prefix + "inbox:b") == 0
    assert a.registry.record(BOB) is None  # routing again will not pick b's sessions


async def test_a_node_whose_inbox_was_taken_away_stops(cluster, redis) -> None:
    b, b_host = await cluster.start("b")

    await redis.delete(cluster.prefix + "inbox:b")  # a survivor cleaned up after it

    await eventually(lambda: b_host.lost == 1)
    assert not b.running


async def test_what_a_node_cut_off_from_redis_could_not_write_comes_back(cluster) -> None:
    proxy = FreezableProxy()
    a, a_host = cluster.make("a", url=await proxy.start(), lease_seconds=0.5)
    await a.start()
    _, b_host = await cluster.start("b")
    try:
        proxy.freeze()
        a.bus.send("b", BOB, message(BOB.text, "under way"))
        await asyncio.sleep(0)  # the turn ends: the pipeline is sent, and no answer comes
        a.bus.send("b", BOB, message(BOB.text, "queued"))

        await eventually(lambda: a_host.lost == 1)
    finally:
        await proxy.close()

    [(node, stanzas, node_gone)] = a_host.undelivered
    assert (node, node_gone) == ("b", False)
    assert [stanza.find("body").text for _, stanza in stanzas] == ["under way", "queued"]  # type: ignore[union-attr]
    assert b_host.entries == []


async def test_landed_is_done_once_the_round_trip_carrying_the_stanzas_has_come_back(
    cluster,
) -> None:
    proxy = FreezableProxy()
    a, _ = cluster.make("a", url=await proxy.start())
    await a.start()
    _, b_host = await cluster.start("b")
    try:
        assert a.bus.landed().done()  # nothing queued
        proxy.freeze()
        a.bus.send("b", BOB, message(BOB.text, "slow"))
        landed = a.bus.landed()
        await asyncio.sleep(0.3)
        assert not landed.done()
        proxy.thaw()
        await asyncio.wait_for(landed, TIMEOUT)
        await eventually(lambda: b_host.received() == [(BOB.text, "slow")])

        proxy.freeze()
        a.bus.send("b", BOB, message(BOB.text, "never written"))
        handed_back = a.bus.landed()
        await asyncio.sleep(0.1)
        a.halt()  # the stanza comes back to the host: the sender need wait no more
        assert handed_back.done()
    finally:
        await proxy.close()


async def test_an_event_entry_for_another_node_goes_in_the_turns_round_trip(cluster, redis) -> None:
    a, _ = await cluster.start("a")
    _, b_host = await cluster.start("b")
    before = a.writer.round_trips

    a.bus.send("b", BOB, message(BOB.text, "a stanza"))
    a.bus.signal("b", BOB, "test/event")
    a.bus.signal("b", BOB.bare.with_resource("phone"), "test/event")
    a.bus.signal("b", BOB, "test/other")
    await a.writer.drain()

    assert a.writer.round_trips - before == 1
    await eventually(lambda: len(b_host.signals) == 2)
    assert b_host.signals == [
        ("test/event", [BOB, JID.parse("bob@localhost/phone")]),
        ("test/other", [BOB]),
    ]
    assert b_host.received() == [(BOB.text, "a stanza")]


async def test_a_malformed_event_entry_is_dropped_and_acknowledged(cluster, redis) -> None:
    _, b_host = await cluster.start("b")
    inbox = cluster.prefix + "inbox:b"
    await redis.xadd(inbox, {"e": "test/event", "t": "not a jid@"})
    await redis.xadd(inbox, {"e": "test/event", "t": BOB.text})

    await eventually(lambda: len(b_host.signals) == 1)
    assert b_host.signals == [("test/event", [BOB])]
    await eventually_empty(redis, inbox)  # both acknowledged and deleted


async def test_an_event_whose_round_trip_failed_is_written_again(cluster) -> None:
    proxy = FreezableProxy()
    a, _ = cluster.make("a", url=await proxy.start())
    await a.start()
    _, b_host = await cluster.start("b")
    try:
        proxy.cut()
        failed = a.writer.round_trips
        a.bus.signal("b", BOB, "test/event")
        await eventually(lambda: a.writer.round_trips > failed)  # sent, and cut off
        await asyncio.sleep(0.1)
        proxy.restore()
        await eventually(lambda: b_host.signals == [("test/event", [BOB])])
    finally:
        await proxy.close()


async def eventually_empty(redis, stream: str) -> None:
    for _ in range(200):
        if await redis.xlen(stream) == 0:
            return
        await asyncio.sleep(0.02)
    raise AssertionError(f"{stream} still holds entries")


def test_an_entry_that_is_not_stanzas_is_dropped_without_spoiling_the_next() -> None:
    decoder = Decoder()
    done: list[bytes] = []
    good = {b"t": BOB.text.encode(), b"s": b"<message to='bob@localhost'><body>ok</body></message>"}
    bad = [
        {b"t": BOB.text.encode(), b"s": b"<message><body>cut short"},
        {b"t": BOB.text.encode(), b"s": b"<message/><message/>"},
        {b"t": b"not a jid@@", b"s": b"<message/>"},
        {b"s": b"<message/>"},
        {b"t": BOB.text.encode(), b"s": b"</stream>"},
    ]

    for n, fields in enumerate(bad):
        entry = decoder.entry("inbox", b"%d-0" % n, fields, lambda entry: done.append(entry.id))
        assert entry.items == []
        assert (
            decoder.entry("inbox", b"ok", good, lambda entry: None).items[0][1].find("body").text
            == "ok"
        )  # type: ignore[union-attr]
    assert done == [b"%d-0" % n for n in range(len(bad))]  # acknowledged: nothing to hand on
