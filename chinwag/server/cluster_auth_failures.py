"""Failed sign-ins per client address counted in the cluster's Redis, so that every node
sees the same counts and bans: a guesser that moves from node to node (as a load
balancer spreads its connections) runs out of guesses as it would against one process.

Each counted address is one key, ``{key_prefix}auth-failures:{address}``, holding its
failures; each failure adds one and sets the key to expire ``ban_seconds`` later, so
Redis forgets the failures (and ends a ban) ``ban_seconds`` after the last, by its own
clock, the same for every node. The rules are those of ``auth_failures.py``, whose
address keys this shares; only a server with ``[cluster]`` imports this module.

A ban is logged when it begins (by the node that counted the failure that began it) and
when it is lifted; Redis lets it run out without a word, so that end is not logged.

While Redis cannot be reached, sign-ins are not refused and failures are not counted
(each such time is logged): the node is losing its lease then anyway, and refusing
everyone would lock out every client for an outage of the cluster's own.
"""

from __future__ import annotations

import logging

from redis.asyncio import Redis

from chinwag.cluster.connection import UNREACHABLE, connect
from chinwag.config import ClusterSettings, LimitsSettings
from chinwag.server.auth_failures import Ban, client_key, listed_key

log = logging.getLogger(__name__)

SCAN_BATCH = 1000


class RedisAuthFailures:
    """``AuthFailures`` over Redis."""

    def __init__(
        self, redis: Redis, key_prefix: str, limit: int, ban_seconds: float, *, owned: bool = False
    ) -> None:
        """``limit`` 0 turns the limit off; ``owned``: :meth:`close` closes ``redis``."""
        self._redis = redis
        self._owned = owned
        self._prefix = f"{key_prefix}auth-failures:"
        self._limit = limit
        self._ban_ms = max(1, round(ban_seconds * 1000))

    @classmethod
    def from_settings(cls, cluster: ClusterSettings, limits: LimitsSettings) -> RedisAuthFailures:
        """A count over a client of its own for the cluster's Redis."""
        return cls(
            connect(cluster.redis_url),
            cluster.key_prefix,
            limits.max_auth_failures_per_address,
            limits.auth_failure_ban_seconds,
            owned=True,
        )

    def configure(self, limits: LimitsSettings) -> None:
        """Take a reload's limits; the counts in Redis stay (a new ``ban_seconds`` counts
        from each address's next failure)."""
        self._limit = limits.max_auth_failures_per_address
        self._ban_ms = max(1, round(limits.auth_failure_ban_seconds * 1000))

    async def failed(self, address: str | None) -> None:
        key = client_key(address)
        if key is None or not self._limit:
            return
        try:
            async with self._redis.pipeline(transaction=True) as pipe:
                pipe.incr(self._prefix + key)
                pipe.pexpire(self._prefix + key, self._ban_ms)
                failures, _ = await pipe.execute()
        except UNREACHABLE as error:
            log.warning("a failed sign-in from %s is not counted: Redis: %s", key, error)
            return
        if failures == self._limit:  # once per ban, on the node that counted the last one
            fields = {"address": key, "failures": failures, "seconds": self._ban_ms / 1000}
            log.info("address banned after failed sign-ins", extra={"fields": fields})

    async def refused_for(self, address: str | None) -> float | None:
        key = client_key(address)
        if key is None or not self._limit:
            return None
        try:
            failures, remaining_ms = await self._read(self._prefix + key)
        except UNREACHABLE as error:
            log.warning("sign-in from %s not checked against its failures: Redis: %s", key, error)
            return None
        if failures < self._limit or remaining_ms <= 0:
            return None
        return remaining_ms / 1000

    async def bans(self) -> list[Ban]:
        """The addresses refused now, the one refused longest first."""
        names = [
            name async for name in self._redis.scan_iter(match=f"{self._prefix}*", count=SCAN_BATCH)
        ]
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in names:
                pipe.get(name)
                pipe.pttl(name)
            replies = await pipe.execute()
        bans = [
            Ban(name.decode()[len(self._prefix) :], int(failures), remaining_ms / 1000)
            for name, failures, remaining_ms in zip(names, replies[::2], replies[1::2], strict=True)
            if failures is not None and int(failures) >= self._limit and remaining_ms > 0
        ]
        return sorted(bans, key=lambda ban: -ban.remaining_seconds)

    async def lift(self, address: str) -> Ban | None:
        key = listed_key(address)
        if key is None:
            return None
        async with self._redis.pipeline(transaction=True) as pipe:
            pipe.get(self._prefix + key)
            pipe.pttl(self._prefix + key)
            pipe.delete(self._prefix + key)
            failures, remaining_ms, _ = await pipe.execute()
        if failures is None or int(failures) < self._limit or remaining_ms <= 0:
            return None
        log.info("address ban ended", extra={"fields": {"address": key, "reason": "lifted"}})
        return Ban(key, int(failures), remaining_ms / 1000)

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()

    async def _read(self, name: str) -> tuple[int, int]:
        """The failures counted under ``name`` and the milliseconds they are kept for."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.get(name)
            pipe.pttl(name)
            failures, remaining_ms = await pipe.execute()
        return (0 if failures is None else int(failures)), remaining_ms
