"""Routing records as the registry keeps them in Redis, and those of other nodes in memory.

A record is packed into one hash value: its node, flags (``a`` available, ``i``
interested, ``c`` carbons enabled), priority, app, the PEP nodes it wants notifications
of, who got its directed presence, and its last broadcast presence, separated by
``\\x1f`` (the items of a list by ``\\x1e``; neither names, JIDs nor XML may contain
either). The node comes first, so that a Lua script can tell whose record it is without
unpacking it.
"""

from __future__ import annotations

from typing import Protocol

from chinwag.cluster.scripts import SEPARATOR
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import parse_stanza


class Publishable(Protocol):
    """What the registry publishes of a local session (a ``SessionRecord``)."""

    @property
    def jid(self) -> JID: ...

    @property
    def available(self) -> bool: ...

    @property
    def priority(self) -> int: ...

    @property
    def presence(self) -> Element | None: ...

    @property
    def interested(self) -> bool: ...

    @property
    def carbons(self) -> bool: ...

    @property
    def app(self) -> str | None: ...

    @property
    def notify(self) -> frozenset[str]: ...

    @property
    def directed(self) -> frozenset[JID]: ...


ITEM_SEPARATOR = "\x1e"
"""Between the items of a list field."""


def pack(node: str, record: Publishable) -> bytes:
    flags = (
        ("a" if record.available else "")
        + ("i" if record.interested else "")
        + ("c" if record.carbons else "")
    )
    presence = record.presence.encoded() if record.presence is not None else b""
    notify = ITEM_SEPARATOR.join(sorted(record.notify))
    directed = ITEM_SEPARATOR.join(sorted(jid.text for jid in record.directed))
    fields = (node, flags, str(record.priority), record.app or "", notify, directed, "")
    return "\x1f".join(fields).encode() + presence


def owner(packed: bytes) -> str:
    """The node a packed record names."""
    return packed.split(SEPARATOR, 1)[0].decode()


class RemoteRecord:
    """A session of another node, as this node mirrors it (a ``SessionRecord``)."""

    __slots__ = (
        "_directed",
        "_notify",
        "_presence",
        "_presence_bytes",
        "app",
        "available",
        "carbons",
        "interested",
        "jid",
        "node",
        "priority",
    )

    def __init__(self, jid: JID, packed: bytes) -> None:
        node, flags, priority, app, notify, directed, presence = packed.split(SEPARATOR, 6)
        self.jid = jid
        self.node = node.decode()
        self.available = b"a" in flags
        self.interested = b"i" in flags
        self.carbons = b"c" in flags
        self.priority = int(priority)
        self.app = app.decode() or None
        self._presence_bytes = presence
        self._presence: Element | None = None
        self._notify: frozenset[str] | bytes = notify
        self._directed: frozenset[JID] | bytes = directed

    @property
    def presence(self) -> Element | None:
        """The last broadcast presence, parsed when first asked for."""
        if self._presence is None and self._presence_bytes:
            self._presence = parse_stanza(self._presence_bytes.decode())
        return self._presence

    @property
    def notify(self) -> frozenset[str]:
        """The PEP nodes the resource wants notifications of (XEP-0163 ``+notify``)."""
        if isinstance(self._notify, bytes):
            self._notify = frozenset(_items(self._notify))
        return self._notify

    @property
    def directed(self) -> frozenset[JID]:
        """Who got directed presence from the resource and must hear when it goes away."""
        if isinstance(self._directed, bytes):
            self._directed = frozenset(JID.parse(text) for text in _items(self._directed))
        return self._directed

    def __repr__(self) -> str:
        return f"<RemoteRecord {self.jid} on {self.node}>"


def _items(packed: bytes) -> list[str]:
    return packed.decode().split(ITEM_SEPARATOR) if packed else []
