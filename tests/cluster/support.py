"""Helpers for the cluster tests: a host that records what a node tells it, records to
publish, a proxy that can cut a node off from Redis, and bounded waits."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable
from dataclasses import dataclass

from chinwag.cluster.bus import Entry, Stanzas
from chinwag.cluster.records import RemoteRecord
from chinwag.cluster.resumption import Kept
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import parse_stanza

TIMEOUT = 10.0
"""The longest any wait in these tests may take."""

REDIS_HOST, REDIS_PORT = "127.0.0.1", 6379
REDIS_URL = f"redis://{REDIS_HOST}:{REDIS_PORT}/0"
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def eventually(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    """Wait until ``check()`` is true; fail after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError("timed out waiting for a condition")
        await asyncio.sleep(0.01)


def message(to: str, body: str) -> Element:
    return parse_stanza(f"<message to='{to}' type='chat'><body>{body}</body></message>")


@dataclass
class Record:
    """A local session's routing record, as the session manager would publish it."""

    jid: JID
    available: bool = False
    priority: int = 0
    presence: Element | None = None
    interested: bool = False
    carbons: bool = False
    app: str | None = None
    notify: frozenset[str] = frozenset()
    directed: frozenset[JID] = frozenset()


class Host:
    """A ClusterHost that keeps everything it is told. It hands on each stanza it gets at
    once, unless ``hand_on`` is False (as a node that dies before it could)."""

    def __init__(self, hand_on: bool = True) -> None:
        self.hand_on = hand_on
        self.entries: list[Entry] = []
        """Inbox entries, in the order they arrived."""
        self.orphans: list[Entry] = []
        """Entries of dead nodes' inboxes handed over to be routed again."""
        self.gone: list[RemoteRecord] = []
        self.replaced: list[JID] = []
        self.crossed: list[tuple[RemoteRecord | None, RemoteRecord | None, list[JID]]] = []
        self.undelivered: list[tuple[str, Stanzas, bool]] = []
        self.lost = 0
        self.handed_over: list[str] = []
        self.expired_sessions: list[Kept] = []
        self.signals: list[tuple[str, list[JID]]] = []

    def lease_lost(self) -> None:
        self.lost += 1

    def session_replaced(self, full: JID) -> None:
        self.replaced.append(full)

    def presence_crossed(
        self, before: RemoteRecord | None, after: RemoteRecord | None, unannounced: list[JID]
    ) -> None:
        self.crossed.append((before, after, unannounced))

    def inbound(self, entry: Entry) -> None:
        self.entries.append(entry)
        if self.hand_on and entry.items:
            entry.handed_on(len(entry.items))

    def orphaned(self, entry: Entry) -> None:
        self.orphans.append(entry)
        if self.hand_on and entry.items:
            entry.handed_on(len(entry.items))

    def hand_over(self, sm_id: str) -> None:
        self.handed_over.append(sm_id)

    def signalled(self, event: str, sessions: list[JID]) -> None:
        self.signals.append((event, sessions))

    def expired(self, sessions: list[Kept]) -> None:
        self.expired_sessions.extend(sessions)

    def sessions_gone(self, records: list[RemoteRecord]) -> None:
        self.gone.extend(records)

    def undeliverable(self, node: str, stanzas: Stanzas, node_gone: bool) -> None:
        self.undelivered.append((node, stanzas, node_gone))

    def received(self) -> list[tuple[str, str]]:
        """(full JID, body) of each stanza of the inbox entries, in order."""
        return [
            (to.text, stanza.find("body").text)
            for entry in self.entries
            for to, stanza in entry.items
        ]  # type: ignore[union-attr]

    def rerouted(self) -> list[tuple[str, str]]:
        """(full JID, body) of each stanza handed over from dead nodes' inboxes."""
        return [
            (to.text, stanza.find("body").text)
            for entry in self.orphans
            for to, stanza in entry.items
        ]  # type: ignore[union-attr]


class FreezableProxy:
    """A TCP proxy to Redis that can stop passing bytes, as a network partition would, or
    cut every connection and refuse new ones, as a partition that resets them would."""

    def __init__(self) -> None:
        self._flowing = asyncio.Event()
        self._flowing.set()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()
        self._cut = False
        self.port = 0

    async def start(self) -> str:
        self._server = await asyncio.start_server(self._connected, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return f"redis://127.0.0.1:{self.port}/0"

    def freeze(self) -> None:
        self._flowing.clear()

    def thaw(self) -> None:
        """Pass bytes again, what waited first."""
        self._flowing.set()

    def cut(self) -> None:
        """Drop every connection, and what is in flight on it, until ``restore``."""
        self._cut = True
        for task in list(self._tasks):
            task.cancel()
        for writer in list(self._writers):
            writer.transport.abort()
        self._writers.clear()

    def restore(self) -> None:
        self._cut = False

    async def _connected(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        if self._cut:
            writer.transport.abort()
            return
        upstream_reader, upstream_writer = await asyncio.open_connection(REDIS_HOST, REDIS_PORT)
        self._writers.update((writer, upstream_writer))
        for source, sink in ((reader, upstream_writer), (upstream_reader, writer)):
            task = asyncio.get_running_loop().create_task(self._pump(source, sink))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _pump(self, source: asyncio.StreamReader, sink: asyncio.StreamWriter) -> None:
        with contextlib.suppress(OSError):
            while data := await source.read(65536):
                await self._flowing.wait()
                sink.write(data)
                await sink.drain()
        sink.close()

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
