"""Resumable sessions (XEP-0198) kept in Redis, so that any node can resume one: after
its node died, or from a node that is alive and hands it over.

For each resumable session, by its resumption id: a hash (``keys.resumable``: full JID,
node, app, window, the count of its client's stanzas handled, its presence, and, once
handed over, who got its directed presence) and a list
(``keys.unacked``) of what its client has not acknowledged, in order, each item
``number \\x1f since \\x1f stanza`` (no number: never sent, it waited for a detached
session). Each node has the set of its sessions' ids (``keys.node_resumable``).

The node keeps the list equal to its own record of what the client has not
acknowledged: a stanza is added in the turn it is queued for the client, which writes
nothing until the pipeline carrying it has come back (``StreamManagement.unrecorded``),
so a node killed at any moment cannot have written to a client what Redis lacks; an
acknowledgement trims it. This source writes ahead of the others in the turn's
pipeline: an inbox entry handed to a resumable session is acknowledged after its copy
is in the list.

When a node dies, the cleanup moves its sessions to the waiting set, by when their
window closes (``park``). A node where the client resumes takes the session (a script,
``take_over``): at once if its node is dead or has released it, else after asking its
node, through its inbox, to hand it over. A session whose window closes unresumed is
claimed by one node (``expired``), which routes its list again as a single node routes
what a session left when its window closed, then forgets it.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chinwag.cluster import scripts
from chinwag.cluster.keys import Keys
from chinwag.cluster.writer import Results, Writer

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

EXPIRED = "\x1fexpired"
"""The node a session whose window closed after its node died is marked with."""
HANDOVER_SECONDS = 10.0
"""How long a node waits for a live node to hand over a session before refusing."""
POLL_SECONDS = 0.02
EXPIRY_RETRY_SECONDS = 60.0
"""After claiming an expired session, when another node may claim it again (this one
having died before it was done)."""
EXPIRED_PER_ROUND = 50
FIELD = b"\x1f"


@dataclass
class Kept:
    """A resumable session as Redis keeps it."""

    sm_id: str
    fields: dict[str, bytes]
    unacked: list[tuple[int | None, float, bytes]]
    """What its client had not acknowledged: number (None: never sent), since, stanza."""

    @classmethod
    def parse(cls, sm_id: str, reply: list[Any]) -> Kept:
        flat, items = reply
        fields = {flat[i].decode(): flat[i + 1] for i in range(0, len(flat), 2)}
        unacked = []
        for item in items:
            number, since, stanza = item.split(FIELD, 2)
            unacked.append((int(number) if number else None, float(since), stanza))
        return cls(sm_id, fields, unacked)

    def text(self, name: str) -> str:
        return self.fields.get(name, b"").decode()


def item(number: int | None, since: float, stanza: bytes) -> bytes:
    head = f"{'' if number is None else number}\x1f{since:.3f}\x1f"
    return head.encode() + stanza


class Resumption:
    def __init__(self, redis: Redis, keys: Keys, node: str, writer: Writer) -> None:
        self._redis = redis
        self._keys = keys
        self.node = node
        self._writer = writer
        self._commands: list[tuple[Any, ...]] = []
        """What this turn writes, in order."""
        self._handled: dict[str, int] = {}
        """Each session's count of its client's stanzas handled, when changed this turn."""
        self._waiting: list[Callable[[], None]] = []
        """Called once this turn's commands are written."""
        self._marked = False

    # --- this node's sessions ----------------------------------------------------------

    def register(self, sm_id: str, fields: dict[str, str | bytes | int]) -> None:
        """The session ``sm_id`` is this node's: its hash, and an empty list."""
        key = self._keys.resumable(sm_id)
        self._queue(("DEL", self._keys.unacked(sm_id)))
        self._queue(("HSET", key, *_flat({**fields, "node": self.node})))
        self._queue(("SADD", self._keys.node_resumable(self.node), sm_id))

    def update(self, sm_id: str, fields: dict[str, str | bytes | int]) -> None:
        self._queue(("HSET", self._keys.resumable(sm_id), *_flat(fields)))

    def append(self, sm_id: str, entry: bytes, then: Callable[[], None] | None = None) -> None:
        """Add ``entry`` (``item()``) to the session's list; ``then`` once written."""
        key = self._keys.unacked(sm_id)
        last = self._commands[-1] if self._commands else None
        if last is not None and last[0] == "RPUSH" and last[1] == key:
            self._commands[-1] = (*last, entry)
        else:
            self._queue(("RPUSH", key, entry))
        if then is not None:
            self._waiting.append(then)

    def acknowledged(self, sm_id: str, count: int) -> None:
        self._queue(("LTRIM", self._keys.unacked(sm_id), count, -1))

    def restart(self, sm_id: str) -> None:
        """Empty the session's list (what follows replaces it)."""
        self._queue(("DEL", self._keys.unacked(sm_id)))

    def handled(self, sm_id: str, handled: int) -> None:
        self._handled[sm_id] = handled
        if not self._marked:
            self._mark()

    def release(self, sm_id: str) -> None:
        """The session is no longer this node's: another takes it over."""
        self._queue(("HSET", self._keys.resumable(sm_id), "node", ""))
        self._queue(("SREM", self._keys.node_resumable(self.node), sm_id))

    def forget(self, sm_id: str, node: str | None = None) -> None:
        """The session has ended, and what it left is handed on."""
        self._queue(("DEL", self._keys.resumable(sm_id), self._keys.unacked(sm_id)))
        self._queue(("SREM", self._keys.node_resumable(node or self.node), sm_id))
        self._queue(("ZREM", self._keys.resumable_waiting, sm_id))

    def _queue(self, command: tuple[Any, ...]) -> None:
        self._commands.append(command)
        if not self._marked:
            self._mark()

    def _mark(self) -> None:
        self._marked = True
        self._writer.mark(self, first=True)

    def write(self, pipe: Pipeline) -> Callable[[Results], None]:
        self._marked = False
        commands, self._commands = self._commands, []
        for sm_id, handled in self._handled.items():
            commands.append(("HSET", self._keys.resumable(sm_id), "handled", handled))
        self._handled = {}
        waiting, self._waiting = self._waiting, []
        for command in commands:
            pipe.execute_command(*command)

        def take(results: Results) -> None:
            if isinstance(results, BaseException):
                self._commands[:0] = commands  # ahead of what was queued since
                self._waiting[:0] = waiting
                if not self._marked:
                    self._mark()
                return
            for result in results:
                if isinstance(result, Exception):
                    log.error("cluster: keeping a resumable session failed: %s", result)
            for then in waiting:
                then()

        return take

    # --- sessions of other nodes -------------------------------------------------------

    async def take_over(self, sm_id: str, belongs: Callable[[Kept], bool]) -> Kept | None:
        """The session ``sm_id``, if ``belongs`` to whoever resumes it, made this node's:
        its node asked to hand it over if alive. None if there is none (or it was not
        handed over in time)."""
        keys = self._keys
        key = keys.resumable(sm_id)
        deadline = time.monotonic() + HANDOVER_SECONDS
        asked = ""
        while time.monotonic() < deadline:
            fields: Any = await self._redis.hgetall(key)
            if not fields:
                return None
            owner = fields.get(b"node", b"").decode()
            if owner == EXPIRED or not belongs(Kept(sm_id, _decoded(fields), [])):
                return None
            # A waiting session's node died (or an earlier process of its name did).
            waiting = await self._redis.zscore(keys.resumable_waiting, sm_id) is not None
            if owner == self.node and not waiting:
                return None
            if owner and not waiting and await self._redis.exists(keys.lease(owner)):
                if asked != owner:  # its node is alive: ask it to let the session go
                    asked = owner
                    await self._redis.xadd(keys.inbox(owner), {"h": sm_id}, nomkstream=True)
                await asyncio.sleep(POLL_SECONDS)
                continue
            script_keys = [
                key,
                keys.unacked(sm_id),
                keys.node_resumable(owner),
                keys.node_resumable(self.node),
                keys.resumable_waiting,
                keys.lease(owner),
            ]
            reply = await scripts.TAKE_OVER(self._redis, script_keys, [owner, self.node, sm_id])
            if reply is not None:
                return Kept.parse(sm_id, reply)
        return None

    async def park(self, node: str) -> None:
        """``node`` is dead: each of its resumable sessions waits for its client, until
        its window closes."""
        keys = self._keys
        own = keys.node_resumable(node)
        ids: Any = await self._redis.smembers(own)
        now = time.time()
        for raw in ids:
            sm_id = raw.decode()
            script_keys = [keys.resumable(sm_id), keys.resumable_waiting]
            await scripts.WAIT(self._redis, script_keys, [node, sm_id, now])
        await self._redis.delete(own)

    async def expired(self) -> list[Kept]:
        """Sessions of dead nodes whose window has closed, claimed by this node to route
        what they left again (then ``forget``)."""
        keys = self._keys
        now = time.time()
        due: Any = await self._redis.zrangebyscore(
            keys.resumable_waiting, "-inf", now, start=0, num=EXPIRED_PER_ROUND
        )
        claimed = []
        for raw in due:
            sm_id = raw.decode()
            script_keys = [keys.resumable_waiting, keys.resumable(sm_id), keys.unacked(sm_id)]
            args = [sm_id, now, now + EXPIRY_RETRY_SECONDS, EXPIRED]
            reply = await scripts.EXPIRE(self._redis, script_keys, args)
            if reply is not None:
                claimed.append(Kept.parse(sm_id, reply))
        return claimed


def _flat(fields: dict[str, str | bytes | int]) -> list[str | bytes | int]:
    return [part for pair in fields.items() for part in pair]


def _decoded(fields: dict[bytes, bytes]) -> dict[str, bytes]:
    return {name.decode(): value for name, value in fields.items()}
