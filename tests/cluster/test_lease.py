"""A node's lease: held while renewed, gone soon after the node dies, and lost (with a
call to the host) when the node cannot renew it in time, whatever the reason."""

from __future__ import annotations

import asyncio
import time

import pytest

from chinwag.cluster.lease import NodeNameInUse
from chinwag.xmpp.jid import JID

from .support import TIMEOUT, FreezableProxy, eventually, message

LEASE = 0.5


async def test_a_living_node_keeps_renewing_its_lease(cluster, redis) -> None:
    node, host = await cluster.start("a", lease_seconds=LEASE)
    key = cluster.prefix + "lease:a"

    await asyncio.sleep(4 * LEASE)

    assert await redis.get(key) == node.lease.token.encode()
    assert 0 < await redis.pttl(key) <= LEASE * 1000
    assert node.lease.held and host.lost == 0
    assert await redis.smembers(cluster.prefix + "nodes") == {b"a"}


async def test_a_dead_nodes_lease_expires_and_its_name_can_be_taken_again(cluster, redis) -> None:
    first, _ = await cluster.start("a", lease_seconds=LEASE)
    first.halt()  # as if its process were killed: nothing is written any more

    second, host = await cluster.start("a", lease_seconds=LEASE)

    assert await redis.get(cluster.prefix + "lease:a") == second.lease.token.encode()
    assert second.lease.token != first.lease.token and host.lost == 0


async def test_a_name_a_living_node_holds_cannot_be_taken(cluster) -> None:
    await cluster.start("a", lease_seconds=LEASE)
    impostor, _ = cluster.make("a", lease_seconds=LEASE)

    with pytest.raises(NodeNameInUse):
        await asyncio.wait_for(impostor.start(), TIMEOUT)


async def test_a_node_whose_lease_was_taken_over_is_told(cluster, redis) -> None:
    node, host = await cluster.start("a", lease_seconds=LEASE)

    await redis.set(cluster.prefix + "lease:a", "someone else", px=10_000)

    await eventually(lambda: host.lost == 1)
    assert not node.running and not node.lease.held


async def test_a_node_cut_off_from_redis_loses_its_lease_within_the_lease_time(cluster) -> None:
    proxy = FreezableProxy()
    node, host = cluster.make("a", url=await proxy.start(), lease_seconds=LEASE)
    await node.start()
    try:
        proxy.freeze()
        cut_off = time.monotonic()

        await eventually(lambda: host.lost == 1)

        assert time.monotonic() - cut_off < LEASE + 0.3  # it never believes itself alive for longer
        assert not node.running
    finally:
        await proxy.close()


async def test_a_node_paused_longer_than_its_lease_notices_it_lost_it(cluster, redis) -> None:
    node, host = await cluster.start("a", lease_seconds=LEASE)

    time.sleep(LEASE * 1.5)  # the whole process stalls (a stop signal, a long collection)

    await eventually(lambda: host.lost == 1)
    assert not node.running


async def test_nothing_is_written_once_the_lease_has_run_out_by_this_process_clock(
    cluster, redis
) -> None:
    """Writes queued when the lease has run out by this process's clock (a stall past it
    that the renewal task has not noticed yet) are not sent: another node may have
    cleaned up after this one meanwhile (resumed its sessions elsewhere), and the writes
    would land on state that is no longer its own. The lease is lost then and there."""
    a, a_host = await cluster.start("a", lease_seconds=LEASE)
    _, b_host = await cluster.start("b")
    bob = JID.parse("bob@localhost/desk")
    a.lease._valid_until = time.monotonic() - 0.01  # as the clock stands after a stall

    a.bus.send("b", bob, message(bob.text, "queued after the lease ran out"))
    a.resumption.update("stale", {"handled": 7})

    await eventually(lambda: a_host.lost == 1)
    await asyncio.sleep(0.3)  # long enough for a write to arrive
    assert b_host.entries == []
    assert not await redis.exists(cluster.prefix + "resumable:stale")
    [(node, stanzas, node_gone)] = a_host.undelivered  # handed back, to be bounced
    assert (node, len(stanzas), node_gone) == ("b", 1, False)
    assert not a.running
