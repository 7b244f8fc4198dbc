"""This server as a node of a cluster: the bridge between the cluster's Redis layer
(``chinwag.cluster``) and the server's sessions, routing and modules.

A ``ClusterMember`` owns the node (``ClusterNode``) and the router that routes through
it, publishes the session manager's records to the registry, and answers the node as
its ``ClusterHost``: what arrived for local sessions is delivered, and what was for a
session gone meanwhile is routed again (another resource, offline storage, a bounce);
a dead node's sessions are announced (``session/gone``: the presence module sends
their contacts unavailable presence) and what waited in its inbox is routed again; a
session bound again on another node ends with ``<conflict/>``; and a node that lost
its lease ends its streams, so that their clients connect again, and joins again.

Only a server with ``[cluster]`` imports this module, and with it redis-py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from chinwag.cluster.bus import Copies, Entry, Stanzas
from chinwag.cluster.cleanup import CleanupLockBusy
from chinwag.cluster.connection import UNREACHABLE
from chinwag.cluster.errors import ClusterUnavailable
from chinwag.cluster.lease import NodeNameInUse
from chinwag.cluster.node import ClusterNode
from chinwag.cluster.records import RemoteRecord
from chinwag.config import ClusterSettings
from chinwag.server.dispatch import Dispatcher
from chinwag.server.hooks import PRESENCE_CROSSED, SESSION_GONE, Hooks
from chinwag.server.routing.cluster import ClusterRouter
from chinwag.server.routing.local import LocalRouter
from chinwag.server.session import Session
from chinwag.server.sessions import EndReason, SessionManager
from chinwag.xmpp.errors import StanzaCondition, StanzaError, StreamCondition, StreamError
from chinwag.xmpp.jid import JID

log = logging.getLogger(__name__)

START_SECONDS = 60.0
"""How long joining may take at start (a dead process of the same name's lease waited
out, its remains cleaned up) before serve gives up."""

Spawn = Callable[[Coroutine[Any, Any, None]], object]
SpawnedBy = Callable[[Callable[[], None]], list[asyncio.Task[None]]]
"""Runs its argument; returns the background work that spawned (the server's)."""


class ClusterMember:
    def __init__(self, settings: ClusterSettings, local: LocalRouter, hooks: Hooks) -> None:
        self.settings = settings
        self._hooks = hooks
        self.node = ClusterNode.from_settings(settings, self)
        self.router = ClusterRouter(local, self.node.registry, self.node.bus)
        """Routes to this node's sessions and, through the bus, to every other node's."""
        self._dispatcher: Dispatcher | None = None
        self._sessions: SessionManager | None = None
        self._spawn: Spawn | None = None
        self._spawned_by: SpawnedBy | None = None
        self._stopping = False
        self._gone_while_joining: list[RemoteRecord] = []
        """Sessions an earlier process of this node left, cleaned up while joining: they
        are announced once the mirror, which tells who hears of them, is loaded."""
        self.rejoins = 0
        """Times the node lost its lease and joined again."""

    async def start(
        self,
        dispatcher: Dispatcher,
        sessions: SessionManager,
        spawn: Spawn,
        spawned_by: SpawnedBy,
    ) -> None:
        """Join the cluster; ClusterUnavailable if that cannot be done."""
        self._dispatcher, self._sessions, self._spawn = dispatcher, sessions, spawn
        self._spawned_by = spawned_by
        try:
            await asyncio.wait_for(self.node.start(), START_SECONDS)
        except NodeNameInUse:
            raise ClusterUnavailable(
                f"[cluster] node {self.settings.node!r} is in use by a live process: "
                "each node needs a name of its own"
            ) from None
        except (*UNREACHABLE, CleanupLockBusy, TimeoutError) as error:
            raise ClusterUnavailable(f"cannot join the cluster: {error}") from None
        log.info("cluster: joined as node %s", self.settings.node)
        self._announce_gone()

    async def stop(self) -> None:
        """Leave the cluster (the server has ended its sessions)."""
        self._stopping = True
        await self.node.stop()
        await self.node.redis.aclose()

    # --- the session manager's records --------------------------------------------------

    def publish(self, session: Session) -> None:
        self.node.registry.publish(session)

    def remove(self, session: Session) -> None:
        self.node.registry.remove(session)

    def remote_records(self) -> list[RemoteRecord]:
        return self.router.remote_records()

    # --- ClusterHost ---------------------------------------------------------------------

    def inbound(self, entry: Entry) -> None:
        unrouted = self.router.receive(entry)
        if unrouted:
            self._route_again(unrouted, entry.copies, lambda: entry.handed_on(len(unrouted)))

    def orphaned(self, entry: Entry) -> None:
        if entry.items:
            self._route_again(entry.items, entry.copies, lambda: entry.handed_on(len(entry.items)))

    def sessions_gone(self, records: list[RemoteRecord]) -> None:
        if not self.node.running:
            self._gone_while_joining.extend(records)
            return
        for record in records:
            self._hooks.notify(SESSION_GONE, record)

    def _announce_gone(self) -> None:
        gone, self._gone_while_joining = self._gone_while_joining, []
        if gone:
            self.sessions_gone(gone)

    def session_replaced(self, full: JID) -> None:
        sessions = self._sessions
        session = sessions.get(full) if sessions is not None else None
        if sessions is not None and session is not None:
            conflict = "replaced by a new session for the same resource on another node"
            sessions.end(session, StreamError(StreamCondition.CONFLICT, conflict))

    def presence_crossed(
        self, before: RemoteRecord | None, after: RemoteRecord | None, unannounced: list[JID]
    ) -> None:
        sessions = self._sessions
        if sessions is None:
            return
        local = [s for jid in unannounced if (s := sessions.get(jid)) is not None and s.available]
        if local:
            self._hooks.notify(PRESENCE_CROSSED, before, after, local)

    def undeliverable(self, node: str, stanzas: Stanzas, node_gone: bool) -> None:
        if node_gone:  # as for resources that have just ended
            self._route_again(stanzas)
            return
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        for _to, stanza in stanzas:
            unreachable = f"the recipient's node {node} cannot be reached"
            dispatcher.bounce(
                stanza, StanzaError(StanzaCondition.RECIPIENT_UNAVAILABLE, unreachable)
            )

    def lease_lost(self) -> None:
        if self._stopping or self._spawn is None:
            return
        log.error(
            "cluster: node %s lost its lease: ending its streams and joining again",
            self.settings.node,
        )
        self._spawn(self._rejoin())

    # --- inside ------------------------------------------------------------------------

    def _route_again(
        self,
        stanzas: Stanzas,
        copies: Copies | None = None,
        handed_on: Callable[[], None] | None = None,
    ) -> None:
        """Dispatch again, as to resources that have just ended, stanzas whose session
        has gone: but not a copy of a message whose other copies reached resources of
        the account that are still bound (it would arrive twice). ``handed_on`` is
        called once what that started (an offline commit, a bounce) has finished, so
        that an inbox entry is acknowledged only after the commit it led to: a node
        that dies before then leaves the entry to be routed again."""
        dispatcher = self._dispatcher
        if dispatcher is None:
            return

        def dispatch() -> None:
            for to, stanza in stanzas:
                others = copies.get(id(stanza)) if copies else None
                if others is None or not self._still_bound(to, others):
                    dispatcher.deliver(stanza, to)

        spawned_by = self._spawned_by
        assert spawned_by is not None  # set with the dispatcher
        work = spawned_by(dispatch)
        if handed_on is None:
            return
        if not work:
            handed_on()
            return

        def finished(_done: object) -> None:
            if not any(task.cancelled() for task in work):  # else it may not have committed
                handed_on()

        asyncio.gather(*work, return_exceptions=True).add_done_callback(finished)

    def _still_bound(self, gone: JID, others: tuple[str, ...]) -> bool:
        record = self.router.record
        for full in others:
            other = JID.parse(full)
            if full != gone.text and other.bare == gone.bare and record(other) is not None:
                return True
        return False

    async def _rejoin(self) -> None:
        """End every session (the others clean up after this node's records), then join
        with a new lease, cleaning up whatever the others had not."""
        self._end_sessions(self._sessions.all() if self._sessions is not None else ())
        lost, self.node = self.node, ClusterNode.from_settings(self.settings, self)
        self.router.attach(self.node.registry, self.node.bus)
        await lost.redis.aclose()
        while not self._stopping:
            try:
                await self.node.start()
            except (NodeNameInUse, CleanupLockBusy, *UNREACHABLE) as error:
                log.warning("cluster: joining again failed (%s); retrying", error)
                await asyncio.sleep(self.settings.lease_seconds)
            else:
                self.rejoins += 1
                log.info("cluster: node %s joined again", self.settings.node)
                self._announce_gone()
                return

    def _end_sessions(self, sessions: Sequence[Session]) -> None:
        manager = self._sessions
        if manager is None:
            return
        rejoining = StreamError(
            StreamCondition.RESET, "the server lost its place in the cluster: connect again"
        )
        for session in list(sessions):
            manager.end(session, rejoining, reason=EndReason.LEASE_LOST)
