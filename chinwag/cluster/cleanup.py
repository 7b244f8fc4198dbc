"""Cleaning up after a node that died, once, by one of the survivors.

Every node checks, every third of a lease, for members of the nodes set whose lease has
expired. For each, one script takes the node's cleanup lock, only while the node is
still a member and its lease is still gone, so that however many survivors race, one
cleans up; it keeps the lock while it works and, when done, takes the node out of the
nodes set and releases the lock in one more script, so that no one cleans up twice.

The cleanup, in order:

1. the dead node's records leave the registry (the changes are published as any
   removal), and the host hears which sessions went away (``sessions_gone``: it sends
   their contacts unavailable presence, once, as this node);
2. its resumable sessions (XEP-0198) wait for their clients to resume them on another
   node, until their windows close (``resumption.py``);
3. its inbox is moved aside, so that a late write to it fails instead of being lost
   (``bus.py``), and every entry in it, whether the dead node read it and never
   acknowledged it (``XAUTOCLAIM``) or never read it, goes to the host to be routed
   again (``orphaned``), as to resources that have just ended;
4. once the host has handed on every stanza (its offline commit finished), what was
   moved aside is deleted.

A cleaner that dies part way leaves the rest to the next (its lock expires); what it
had handed on but not acknowledged is then routed again, so a stanza may arrive twice
but is never lost. A node that starts under the name of a dead one, before anyone has
cleaned up after it, cleans up after it itself (``clean_own_remains``), as does a node
that leaves.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import TYPE_CHECKING, Any, Protocol

from chinwag.cluster import scripts
from chinwag.cluster.bus import Bus, Decoder, Entry
from chinwag.cluster.connection import UNREACHABLE
from chinwag.cluster.keys import GROUP, Keys
from chinwag.cluster.records import RemoteRecord
from chinwag.cluster.registry import Registry
from chinwag.cluster.resumption import Resumption
from chinwag.xmpp.jid import JID

if TYPE_CHECKING:
    from redis.asyncio import Redis

log = logging.getLogger(__name__)

RECORDS_PER_ROUND = 500
ENTRIES_PER_ROUND = 64
HANDOFF_SECONDS = 30.0
"""How long the host may take to hand on a dead node's stanzas (offline storage commits);
after that the cleanup is left to be done again later."""


class CleanupHost(Protocol):
    def sessions_gone(self, records: list[RemoteRecord]) -> None:
        """A dead node's sessions, now out of the registry: tell their contacts."""
        ...

    def orphaned(self, entry: Entry) -> None:
        """An entry of a dead node's inbox: route each of ``entry.items`` again (its
        session is gone) and call ``entry.handed_on()`` for each."""
        ...


class CleanupLockBusy(Exception):
    """Another node has been cleaning up after this node's name for too long."""


class _Handoff:
    """Counts the entries handed to the host that it has not finished with."""

    def __init__(self, bus: Bus) -> None:
        self._bus = bus
        self.waiting = 0
        self._all_done = asyncio.Event()
        self._all_done.set()

    def add(self) -> None:
        self.waiting += 1
        self._all_done.clear()

    def done(self, entry: Entry) -> None:
        self._bus.acknowledge(entry)
        self.waiting -= 1
        if self.waiting == 0:
            self._all_done.set()

    async def wait(self, seconds: float) -> bool:
        try:
            await asyncio.wait_for(self._all_done.wait(), seconds)
        except TimeoutError:
            return False
        return True


class Cleaner:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        node: str,
        token: str,
        registry: Registry,
        bus: Bus,
        resumption: Resumption,
        host: CleanupHost,
        *,
        lease_seconds: float,
        handoff_seconds: float = HANDOFF_SECONDS,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node = node
        self._token = token
        self._registry = registry
        self._bus = bus
        self._resumption = resumption
        self._host = host
        self._lock_seconds = max(2.0, 2 * lease_seconds)
        self._lock_ms = round(self._lock_seconds * 1000)
        self._handoff_seconds = handoff_seconds
        self.cleaned: list[str] = []
        """The nodes this node has cleaned up after (the tests read it)."""

    async def dead_nodes(self) -> list[str]:
        """Members of the nodes set, other than this one, whose lease has expired."""
        names: Any = await self._redis.smembers(self._keys.nodes)
        members = sorted(name.decode() for name in names)
        others = [name for name in members if name != self.node]
        pipe = self._redis.pipeline(transaction=False)
        for name in others:
            pipe.exists(self._keys.lease(name))
        alive = await pipe.execute()
        return [name for name, exists in zip(others, alive, strict=True) if not exists]

    async def sweep(self) -> list[str]:
        """Clean up after each dead node that no other node is cleaning up after."""
        cleaned = []
        for name in await self.dead_nodes():
            keys = [self._keys.nodes, self._keys.lease(name), self._keys.cleanup(name)]
            claimed = await scripts.CLAIM(self._redis, keys, [name, self._token, self._lock_ms])
            if claimed and await self._clean(name):
                cleaned.append(name)
        return cleaned

    async def clean_own_remains(self) -> None:
        """Clean up after an earlier process of this node's name (or, leaving, after this
        one), waiting for another node's cleanup of it to finish first."""
        lock = self._keys.cleanup(self.node)
        deadline = time.monotonic() + self._handoff_seconds + 2 * self._lock_seconds
        while not await self._redis.set(lock, self._token, nx=True, px=self._lock_ms):
            if time.monotonic() > deadline:
                raise CleanupLockBusy(f"another node is still cleaning up after {self.node!r}")
            await asyncio.sleep(0.1)
        if not await self._clean(self.node):
            raise CleanupLockBusy(f"what waited for {self.node!r} was not handed on in time")

    async def _clean(self, node: str) -> bool:
        """With ``node``'s cleanup lock held: clean up; True when done."""
        lock = self._keys.cleanup(node)
        keeping = asyncio.get_running_loop().create_task(self._keep_lock(lock))
        try:
            await self._remove_records(node)
            await self._resumption.park(node)
            if node != self.node:
                self._registry.forget_node(node)
            done = await self._route_inbox(node)
        except BaseException:
            keeping.cancel()
            with contextlib.suppress(*UNREACHABLE):
                await scripts.RELEASE(self._redis, [lock], [self._token])
            raise
        keeping.cancel()
        if not done:
            log.warning("cluster: what waited for node %s is not all handed on yet", node)
            await scripts.RELEASE(self._redis, [lock], [self._token])
            return False
        keys = [self._keys.nodes, lock, self._keys.lease(node)]
        finished = await scripts.FINISH(self._redis, keys, [node, self._token])
        if finished and node != self.node:
            self.cleaned.append(node)
            log.info("cluster: node %s cleaned up after node %s", self.node, node)
        return bool(finished)

    async def _keep_lock(self, lock: str) -> None:
        renewed = True
        while renewed:  # until cancelled, or the lock is no longer this node's
            await asyncio.sleep(self._lock_seconds / 3)
            try:
                renewed = await scripts.RENEW(self._redis, [lock], [self._token, self._lock_ms])
            except UNREACHABLE as error:
                log.warning("cluster: renewing cleanup lock %s failed: %s", lock, error)

    async def _remove_records(self, node: str) -> None:
        own = self._keys.node_sessions(node)
        kept = self._registry.changes_kept
        while members := await self._members(own):
            pipe = self._redis.pipeline(transaction=False)
            for full in members:
                bare, _, resource = full.decode().partition("/")
                keys = [self._keys.sessions(bare), own, *self._keys.change_log]
                scripts.REMOVE.queue(pipe, keys, [resource, node, full, kept])
            removed = await pipe.execute()
            gone = [
                RemoteRecord(JID.parse(full.decode()), packed)
                for full, packed in zip(members, removed, strict=True)
                if packed is not None
            ]
            if gone:
                self._host.sessions_gone(gone)

    async def _members(self, key: str) -> list[bytes]:
        members: Any = await self._redis.srandmember(key, RECORDS_PER_ROUND)
        return list(members or ())

    async def _route_inbox(self, node: str) -> bool:
        inbox, orphans = self._keys.inbox(node), self._keys.orphans(node)
        while True:
            moved = await scripts.MOVE_INBOX(self._redis, [inbox, orphans], [])
            if not await self._route_orphans(orphans):
                return False
            if moved != -1:  # else an earlier cleanup's were still there: now move the inbox
                return True

    async def _route_orphans(self, stream: str) -> bool:
        if not await self._redis.exists(stream):
            return True
        handoff = _Handoff(self._bus)
        decoder = Decoder()
        start: Any = b"0-0"
        while True:  # what the dead node read and never acknowledged
            claim: Any = await self._redis.xautoclaim(
                stream, GROUP, self.node, 0, start, count=ENTRIES_PER_ROUND
            )
            start, claimed = claim[0], claim[1]
            self._hand(handoff, decoder, stream, claimed)
            if start == b"0-0":
                break
        while True:  # what it never read
            reply: Any = await self._redis.xreadgroup(
                GROUP, self.node, {stream: ">"}, count=ENTRIES_PER_ROUND
            )
            if not reply:
                break
            for _stream, entries in reply:
                self._hand(handoff, decoder, stream, entries)
        if not await handoff.wait(self._handoff_seconds):
            return False
        await self._redis.delete(stream)
        return True

    def _hand(
        self,
        handoff: _Handoff,
        decoder: Decoder,
        stream: str,
        entries: list[tuple[bytes, dict[bytes, bytes] | None]],
    ) -> None:
        for entry_id, fields in entries:
            handoff.add()
            self._host.orphaned(decoder.entry(stream, entry_id, fields, handoff.done))
