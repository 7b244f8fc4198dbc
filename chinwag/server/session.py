"""A bound resource: its full JID, its presence, and the connection it writes to."""

from __future__ import annotations

from collections.abc import Awaitable, Coroutine
from typing import Any, Protocol

from chinwag.server.auth import Grant
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamError
from chinwag.xmpp.jid import JID


class Connection(Protocol):
    """What a session needs from whatever carries its stream (TCP, TLS, WebSocket)."""

    @property
    def transport_kind(self) -> str: ...

    def write(self, data: bytes) -> None:
        """Queue bytes; they reach the peer by the end of the current event-loop turn."""
        ...

    def close_stream(self, error: StreamError | None = None) -> None: ...

    def hold(self, work: Coroutine[Any, Any, None]) -> None:
        """Read nothing more from this client until ``work`` is done."""
        ...

    def heard_after_output(self) -> Awaitable[bool]:
        """True once the client sends anything after what is queued now has been handed
        to the transport; False if the stream ends first."""
        ...


class Session:
    __slots__ = (
        "_held",
        "available",
        "connection",
        "directed",
        "grant",
        "interested",
        "jid",
        "parent_ns",
        "presence",
        "priority",
    )

    def __init__(
        self,
        jid: JID,
        connection: Connection,
        grant: Grant | None = None,
        *,
        parent_ns: str = ns.CLIENT,
    ) -> None:
        self.jid = jid
        self.connection = connection
        self.grant = grant
        """Who signed in, and with what."""
        self.parent_ns = parent_ns
        """The namespace in scope where stanzas are written: ``jabber:client`` on TCP,
        none over WebSocket, where each message declares its own."""
        self.presence: Element | None = None
        """The last broadcast presence, or None before initial presence."""
        self.available = False
        self.priority = 0
        self.interested = False
        """Asked for the roster, so gets roster pushes (RFC 6121 2.1.6)."""
        self.directed: set[JID] | None = None
        """Who got directed presence from this session and must hear when it leaves."""
        self._held: list[bytes] | None = None

    @property
    def username(self) -> str:
        return self.jid.local or ""

    @property
    def app(self) -> str | None:
        """The client_id of the third-party app this session signed in as, if any."""
        return self.grant.app if self.grant is not None else None

    @property
    def transport_kind(self) -> str:
        return self.connection.transport_kind

    def update_presence(self, presence: Element) -> None:
        """Record broadcast presence (RFC 6121 4.2, 4.5): availability and priority."""
        if presence.attrs.get("type") == "unavailable":
            self.available = False
            self.presence = None
            return
        self.available = True
        self.presence = presence
        priority = presence.find("priority")
        try:
            self.priority = max(-128, min(127, int(priority.text))) if priority is not None else 0
        except ValueError:
            self.priority = 0

    def deliver(self, stanza: Element, *, ahead: bool = False) -> None:
        """Send ``stanza`` to the client; while output is held, only if ``ahead``."""
        wire = stanza.encoded(self.parent_ns)
        if self._held is not None and not ahead:
            self._held.append(wire)
        else:
            self.connection.write(wire)

    def hold_output(self) -> None:
        """Keep what is delivered from now on until ``release_output``, so that what is
        delivered ``ahead`` meanwhile (messages stored while the user was away) arrives
        first."""
        if self._held is None:
            self._held = []

    def release_output(self) -> None:
        held, self._held = self._held, None
        for wire in held or ():
            self.connection.write(wire)

    def close(self, error: StreamError | None = None) -> None:
        self.connection.close_stream(error)

    def __repr__(self) -> str:
        return f"<Session {self.jid} via {self.transport_kind}>"
