"""The ``[cluster]`` settings: a node's name and Redis, refused on SQLite; and without
them, a server that never imports redis-py."""

from __future__ import annotations

import subprocess
import sys

import pytest

from chinwag.cluster.node import ClusterNode
from chinwag.config import ConfigError, settings_from_mapping

from .support import Host

POSTGRES = {"url": "postgresql+asyncpg://chinwag@db.internal/chinwag"}


def test_a_cluster_node_names_itself_and_its_redis() -> None:
    settings = settings_from_mapping(
        {
            "database": POSTGRES,
            "cluster": {"redis_url": "redis://redis.internal:6379/0", "node": "chat-1"},
        }
    )

    assert settings.cluster is not None
    assert (settings.cluster.node, settings.cluster.redis_url) == (
        "chat-1",
        "redis://redis.internal:6379/0",
    )
    assert (settings.cluster.lease_seconds, settings.cluster.key_prefix) == (5.0, "chinwag:")
    assert settings_from_mapping({}).cluster is None


def test_a_cluster_refuses_sqlite_with_a_clear_message() -> None:
    cluster = {"redis_url": "redis://127.0.0.1:6379/0", "node": "a"}

    with pytest.raises(
        ConfigError, match=r"^bad config: \[cluster\] needs PostgreSQL: set \[database\] url"
    ):
        settings_from_mapping({"cluster": cluster})
    with pytest.raises(ConfigError, match="needs PostgreSQL"):
        settings_from_mapping({"cluster": cluster, "database": {"url": "sqlite+aiosqlite:///x.db"}})


@pytest.mark.parametrize(
    ("cluster", "complaint"),
    [
        ({"redis_url": "redis://r/0"}, r"'cluster\.node': Field required"),
        ({"redis_url": "http://r/0", "node": "a"}, r"'cluster\.redis_url': must be a redis://"),
        ({"redis_url": "redis://r/0", "node": "a b"}, r"'cluster\.node': must be 1 to 64 letters"),
        ({"redis_url": "redis://r/0", "node": ""}, r"'cluster\.node': must be 1 to 64 letters"),
        (
            {"redis_url": "redis://r/0", "node": "a", "lease_seconds": 0.1},
            r"'cluster\.lease_seconds'",
        ),
        ({"redis_url": "redis://r/0", "node": "a", "key_prefix": "a*"}, r"'cluster\.key_prefix'"),
    ],
)
def test_bad_cluster_settings_name_the_key(cluster: dict[str, object], complaint: str) -> None:
    with pytest.raises(ConfigError, match=complaint):
        settings_from_mapping({"database": POSTGRES, "cluster": cluster})


async def test_a_node_starts_from_its_settings(redis_url, prefix, redis) -> None:
    cluster = {"redis_url": redis_url, "node": "n-1", "lease_seconds": 2.5, "key_prefix": prefix}
    settings = settings_from_mapping({"database": POSTGRES, "cluster": cluster})
    assert settings.cluster is not None
    node = ClusterNode.from_settings(settings.cluster, Host())

    await node.start()
    try:
        assert await redis.smembers(prefix + "nodes") == {b"n-1"}
        assert 2000 < await redis.pttl(prefix + "lease:n-1") <= 2500
    finally:
        await node.stop()
        await node.redis.aclose()
    assert await redis.exists(prefix + "nodes", prefix + "lease:n-1", prefix + "inbox:n-1") == 0


def test_one_process_never_imports_redis() -> None:
    """Only a server with [cluster] loads the cluster package, and with it redis-py."""
    check = (
        "import sys, chinwag.cli, chinwag.app, chinwag.server.xmpp_server, chinwag.config;"
        "assert 'redis' not in sys.modules, 'redis imported';"
        "import chinwag.server.routing.cluster;"
        "assert 'redis' in sys.modules"
    )
    subprocess.run([sys.executable, "-c", check], check=True, timeout=60)
