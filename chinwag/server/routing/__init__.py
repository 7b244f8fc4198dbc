"""Where stanzas for local accounts go: routing records, and the Router modules route by.

The registry holds one record per bound resource. Modules read records (who is
online, how available, whether they asked for the roster, which PEP nodes they
want) and hand stanzas to the
router — ``route(to, stanza)`` for a full JID, ``deliver(record, stanza)`` for a
record they chose — never to a session object of another user; ``signal(record,
event)`` has the session's own process act on it. One process keeps
its sessions in memory (``local.py``), where a record is the session itself; a
cluster shares the registry and carries stanzas for another node's records there.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID


class SessionRecord(Protocol):
    """One bound resource, wherever it lives."""

    @property
    def jid(self) -> JID: ...

    @property
    def node(self) -> str:
        """The process the session lives on."""
        ...

    @property
    def available(self) -> bool: ...

    @property
    def priority(self) -> int: ...

    @property
    def presence(self) -> Element | None:
        """The last broadcast presence, or None before initial presence."""
        ...

    @property
    def interested(self) -> bool:
        """Asked for the roster, so gets roster pushes (RFC 6121 2.1.6)."""
        ...

    @property
    def carbons(self) -> bool:
        """Enabled message carbons (XEP-0280): gets copies of the account's chats."""
        ...

    @property
    def app(self) -> str | None:
        """The client_id of the app the session signed in as, if any."""
        ...

    @property
    def notify(self) -> frozenset[str]:
        """The PEP nodes it wants notifications of (XEP-0163 ``+notify``, from its caps)."""
        ...

    @property
    def directed(self) -> frozenset[JID]:
        """Who got directed presence from it and must hear when it goes (RFC 6121 4.6)."""
        ...


class Router(Protocol):
    def resources(self, bare: JID) -> Sequence[SessionRecord]:
        """The bound resources of an account, in the order they bound."""
        ...

    def record(self, full: JID) -> SessionRecord | None: ...

    def route(self, to: JID, stanza: Element) -> bool:
        """Deliver ``stanza`` to the resource bound to the full JID ``to``; False if none."""
        ...

    def deliver(self, record: SessionRecord, stanza: Element) -> None:
        """Hand ``stanza`` to the session ``record`` stands for."""
        ...

    def signal(self, record: SessionRecord, event: str) -> None:
        """Fire ``event`` with the session ``record`` stands for as its argument, on the
        process that session lives on (the modules' own events, not the core's)."""
        ...
