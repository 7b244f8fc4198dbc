"""Where clients reach each node from outside (``[cluster] advertise``), so that a node
being drained can send its clients to another one that is alive.

The addresses are one hash, by node. A node adds its own once it listens and removes it
when it starts draining or stops; one that died leaves it behind, so a reader keeps only
the nodes whose lease is still held.
"""

from __future__ import annotations

import logging
from typing import cast

from redis.asyncio import Redis

from chinwag.cluster.connection import UNREACHABLE, connect
from chinwag.cluster.keys import Keys
from chinwag.config import ClusterSettings

log = logging.getLogger(__name__)


class PeersUnknown(Exception):
    """Redis could not be asked which nodes are alive."""


class Advertisements:
    """One node's view of the advertised addresses."""

    def __init__(self, redis: Redis, keys: Keys, node: str, *, owned: bool = False) -> None:
        """``owned``: :meth:`close` closes ``redis``."""
        self._redis = redis
        self._keys = keys
        self._node = node
        self._owned = owned

    @classmethod
    def from_settings(cls, cluster: ClusterSettings) -> Advertisements:
        """Over a client of its own for the cluster's Redis."""
        return cls(connect(cluster.redis_url), Keys(cluster.key_prefix), cluster.node, owned=True)

    async def advertise(self, address: str) -> None:
        await self._redis.hset(self._keys.advertised, self._node, address)

    async def withdraw(self) -> None:
        """This node is no longer offered to drained clients; logged if Redis is out of
        reach (the address then stays until the node's lease has expired)."""
        try:
            await self._redis.hdel(self._keys.advertised, self._node)
        except UNREACHABLE as error:
            log.warning("cannot withdraw this node's address from Redis: %s", error)

    async def live_peers(self) -> dict[str, str]:
        """The addresses of the other nodes that advertise one and hold their lease now,
        by node; PeersUnknown if Redis is out of reach."""
        try:
            return await self._live_peers()
        except UNREACHABLE as error:
            raise PeersUnknown(f"cannot reach Redis to find another node: {error}") from None

    async def close(self) -> None:
        if self._owned:
            await self._redis.aclose()

    async def _live_peers(self) -> dict[str, str]:
        # The client answers bytes (it does not decode); redis-py's hints allow str as well.
        found = cast(dict[bytes, bytes], await self._redis.hgetall(self._keys.advertised))
        me = self._node.encode()
        advertised = {
            name.decode(): address.decode() for name, address in found.items() if name != me
        }
        if not advertised:
            return {}
        async with self._redis.pipeline(transaction=False) as pipe:
            for name in advertised:
                pipe.exists(self._keys.lease(name))
            alive = await pipe.execute()
        return {
            name: address
            for (name, address), held in zip(advertised.items(), alive, strict=True)
            if held
        }
