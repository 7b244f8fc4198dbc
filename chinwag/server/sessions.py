"""The life of a session: bind (an older session of the same resource ends with
``<conflict/>``), detach from its transport, reattach to a new one, and end.

A detached session stays registered, and what is routed to it waits (up to
``MAX_PARKED`` stanzas) until it is reattached or its time runs out; then it ends,
and what waited is routed again, as if to a resource that had just gone: messages
to the account's other resources or offline storage, IQs answered with an error.
This is what stream resumption (XEP-0198) and a cluster node's sessions build on.
Without either, a stream that ends ends its session at once (``detach`` with no time
to wait), which is all clients see today.

Every change to a session's routing record (availability, priority, roster
interest) goes through here, so that a shared registry can publish it.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from typing import Any

from chinwag.server.auth import Grant
from chinwag.server.hooks import SESSION_BOUND, SESSION_CLOSED, Hooks
from chinwag.server.rosters import RosterCache
from chinwag.server.routing.local import LocalRouter
from chinwag.server.session import Connection, Session, SessionState
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID

MAX_PARKED = 500
"""Stanzas a detached session keeps; one more ends it (and they are routed again)."""

Reroute = Callable[[Element, JID], None]
"""Routes a server-held stanza again, as the server's own, to the JID it was sent to."""
Spawn = Callable[[Coroutine[Any, Any, None]], object]


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
        self._stanzas: list[Element] | None = []

    def send(self, stanza: Element) -> None:
        stanzas = self._stanzas
        if stanzas is None:
            return  # the session has ended
        stanzas.append(stanza)
        if len(stanzas) > MAX_PARKED:
            self._manager.end(self._session)

    def take(self) -> list[Element]:
        """What waited; from now on nothing more is kept."""
        self.expiry.cancel()
        stanzas, self._stanzas = self._stanzas or [], None
        return stanzas

    def close_stream(self, error: StreamError | None = None) -> None:
        self._manager.end(self._session)

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
    ) -> None:
        self._domain = domain
        self._router = router
        self._hooks = hooks
        self._rosters = rosters
        self._reroute = reroute
        self.spawn = spawn

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
        replaced = self._router.add(session)
        if replaced is not None:
            conflict = "replaced by a new session for the same resource"
            self.end(replaced, StreamError(StreamCondition.CONFLICT, conflict))
        self._hooks.notify(SESSION_BOUND, session)
        return session

    def detach(self, session: Session, hold_seconds: float = 0.0) -> None:
        """The session's transport is gone: keep the session, and what is routed to it,
        for ``hold_seconds``; with no time to wait, end it now."""
        if session.state is not SessionState.BOUND:
            return
        if hold_seconds <= 0:
            self.end(session)
            return
        expiry = asyncio.get_running_loop().call_later(hold_seconds, self.end, session)
        session.connection = Parking(self, session, expiry)
        session.state = SessionState.DETACHED

    def reattach(self, session: Session, connection: Connection) -> None:
        """Carry a detached session on ``connection``, which gets what waited first."""
        parking = session.connection
        if session.state is not SessionState.DETACHED or not isinstance(parking, Parking):
            raise ValueError(f"{session!r} is not detached")
        session.connection = connection
        session.state = SessionState.BOUND
        for stanza in parking.take():
            connection.send(stanza)

    def end(self, session: Session, error: StreamError | None = None) -> None:
        """End the session: its stream, if it has one, closes with ``error``; it leaves the
        registry, ``session/closed`` fires, and what waited for it is routed again."""
        if session.state is SessionState.ENDED:
            return
        session.state = SessionState.ENDED
        connection = session.connection
        unsent: list[Element] = []
        if isinstance(connection, Parking):
            unsent = connection.take()
        elif not connection.closed:
            connection.close_stream(error)
        self._router.remove(session)
        self._hooks.notify(SESSION_CLOSED, session)
        self._rosters.release(session.username)
        for stanza in unsent:
            to = stanza.attrs.get("to")
            if to is not None:
                self._reroute(stanza, JID.parse(to))

    # --- routing records -------------------------------------------------------------------

    def set_presence(self, session: Session, presence: Element) -> None:
        """The session's broadcast presence (RFC 6121 4.2, 4.5): availability, priority."""
        session.update_presence(presence)

    def set_interested(self, session: Session) -> None:
        """The session asked for the roster: it gets roster pushes from now on."""
        session.interested = True

    # --- this process's sessions -------------------------------------------------------------

    def get(self, full: JID) -> Session | None:
        return self._router.session(full)

    def of(self, username: str) -> Sequence[Session]:
        return self._router.resources(JID(username, self._domain))

    def all(self) -> list[Session]:
        return self._router.all_sessions()

    def new_resource(self) -> str:
        return f"chinwag-{random_hex(6)}"
