"""Routing records as the registry keeps them in Redis, and those of other nodes in memory.

A record is packed into one hash value: its node, flags (``a`` available, ``i``
interested, ``c`` carbons enabled), priority, app and last broadcast presence, separated by ``\\x1f`` (which
neither names, JIDs nor XML may contain). The node comes first, so that a Lua script
can tell whose record it is without unpacking it.
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


def pack(node: str, record: Publishable) -> bytes:
    flags = (
        ("a" if record.available else "")
        + ("i" if record.interested else "")
        + ("c" if record.carbons else "")
    )
    presence = record.presence.encoded() if record.presence is not None else b""
    head = f"{node}\x1f{flags}\x1f{record.priority}\x1f{record.app or ''}\x1f"
    return head.encode() + presence


def owner(packed: bytes) -> str:
    """The node a packed record names."""
    return packed.split(SEPARATOR, 1)[0].decode()


class RemoteRecord:
    """A session of another node, as this node mirrors it (a ``SessionRecord``)."""

    __slots__ = (
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
        node, flags, priority, app, presence = packed.split(SEPARATOR, 4)
        self.jid = jid
        self.node = node.decode()
        self.available = b"a" in flags
        self.interested = b"i" in flags
        self.carbons = b"c" in flags
        self.priority = int(priority)
        self.app = app.decode() or None
        self._presence_bytes = presence
        self._presence: Element | None = None

    @property
    def presence(self) -> Element | None:
        """The last broadcast presence, parsed when first asked for."""
        if self._presence is None and self._presence_bytes:
            self._presence = parse_stanza(self._presence_bytes.decode())
        return self._presence

    def __repr__(self) -> str:
        return f"<RemoteRecord {self.jid} on {self.node}>"
