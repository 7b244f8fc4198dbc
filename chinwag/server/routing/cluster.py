"""The router of a cluster node: this node's sessions, and the records of every other
node's, answered from memory.

It composes the in-process router, which keeps this node's sessions and delivers to
them, with the registry's mirror of other nodes' records and the bus to their inboxes
(``chinwag.cluster``). A stanza for a local session costs what it costs in one process,
plus a call; one for another node's session is queued for that node's inbox, written
at the end of the turn. Nothing here waits for Redis.
"""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.cluster.bus import Bus, Entry, Stanzas
from chinwag.cluster.records import RemoteRecord
from chinwag.cluster.registry import Registry
from chinwag.server.routing import SessionRecord
from chinwag.server.routing.local import LocalRouter
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID


class ClusterRouter:
    def __init__(self, local: LocalRouter, registry: Registry, bus: Bus) -> None:
        self.node = local.node
        self.local = local
        """This node's sessions, which the session manager adds and removes."""
        self._local_deliver = local.deliver
        self._fanout: tuple[Element | None, list[str]] = (None, [])
        """The stanza delivered last, and every resource it went to: a message to a bare
        JID goes to several, and the bus tells each node which others got it."""
        self.attach(registry, bus)

    def attach(self, registry: Registry, bus: Bus) -> None:
        """Route through ``registry`` and ``bus`` from now on: those of the node that
        joined again after losing its lease."""
        self._registry = registry
        self._send = bus.send
        self._signal = bus.signal

    # --- the Router protocol ----------------------------------------------------------

    def resources(self, bare: JID) -> Sequence[SessionRecord]:
        local = self.local.resources(bare)
        remote = self._registry.resources(bare.text)
        if not remote:
            return local
        return (*local, *remote.values())

    def record(self, full: JID) -> SessionRecord | None:
        return self.local.session(full) or self._registry.record(full)

    def route(self, to: JID, stanza: Element) -> bool:
        if self.local.route(to, stanza):
            return True
        record = self._registry.record(to)
        if record is None:
            return False
        self._send(record.node, to, stanza)
        return True

    def deliver(self, record: SessionRecord, stanza: Element) -> None:
        fanout = self._fanout
        if fanout[0] is not stanza:
            fanout = self._fanout = (stanza, [])
        fanout[1].append(record.jid.text)
        if type(record) is RemoteRecord:
            self._send(record.node, record.jid, stanza, fanout[1])
        else:
            self._local_deliver(record, stanza)

    def signal(self, record: SessionRecord, event: str) -> None:
        if type(record) is RemoteRecord:
            self._signal(record.node, record.jid, event)
        else:
            self.local.signal(record, event)

    def remote_records(self) -> list[RemoteRecord]:
        """Every other node's sessions, as this node mirrors them."""
        return list(self._registry.records())

    # --- what other nodes delivered here ------------------------------------------------

    def receive(self, entry: Entry) -> Stanzas:
        """Deliver an inbox entry's stanzas to this node's sessions; returns those whose
        session is no longer here, for the caller to route again and then report handed
        on (``entry.handed_on()``)."""
        unrouted: Stanzas = []
        delivered = 0
        session = self.local.session
        for to, stanza in entry.items:
            target = session(to)
            if target is None:
                unrouted.append((to, stanza))
            else:
                self._local_deliver(target, stanza)
                delivered += 1
        if delivered:
            entry.handed_on(delivered)
        return unrouted

    def signalled(self, event: str, sessions: list[JID]) -> None:
        """Fire ``event`` for each of ``sessions`` still on this node."""
        for jid in sessions:
            session = self.local.session(jid)
            if session is not None:
                self.local.signal(session, event)
