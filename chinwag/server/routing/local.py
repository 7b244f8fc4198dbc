"""The in-process router: this process's sessions in a dictionary, no I/O.

Each session is its own routing record, so routing a stanza to a local resource is
a dictionary lookup and a write. The session manager registers and removes sessions
here (``add``, ``remove``); modules see only the ``Router`` protocol.
"""

from __future__ import annotations

import os
import platform
from collections.abc import Sequence
from typing import TYPE_CHECKING

from chinwag.server.hooks import DELIVER_SESSION, Hooks
from chinwag.server.routing import SessionRecord
from chinwag.server.session import OutputFilter, Session
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID


class LocalRouter:
    def __init__(self, hooks: Hooks, node: str | None = None) -> None:
        self.node = node or f"{platform.node()}:{os.getpid()}"
        """This process's name in routing records."""
        self._hooks = hooks
        self._delivered = hooks.channel(DELIVER_SESSION)
        self._accounts: dict[str, dict[str, Session]] = {}
        """Each account's sessions by resource, keyed by the bare JID's text: a string
        hashes and compares in C, a JID through Python methods on every routed stanza."""
        self.session_count = 0
        """The sessions registered, without walking them (for metrics)."""

    # --- the Router protocol ----------------------------------------------------------

    def resources(self, bare: JID) -> Sequence[Session]:
        resources = self._accounts.get(bare.text)
        return tuple(resources.values()) if resources else ()

    def record(self, full: JID) -> Session | None:
        resources = self._accounts.get(full.bare.text)  # session()'s lookup, one call fewer
        return resources.get(full.resource) if resources and full.resource else None

    def route(self, to: JID, stanza: Element) -> bool:
        resources = self._accounts.get(to.bare.text)
        session = resources.get(to.resource) if resources and to.resource else None
        if session is None:
            return False
        self.deliver(session, stanza)
        return True

    def deliver(self, record: SessionRecord, stanza: Element) -> None:
        if TYPE_CHECKING:  # every record this router hands out is a Session; no test per stanza
            assert isinstance(record, Session)
        if not record.filters or not _kept_back(record.filters, stanza):
            record.connection.send(stanza)
        if self._delivered.handlers:
            self._hooks.notify(DELIVER_SESSION, record, stanza)

    def signal(self, record: SessionRecord, event: str) -> None:
        self._hooks.notify(event, record)

    # --- this process's sessions, for the session manager -------------------------------

    def session(self, full: JID) -> Session | None:
        resources = self._accounts.get(full.bare.text)
        return resources.get(full.resource) if resources and full.resource else None

    def add(self, session: Session) -> Session | None:
        """Register a newly bound session; returns the session it replaces, if any."""
        jid = session.jid
        assert jid.resource is not None
        resources = self._accounts.setdefault(jid.bare.text, {})
        replaced = resources.pop(jid.resource, None)
        resources[jid.resource] = session
        if replaced is None:
            self.session_count += 1
        return replaced

    def remove(self, session: Session) -> None:
        jid = session.jid
        resources = self._accounts.get(jid.bare.text)
        if resources is None or resources.get(jid.resource or "") is not session:
            return
        del resources[jid.resource or ""]
        self.session_count -= 1
        if not resources:
            del self._accounts[jid.bare.text]

    def all_sessions(self) -> list[Session]:
        return [session for resources in self._accounts.values() for session in resources.values()]


def _kept_back(filters: tuple[OutputFilter, ...], stanza: Element) -> bool:
    for keep in filters:  # noqa: SIM110 (a generator costs more)
        if keep(stanza):
            return True
    return False
