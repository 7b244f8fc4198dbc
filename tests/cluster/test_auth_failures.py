"""The per-address sign-in limit of a cluster, counted in Redis: failures on one node
count on every other, and so do bans and lifting them."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from redis.asyncio import Redis

from chinwag.config import ClusterSettings, LimitsSettings, Settings
from chinwag.server.auth_failures import AuthFailureLimiter, auth_failures_for
from chinwag.server.cluster_auth_failures import RedisAuthFailures

from .support import POSTGRES_URL

LIMIT = 3
BAN = 600.0
GUESSER = "192.0.2.7"


def node(redis: Redis, prefix: str, limit: int = LIMIT, ban: float = BAN) -> RedisAuthFailures:
    return RedisAuthFailures(redis, prefix, limit, ban)


@pytest.fixture
async def nodes(redis: Redis, prefix: str) -> AsyncIterator[tuple[RedisAuthFailures, ...]]:
    """Two nodes' counts, each over its own view of the same Redis and prefix."""
    yield node(redis, prefix), node(redis, prefix)


async def test_failures_on_one_node_refuse_the_address_on_another(nodes) -> None:
    a, b = nodes
    for _ in range(LIMIT - 1):
        await a.failed(GUESSER)
    assert await b.refused_for(GUESSER) is None

    await b.failed(GUESSER)  # the third, on the other node

    for each in (a, b):
        refused_for = await each.refused_for(GUESSER)
        assert refused_for is not None and BAN - 5 < refused_for <= BAN
    assert await a.refused_for("192.0.2.8") is None


async def test_every_node_lists_the_bans_and_lifting_on_one_lifts_everywhere(nodes) -> None:
    a, b = nodes
    for _ in range(LIMIT):
        await a.failed("2001:db8:1:2::5")
    await a.failed("192.0.2.9")  # below the limit: not listed

    [ban] = await b.bans()
    assert (ban.address, ban.failures) == ("2001:db8:1:2::/64", LIMIT)
    assert BAN - 5 < ban.remaining_seconds <= BAN

    lifted = await b.lift("2001:db8:1:2::ffff")
    assert lifted is not None and lifted.address == "2001:db8:1:2::/64"
    assert await a.refused_for("2001:db8:1:2::5") is None
    assert await a.bans() == []
    assert await a.lift("2001:db8:1:2::5") is None
    assert await a.lift("192.0.2.9") is None  # counted, not refused: forgotten all the same


async def test_redis_forgets_the_failures_ban_seconds_after_the_last(
    redis: Redis, prefix: str
) -> None:
    a, b = node(redis, prefix, ban=0.3), node(redis, prefix, ban=0.3)
    for _ in range(LIMIT):
        await a.failed(GUESSER)
    assert await b.refused_for(GUESSER) is not None

    await asyncio.sleep(0.4)

    assert await b.refused_for(GUESSER) is None
    assert [key async for key in redis.scan_iter(match=f"{prefix}*")] == []


async def test_a_limit_of_zero_counts_nothing(redis: Redis, prefix: str) -> None:
    a = node(redis, prefix)
    a.configure(LimitsSettings(max_auth_failures_per_address=0))
    for _ in range(LIMIT):
        await a.failed(GUESSER)

    assert await a.refused_for(GUESSER) is None
    assert await redis.exists(f"{prefix}auth-failures:{GUESSER}") == 0


async def test_unreachable_redis_neither_refuses_nor_crashes(prefix: str) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    a = node(unreachable, prefix)
    try:
        await a.failed(GUESSER)
        assert await a.refused_for(GUESSER) is None
    finally:
        await unreachable.aclose()


async def test_a_cluster_node_counts_in_redis_and_a_single_process_in_itself(
    redis_url: str, prefix: str, redis: Redis
) -> None:
    single = auth_failures_for(Settings(domain="example.test"))
    assert isinstance(single, AuthFailureLimiter)

    clustered = auth_failures_for(
        Settings(
            domain="example.test",
            database={"url": POSTGRES_URL},
            cluster=ClusterSettings(redis_url=redis_url, node="a", key_prefix=prefix),
            limits=LimitsSettings(max_auth_failures_per_address=1),
        )
    )
    try:
        await clustered.failed(GUESSER)
        [ban] = await node(redis, prefix, limit=1).bans()
        assert (ban.address, ban.failures) == (GUESSER, 1)
    finally:
        await clustered.close()


async def test_the_node_that_begins_a_ban_logs_it_and_a_lift_is_logged(
    nodes, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="chinwag")
    a, b = nodes
    for each in (a, b, a, b):  # the third begins the ban, the fourth extends it
        await each.failed(GUESSER)
    await b.lift(GUESSER)

    lines = [
        (line.getMessage(), line.fields)  # type: ignore[attr-defined]
        for line in caplog.records
        if line.name == "chinwag.server.cluster_auth_failures"
    ]
    assert lines == [
        (
            "address banned after failed sign-ins",
            {"address": GUESSER, "failures": LIMIT, "seconds": BAN},
        ),
        ("address ban ended", {"address": GUESSER, "reason": "lifted"}),
    ]
