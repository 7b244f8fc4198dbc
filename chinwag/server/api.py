"""What a module gets: hooks, IQ handlers by key, disco features, settings and routing.

A module is one file in ``chinwag.modules`` with a ``SPEC`` (for the protocol
support table) and ``setup(api)``. Everything it registers is recorded here.
"""

from __future__ import annotations

from collections.abc import Coroutine
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from chinwag.config import Settings
from chinwag.server.dispatch import IQHandler
from chinwag.server.hooks import Handler
from chinwag.server.rosters import RosterCache
from chinwag.server.routing import Router
from chinwag.server.services import Services
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaError
from chinwag.xmpp.jid import JID

if TYPE_CHECKING:
    from chinwag.server.xmpp_server import XMPPServer


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of the protocol support table."""

    spec: str
    title: str
    support: str
    notes: str = ""


class ModuleAPI:
    def __init__(self, server: XMPPServer, name: str) -> None:
        self._server = server
        self.name = name
        self.registered: list[tuple[str, object]] = []

    @property
    def settings(self) -> Settings:
        return self._server.settings

    @property
    def domain(self) -> JID:
        return self._server.domain_jid

    @property
    def router(self) -> Router:
        return self._server.router

    @property
    def services(self) -> Services:
        return self._server.services

    @property
    def rosters(self) -> RosterCache:
        return self._server.rosters

    def jid(self, username: str) -> JID:
        """The bare JID of a local account."""
        return JID(username, self._server.domain)

    def fire(self, event: str, subject: Any) -> bool:
        return self._server.hooks.fire(event, subject)

    def notify(self, event: str, *args: Any) -> None:
        self._server.hooks.notify(event, *args)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work; its failure is logged, never lost silently."""
        self._server.spawn(work)

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        self._server.dispatcher.bounce(stanza, error)

    def add_stream_feature(self, xmlns: str, tag: str) -> None:
        """Announce an empty ``<tag xmlns=xmlns/>`` in the stream features after authentication."""
        self._server.stream_features.append((xmlns, tag))
        self.registered.append(("stream feature", (xmlns, tag)))

    def hook(self, event: str, handler: Handler, priority: int = 0) -> None:
        self._server.hooks.add(event, handler, priority)
        self.registered.append(("hook", event))

    def iq_handler(
        self, iq_type: str, xmlns: str, tag: str, handler: IQHandler, *, scope: str = "host"
    ) -> None:
        """Answer IQs of ``iq_type`` whose payload is ``<tag xmlns=xmlns>``, sent to ``scope``."""
        self._server.dispatcher.add_iq_handler(scope, iq_type, xmlns, tag, handler)
        self.registered.append(("iq", (scope, iq_type, xmlns, tag)))

    def add_feature(self, var: str) -> None:
        self._server.features.add(var)
        self.registered.append(("feature", var))

    def add_identity(self, category: str, kind: str, name: str = "") -> None:
        self._server.identities.add((category, kind, name))
        self.registered.append(("identity", (category, kind, name)))

    def features(self) -> set[str]:
        return set(self._server.features)

    def identities(self) -> set[tuple[str, str, str]]:
        return set(self._server.identities)

    def deliver(self, stanza: Element, to: JID) -> None:
        """Send a server-generated stanza."""
        self._server.dispatcher.deliver(stanza, to)
