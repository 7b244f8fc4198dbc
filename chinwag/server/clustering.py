"""This server as a node of a cluster: the bridge between the cluster's Redis layer
(``chinwag.cluster``) and the server's sessions, routing and modules.

A ``ClusterMember`` owns the node (``ClusterNode``) and the router that routes through
it, publishes the session manager's records to the registry, and answers the node as
its ``ClusterHost``: what arrived for local sessions is delivered, and what was for a
session gone meanwhile is routed again (another resource, offline storage, a bounce);
a dead node's sessions are announced (``session/gone``: the presence module sends
their contacts unavailable presence) and what waited in its inbox is routed again; a
session bound again on another node ends with ``<conflict/>``; and a node that lost
its lease ends its streams, so that their clients connect again, and joins again. A
resumable session is left to the cluster then, as after the node's death: its copy in
Redis, not what this node held, is the session, which the cleanup of the node's remains
parks for its client to resume on any node (or routes once its window closes). What
the copy lacks is routed again here, and the rest too if Redis restarted meanwhile.

It is also the session manager's ``Resumer`` and each resumable session's ``Mirror``:
what such a session is sent goes to Redis (``chinwag.cluster.resumption``) before its
client gets it, so that the session can be resumed on any node; it takes over other
nodes' sessions, hands its own over when asked, and routes again what a dead node's
session left when its window closed. An inbox entry, or a session's kept state, is
let go only once what routing it again started (an offline commit) has finished.

A stanza that a stream-managed client sent and this node queued for another node's
inbox holds that client's stream, as an offline commit does, until the round trip that
writes it has come back (``dispatching``): the <a/> that counts it is not written
before, so a node that dies meanwhile has acknowledged nothing it had not handed on.

Only a server with ``[cluster]`` imports this module, and with it redis-py.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from chinwag.cluster.bus import Copies, Entry, Stanzas
from chinwag.cluster.cleanup import CleanupLockBusy
from chinwag.cluster.connection import UNREACHABLE
from chinwag.cluster.errors import ClusterUnavailable
from chinwag.cluster.lease import NodeNameInUse
from chinwag.cluster.node import ClusterNode
from chinwag.cluster.records import ITEM_SEPARATOR, RemoteRecord
from chinwag.cluster.resumption import Kept, item
from chinwag.config import ClusterSettings
from chinwag.server.dispatch import Dispatch, Dispatcher
from chinwag.server.hooks import PRESENCE_CROSSED, SESSION_GONE, Hooks
from chinwag.server.routing.cluster import ClusterRouter
from chinwag.server.routing.local import LocalRouter
from chinwag.server.session import Session
from chinwag.server.sessions import EndReason, SessionManager, TakenOver
from chinwag.server.stream_management import Sent, StreamManagement, late
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError, StreamCondition, StreamError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.ns import CLIENT
from chinwag.xmpp.sm import MASK
from chinwag.xmpp.xml import parse_stanza

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
        self._handled_kept: dict[str, int] = {}
        """Per resumable session: the count of its client's stanzas handled, as last
        written to Redis."""
        self._lease_lost = False
        """While the sessions of a node that lost its lease end: their copies in Redis
        are left to the cleanup."""
        self._left: list[tuple[list[Sent], Callable[[list[Sent]], None]]] = []
        """What the resumable sessions left to the cleanup held that their copies hold
        too, with what routes it again: routed again if Redis has restarted meanwhile
        (the copies went with it)."""

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
        if self._left:  # stopping before it could join again: Redis may still keep them
            log.warning(
                "cluster: node %s stops before joining again: %d resumable sessions are "
                "left to Redis as they were, lost if it restarted meanwhile",
                self.settings.node,
                len(self._left),
            )
        await self.node.stop()
        await self.node.redis.aclose()

    def dispatching(self, dispatch: Dispatch) -> Dispatch:
        """``dispatch`` (the client streams'), holding a stream-managed sender whose stanza
        went to another node until it is written there."""

        def dispatch_and_hold(stanza: Element, to: JID | None, origin: Session | None) -> None:
            bus = self.node.bus
            sent = bus.sent
            dispatch(stanza, to, origin)
            if bus.sent != sent and origin is not None and origin.stream_management is not None:
                origin.connection.hold(_landing(bus.landed()))

        return dispatch_and_hold

    # --- the session manager's records --------------------------------------------------

    def publish(self, session: Session) -> None:
        self.node.registry.publish(session)
        sm = session.stream_management
        if sm is not None and sm.mirror is not None and sm.id is not None:
            self.node.resumption.update(sm.id, {"presence": _presence(session)})

    def remove(self, session: Session) -> None:
        self.node.registry.remove(session)

    def remote_records(self) -> list[RemoteRecord]:
        return self.router.remote_records()

    # --- resumable sessions: the session manager's Resumer, each one's Mirror -----------

    def resumable(self, session: Session) -> None:
        sm = session.stream_management
        assert sm is not None and sm.id is not None
        sm.mirror = self
        self._handled_kept[sm.id] = sm.handled
        fields: dict[str, str | bytes | int] = {
            "jid": session.jid.text,
            "app": session.app or "",
            "window": sm.resume_seconds,
            "handled": sm.handled,
            "presence": _presence(session),
        }
        self.node.resumption.register(sm.id, fields)

    def reattached(self, session: Session) -> None:
        sm = session.stream_management
        assert sm is not None and sm.id is not None
        self.node.resumption.restart(sm.id)

    def ended(
        self, session: Session, held: list[Sent], reroute: Callable[[list[Sent]], None]
    ) -> None:
        sm = session.stream_management
        assert sm is not None and sm.id is not None
        sm_id = sm.id
        sm.mirror = None
        self._handled_kept.pop(sm_id, None)
        if self._lease_lost:
            copied = len(held) - min(sm.unrecorded, len(held))
            reroute(held[copied:])  # the writes that had not come back: the copy lacks them
            self._left.append((held[:copied], reroute))
            return
        self._after(lambda: reroute(held), lambda: self.node.resumption.forget(sm_id))

    def released(
        self, session: Session, first: int, unacked: list[Sent], waited: list[Sent]
    ) -> None:
        sm = session.stream_management
        assert sm is not None and sm.id is not None
        resumption = self.node.resumption
        resumption.restart(sm.id)
        for offset, (stanza, since) in enumerate(unacked):
            resumption.append(sm.id, item((first + offset) & MASK, since, stanza.encoded()))
        for stanza, since in waited:
            resumption.append(sm.id, item(None, since, stanza.encoded()))
        directed = ITEM_SEPARATOR.join(sorted(jid.text for jid in session.directed))
        state: dict[str, str | bytes | int] = {
            "handled": sm.handled,
            "presence": _presence(session),
            "directed": directed,
        }
        resumption.update(sm.id, state)
        resumption.release(sm.id)
        sm.mirror = None
        self._handled_kept.pop(sm.id, None)
        self.node.registry.let_go(session)

    async def take_over(self, sm_id: str, username: str, app: str | None) -> TakenOver | None:
        def belongs(kept: Kept) -> bool:
            jid = JID.parse(kept.text("jid"))
            return jid.local == username and kept.text("app") == (app or "")

        kept = await self.node.resumption.take_over(sm_id, belongs)
        if kept is None:
            return None
        jid = JID.parse(kept.text("jid"))
        presence = None
        if kept.text("presence"):
            presence = parse_stanza(kept.text("presence"))
            presence.attrs["from"] = jid.text
        return TakenOver(
            jid,
            int(kept.text("window") or 0),
            int(kept.text("handled") or 0),
            presence,
            [(n, since, parse_stanza(data.decode())) for n, since, data in kept.unacked],
            frozenset(
                JID.parse(text) for text in kept.text("directed").split(ITEM_SEPARATOR) if text
            ),
        )

    def written(self, sm: StreamManagement, data: bytes) -> None:
        assert sm.id is not None
        sm.unrecorded += 1
        self.node.resumption.append(sm.id, item(sm.sent, time.time(), data), sm.recorded)

    def parked(self, sm: StreamManagement, stanza: Element, since: float) -> None:
        assert sm.id is not None
        sm.unrecorded += 1
        self.node.resumption.append(sm.id, item(None, since, stanza.encoded()), sm.recorded)

    def acknowledged(self, sm: StreamManagement, count: int) -> None:
        assert sm.id is not None
        self.node.resumption.acknowledged(sm.id, count)

    def handled(self, sm: StreamManagement, handled: int) -> None:
        assert sm.id is not None
        if self._handled_kept.get(sm.id) != handled:
            self._handled_kept[sm.id] = handled
            self.node.resumption.handled(sm.id, handled)

    # --- ClusterHost ---------------------------------------------------------------------

    def hand_over(self, sm_id: str) -> None:
        if self._sessions is not None:
            self._sessions.hand_over(sm_id)

    def expired(self, sessions: list[Kept]) -> None:
        dispatcher = self._dispatcher
        if dispatcher is None:
            return
        domain = dispatcher.domain.text
        for kept in sessions:
            stanzas: Stanzas = []
            for _number, since, data in kept.unacked:
                stanza = parse_stanza(data.decode())
                if (to := stanza.attrs.get("to")) is not None:
                    stanzas.append((JID.parse(to), late(stanza, since, domain)))
            self._route_again(stanzas, None, functools.partial(self._forget, kept.sm_id))

    def _forget(self, sm_id: str) -> None:
        self.node.resumption.forget(sm_id)

    def inbound(self, entry: Entry) -> None:
        unrouted = self.router.receive(entry)
        if unrouted:
            self._route_again(unrouted, entry.copies, lambda: entry.handed_on(len(unrouted)))

    def signalled(self, event: str, sessions: list[JID]) -> None:
        self.router.signalled(event, sessions)

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

        if handed_on is None:
            dispatch()
        else:
            self._after(dispatch, handed_on)

    def _after(self, work: Callable[[], None], then: Callable[[], None]) -> None:
        """Run ``work``; call ``then`` once the background work it spawned (an offline
        commit, say) has finished, unless cut short (it may not have committed)."""
        spawned_by = self._spawned_by
        assert spawned_by is not None  # set with the dispatcher
        spawned = spawned_by(work)
        if not spawned:
            then()
            return

        def finished(_done: object) -> None:
            if not any(task.cancelled() for task in spawned):
                then()

        asyncio.gather(*spawned, return_exceptions=True).add_done_callback(finished)

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
                self._route_left(restarted=self.node.redis_run_id != lost.redis_run_id)
                return

    def _route_left(self, *, restarted: bool) -> None:
        """Once joined again: if Redis restarted, the copies of the sessions left to the
        cleanup went with it, so what they held is routed again here."""
        left, self._left = self._left, []
        if not (restarted and left):
            return
        log.warning(
            "cluster: Redis restarted while node %s was out: %d resumable sessions could "
            "not be kept, what they held is routed again",
            self.settings.node,
            len(left),
        )
        for held, reroute in left:
            reroute(held)

    def _end_sessions(self, sessions: Sequence[Session]) -> None:
        manager = self._sessions
        if manager is None:
            return
        rejoining = StreamError(
            StreamCondition.RESET, "the server lost its place in the cluster: connect again"
        )
        self._lease_lost = True
        try:
            for session in list(sessions):
                manager.end(session, rejoining, reason=EndReason.LEASE_LOST)
        finally:
            self._lease_lost = False


async def _landing(landed: asyncio.Future[None]) -> None:
    await landed


def _presence(session: Session) -> bytes:
    """The presence a resumable session broadcast, as its client would send it again;
    empty while it is unavailable."""
    presence = session.presence
    if not session.available or presence is None:
        return b""
    attrs = {k: v for k, v in presence.attrs.items() if k not in ("to", "from")}
    return Element("presence", CLIENT, attrs, list(presence.children)).encoded()
