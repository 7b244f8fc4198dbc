"""This process as a node of the cluster: its lease, its share of the registry, its
inbox, and the cleanup after other nodes, started and stopped together.

The server knows the node through ``ClusterNode`` and is known to it only through
``ClusterHost``: the node hands it what arrived for local sessions, what a dead node left
to route again, which sessions went away with a dead node, and what could not be
written; and tells it when this node lost its lease. A node that lost its lease has
stopped: its sessions are no longer in the registry, or soon will not be, so the server
closes their streams and joins again with a new ``ClusterNode``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol

from chinwag.cluster import scripts
from chinwag.cluster.bus import Bus, BusHost, Stanzas
from chinwag.cluster.cleanup import HANDOFF_SECONDS, Cleaner, CleanupHost, CleanupLockBusy
from chinwag.cluster.connection import BLOCK_MS, UNREACHABLE, connect
from chinwag.cluster.keys import Keys
from chinwag.cluster.lease import Lease
from chinwag.cluster.registry import CHANGES_KEPT, Registry, RegistryHost
from chinwag.cluster.resumption import Kept, Resumption
from chinwag.cluster.writer import Writer
from chinwag.config import ClusterSettings

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)


class ClusterHost(RegistryHost, BusHost, CleanupHost, Protocol):
    def lease_lost(self) -> None:
        """This node lost its lease and has stopped: close every stream, then join again."""
        ...

    def expired(self, sessions: list[Kept]) -> None:
        """Dead nodes' resumable sessions whose window closed: route what each left again,
        then forget it (``resumption.forget``)."""
        ...


class ClusterNode:
    def __init__(
        self,
        redis: Redis,
        node: str,
        host: ClusterHost,
        *,
        lease_seconds: float = 5.0,
        key_prefix: str = "chinwag:",
        block_ms: int = BLOCK_MS,
        changes_kept: int = CHANGES_KEPT,
        handoff_seconds: float = HANDOFF_SECONDS,
    ) -> None:
        self.redis = redis
        self.name = node
        self._host = host
        self.keys = keys = Keys(key_prefix)
        self.lease = Lease(redis, keys, node, lease_seconds, self._lease_lost)
        self.writer = writer = Writer(redis, self.lease.check)
        token = self.lease.token
        self.registry = Registry(
            redis, keys, node, token, writer, host, changes_kept=changes_kept, block_ms=block_ms
        )
        self.bus = Bus(
            redis, keys, node, writer, host, self.registry.forget_node, block_ms=block_ms
        )
        self.resumption = Resumption(redis, keys, node, writer)
        self.cleaner = Cleaner(
            redis,
            keys,
            node,
            token,
            self.registry,
            self.bus,
            self.resumption,
            host,
            lease_seconds=lease_seconds,
            handoff_seconds=handoff_seconds,
        )
        self._tasks: list[asyncio.Task[None]] = []
        self._leave_seconds = handoff_seconds + 4 * lease_seconds
        self.running = False
        self.redis_run_id: str | None = None
        """The run id of the Redis server the node joined (``INFO server``): another one
        later means Redis restarted, and what it held is gone."""

    @classmethod
    def from_settings(cls, settings: ClusterSettings, host: ClusterHost) -> ClusterNode:
        """A node with a Redis client of its own (``node.redis``, which whoever made the
        node closes after stopping it)."""
        return cls(
            connect(settings.redis_url),
            settings.node,
            host,
            lease_seconds=settings.lease_seconds,
            key_prefix=settings.key_prefix,
        )

    async def start(self) -> None:
        """Join: take the lease (NodeNameInUse if a live process has it), clean up after
        an earlier process of this name, open the inbox, mirror the registry, then keep
        all of that going in the background."""
        await scripts.load_all(self.redis)
        self.redis_run_id = (await self.redis.info("server")).get("run_id")
        await self.lease.acquire()
        try:
            await self.cleaner.clean_own_remains()
            await self.bus.open()
            await self.registry.load()
        except BaseException:
            self.lease.stop()
            raise
        self.running = True
        for step in (self.registry.follow, self.bus.receive, self._sweep):
            self._spawn(self._repeat(step))

    async def stop(self) -> None:
        """Leave: stop reading, write what is queued, route again what is left in the
        inbox (the host has ended the sessions, whose records then left the registry),
        and give up the lease. If that cannot be done in time (Redis unreachable), the
        node halts instead, and the others clean up after it once its lease expires."""
        if not self.running:
            return
        self.running = False
        tasks, self._tasks = self._tasks, []
        for task in tasks:
            task.cancel()
        try:
            await asyncio.wait_for(self._leave(tasks), self._leave_seconds)
        except (*UNREACHABLE, CleanupLockBusy) as error:
            log.warning("cluster: node %s could not leave cleanly: %r", self.name, error)
            for node, stanzas in self.halt().items():
                self._host.undeliverable(node, stanzas, False)

    async def _leave(self, tasks: list[asyncio.Task[None]]) -> None:
        if tasks:
            await asyncio.wait(tasks)  # nothing reads the inbox while it is moved aside
        await self.writer.drain()
        await self.cleaner.clean_own_remains()
        await self.writer.drain()
        await self.lease.release()
        self.writer.close()

    def halt(self) -> dict[str, Stanzas]:
        """Stop at once and write nothing more, as a process that died would; returns
        the stanzas that were waiting to be written, by node."""
        self.running = False
        for task in self._tasks:
            task.cancel()
        self._tasks = []
        self.lease.stop()
        self.writer.close()
        return self.bus.take_queued()

    async def _repeat(self, step: Callable[[], Awaitable[None]]) -> None:
        # Checked at each step, not only cancelled: a blocking read cancelled inside
        # redis-py was seen to go on, and end in an error, after the node had halted.
        while self.running:
            await step()

    async def _sweep(self) -> None:
        await asyncio.sleep(self.lease.seconds / 3)
        try:
            await self.cleaner.sweep()
            expired = await self.resumption.expired()
        except UNREACHABLE as error:
            log.warning("cluster: looking for dead nodes failed: %s", error)
            return
        if expired:
            self._host.expired(expired)

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task = asyncio.get_running_loop().create_task(work)
        task.add_done_callback(self._ended)
        self._tasks.append(task)

    def _ended(self, task: asyncio.Task[None]) -> None:
        error = None if task.cancelled() else task.exception()
        if error is not None and self.running:
            log.error("cluster: node %s stops: %r", self.name, error)
            self._fail()

    def _lease_lost(self) -> None:
        if self.running:
            self._fail()

    def _fail(self) -> None:
        for node, stanzas in self.halt().items():
            self._host.undeliverable(node, stanzas, False)
        self._host.lease_lost()
