"""What a module gets: hooks, IQ handlers by key, disco features, settings, routing by
records, and its own user's sessions.

A module is one file in ``chinwag.modules`` with a ``SPEC`` (for the protocol
support table) and ``setup(api)``. Everything it registers is recorded here. It
routes stanzas through ``router`` (records, never other users' sessions) and acts on
the session that sent a stanza (``routed.origin``) through ``sessions``.
"""

from __future__ import annotations

import importlib
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

from chinwag.config import Settings
from chinwag.server.dispatch import Dispatch, Dispatcher, IQHandler
from chinwag.server.hooks import Channel, Handler, Hooks
from chinwag.server.rosters import RosterCache
from chinwag.server.routing import Router
from chinwag.server.services import Services
from chinwag.server.session import Session
from chinwag.server.sessions import SessionManager
from chinwag.server.stats import ServerStats
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaError
from chinwag.xmpp.jid import JID

StreamElementHandler = Callable[[Session, Element], None]
"""Handles a top-level element that is not a stanza, from a bound session's stream."""


@dataclass(frozen=True, slots=True)
class Spec:
    """One row of the protocol support table."""

    spec: str
    title: str
    support: str
    notes: str = ""


@dataclass(frozen=True, slots=True)
class ModuleHost:
    """The parts of the XMPP service that modules are given."""

    settings: Settings
    domain: JID
    services: Services
    rosters: RosterCache
    hooks: Hooks
    dispatcher: Dispatcher
    dispatch: Dispatch
    """What dispatches a stanza as a client sent it: the dispatcher's, which a cluster
    wraps so that a stream-managed sender waits for what went to another node."""
    router: Router
    sessions: SessionManager
    spawn: Callable[[Coroutine[Any, Any, None]], object]
    features: set[str] = field(default_factory=set)
    identities: set[tuple[str, str, str]] = field(default_factory=set)
    account_features: set[str] = field(default_factory=set)
    """What disco#info on an account's bare JID lists (XEP-0030 §3.1, answered by the
    server for the account): the PEP service's features, say."""
    account_identities: set[tuple[str, str, str]] = field(default_factory=set)
    stream_features: list[tuple[str, str]] = field(default_factory=list)
    """Announced after authentication, each an empty ``<tag xmlns=xmlns/>``."""
    stream_elements: dict[tuple[str, str], StreamElementHandler] = field(default_factory=dict)
    """Handlers of top-level elements besides stanzas, by (namespace, tag)."""
    stats: ServerStats = field(default_factory=ServerStats)
    """The service's counts, which a module adds its own work to."""
    stoppers: list[Callable[[], Awaitable[None]]] = field(default_factory=list)
    """Awaited, in the order given, when the service stops, after its streams ended."""
    caps: list[Callable[[], str]] = field(default_factory=list)
    """What gives the XEP-0115 ``ver`` of the server's disco#info once every module is
    loaded (the disco module's), for the stream features."""


class ModuleAPI:
    def __init__(self, host: ModuleHost, name: str) -> None:
        self._host = host
        self.name = name
        self.registered: list[tuple[str, object]] = []

    @property
    def settings(self) -> Settings:
        return self._host.settings

    @property
    def domain(self) -> JID:
        return self._host.domain

    @property
    def router(self) -> Router:
        return self._host.router

    @property
    def sessions(self) -> SessionManager:
        return self._host.sessions

    @property
    def services(self) -> Services:
        return self._host.services

    @property
    def rosters(self) -> RosterCache:
        return self._host.rosters

    @property
    def stats(self) -> ServerStats:
        return self._host.stats

    def jid(self, username: str) -> JID:
        """The bare JID of a local account."""
        return JID(username, self._host.domain.domain)

    def fire(self, event: str, subject: Any) -> bool:
        return self._host.hooks.fire(event, subject)

    def notify(self, event: str, *args: Any) -> None:
        self._host.hooks.notify(event, *args)

    def spawn(self, work: Coroutine[Any, Any, None]) -> None:
        """Run background work; its failure is logged, never lost silently."""
        self._host.spawn(work)

    def at_stop(self, stop: Callable[[], Awaitable[None]]) -> None:
        """Await ``stop()`` when the service stops, once every stream has ended and before
        the database closes (a queue of writes stored, say)."""
        self._host.stoppers.append(stop)
        self.registered.append(("stop", stop))

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        self._host.dispatcher.bounce(stanza, error)

    def add_stream_feature(self, xmlns: str, tag: str) -> None:
        """Announce an empty ``<tag xmlns=xmlns/>`` in the stream features after authentication."""
        self._host.stream_features.append((xmlns, tag))
        self.registered.append(("stream feature", (xmlns, tag)))

    def stream_element(self, xmlns: str, tag: str, handler: StreamElementHandler) -> None:
        """Take top-level ``<tag xmlns=xmlns>`` elements from bound streams (XEP-0352's
        <active/>, say): the stream hands each to ``handler`` with its session, in order
        with the stanzas around it. Elements nobody takes end the stream as before."""
        if (xmlns, tag) in self._host.stream_elements:
            raise ValueError(f"<{tag} xmlns='{xmlns}'> is already handled")
        self._host.stream_elements[xmlns, tag] = handler
        self.registered.append(("stream element", (xmlns, tag)))

    def hook(self, event: str, handler: Handler, priority: int = 0) -> None:
        self._host.hooks.add(event, handler, priority)
        self.registered.append(("hook", event))

    def unhook(self, event: str, handler: Handler) -> None:
        """Undo ``hook(event, handler)``: a module that hooks a hot event only while it has
        work there (carbons, while someone has them on) takes its handler off again."""
        self._host.hooks.remove(event, handler)
        self.registered.remove(("hook", event))

    def channel(self, event: str) -> Channel:
        """The live handlers of ``event``, for a module's hot path to test before it
        notifies them, so that an event no module hooks costs no call."""
        return self._host.hooks.channel(event)

    def iq_handler(
        self, iq_type: str, xmlns: str, tag: str, handler: IQHandler, *, scope: str = "host"
    ) -> None:
        """Answer IQs of ``iq_type`` whose payload is ``<tag xmlns=xmlns>``, sent to ``scope``."""
        self._host.dispatcher.add_iq_handler(scope, iq_type, xmlns, tag, handler)
        self.registered.append(("iq", (scope, iq_type, xmlns, tag)))

    def add_feature(self, var: str) -> None:
        self._host.features.add(var)
        self.registered.append(("feature", var))

    def add_identity(self, category: str, kind: str, name: str = "") -> None:
        self._host.identities.add((category, kind, name))
        self.registered.append(("identity", (category, kind, name)))

    def add_account_feature(self, var: str) -> None:
        """List ``var`` in disco#info on every account's bare JID."""
        self._host.account_features.add(var)
        self.registered.append(("account feature", var))

    def add_account_identity(self, category: str, kind: str, name: str = "") -> None:
        """List this identity in disco#info on every account's bare JID."""
        self._host.account_identities.add((category, kind, name))
        self.registered.append(("account identity", (category, kind, name)))

    def announce_caps(self, ver: Callable[[], str]) -> None:
        """Announce the server's XEP-0115 caps in the stream features, with the ``ver``
        that ``ver()`` gives once every module is loaded."""
        self._host.caps.append(ver)
        self.registered.append(("caps", ver))

    def features(self) -> set[str]:
        return set(self._host.features)

    def account_features(self) -> set[str]:
        return set(self._host.account_features)

    def account_identities(self) -> set[tuple[str, str, str]]:
        return set(self._host.account_identities)

    def identities(self) -> set[tuple[str, str, str]]:
        return set(self._host.identities)

    def deliver(self, stanza: Element, to: JID) -> None:
        """Send a server-generated stanza through the whole pipeline, as if received."""
        self._host.dispatcher.deliver(stanza, to)

    def dispatch(self, stanza: Element, to: JID | None, origin: Session | None) -> None:
        """Dispatch ``stanza`` again as ``origin`` sent it (None: the server): a
        ``route/before`` handler that took it to wait for storage sends it on so, and
        presence ``to`` None is the session's broadcast presence sent again."""
        self._host.dispatch(stanza, to, origin)


def load_module(host: ModuleHost, name: str) -> ModuleAPI:
    """Import ``chinwag.modules.<name>`` and set it up against ``host``."""
    api = ModuleAPI(host, name)
    importlib.import_module(f"chinwag.modules.{name}").setup(api)
    return api
