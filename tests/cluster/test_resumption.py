"""Resumable sessions kept in Redis (``chinwag.cluster.resumption``), with nodes in this
process: a dead node's session waits, one node of several racing claims it when its
window closes, and a live node hands a session over only when asked."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from redis.asyncio import Redis
from redis.asyncio.client import Pipeline

from chinwag.cluster.resumption import EXPIRED, item
from chinwag.cluster.writer import Results

from .conftest import Cluster
from .support import eventually


async def keep_session(redis: Redis, prefix: str, node: str, sm_id: str, window: int) -> None:
    """A resumable session of ``node`` as that node would have kept it."""
    await redis.hset(
        f"{prefix}resumable:{sm_id}",
        mapping={"jid": "alice@localhost/phone", "node": node, "app": "", "window": window},
    )
    await redis.rpush(
        f"{prefix}unacked:{sm_id}",
        item(7, 1.5, b"<message to='alice@localhost/phone'><body>7</body></message>"),
        item(None, 2.5, b"<message to='alice@localhost/phone'><body>waited</body></message>"),
    )
    await redis.sadd(f"{prefix}node-resumable:{node}", sm_id)


async def test_one_of_the_racing_nodes_claims_a_dead_nodes_session_when_its_window_closes(
    cluster: Cluster, redis: Redis, prefix: str
) -> None:
    a, _ = await cluster.start("a")
    b, _ = await cluster.start("b")
    await keep_session(redis, prefix, "dead", "s1", window=0)
    await a.resumption.park("dead")
    assert await redis.zscore(f"{prefix}resumable-waiting", "s1") is not None
    assert not await redis.exists(f"{prefix}node-resumable:dead")

    claims = await asyncio.gather(*(n.resumption.expired() for n in (a, b, a, b)))
    claimed = [kept for claim in claims for kept in claim]
    assert len(claimed) == 1
    kept = claimed[0]
    assert kept.sm_id == "s1" and kept.text("node") == EXPIRED
    assert [(number, since) for number, since, _ in kept.unacked] == [(7, 1.5), (None, 2.5)]
    # Not resumable any more, and not claimed again before its time is up.
    assert await a.resumption.take_over("s1", lambda _kept: True) is None
    assert await b.resumption.expired() == []


async def test_a_dead_nodes_session_is_taken_at_once_and_a_live_nodes_when_it_lets_go(
    cluster: Cluster, redis: Redis, prefix: str
) -> None:
    a, host_a = await cluster.start("a")
    b, _ = await cluster.start("b")
    await keep_session(redis, prefix, "dead", "s2", window=300)
    await a.resumption.park("dead")

    kept = await a.resumption.take_over("s2", lambda kept: kept.text("app") == "")
    assert kept is not None and len(kept.unacked) == 2
    assert await redis.hget(f"{prefix}resumable:s2", "node") == b"a"
    assert await redis.zscore(f"{prefix}resumable-waiting", "s2") is None
    assert await redis.sismember(f"{prefix}node-resumable:a", "s2")

    taking = asyncio.ensure_future(b.resumption.take_over("s2", lambda _kept: True))
    await eventually(lambda: host_a.handed_over == ["s2"])  # asked through a's inbox
    await asyncio.sleep(0.2)
    assert not taking.done()  # a has not let it go
    a.resumption.release("s2")
    taken = await asyncio.wait_for(taking, 10)
    assert taken is not None
    assert await redis.hget(f"{prefix}resumable:s2", "node") == b"b"
    assert not await redis.sismember(f"{prefix}node-resumable:a", "s2")


async def test_a_session_an_earlier_process_of_a_nodes_name_left_is_taken(
    cluster: Cluster, redis: Redis, prefix: str
) -> None:
    """A node started again under its name cleaned up after its earlier process, whose
    sessions wait: this node, or another, takes one without asking anyone."""
    a, _ = await cluster.start("a")
    b, host_b = await cluster.start("b")
    await keep_session(redis, prefix, "a", "s5", window=300)
    await keep_session(redis, prefix, "b", "s6", window=300)
    await a.resumption.park("a")
    await b.resumption.park("b")
    assert await a.resumption.take_over("s5", lambda _kept: True) is not None
    assert await a.resumption.take_over("s6", lambda _kept: True) is not None
    assert host_b.handed_over == []


async def test_a_session_of_another_account_is_not_taken(
    cluster: Cluster, redis: Redis, prefix: str
) -> None:
    a, _ = await cluster.start("a")
    await keep_session(redis, prefix, "dead", "s3", window=300)
    assert await a.resumption.take_over("s3", lambda _kept: False) is None
    assert await a.resumption.take_over("unknown", lambda _kept: True) is None
    assert await redis.hget(f"{prefix}resumable:s3", "node") == b"dead"


class Spy:
    """A writer source that notes when it is asked to write."""

    def __init__(self, order: list[str], name: str) -> None:
        self.order, self.name = order, name

    def write(self, pipe: Pipeline) -> Callable[[Results], None]:
        self.order.append(self.name)
        pipe.ping()
        return lambda _results: None


async def test_the_kept_copy_goes_ahead_of_what_else_the_turn_writes(
    cluster: Cluster, redis: Redis, prefix: str
) -> None:
    """An inbox entry's acknowledgement, marked earlier in the turn, still comes after
    the copy of its stanza for a resumable session."""
    a, _ = await cluster.start("a")
    await a.writer.drain()
    order: list[str] = []
    resumption_write = a.resumption.write

    def noted(pipe: Pipeline) -> Callable[[Results], None]:
        order.append("resumption")
        return resumption_write(pipe)

    a.resumption.write = noted  # type: ignore[method-assign]
    recorded = asyncio.Event()
    a.writer.mark(Spy(order, "bus"))
    a.resumption.append("s4", item(1, 1.0, b"<message/>"), recorded.set)
    await asyncio.wait_for(recorded.wait(), 5)
    assert order == ["resumption", "bus"]
    assert await redis.lrange(f"{prefix}unacked:s4", 0, -1) == [item(1, 1.0, b"<message/>")]
