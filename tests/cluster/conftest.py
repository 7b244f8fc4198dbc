"""Fixtures for the cluster tests, which use the Redis at 127.0.0.1:6379 (and, from
phase 2, the PostgreSQL at 127.0.0.1:5432) of this machine kind.

A test that needs a server that cannot be reached is skipped, with the reason; the
probe runs once per session. Each test's keys live under a prefix of its own, deleted
afterwards, so tests never see each other's nodes.

``cluster`` starts nodes in this process, each with its own Redis client and a
recording ``Host``: ``node, host = await cluster.start("a", lease_seconds=0.5)``. Every
node still running at the end is halted (as if its process died) before its keys go.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any

import pytest
from redis import Redis as SyncRedis
from redis.asyncio import Redis

from chinwag.cluster.connection import connect
from chinwag.cluster.node import ClusterNode

from .nodes import NodeProcesses, create_database, drop_database
from .support import POSTGRES_URL, REDIS_URL, Host


async def _redis_problem() -> str | None:
    client = Redis.from_url(REDIS_URL, socket_connect_timeout=3, socket_timeout=3)
    try:
        await client.ping()
        info = await client.info("server")
    except Exception as error:  # whatever stops us reaching it is the reason to skip
        return f"{type(error).__name__}: {error}".splitlines()[0]
    finally:
        await client.aclose()
    if int(str(info["redis_version"]).split(".")[0]) < 7:
        return f"Redis {info['redis_version']} is older than 7"
    return None


async def _postgres_problem() -> str | None:
    import asyncpg

    try:
        connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=3)
    except Exception as error:  # whatever stops us reaching it is the reason to skip
        return f"{type(error).__name__}: {error}".splitlines()[0]
    await connection.close()
    return None


@pytest.fixture(scope="session")
def redis_problem() -> str | None:
    return asyncio.run(_redis_problem())


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    return asyncio.run(_postgres_problem())


@pytest.fixture
def redis_url(redis_problem: str | None) -> str:
    if redis_problem is not None:
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {redis_problem}")
    return REDIS_URL


@pytest.fixture
def postgres_url(postgres_problem: str | None) -> str:
    if postgres_problem is not None:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} unreachable: {postgres_problem}")
    return POSTGRES_URL


@pytest.fixture
async def redis(redis_url: str) -> AsyncIterator[Redis]:
    """A client for the test's own checks of what is in Redis."""
    client = connect(redis_url)
    yield client
    await client.aclose()


@pytest.fixture
async def prefix(redis: Redis) -> AsyncIterator[str]:
    """This test's key prefix; its keys are deleted afterwards."""
    prefix = f"chinwag-test:{uuid.uuid4().hex}:"
    yield prefix
    keys = [key async for key in redis.scan_iter(match=f"{prefix}*", count=1000)]
    if keys:
        await redis.delete(*keys)


class Cluster:
    def __init__(self, redis_url: str, prefix: str) -> None:
        self.redis_url = redis_url
        self.prefix = prefix
        self.nodes: list[ClusterNode] = []
        self._clients: list[Redis] = []

    def make(
        self, name: str, host: Host | None = None, url: str | None = None, **options: Any
    ) -> tuple[ClusterNode, Host]:
        """A node that has not started yet."""
        client = connect(url or self.redis_url)
        self._clients.append(client)
        host = host or Host()
        node = ClusterNode(client, name, host, key_prefix=self.prefix, **options)
        self.nodes.append(node)
        return node, host

    async def start(
        self, name: str, host: Host | None = None, **options: Any
    ) -> tuple[ClusterNode, Host]:
        node, host = self.make(name, host, **options)
        await asyncio.wait_for(node.start(), 10)
        return node, host

    async def close(self) -> None:
        for node in self.nodes:
            node.halt()
        for client in self._clients:
            await client.aclose()


@pytest.fixture
async def cluster(redis_url: str, prefix: str) -> AsyncIterator[Cluster]:
    nodes = Cluster(redis_url, prefix)
    yield nodes
    await nodes.close()


@pytest.fixture(scope="module")
def node_processes(
    redis_problem: str | None,
    postgres_problem: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NodeProcesses]:
    """Nodes as ``chinwag serve`` processes, on a database and key prefix of the module's
    own (dropped and deleted after); the module's tests start the nodes they share."""
    if redis_problem is not None:
        pytest.skip(f"Redis at {REDIS_URL} unreachable: {redis_problem}")
    if postgres_problem is not None:
        pytest.skip(f"PostgreSQL at {POSTGRES_URL} unreachable: {postgres_problem}")
    name, url = create_database()
    prefix = f"chinwag-test:{uuid.uuid4().hex}:"
    processes = NodeProcesses(tmp_path_factory.mktemp("cluster"), url, REDIS_URL, prefix)
    try:
        yield processes
    finally:
        processes.close()
        drop_database(name)
        client = SyncRedis.from_url(REDIS_URL)
        keys = list(client.scan_iter(match=f"{prefix}*", count=1000))
        if keys:
            client.delete(*keys)
        client.close()
