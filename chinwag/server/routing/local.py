"""The in-process router: bound sessions in a dictionary, no I/O."""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.server.session import Session
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID


class LocalRouter:
    def __init__(self) -> None:
        self._accounts: dict[str, dict[str, Session]] = {}
        """Each account's sessions by resource, keyed by the bare JID's text: a string
        hashes and compares in C, a JID through Python methods on every routed stanza."""

    def resources(self, bare: JID) -> Sequence[Session]:
        resources = self._accounts.get(bare.text)
        return tuple(resources.values()) if resources else ()

    def session(self, full: JID) -> Session | None:
        resources = self._accounts.get(full.bare.text)
        return resources.get(full.resource) if resources and full.resource else None

    def send(self, to: JID, stanza: Element) -> bool:
        session = self.session(to)
        if session is None:
            return False
        session.deliver(stanza)
        return True

    def bind(self, session: Session) -> Session | None:
        jid = session.jid
        assert jid.resource is not None
        resources = self._accounts.setdefault(jid.bare.text, {})
        replaced = resources.pop(jid.resource, None)
        resources[jid.resource] = session
        return replaced

    def unbind(self, session: Session) -> None:
        jid = session.jid
        resources = self._accounts.get(jid.bare.text)
        if resources is None or resources.get(jid.resource or "") is not session:
            return
        del resources[jid.resource or ""]
        if not resources:
            del self._accounts[jid.bare.text]

    def all_sessions(self) -> Sequence[Session]:
        return [session for resources in self._accounts.values() for session in resources.values()]
