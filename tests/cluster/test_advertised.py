"""The addresses nodes advertise for drained clients: a drain picks only another node
that still holds its lease."""

from __future__ import annotations

import pytest
from redis.asyncio import Redis

from chinwag.cluster.advertised import Advertisements, PeersUnknown
from chinwag.cluster.keys import Keys
from chinwag.config import ConfigError, settings_from_mapping

from .conftest import Cluster


async def test_only_other_live_nodes_are_offered(
    cluster: Cluster, redis: Redis, prefix: str
) -> None:
    await cluster.start("a")
    await cluster.start("b")
    a, b, dead = (Advertisements(redis, Keys(prefix), node) for node in ("a", "b", "dead"))
    for node, advertisements in (("a", a), ("b", b), ("dead", dead)):  # dead: no lease
        await advertisements.advertise(f"{node}.example.org:5222")

    assert await a.live_peers() == {"b": "b.example.org:5222"}
    assert await b.live_peers() == {"a": "a.example.org:5222"}

    await b.withdraw()  # b is draining

    assert await a.live_peers() == {}


async def test_without_redis_the_peers_are_unknown(prefix: str) -> None:
    unreachable = Redis.from_url("redis://127.0.0.1:9/0", socket_connect_timeout=0.5)
    try:
        with pytest.raises(PeersUnknown, match="cannot reach Redis to find another node"):
            await Advertisements(unreachable, Keys(prefix), "a").live_peers()
    finally:
        await unreachable.aclose()


@pytest.mark.parametrize(
    ("given", "accepted"),
    [
        ("chat-b.example.org:5222", True),
        ("[2001:db8::2]:5222", True),
        ("10.0.0.2:5222", True),
        ("chat-b.example.org", False),
        ("b:0", False),
        ("b:70000", False),
        ("[zz]:5222", False),
    ],
)
def test_the_advertised_address_is_host_and_port(given: str, accepted: bool) -> None:
    cluster = {"redis_url": "redis://127.0.0.1:6379/0", "node": "a", "advertise": given}
    settings = {"database": {"url": "postgresql+asyncpg://db/chinwag"}, "cluster": cluster}

    if accepted:
        parsed = settings_from_mapping(settings).cluster
        assert parsed is not None and parsed.advertise == given
    else:
        with pytest.raises(ConfigError, match=r"'cluster.advertise': .*is not HOST:PORT"):
            settings_from_mapping(settings)
