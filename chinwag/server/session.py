"""A bound resource of this process: its routing record, the connection it writes to,
its output filters, and the state modules keep on it.

A :class:`Session` is the record the registry holds for a local resource (routing
a stanza to it costs a dictionary lookup, no record object per stanza). Its life —
bound, detached, ended — is the :class:`~chinwag.server.sessions.SessionManager`'s
to change; a module keeps its own per-session state under a :class:`SessionKey` of
its own, never as a field here.
"""

from __future__ import annotations

import enum
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, Generic, Protocol, TypeVar

from chinwag.server.auth import Grant
from chinwag.server.stream_management import StreamManagement
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamError
from chinwag.xmpp.jid import JID

T = TypeVar("T")

OutputFilter = Callable[[Element], bool]
"""Sees each stanza routed to a session before it is written; true keeps it back (the
filter has taken it, to write later or never)."""


class Connection(Protocol):
    """What a session needs from whatever carries its stream (TCP, TLS, WebSocket), or
    stands in for one while the session is detached."""

    @property
    def transport_kind(self) -> str: ...

    @property
    def closed(self) -> bool: ...

    def send(self, stanza: Element) -> None:
        """Queue a stanza, encoded for this stream; it reaches the peer by the end of
        the current event-loop turn."""
        ...

    def close_stream(self, error: StreamError | None = None) -> None: ...

    def hold(self, work: Coroutine[Any, Any, None]) -> None:
        """Read nothing more from this client until ``work`` is done."""
        ...

    def heard_after_output(self) -> Awaitable[bool]:
        """True once the client sends anything after what is queued now has been handed
        to the transport; False if the stream ends first."""
        ...


class SessionState(enum.Enum):
    BOUND = "bound"
    """Registered and writing to its connection."""
    DETACHED = "detached"
    """Registered, its transport gone: what is routed to it waits, for a bounded time."""
    ENDED = "ended"
    """Out of the registry for good."""


class SessionKey(Generic[T]):
    """Names one module's state on a session: ``session.get(KEY)``, ``session.put(KEY, v)``."""

    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return f"<SessionKey {self.name}>"


class Session:
    __slots__ = (
        "_slots",
        "available",
        "carbons",
        "connection",
        "directed",
        "filters",
        "grant",
        "interested",
        "jid",
        "node",
        "notify",
        "presence",
        "priority",
        "state",
        "stream_management",
    )

    def __init__(self, jid: JID, connection: Connection, grant: Grant | None, *, node: str) -> None:
        self.jid = jid
        self.connection = connection
        """Where the session's stanzas are written: its stream's connection, or while
        detached what keeps them for the next one."""
        self.grant = grant
        """Who signed in, and with what."""
        self.node = node
        """The process the session lives on (the routing record's node)."""
        self.state = SessionState.BOUND
        self.presence: Element | None = None
        """The last broadcast presence, or None before initial presence."""
        self.available = False
        self.priority = 0
        self.interested = False
        """Asked for the roster, so gets roster pushes (RFC 6121 2.1.6)."""
        self.carbons = False
        """Enabled message carbons (XEP-0280)."""
        self.notify: frozenset[str] = frozenset()
        """The PEP nodes it wants notifications of (XEP-0163 ``+notify``, from its caps)."""
        self.directed: frozenset[JID] = frozenset()
        """Who got directed presence from it and must hear when it goes (RFC 6121 4.6)."""
        self.filters: tuple[OutputFilter, ...] = ()
        """What sees each stanza routed here before it is written, in order."""
        self._slots: dict[SessionKey[Any], Any] | None = None
        """Modules' state, made at the first ``put``: most sessions keep none for long."""
        self.stream_management: StreamManagement | None = None
        """XEP-0198 state, once the client enabled it: it outlives the session's streams."""

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

    # --- module state ------------------------------------------------------------

    def get(self, key: SessionKey[T]) -> T | None:
        return self._slots.get(key) if self._slots is not None else None

    def put(self, key: SessionKey[T], value: T) -> None:
        if self._slots is None:
            self._slots = {}
        self._slots[key] = value

    def pop(self, key: SessionKey[T]) -> T | None:
        slots = self._slots
        if slots is None:
            return None
        value = slots.pop(key, None)
        if not slots:
            self._slots = None
        return value

    # --- output filters ------------------------------------------------------------

    def add_filter(self, output_filter: OutputFilter) -> None:
        self.filters = (*self.filters, output_filter)

    def remove_filter(self, output_filter: OutputFilter) -> None:
        filters = list(self.filters)
        if output_filter in filters:
            filters.remove(output_filter)
            self.filters = tuple(filters)

    def __repr__(self) -> str:
        return f"<Session {self.jid} via {self.transport_kind} ({self.state.value})>"
