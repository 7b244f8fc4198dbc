"""The life of a session: bind (an older session of the same resource ends with
``<conflict/>``), detach from its transport, reattach to a new one, and end.

A detached session stays registered, and what is routed to it waits (up to
``MAX_PARKED`` stanzas) until it is reattached or its time runs out; then it ends,
and what waited is routed again, as if to a resource that had just gone: messages
to the account's other resources or offline storage, IQs answered with an error.

Stream management (XEP-0198) builds on this. A session whose client enabled
resumption is detached for its resumption window when its transport drops; a client
that resumes it (``resume``, by an unguessable id, for the same account and app) gets
it reattached, with what it had not acknowledged sent again first, then what waited.
Whatever ends a session with stream management reroutes what its client had not
acknowledged as it reroutes what waited, so that nothing written to a dead connection
is lost; ``deliver/failed`` handlers first take what must not go anywhere again (a
message another resource holds, a carbon copy). Without resumption, a stream that ends
ends its session at once.

In a cluster, the ``Resumer`` (the cluster member) keeps each resumable session in
Redis too, so that a client may resume it on any node: ``take_over`` makes another
node's session this node's (registered as at bind, detached with what the client's
count does not cover), and ``hand_over`` lets one of this node's go to the node where
its client resumes it, without ending it.

Every change to a session's routing record (availability, priority, roster
interest) goes through here, so that a cluster's registry publishes it (``records``):
at bind, at each change, and its removal when the session ends. Every end of a
session, and every detach, is logged here, once, with its reason (:class:`EndReason`).
"""

from __future__ import annotations

import asyncio
import enum
import logging
import secrets
from collections import OrderedDict
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from time import time
from typing import Any, Protocol, cast

from chinwag.config import StreamManagementSettings
from chinwag.server.auth import Grant
from chinwag.server.hooks import (
    DELIVER_FAILED,
    SESSION_BOUND,
    SESSION_CLOSED,
    SESSION_MANAGED,
    SESSION_RESUMED,
    Hooks,
)
from chinwag.server.rosters import RosterCache
from chinwag.server.routing.local import LocalRouter
from chinwag.server.session import Connection, Session, SessionState
from chinwag.server.stream_management import Sent, StreamManagement, late
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID
from chinwag.xmpp.sm import MASK, HandledCountTooHigh

log = logging.getLogger(__name__)

HALF = 1 << 31
"""Of two stanza numbers (modulo 2**32), the later is less than this many ahead."""
MAX_PARKED = 500
"""Stanzas a detached session keeps; one more ends it (and they are routed again)."""
ENDED_IDS_KEPT = 10_000
"""Resumption ids of ended sessions remembered, with the count of their clients'
stanzas handled, for the <failed h='…'/> of a late resumption; the oldest go first."""

Reroute = Callable[[Element, JID], None]
"""Routes a server-held stanza again, as the server's own, to the JID it was sent to."""
Spawn = Callable[[Coroutine[Any, Any, None]], object]


class EndReason(enum.StrEnum):
    """Why a session ended (or was parked), as its log line says."""

    CLOSED_BY_CLIENT = "closed by client"
    CLOSED_BY_SERVER = "closed by server"
    CONNECTION_LOST = "connection lost"
    """The transport dropped without the stream's closing tag."""
    TIMEOUT = "timeout"
    CONFLICT = "conflict"
    """A new session for the same resource, or the session resumed on another stream."""
    KICKED = "kicked"
    REVOKED = "revoked"
    SUSPENDED = "suspended"
    ACCOUNT_DELETED = "account deleted"
    PASSWORD_CHANGED = "password changed"
    SERVER_SHUTDOWN = "server shutdown"
    RESUMPTION_EXPIRED = "resumption expired"
    TOO_MANY_WAITING = "too many stanzas waiting"
    LEASE_LOST = "lease lost"
    """The cluster node lost its lease: it ends every stream and joins again."""
    STREAM_ERROR = "stream error"
    """Another stream error the server sent: the log line's ``detail`` names it."""


_REASON_BY_CONDITION = {
    StreamCondition.CONFLICT: EndReason.CONFLICT,
    StreamCondition.CONNECTION_TIMEOUT: EndReason.TIMEOUT,
    StreamCondition.SYSTEM_SHUTDOWN: EndReason.SERVER_SHUTDOWN,
    StreamCondition.RESET: EndReason.PASSWORD_CHANGED,
}


def end_reason(error: StreamError | None) -> EndReason:
    """The reason to log for a stream the server closes with ``error``, or without one."""
    if error is None:
        return EndReason.CLOSED_BY_SERVER
    return _REASON_BY_CONDITION.get(error.condition, EndReason.STREAM_ERROR)


def _detail(error: StreamError | None) -> str | None:
    if error is None:
        return None
    return f"{error.condition}: {error.text}" if error.text else str(error.condition)


def unanswered() -> StreamError:
    """How a stream whose client stopped answering (a ping, an <r/>) is closed: a
    session whose client enabled resumption waits for it then, as after a dropped
    transport (``C2SConnection.close_stream``)."""
    return StreamError(StreamCondition.CONNECTION_TIMEOUT, "no answer to a ping")


class RecordSink(Protocol):
    """Where a cluster node publishes its sessions' routing records (its registry)."""

    def publish(self, session: Session) -> None: ...

    def remove(self, session: Session) -> None: ...


@dataclass
class TakenOver:
    """A resumable session of another node, now this node's to resume: what its client
    had not acknowledged, each with its number in the session's output (None: never
    sent) and when it was first sent or routed."""

    jid: JID
    resume_seconds: int
    handled: int
    presence: Element | None
    unacked: list[tuple[int | None, float, Element]]
    directed: frozenset[JID] = frozenset()
    """Who had its directed presence, and must hear when it goes away."""


class Resumer(Protocol):
    """A cluster, where a resumable session's state is kept so that any node can resume
    it (``chinwag.server.clustering``)."""

    def resumable(self, session: Session) -> None:
        """``session`` is resumable: keep what resuming it needs, from now on."""
        ...

    def reattached(self, session: Session) -> None:
        """``session`` is about to be sent again everything its client has not
        acknowledged: what was kept of it is replaced by that."""
        ...

    def ended(
        self, session: Session, held: list[Sent], reroute: Callable[[list[Sent]], None]
    ) -> None:
        """The resumable ``session`` ended holding ``held`` (what its client had not
        acknowledged, then what waited for it, in order): route it again with ``reroute``
        and forget the session once what that started is done."""
        ...

    def released(
        self, session: Session, first: int, unacked: list[Sent], waited: list[Sent]
    ) -> None:
        """``session`` is handed over to another node: write all of its state (the other
        node waits for it), what its client had not acknowledged numbered from
        ``first``, then what waited for it, and let it go."""
        ...

    async def take_over(self, sm_id: str, username: str, app: str | None) -> TakenOver | None:
        """Another node's session ``sm_id`` of ``username`` signed in as ``app``, taken
        for this node (its node handing it over if alive); None if there is none."""
        ...


class ResumeRefused(Exception):
    """No session to resume by that id for that account (XEP-0198 §5: item-not-found)."""

    def __init__(self, handled: int | None = None) -> None:
        super().__init__("no such session to resume")
        self.handled = handled
        """The count of the client's stanzas that the session, now ended, had handled."""


class Parking:
    """Stands in for the connection of a detached session: keeps what is routed to it."""

    transport_kind = "detached"
    closed = False

    def __init__(
        self, manager: SessionManager, session: Session, expiry: asyncio.TimerHandle
    ) -> None:
        self._manager = manager
        self._session = session
        self.expiry = expiry
        self._stanzas: list[Sent] | None = []

    def send(self, stanza: Element) -> None:
        stanzas = self._stanzas
        if stanzas is None:
            return  # the session has ended
        self.keep(stanza, time())
        if len(stanzas) > MAX_PARKED:
            self._manager.end(self._session, reason=EndReason.TOO_MANY_WAITING)

    def keep(self, stanza: Element, since: float) -> None:
        """Keep ``stanza``, routed at ``since`` (in a cluster, a copy in Redis too)."""
        if self._stanzas is None:
            return
        self._stanzas.append((stanza, since))
        sm = self._session.stream_management
        if sm is not None and sm.mirror is not None:
            sm.mirror.parked(sm, stanza, since)

    def take(self) -> list[Sent]:
        """What waited, and since when; from now on nothing more is kept."""
        self.expiry.cancel()
        stanzas, self._stanzas = self._stanzas or [], None
        return stanzas

    def close_stream(self, error: StreamError | None = None) -> None:
        self._manager.end(self._session, error)

    def hold(self, work: Coroutine[Any, Any, None]) -> None:
        self._manager.spawn(work)  # no client to stop reading from

    def heard_after_output(self) -> asyncio.Future[bool]:
        unheard: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        unheard.set_result(False)
        return unheard


class SessionManager:
    def __init__(
        self,
        domain: str,
        router: LocalRouter,
        hooks: Hooks,
        rosters: RosterCache,
        *,
        reroute: Reroute,
        spawn: Spawn,
        stream_management: StreamManagementSettings | None = None,
        records: RecordSink | None = None,
        resumer: Resumer | None = None,
    ) -> None:
        self._domain = domain
        self._router = router
        self._hooks = hooks
        self._rosters = rosters
        self._reroute = reroute
        self.spawn = spawn
        self._sm_settings = stream_management or StreamManagementSettings()
        self._failed = hooks.channel(DELIVER_FAILED)
        self._records = records
        """The cluster's registry, or None in a single process."""
        self._resumer = resumer
        """The cluster, where resumable sessions are kept for any node to resume; None
        in a single process."""
        self._resumable: dict[str, Session] = {}
        """Sessions a client may resume, by their resumption id."""
        self._ended: OrderedDict[str, tuple[str, int]] = OrderedDict()
        """Resumption ids of ended sessions: their user, and the count of the client's
        stanzas they handled."""

    # --- the life of a session -----------------------------------------------------------

    async def bind(
        self, connection: Connection, username: str, resource: str | None, grant: Grant | None
    ) -> Session | None:
        """Bind ``resource`` (a generated one if None) for ``username`` on ``connection``,
        with the account's roster loaded; None if the connection closed meanwhile."""
        await self._rosters.acquire(username)
        if connection.closed:
            self._rosters.release(username)
            return None
        jid = JID(username, self._domain, resource or self.new_resource())
        session = Session(jid, connection, grant, node=self._router.node)
        self._register(session)
        return session

    def _register(self, session: Session) -> None:
        """Register a new session (its account's roster acquired) and publish it."""
        jid = session.jid
        replaced = self._router.session(jid)
        if replaced is not None:
            # Ended before the new one is registered: what it leaves behind goes where it
            # would for a resource that went away, never ahead of the new stream's bind result.
            conflict = "replaced by a new session for the same resource"
            self.end(replaced, StreamError(StreamCondition.CONFLICT, conflict))
        self._router.add(session)
        if self._records is not None:
            self._records.publish(session)
        self._hooks.notify(SESSION_BOUND, session)

    def detach(
        self,
        session: Session,
        hold_seconds: float | None = None,
        *,
        reason: EndReason = EndReason.CONNECTION_LOST,
    ) -> None:
        """The session's transport is gone (for ``reason``): keep the session, and what is
        routed to it, for ``hold_seconds`` (by default, the resumption window its client
        enabled); with no time to wait, end it now."""
        if session.state is not SessionState.BOUND:
            return
        if hold_seconds is None:
            sm = session.stream_management
            hold_seconds = sm.resume_seconds if sm is not None and sm.id is not None else 0
        if hold_seconds <= 0:
            self.end(session, reason=reason)
            return
        self._park(session, hold_seconds)
        _log_session(
            "session parked for resumption", session, reason=reason, resume_seconds=hold_seconds
        )

    def _park(self, session: Session, seconds: float) -> None:
        expiry = asyncio.get_running_loop().call_later(seconds, self._expire, session)
        session.connection = Parking(self, session, expiry)
        session.state = SessionState.DETACHED

    def _expire(self, session: Session) -> None:
        self.end(session, reason=EndReason.RESUMPTION_EXPIRED)

    def time_out(self, session: Session) -> None:
        """The session's client did not answer in time: its stream closes with
        <connection-timeout/>, which leaves the session waiting for resumption if its
        client enabled it, and ends it otherwise."""
        if session.state is SessionState.BOUND:
            session.connection.close_stream(unanswered())

    def reattach(self, session: Session, connection: Connection) -> None:
        """Carry a detached session on ``connection``, which gets first what its client
        had not acknowledged, then what waited (``session/resumed`` fires in between). All
        of it is written, whatever its count: the stream's bound on what its client leaves
        unacknowledged counts from there."""
        parking = session.connection
        if session.state is not SessionState.DETACHED or not isinstance(parking, Parking):
            raise ValueError(f"{session!r} is not detached")
        session.connection = connection
        session.state = SessionState.BOUND
        sm = session.stream_management
        unacked = sm.take_unacked() if sm is not None else []
        waited = parking.take()
        if sm is not None:
            # What is written again is the server's doing, not a client that stopped
            # acknowledging: the bound of this stream leaves room for it.
            replayed = len(unacked) + len(waited)
            sm.max_unacked = self._sm_settings.max_unacked_stanzas + replayed
            if sm.mirror is not None and self._resumer is not None:
                self._resumer.reattached(session)
        for stanza, since in unacked:
            connection.send(late(stanza, since, self._domain))
        self._hooks.notify(SESSION_RESUMED, session)
        for stanza, since in waited:
            connection.send(late(stanza, since, self._domain))

    def end(
        self,
        session: Session,
        error: StreamError | None = None,
        *,
        reason: EndReason | None = None,
    ) -> None:
        """End the session: its stream, if it has one, closes with ``error``; it leaves the
        registry, ``session/closed`` fires, and what its client had not acknowledged and
        what waited for it are routed again, each unless a ``deliver/failed`` handler
        takes it. The log gives ``reason``, by default the one ``error`` stands for."""
        if session.state is SessionState.ENDED:
            return
        session.state = SessionState.ENDED
        connection = session.connection
        if log.isEnabledFor(logging.INFO):  # every session ends here
            _log_session(
                "session ended",
                session,
                reason=reason or end_reason(error),
                detail=_detail(error),
                transport=transport_name(connection.transport_kind),
            )
        waited: list[Sent] = []
        if isinstance(connection, Parking):
            waited = connection.take()
        elif not connection.closed:
            connection.close_stream(error)
        self._router.remove(session)
        if self._records is not None:
            self._records.remove(session)
        mirrored = session.stream_management is not None and session.stream_management.mirror
        unacked = self._forget(session)
        self._hooks.notify(SESSION_CLOSED, session)
        self._rosters.release(session.username)
        failed = self._failed

        def reroute(stanzas: list[Sent]) -> None:
            for stanza, since in stanzas:
                if failed.handlers and failed.vetoes(session, stanza):
                    continue  # a module has it: a copy dropped, a message delivered elsewhere
                to = stanza.attrs.get("to")
                if to is not None:
                    self._reroute(late(stanza, since, self._domain), JID.parse(to))

        held = [*unacked, *waited]
        if mirrored and self._resumer is not None:
            self._resumer.ended(session, held, reroute)
        else:
            reroute(held)

    # --- stream management (XEP-0198) ----------------------------------------------------

    def enable(
        self, session: Session, *, resume: bool, max_seconds: int | None
    ) -> StreamManagement:
        """Stream management for ``session``, resumable if asked and allowed: for
        ``max_seconds`` if the client named a window, up to the maximum configured."""
        settings = self._sm_settings
        seconds = settings.resume_timeout_seconds
        if max_seconds is not None:
            seconds = min(max_seconds, settings.max_resume_timeout_seconds)
        sm_id = None
        if resume and seconds > 0:
            sm_id = secrets.token_urlsafe(18)
            self._resumable[sm_id] = session
        sm = StreamManagement(sm_id, seconds, settings)
        session.stream_management = sm
        if sm_id is not None and self._resumer is not None:
            self._resumer.resumable(session)
        self._hooks.notify(SESSION_MANAGED, session)
        return sm

    @property
    def resumes_elsewhere(self) -> bool:
        """Whether a session this node does not hold may be another node's to resume."""
        return self._resumer is not None

    async def take_over(
        self, previd: str, username: str, grant: Grant | None, handled: int
    ) -> tuple[Session, Element | None]:
        """Another node's session resumable as ``previd`` (as ``resume`` does for this
        node's): made this node's, detached, with what its client had not acknowledged
        (of what ``handled`` does not cover) waiting to be sent again. Returns it and the
        presence it had broadcast (to broadcast again: its node's death, or the handover,
        made it unavailable), or raises ResumeRefused."""
        app = grant.app if grant is not None else None
        taken = await self._resumer.take_over(previd, username, app) if self._resumer else None
        if taken is None:
            raise ResumeRefused()
        await self._rosters.acquire(username)
        session = Session(taken.jid, cast(Connection, None), grant, node=self._router.node)
        self._park(session, taken.resume_seconds)  # before anything can be routed to it
        parking = session.connection
        assert isinstance(parking, Parking)
        sm = StreamManagement(previd, taken.resume_seconds, self._sm_settings)
        sm.acked, sm.handled = handled, taken.handled
        session.stream_management = sm
        self._resumable[previd] = session
        if self._resumer is not None:
            self._resumer.resumable(session)
        for number, since, stanza in taken.unacked:
            if number is None or 0 < (number - handled) & MASK < HALF:  # not handled yet
                parking.keep(stanza, since)
        session.directed = taken.directed
        self._register(session)
        return session, taken.presence

    def hand_over(self, previd: str) -> None:
        """Another node resumes the session ``previd``: write its state for that node
        and let it go here, without a word to its contacts (it lives on there). Nothing
        happens if there is no such session here (the other node's wait runs out)."""
        session = self._resumable.get(previd)
        sm = session.stream_management if session is not None else None
        if session is None or sm is None or self._resumer is None:
            return
        if session.state is SessionState.BOUND:
            stream = session.connection
            self._park(session, sm.resume_seconds)
            resumed = "the session was resumed on another node"
            stream.close_stream(StreamError(StreamCondition.CONFLICT, resumed))
        parking = session.connection
        waited = parking.take() if isinstance(parking, Parking) else []
        first = (sm.acked + 1) & MASK
        self._resumer.released(session, first, sm.take_unacked(), waited)
        session.state = SessionState.ENDED
        self._router.remove(session)
        del self._resumable[previd]
        self._rosters.release(session.username)
        _log_session("session handed over to another node", session)

    def resume(self, previd: str, username: str, grant: Grant | None, handled: int) -> Session:
        """The session resumable as ``previd``, taken over for a stream signed in as
        ``username`` with ``grant`` whose client has handled ``handled`` of the stanzas sent
        to it: detached (its old stream, if still open, is closed), ready to reattach.
        Raises ResumeRefused if there is none for that account and app, and
        HandledCountTooHigh if ``handled`` is more than it was sent."""
        session = self._resumable.get(previd)
        app = grant.app if grant is not None else None
        if session is None or session.username != username or session.app != app:
            raise ResumeRefused(self._handled_before(previd, username))
        sm = session.stream_management
        assert sm is not None  # only sessions with stream management are resumable
        if not sm.acknowledge(handled):
            raise HandledCountTooHigh(handled, sm.sent)
        if session.state is SessionState.BOUND:
            # XEP-0198 §5: the former stream is still open here. The session is parked
            # first, so that closing it does not end the session.
            stream = session.connection
            self._park(session, sm.resume_seconds)
            resumed = "the session was resumed on another stream"
            stream.close_stream(StreamError(StreamCondition.CONFLICT, resumed))
        session.grant = grant
        return session

    def _forget(self, session: Session) -> list[Sent]:
        """An ending session's stream management: no longer resumable, its id remembered
        for a while; returns what its client had not acknowledged."""
        sm = session.stream_management
        if sm is None:
            return []
        if sm.id is not None:
            del self._resumable[sm.id]
            ended = self._ended
            ended[sm.id] = (session.username, sm.handled)
            if len(ended) > ENDED_IDS_KEPT:
                ended.popitem(last=False)
        return sm.take_unacked()

    def _handled_before(self, previd: str, username: str) -> int | None:
        ended = self._ended.get(previd)
        return ended[1] if ended is not None and ended[0] == username else None

    # --- routing records -------------------------------------------------------------------

    def set_presence(self, session: Session, presence: Element) -> None:
        """The session's broadcast presence (RFC 6121 4.2, 4.5): availability, priority."""
        session.update_presence(presence)
        self._publish(session)

    def set_interested(self, session: Session) -> None:
        """The session asked for the roster: it gets roster pushes from now on."""
        if not session.interested:
            session.interested = True
            self._publish(session)

    def set_carbons(self, session: Session, enabled: bool) -> None:
        """The session enabled or disabled message carbons (XEP-0280)."""
        if session.carbons != enabled:
            session.carbons = enabled
            self._publish(session)

    def set_notify(self, session: Session, nodes: frozenset[str]) -> None:
        """The PEP nodes the session wants notifications of (XEP-0163, from its caps)."""
        if session.notify != nodes:
            session.notify = nodes
            self._publish(session)

    def set_directed(self, session: Session, targets: frozenset[JID]) -> None:
        """Who got directed presence from the session and must hear when it goes."""
        if session.directed != targets:
            session.directed = targets
            self._publish(session)

    def _publish(self, session: Session) -> None:
        if self._records is not None and session.state is not SessionState.ENDED:
            self._records.publish(session)  # an ended session has left the registry

    # --- this process's sessions -------------------------------------------------------------

    def get(self, full: JID) -> Session | None:
        return self._router.session(full)

    def of(self, username: str) -> Sequence[Session]:
        return self._router.resources(JID(username, self._domain))

    def all(self) -> list[Session]:
        return self._router.all_sessions()

    @property
    def count(self) -> int:
        """How many sessions there are (``len(all())``, without listing them)."""
        return self._router.session_count

    def new_resource(self) -> str:
        return f"chinwag-{random_hex(6)}"


def _log_session(message: str, session: Session, **fields: object) -> None:
    jid = session.jid
    log.info(
        message,
        extra={
            "fields": {"user": jid.local, "resource": jid.resource, "client_id": session.app}
            | fields
        },
    )


_TRANSPORT_NAMES = {"tcp": "c2s", "starttls": "c2s", "tls": "direct-tls"}


def transport_name(kind: str) -> str:
    """How the log names a transport: ``c2s`` (port 5222, STARTTLS or not), ``direct-tls``,
    ``websocket``, or ``detached`` for a parked session."""
    return _TRANSPORT_NAMES.get(kind, kind)
