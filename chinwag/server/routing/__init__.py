"""Where stanzas for local accounts go: the Router and SessionRegistry interfaces.

One process keeps sessions in memory (``local.py``); a cluster shares the
registry and exchanges stanzas through another engine. Modules and the
dispatcher only ever see these protocols.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Protocol

from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID

if TYPE_CHECKING:
    from chinwag.server.session import Session


class Router(Protocol):
    def resources(self, bare: JID) -> Sequence[Session]:
        """The bound resources of an account, in the order they bound."""
        ...

    def session(self, full: JID) -> Session | None: ...

    def send(self, to: JID, stanza: Element) -> bool:
        """Deliver ``stanza`` to the session bound to the full JID ``to``; False if none."""
        ...

    def bind(self, session: Session) -> Session | None:
        """Register a newly bound session; returns the session it replaces, if any."""
        ...

    def unbind(self, session: Session) -> None: ...

    def all_sessions(self) -> Sequence[Session]: ...
