"""A node's lease: proof to the others that it is alive, held while it is renewed.

The lease is a key holding a random token that expires after ``seconds`` unless renewed
(every third of that). The node counts its lease from the moment it sent the last
renewal that succeeded, so it believes itself alive no longer than Redis does: when
``seconds`` pass without one (Redis unreachable, the process paused, the event loop
stuck), or a renewal finds another token, the lease is lost, and the node must stop
acting as a member (``on_lost``), since another node may be cleaning up after it. The
node's writer asks before each round trip (``check``), so that what a stalled process
queued is not written after its lease ran out, whichever task wakes first.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from chinwag.cluster import scripts
from chinwag.cluster.connection import UNREACHABLE
from chinwag.cluster.keys import Keys
from chinwag.xmpp.ids import random_hex

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


class NodeNameInUse(Exception):
    """Another live process holds this node's lease."""


class Lease:
    def __init__(
        self, redis: Redis, keys: Keys, node: str, seconds: float, on_lost: Callable[[], None]
    ) -> None:
        self._redis = redis
        self._key = keys.lease(node)
        self._nodes = keys.nodes
        self.node = node
        self.seconds = seconds
        self._ms = max(1, round(seconds * 1000))
        self._on_lost = on_lost
        self.token = random_hex(16)
        """This incarnation of the node: whoever holds the lease key with it."""
        self._valid_until = 0.0
        self._task: asyncio.Task[None] | None = None
        self.lost = False

    @property
    def held(self) -> bool:
        return not self.lost and time.monotonic() < self._valid_until

    def check(self) -> bool:
        """Whether the node may still write as a member. Once this process's clock says
        the lease has run out (a stall past it that the renewal task has not yet seen),
        it is lost now, before anything more goes out; before it is first taken there
        is nothing of the node's to protect."""
        if self.lost:
            return False
        if self._valid_until and time.monotonic() >= self._valid_until:
            self._lose("ran out before a write")
            return False
        return True

    async def acquire(self) -> None:
        """Take the lease and join the nodes set. A lease left by a dead process with
        this node's name is waited out; one that is being renewed raises NodeNameInUse."""
        holder: bytes | None = None
        deadline = 0.0
        while True:
            sent = time.monotonic()
            if await self._redis.set(self._key, self.token, nx=True, px=self._ms):
                break
            pipe = self._redis.pipeline(transaction=False)
            pipe.get(self._key)
            pipe.pttl(self._key)
            token, ttl = await pipe.execute()
            if token is None:
                continue  # expired between the two calls
            if holder is None:
                holder, deadline = token, sent + max(ttl, 0) / 1000 + 0.05
            elif token != holder or time.monotonic() > deadline:
                raise NodeNameInUse(f"node {self.node!r} is in use by another live process")
            await asyncio.sleep(min(0.1, self.seconds / 5))
        self._valid_until = sent + self.seconds
        await self._redis.sadd(self._nodes, self.node)
        self._task = asyncio.get_running_loop().create_task(self._keep())

    async def _keep(self) -> None:
        interval = self.seconds / 3
        while self._task is not None:  # checked, not only cancelled: see ClusterNode._repeat
            await asyncio.sleep(max(0.0, min(interval, self._valid_until - time.monotonic())))
            left = self._valid_until - time.monotonic()
            if left <= 0:
                self._lose("not renewed in time")
                return
            sent = time.monotonic()
            try:
                renewed = await asyncio.wait_for(
                    scripts.RENEW(self._redis, [self._key], [self.token, self._ms]), left
                )
            except UNREACHABLE as error:
                log.warning("cluster: renewing the lease of node %s failed: %s", self.node, error)
                continue
            if not renewed:
                self._lose("held by another token")
                return
            self._valid_until = sent + self.seconds

    def _lose(self, why: str) -> None:
        log.error("cluster: node %s lost its lease (%s)", self.node, why)
        self.lost = True
        self._on_lost()

    def stop(self) -> None:
        """Renew no more (the lease runs out on its own unless ``release`` is called)."""
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def release(self) -> None:
        """Leave: delete the lease and the node's name in the nodes set."""
        self.stop()
        await scripts.LEAVE(self._redis, [self._key, self._nodes], [self.token, self.node])
