"""The bus between nodes: each node's inbox stream, and the stanzas other nodes add to it.

A stanza for another node's session is queued and goes out at the end of the turn, in
the turn's pipeline: one ``XADD`` per node it has stanzas for, whose entry carries the
stanzas (their wire form, one after the other) and the full JID each is for. An inbox
that no longer exists belongs to a node that is gone (``NOMKSTREAM`` keeps a late write
from making it again): the host gets those stanzas back to route again.

A node reads its inbox through a consumer group, so that an entry it read stays pending
until acknowledged. The host takes each stanza of an entry and calls
``entry.handed_on()`` once the stanza is delivered, stored offline or bounced; when all
have been, the entry is acknowledged and deleted (in the turn's pipeline). An entry that
a node read and never acknowledged, because it died, is routed again by whoever cleans
up after it (``cleanup.py``).

An event for sessions of another node (``Router.signal``: stored messages wait for a
session that came online while they were being stored, say) goes the same way, in an
entry of its own that names the event and the full JIDs; the node fires it for those of
its sessions that are still there.

``landed()`` tells when the stanzas queued so far have been written (or handed back to
the host): a stream-managed sender's stream waits for it before it counts the stanza
handled, so that an acknowledgement never covers a stanza still in this process.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Protocol

from redis.exceptions import ResponseError

from chinwag.cluster.connection import UNREACHABLE
from chinwag.cluster.keys import GROUP, Keys
from chinwag.cluster.writer import Results, Writer
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.ns import CLIENT
from chinwag.xmpp.xml import Parsed, XMLStreamParser, parse_stanza

if TYPE_CHECKING:
    from redis.asyncio import Redis
    from redis.asyncio.client import Pipeline

log = logging.getLogger(__name__)

STANZAS_PER_ENTRY = 256
"""At most this many stanzas in one inbox entry; a larger batch takes several."""
MAX_QUEUED = 50_000
"""Stanzas waiting to be written (Redis slow or unreachable) beyond which more are
handed back to the host at once, undelivered."""
ENTRIES_PER_READ = 64
RETRY_SECONDS = 0.2
_ROOT = f"<stream xmlns='{CLIENT}'>".encode()

Stanzas = list[tuple[JID, Element]]
"""Stanzas and the full JID each is for."""
Copies = dict[int, tuple[str, ...]]
"""By ``id()`` of a stanza of an entry: the other resources a copy of it went to (a
message to a bare JID, for several resources), so that routing it again when its own
resource has gone does not hand it a second time to an account that has it."""
COPIES = "\x1f"
"""Separates, in an entry's line for a stanza, its full JID from those of the other
resources that got copies (no JID contains it)."""


HANDOVER = b"h"
"""The field of an inbox entry that asks the node to hand over a resumable session (by
its id) to another node, instead of carrying stanzas."""
SIGNAL = b"e"
"""The field of an inbox entry that names an event to fire for sessions of the node (their
full JIDs in field ``t``), instead of carrying stanzas."""


def _control(fields: dict[bytes, bytes]) -> bool:
    """Whether an inbox entry asks something of the node rather than carrying stanzas."""
    return HANDOVER in fields or SIGNAL in fields


class InboxGone(Exception):
    """This node's inbox is gone: another node has cleaned up after it."""


class BusHost(Protocol):
    def inbound(self, entry: Entry) -> None:
        """Hand each of ``entry.items`` on, and call ``entry.handed_on()`` for each."""
        ...

    def hand_over(self, sm_id: str) -> None:
        """Another node resumes this node's session ``sm_id``: let it go
        (``resumption.py``)."""
        ...

    def signalled(self, event: str, sessions: list[JID]) -> None:
        """Another node fires ``event`` for these sessions of this node (those still here)."""
        ...

    def undeliverable(self, node: str, stanzas: Stanzas, node_gone: bool) -> None:
        """Stanzas for ``node`` that could not be written: the node is gone (route them
        again, as to resources that have just ended: the registry's mirror has already
        dropped the node's records), or Redis could not take them (bounce them)."""
        ...


class Entry:
    """One inbox entry: the stanzas one node sent this node's sessions in one turn."""

    __slots__ = ("_done", "_waiting", "copies", "id", "items", "stream")

    def __init__(
        self,
        stream: str,
        entry_id: bytes,
        items: Stanzas,
        done: Callable[[Entry], None],
        copies: Copies | None = None,
    ) -> None:
        self.stream = stream
        self.id = entry_id
        self.items = items
        self.copies: Copies = copies or {}
        self._done = done
        self._waiting = len(items)
        if not items:
            done(self)

    def handed_on(self, count: int = 1) -> None:
        """``count`` of the entry's stanzas are delivered, stored offline or bounced."""
        self._waiting -= count
        if self._waiting == 0:
            self._done(self)


class Decoder:
    """Turns inbox entries back into stanzas, with one long-lived parser: making a parser
    costs more than parsing a stanza."""

    def __init__(self) -> None:
        self._parser: XMLStreamParser | None = None

    def entry(
        self,
        stream: str,
        entry_id: bytes,
        fields: dict[bytes, bytes] | None,
        done: Callable[[Entry], None],
    ) -> Entry:
        items: Stanzas = []
        copies: Copies = {}
        if fields is not None and not _control(fields):
            items = self._items(fields, copies)
            if not items:
                log.error("cluster: inbox entry %s of %s is not stanzas; dropped", entry_id, stream)
        return Entry(stream, entry_id, items, done, copies)

    def _items(self, fields: dict[bytes, bytes], copies: Copies) -> Stanzas:
        try:
            targets = fields[b"t"].decode().split("\n")
            stanzas = [item for item in self._feed(fields[b"s"]) if type(item) is Element]
            if len(stanzas) == len(targets) and self._parser_between_elements():
                items = []
                for line, stanza in zip(targets, stanzas, strict=True):
                    to, *others = line.split(COPIES)
                    if others:
                        copies[id(stanza)] = tuple(others)
                    items.append((JID.parse(to), stanza))
                return items
        except (KeyError, UnicodeDecodeError, ValueError, StreamError):
            pass
        self._parser = None  # whatever it holds of this entry must not spoil the next
        return []

    def _feed(self, data: bytes) -> list[Parsed]:
        parser = self._parser
        if parser is None:
            parser = self._parser = XMLStreamParser(1 << 24, keep_wire=True)
            parser.feed(_ROOT)
        return parser.feed(data)

    def _parser_between_elements(self) -> bool:
        return self._parser is not None and self._parser.between_elements()


class Bus:
    def __init__(
        self,
        redis: Redis,
        keys: Keys,
        node: str,
        writer: Writer,
        host: BusHost,
        forget_node: Callable[[str], None],
        *,
        block_ms: int = 1000,
    ) -> None:
        self._redis = redis
        self._keys = keys
        self.node = node
        self.inbox = keys.inbox(node)
        self._writer = writer
        self._host = host
        self._forget_node = forget_node
        self._block_ms = block_ms
        self._outbox: dict[str, tuple[list[JID], list[bytes]]] = {}
        """Per node: the full JIDs and the wire form of the stanzas queued for it."""
        self._copies: dict[str, dict[int, list[str]]] = {}
        """Per node, by index in its outbox: every resource a stanza went to, when it
        went to several (filled in until the end of the turn)."""
        self._signals: dict[tuple[str, str], list[JID]] = {}
        """Per node and event: the sessions it is to be fired for."""
        self._acks: dict[str, list[bytes]] = {}
        self._queued = 0
        self.sent = 0
        """Stanzas ever queued for other nodes: a change tells that a dispatch sent some."""
        self._landing: list[asyncio.Future[None]] = []
        """Waiting for what is queued (not yet in a round trip) to be written."""
        self._marked = False
        self._decoder = Decoder()

    # --- to other nodes ------------------------------------------------------------------

    def send(self, node: str, to: JID, stanza: Element, copies: list[str] | None = None) -> None:
        """Deliver ``stanza`` to the session ``to`` on ``node``, at the end of this turn;
        ``copies``, the full JIDs of every resource it goes to, is read then."""
        if self._queued >= MAX_QUEUED:
            asyncio.get_running_loop().call_soon(
                self._host.undeliverable, node, [(to, stanza)], False
            )
            return
        batch = self._outbox.get(node)
        if batch is None:
            batch = self._outbox[node] = ([], [])
        if copies is not None:
            self._copies.setdefault(node, {})[len(batch[0])] = copies
        batch[0].append(to)
        batch[1].append(stanza.encoded())
        self._queued += 1
        self.sent += 1
        if not self._marked:
            self._mark()

    def signal(self, node: str, to: JID, event: str) -> None:
        """Have ``node`` fire ``event`` for its session ``to``, at the end of this turn."""
        self._signals.setdefault((node, event), []).append(to)
        if not self._marked:
            self._mark()

    def landed(self) -> asyncio.Future[None]:
        """Done once every stanza queued so far has been written to its node's inbox, or
        handed back to the host (its node gone, Redis refusing it, this node stopping)."""
        future = asyncio.get_running_loop().create_future()
        if self._outbox:
            self._landing.append(future)
        else:  # what was queued has been written, or handed back
            future.set_result(None)
        return future

    def acknowledge(self, entry: Entry) -> None:
        """Every stanza of ``entry`` has been handed on: acknowledge and delete it."""
        self._acks.setdefault(entry.stream, []).append(entry.id)
        if not self._marked:
            self._mark()

    def _mark(self) -> None:
        self._marked = True
        self._writer.mark(self)

    def write(self, pipe: Pipeline) -> Callable[[Results], None]:
        self._marked = False
        outbox, self._outbox = self._outbox, {}
        all_copies, self._copies = self._copies, {}
        acks, self._acks = self._acks, {}
        signals, self._signals = self._signals, {}
        landing, self._landing = self._landing, []
        sent: list[tuple[str, list[JID], list[bytes]]] = []
        for node, (targets, stanzas) in outbox.items():
            inbox = self._keys.inbox(node)
            lines = [jid.text for jid in targets]
            for index, copies in all_copies.get(node, {}).items():
                if len(copies) > 1:
                    lines[index] = COPIES.join([lines[index], *copies])
            for start in range(0, len(targets), STANZAS_PER_ENTRY):
                part = (
                    targets[start : start + STANZAS_PER_ENTRY],
                    stanzas[start : start + STANZAS_PER_ENTRY],
                )
                to = "\n".join(lines[start : start + STANZAS_PER_ENTRY])
                pipe.execute_command(
                    "XADD", inbox, "NOMKSTREAM", "*", "t", to, "s", b"".join(part[1])
                )
                sent.append((node, *part))
        for (node, event), sessions in signals.items():
            to = "\n".join(jid.text for jid in sessions)
            pipe.execute_command(
                "XADD", self._keys.inbox(node), "NOMKSTREAM", "*", "e", event, "t", to
            )
        for stream, ids in acks.items():
            pipe.xack(stream, GROUP, *ids)
            pipe.xdel(stream, *ids)

        def take(results: Results) -> None:
            if isinstance(results, BaseException):
                self._retry(sent, signals, acks, landing)
                return
            for result in results[len(sent) : len(sent) + len(signals)]:
                if isinstance(result, Exception):  # None: the node is gone, and its sessions
                    log.error("cluster: writing an event to another node failed: %s", result)
            for result in results[len(sent) + len(signals) :]:
                if isinstance(result, Exception):
                    log.error("cluster: acknowledging inbox entries failed: %s", result)
            for (node, targets, stanzas), result in zip(sent, results, strict=False):
                if result is None:
                    self._forget_node(node)
                    self._host.undeliverable(node, _decoded(targets, stanzas), True)
                elif isinstance(result, Exception):
                    log.error("cluster: writing to the inbox of %s failed: %s", node, result)
                    self._host.undeliverable(node, _decoded(targets, stanzas), False)
                self._queued -= len(targets)
            _settle(landing)

        return take

    def _retry(
        self,
        sent: list[tuple[str, list[JID], list[bytes]]],
        signals: dict[tuple[str, str], list[JID]],
        acks: dict[str, list[bytes]],
        landing: list[asyncio.Future[None]],
    ) -> None:
        """Queue again, ahead of what was queued since, what a failed round trip carried."""
        self._landing[:0] = landing
        for key, sessions in signals.items():
            self._signals.setdefault(key, [])[:0] = sessions
        outbox, self._outbox = self._outbox, {}
        for node, targets, stanzas in sent:
            batch = self._outbox.setdefault(node, ([], []))
            batch[0].extend(targets)
            batch[1].extend(stanzas)
        for node, (targets, stanzas) in outbox.items():
            batch = self._outbox.setdefault(node, ([], []))
            shift = len(batch[0])  # what was queued since moves back behind what is retried
            if shift and node in self._copies:
                self._copies[node] = {i + shift: c for i, c in self._copies[node].items()}
            batch[0].extend(targets)
            batch[1].extend(stanzas)
        for stream, ids in acks.items():
            self._acks.setdefault(stream, []).extend(ids)
        if (self._outbox or self._signals or self._acks) and not self._marked:
            self._mark()

    def take_queued(self) -> dict[str, Stanzas]:
        """What waits to be written, by node, which is then no longer written (the node
        is stopping)."""
        outbox, self._outbox = self._outbox, {}
        self._copies = {}
        self._signals = {}  # the sessions they were for end with this node
        self._queued = 0
        landing, self._landing = self._landing, []
        _settle(landing)
        return {node: _decoded(*batch) for node, batch in outbox.items()}

    # --- this node's inbox ---------------------------------------------------------------

    async def open(self) -> None:
        """Make this node's inbox and its consumer group, if they do not exist."""
        try:
            await self._redis.xgroup_create(self.inbox, GROUP, id="0", mkstream=True)
        except ResponseError as error:
            if "BUSYGROUP" not in str(error):
                raise

    async def receive(self) -> None:
        """Read what has arrived in this node's inbox (waiting a while for something),
        handing each entry to the host."""
        try:
            reply: Any = await self._redis.xreadgroup(
                GROUP, self.node, {self.inbox: ">"}, count=ENTRIES_PER_READ, block=self._block_ms
            )
        except ResponseError as error:
            if "NOGROUP" in str(error) or "UNBLOCKED" in str(error):
                raise InboxGone(f"the inbox of node {self.node} is gone") from None
            raise
        except UNREACHABLE as error:
            log.warning("cluster: reading the inbox of %s failed: %s", self.node, error)
            await asyncio.sleep(RETRY_SECONDS)
            return
        for _stream, entries in reply or ():
            for entry_id, fields in entries:
                if fields and _control(fields):
                    self._act_on(fields)
                    Entry(self.inbox, entry_id, [], self.acknowledge)  # no stanzas: done
                else:
                    self._host.inbound(
                        self._decoder.entry(self.inbox, entry_id, fields, self.acknowledge)
                    )

    def _act_on(self, fields: dict[bytes, bytes]) -> None:
        """An entry that asks something of this node instead of carrying stanzas."""
        if HANDOVER in fields:
            self._host.hand_over(fields[HANDOVER].decode())
            return
        try:
            event = fields[SIGNAL].decode()
            sessions = [JID.parse(text) for text in fields[b"t"].decode().split("\n")]
        except (KeyError, UnicodeDecodeError, ValueError):
            log.error("cluster: an event entry in the inbox of %s is malformed; dropped", self.node)
            return
        self._host.signalled(event, sessions)


def _settle(landing: list[asyncio.Future[None]]) -> None:
    for future in landing:
        if not future.done():
            future.set_result(None)


def _decoded(targets: list[JID], stanzas: list[bytes]) -> Stanzas:
    return [(to, parse_stanza(data.decode())) for to, data in zip(targets, stanzas, strict=True)]
