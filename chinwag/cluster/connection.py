"""The connection to the cluster's Redis, and the errors that mean it is out of reach."""

from __future__ import annotations

from redis.asyncio import Redis
from redis.exceptions import RedisError

UNREACHABLE = (RedisError, OSError)
"""What a command raises when Redis cannot be reached or did not answer in time
(``TimeoutError`` is an ``OSError``); each loop that meets one tries again later."""

BLOCK_MS = 1000
"""How long a read of a stream waits for entries before it asks again."""


def connect(url: str) -> Redis:
    """A client with a pool of connections: each blocking read holds one of its own."""
    return Redis.from_url(
        url,
        socket_connect_timeout=5,
        socket_timeout=5 + BLOCK_MS / 1000,
        health_check_interval=30,
    )
