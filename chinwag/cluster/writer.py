"""One round trip per event-loop turn: everything the node writes to Redis during a
turn (stanzas for other nodes, acknowledgements, registry changes) goes in one pipeline
at the turn's end.

A source (the bus, the registry) keeps what it has to write and marks itself; at the
end of the turn the writer asks each marked source to queue its commands on the
pipeline, sends it, and hands each source the results of its own commands (or the
error that stopped the round trip, after which the source queues what must be retried).
While a round trip is under way, what the next turns write waits for it: the next
pipeline carries all of it, so that under load the batches grow instead of the trips.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import NoScriptError

from chinwag.cluster import scripts
from chinwag.cluster.connection import UNREACHABLE

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

RETRY_SECONDS = 0.05
"""The pause after a round trip failed (Redis unreachable) before the writer tries again."""

Results = list[Any] | BaseException
"""A source's share of a pipeline's replies, in the order it queued them (an error reply
is an exception in its place), or the error that stopped the round trip."""


class Source(Protocol):
    def write(self, pipe: Pipeline) -> Callable[[Results], None]:
        """Queue what is waiting on ``pipe``; returns what takes the replies."""
        ...


class Writer:
    def __init__(self, redis: Redis, may_write: Callable[[], bool] = lambda: True) -> None:
        self._redis = redis
        self._may_write = may_write
        """Asked before each round trip (the node's lease): when it says no, nothing is
        sent, and what is marked waits for the node to close the writer."""
        self._marked: list[Source] = []
        self._scheduled = False
        self._task: asyncio.Task[None] | None = None
        self._idle = asyncio.Event()
        self._idle.set()
        self._closed = False
        self._in_flight: list[Callable[[Results], None]] = []
        """What takes the replies of the round trip under way."""
        self.round_trips = 0
        """Pipelines sent so far (the tests count them)."""

    def mark(self, source: Source, *, first: bool = False) -> None:
        """``source`` has something to write: it goes out at the end of this turn (or with
        the next pipeline, if one is under way), ``first`` ahead of the other sources.
        A source marks itself once per write."""
        if self._closed:
            return
        if first:
            self._marked.insert(0, source)
        else:
            self._marked.append(source)
        self._idle.clear()
        if self._task is None and not self._scheduled:
            self._scheduled = True
            asyncio.get_running_loop().call_soon(self._start)

    def _start(self) -> None:
        self._scheduled = False
        if self._task is None and not self._closed:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def _run(self) -> None:
        try:
            while self._marked and not self._closed:
                if not await self._round_trip():
                    await asyncio.sleep(RETRY_SECONDS)
        finally:
            self._task = None
            if not self._marked or self._closed:
                self._idle.set()

    async def _round_trip(self) -> bool:
        if not self._may_write():
            return False
        sources, self._marked = self._marked, []
        pipe = self._redis.pipeline(transaction=False)
        taken: list[tuple[Callable[[Results], None], int, int]] = []
        for source in sources:
            start = len(pipe)
            taken.append((source.write(pipe), start, len(pipe)))
        self.round_trips += 1
        self._in_flight = [take for take, _start, _end in taken]
        try:
            replies = await pipe.execute(raise_on_error=False)
        except UNREACHABLE as error:
            log.warning("cluster: writing to Redis failed (%s); retrying", error)
            for take, _start, _end in taken:
                take(error)
            return False
        finally:
            self._in_flight = []
        if any(isinstance(reply, NoScriptError) for reply in replies):
            with contextlib.suppress(*UNREACHABLE):
                await scripts.load_all(self._redis)  # the sources retry what failed
        for take, start, end in taken:
            take(replies[start:end])
        return True

    async def drain(self) -> None:
        """Wait until everything written so far has been sent (or the writer is closed)."""
        await self._idle.wait()

    def close(self) -> None:
        """Write nothing more. A round trip under way is abandoned: its sources take it as
        failed, and keep what it carried (which Redis may or may not have received)."""
        self._closed = True
        in_flight, self._in_flight = self._in_flight, []
        for take in in_flight:
            take(ConnectionAbortedError("the cluster node stopped"))
        self._marked.clear()
        if self._task is not None:
            self._task.cancel()
        self._idle.set()
