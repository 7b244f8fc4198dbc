"""The cluster's session registry: this node's records published to Redis, and every
other node's records mirrored in memory.

In Redis, each account has a hash of its records by resource, and each node a set of the
full JIDs it has published, for the cleanup after it. Every change (a record set or
removed) is added, numbered, to one stream by the same script that makes it, so the
stream's order is the order of the changes. Each node mirrors the other nodes' records
from a snapshot and then that stream, and answers who is online from memory: routing
never waits for Redis. A node that finds a number missing (trimmed before it read it)
loads the registry again.

The session manager calls ``publish(session)`` at bind and whenever the record's fields
change (presence, roster interest), and ``remove(session)`` when the session ends. What
a turn publishes goes out in the turn's pipeline, once per resource however often it
changed. A session's first publish claims the resource, whoever held it; later ones
only update the record while it is still this node's, and ``remove`` takes out only
this node's record. So the later bind of a resource wins, and the session it replaced
can neither bring its record back nor delete the new one. A node that reads another
node's record for a resource it has claimed checks whose record Redis now holds; when
it is the other node's, its session was replaced (``session_replaced``) and must end
with ``<conflict/>``.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import NoScriptError

from chinwag.cluster import scripts
from chinwag.cluster.connection import UNREACHABLE
from chinwag.cluster.keys import Keys
from chinwag.cluster.records import Publishable, RemoteRecord, owner, pack
from chinwag.cluster.scripts import SEPARATOR
from chinwag.cluster.writer import Results, Writer
from chinwag.xmpp.jid import JID

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

CHANGES_KEPT = 100_000
"""About how many changes the stream keeps; a node that falls further behind (its reader
cut off from Redis that long) loads the registry again."""
CHANGES_PER_READ = 1000
SNAPSHOT_BATCH = 500
RETRY_SECONDS = 0.2

CLAIM, UPDATE, REMOVE = "claim", "update", "remove"

Remote = dict[str, dict[str, RemoteRecord]]
"""Other nodes' records: bare JID text -> resource -> record."""


class RegistryHost(Protocol):
    def session_replaced(self, full: JID) -> None:
        """This node's session ``full`` was bound again on another node: end it with
        ``<conflict/>`` (its record is already the other node's)."""
        ...

    def presence_crossed(
        self, before: RemoteRecord | None, after: RemoteRecord | None, unannounced: list[JID]
    ) -> None:
        """Another node's record changed from ``before`` to ``after`` (None: absent),
        being or having been available, while the local sessions ``unannounced`` had
        become available unseen by that node: neither node's broadcast nor its probe
        answer reached the other side, so this node tells both."""
        ...


class Registry:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        node: str,
        lease_token: str,
        writer: Writer,
        host: RegistryHost,
        *,
        changes_kept: int = CHANGES_KEPT,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node = node
        self._lease = (keys.lease(node), lease_token)
        self._writer = writer
        self._host = host
        self.changes_kept = changes_kept
        self._block_ms = block_ms
        self._claimed: dict[str, Publishable] = {}
        """The local session that last claimed each full JID, until it is removed."""
        self._queued: dict[str, tuple[Publishable, str]] = {}
        """What to write at the end of the turn, by full JID: the record and how."""
        self._claims_under_way: dict[str, int] = {}
        """Claims sent and not yet answered, by full JID."""
        self._marked = False
        self._unannounced: dict[str, JID] = {}
        """Local sessions published available whose change the stream has not shown yet:
        the other nodes' broadcasts, made before they saw it, have missed them."""
        self._remote: Remote = {}
        self._last = b"0-0"
        """The stream id of the last change the mirror has applied."""
        self._number = 0
        """Its number: the next must be one more, or some were trimmed unread."""
        self.reloads = 0
        """Snapshots loaded (the tests count them)."""

    # --- this node's records -----------------------------------------------------------

    def publish(self, record: Publishable) -> None:
        """Set ``record`` (a local session) in the registry, as it is at the end of the turn."""
        full = record.jid.text
        if self._claimed.get(full) is record:
            queued = self._queued.get(full)
            self._queue(full, record, CLAIM if queued and queued[1] == CLAIM else UPDATE)
        else:
            self._claimed[full] = record
            self._drop(record.jid)  # another node's record of it (a session taken over) is old
            self._queue(full, record, CLAIM)
        if record.available:
            self._unannounced[full] = record.jid
        else:
            self._unannounced.pop(full, None)

    def remove(self, record: Publishable) -> None:
        """Take ``record`` (a local session that ended) out of the registry, unless a
        newer session of its resource has claimed it since."""
        full = record.jid.text
        if self._claimed.get(full) is record:
            del self._claimed[full]
            self._unannounced.pop(full, None)
            self._queue(full, record, REMOVE)

    def let_go(self, record: Publishable) -> None:
        """``record`` (a local session) moves to another node, whose claim replaces it."""
        full = record.jid.text
        if self._claimed.get(full) is record:
            del self._claimed[full]
            self._unannounced.pop(full, None)

    def _queue(self, full: str, record: Publishable, how: str) -> None:
        self._queued[full] = (record, how)
        if not self._marked:
            self._marked = True
            self._writer.mark(self)

    def write(self, pipe: Pipeline) -> Callable[[Results], None]:
        self._marked = False
        queued, self._queued = self._queued, {}
        keys, node = self._keys, self.node
        lease_key, token = self._lease
        for full, (record, how) in queued.items():
            jid = record.jid
            account = [keys.sessions(jid.bare.text), keys.node_sessions(node), *keys.change_log]
            if how == REMOVE:
                scripts.REMOVE.queue(pipe, account, [jid.resource, node, full, self.changes_kept])
                continue
            if how == CLAIM:
                self._claims_under_way[full] = self._claims_under_way.get(full, 0) + 1
            args = [jid.resource, pack(node, record), full, self.changes_kept, token, how, node]
            scripts.PUBLISH.queue(pipe, [*account, lease_key], args)

        def take(results: Results) -> None:
            for full, (_record, how) in queued.items():
                if how == CLAIM:
                    self._settled(full)
            if isinstance(results, BaseException):
                self._requeue(queued.items())
                return
            replies = list(zip(queued.items(), results, strict=True))
            for _item, reply in replies:
                if isinstance(reply, Exception) and not isinstance(reply, NoScriptError):
                    log.error("cluster: a registry change failed: %s", reply)
            self._requeue(item for item, reply in replies if isinstance(reply, NoScriptError))

        return take

    def _settled(self, full: str) -> None:
        left = self._claims_under_way.pop(full, 1) - 1
        if left:
            self._claims_under_way[full] = left

    def _requeue(self, items: Iterable[tuple[str, tuple[Publishable, str]]]) -> None:
        """Queue again what a failed round trip carried, unless changed since."""
        for full, (record, how) in items:
            if full not in self._queued:
                self._queue(full, record, how)

    def _claim_pending(self, full: str) -> bool:
        queued = self._queued.get(full)
        return full in self._claims_under_way or (queued is not None and queued[1] == CLAIM)

    # --- the mirror of the other nodes' records ------------------------------------------

    def resources(self, bare: str) -> dict[str, RemoteRecord] | None:
        """Other nodes' records of the account ``bare``, by resource."""
        return self._remote.get(bare)

    def record(self, full: JID) -> RemoteRecord | None:
        resources = self._remote.get(full.bare.text)
        return resources.get(full.resource) if resources and full.resource else None

    def records(self) -> Iterator[RemoteRecord]:
        for resources in self._remote.values():
            yield from resources.values()

    def forget_node(self, node: str) -> None:
        """Drop ``node``'s records from the mirror now (the node is gone; the registry
        will say so too, once its cleanup is done)."""
        for bare in list(self._remote):
            resources = self._remote[bare]
            for resource in [r for r, record in resources.items() if record.node == node]:
                del resources[resource]
            if not resources:
                del self._remote[bare]

    async def load(self) -> None:
        """Mirror the registry: a snapshot of every record, then the changes since
        (applying again a change the snapshot already shows changes nothing)."""
        redis = self._redis
        pipe = redis.pipeline(transaction=True)
        pipe.xrevrange(self._keys.changes, count=1)
        pipe.get(self._keys.changes_count)
        newest, number = await pipe.execute()
        remote: Remote = {}
        batch: list[bytes] = []
        async for key in redis.scan_iter(match=self._keys.all_sessions, count=SNAPSHOT_BATCH):
            batch.append(key)
            if len(batch) == SNAPSHOT_BATCH:
                await self._snapshot(batch, remote)
                batch = []
        await self._snapshot(batch, remote)
        self._remote = remote
        self._last = newest[0][0] if newest else b"0-0"
        self._number = int(number or 0)
        self.reloads += 1
        await self._check_claims([full for full in self._claimed if self._remote_record(full)])

    async def _snapshot(self, keys: list[bytes], remote: Remote) -> None:
        if not keys:
            return
        pipe = self._redis.pipeline(transaction=False)
        for key in keys:
            pipe.hgetall(key)
        skip = len(self._keys.sessions(""))
        for key, hash_ in zip(keys, await pipe.execute(), strict=True):
            bare = key.decode()[skip:]
            for resource, packed in hash_.items():
                if owner(packed) != self.node:
                    full = f"{bare}/{resource.decode()}"
                    record = RemoteRecord(JID.parse(full), packed)
                    remote.setdefault(bare, {})[resource.decode()] = record

    async def follow(self) -> None:
        """Apply the registry's changes that have come (waiting a while for some)."""
        try:
            read: Any = await self._redis.xread(
                {self._keys.changes: self._last}, count=CHANGES_PER_READ, block=self._block_ms
            )
            for _stream, changes in read or ():
                contested = self._apply_all(changes)
                if contested is None:
                    log.warning("cluster: node %s missed registry changes", self.node)
                    await self.load()
                else:
                    await self._check_claims(contested)
        except UNREACHABLE as error:
            log.warning("cluster: reading registry changes failed: %s", error)
            await asyncio.sleep(RETRY_SECONDS)

    def _apply_all(self, changes: list[tuple[bytes, dict[bytes, bytes]]]) -> list[str] | None:
        """Apply changes read in order: the resources this node claimed that another
        node has set since, or None at a gap in the numbers."""
        contested = []
        for change_id, fields in changes:
            number = int(fields[b"q"])
            if number != self._number + 1:
                return None
            full = fields[b"j"].decode()
            packed = fields.get(b"r")
            if packed is None:
                self._removed(full, fields[b"n"].decode())
            elif owner(packed) == self.node:
                self._drop(JID.parse(full))
                if b"a" in packed.split(SEPARATOR, 2)[1]:
                    self._unannounced.pop(full, None)  # seen: later broadcasts reach it
            else:
                jid = JID.parse(full)
                resources = self._remote.setdefault(jid.bare.text, {})
                before = resources.get(jid.resource or "")
                after = resources[jid.resource or ""] = RemoteRecord(jid, packed)
                if full in self._claimed:
                    contested.append(full)
                if self._unannounced and (after.available or (before and before.available)):
                    self._crossed(before, after)
            self._last, self._number = change_id, number
        return contested

    async def _check_claims(self, contested: list[str]) -> None:
        """Of resources this node claimed and another node has set: those whose record is
        now the other node's were bound there after; end this node's sessions."""
        contested = [full for full in contested if not self._claim_pending(full)]
        if not contested:
            return
        pipe = self._redis.pipeline(transaction=False)
        for full in contested:
            bare, _, resource = full.partition("/")
            pipe.hget(self._keys.sessions(bare), resource)
        for full, packed in zip(contested, await pipe.execute(), strict=True):
            lost = packed is not None and owner(packed) != self.node
            if lost and full in self._claimed and not self._claim_pending(full):
                self._host.session_replaced(JID.parse(full))

    def _remote_record(self, full: str) -> RemoteRecord | None:
        return self.record(JID.parse(full))

    def _removed(self, full: str, node: str) -> None:
        if node != self.node:
            jid = JID.parse(full)
            record = self.record(jid)
            if record is not None and record.node == node:
                self._drop(jid)
                if self._unannounced and record.available:
                    self._crossed(record, None)

    def _crossed(self, before: RemoteRecord | None, after: RemoteRecord | None) -> None:
        self._host.presence_crossed(before, after, list(self._unannounced.values()))

    def _drop(self, jid: JID) -> None:
        resources = self._remote.get(jid.bare.text)
        if resources is None:
            return
        resources.pop(jid.resource or "", None)
        if not resources:
            del self._remote[jid.bare.text]
