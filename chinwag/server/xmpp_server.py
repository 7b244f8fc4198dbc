"""The XMPP service: settings, modules, router, dispatcher, sessions and listeners for
one domain. It composes the server's parts and is the host its client streams
(``C2SHost``) and its modules (``ModuleHost``) are given."""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Callable, Coroutine, Sequence
from typing import TYPE_CHECKING, Any

from chinwag.config import LimitsSettings, Settings
from chinwag.network.events import (
    ACCOUNT_DELETED,
    ACCOUNT_PASSWORD_CHANGED,
    NetworkEvent,
    resource_mark,
)
from chinwag.server import tcp
from chinwag.server.api import ModuleAPI, ModuleHost, load_module
from chinwag.server.auth import DriverFactory, Grant, SaslDriver, sasl_drivers
from chinwag.server.auth_failures import auth_failures_for
from chinwag.server.c2s import C2SConnection, OutputBatch, Transport
from chinwag.server.dispatch import Dispatch, Dispatcher
from chinwag.server.events import EventPump
from chinwag.server.hooks import Hooks
from chinwag.server.memory import return_free_memory
from chinwag.server.rosters import RosterCache
from chinwag.server.routing import Router, SessionRecord
from chinwag.server.routing.local import LocalRouter
from chinwag.server.services import Services
from chinwag.server.session import Session
from chinwag.server.sessions import EndReason, SessionManager, unanswered
from chinwag.server.stats import ServerStats
from chinwag.store.oauth import (
    OAUTH_APP_SUSPENDED,
    OAUTH_REVOKED,
    app_password_credential,
    token_family_credential,
)
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID
from chinwag.xmpp.sasl.oauth import RAW_MECHANISMS
from chinwag.xmpp.sm import REQUEST
from chinwag.xmpp.stream import StreamConfig

if TYPE_CHECKING:
    from chinwag.server.clustering import ClusterMember

log = logging.getLogger(__name__)
BACKGROUND_WORK_GRACE_SECONDS = 5.0
"""How long the stop waits for background work; what modules must finish (``at_stop``)
is awaited after it, however long it takes."""

IDLE_SWEEP_SECONDS = 2.0
"""How often streams that read nothing since the last sweep release their parser: a
parser costs ~13 KiB to keep and ~10 us to make again."""
RELEASES_PER_TRIM = 1000
"""Parsers released (~13 MB) before freed memory is handed back to the system: a trim
walks the whole heap, which takes milliseconds on a large one."""
DRAIN_POLL_SECONDS = 0.05
"""How often a drain looks whether every stream and session has ended."""
PING_SWEEPS_PER_INTERVAL = 4
"""Ping sweeps per ``limits.ping_after_seconds`` (or ``ping_timeout_seconds``, if shorter):
a silent stream is pinged, and an unanswered one closed, at most a quarter of that late."""

DEFAULT_MODULES = (
    "disco",
    "ping",
    "version",
    "roster",
    "presence",
    "message",
    "offline",
    "blocking",
    "carbons",
    "mam",
    "chatstates",
    "csi",
    "vcard",
    "avatars",
    "pep",
    "private",
    "register",
)


def _credential(grant: Grant) -> str | None:
    """The name revocation events give to what ``grant`` signed in with, if they can."""
    if grant.app_password is not None:
        return app_password_credential(grant.app_password)
    if grant.token_family is not None:
        return token_family_credential(grant.token_family)
    return None


class XMPPServer:
    def __init__(self, settings: Settings, services: Services) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.domain_jid = JID.parse(settings.domain)
        self.domain = self.domain_jid.domain
        self.services = services
        self.authenticator = services.authenticator
        self.rosters = RosterCache(services.contacts)
        self.sasl_drivers: dict[str, DriverFactory] = sasl_drivers()
        self.auth_failures = auth_failures_for(settings)
        self.stats = ServerStats()
        self.hooks = Hooks()
        self.local_router = LocalRouter(
            self.hooks, settings.cluster.node if settings.cluster is not None else None
        )
        """This process's sessions."""
        self.cluster: ClusterMember | None = None
        """This server as a node of its cluster, with ``[cluster]``."""
        self.router: Router = self.local_router
        """Where modules route: this process's sessions, and in a cluster every node's."""
        if settings.cluster is not None:
            from chinwag.server.clustering import ClusterMember  # imports redis-py

            self.cluster = ClusterMember(settings.cluster, self.local_router, self.hooks)
            self.router = self.cluster.router
        self.dispatcher = Dispatcher(
            self.domain_jid,
            self.hooks,
            self.router,
            self.spawn,
            contacts_only=None if settings.messages.from_strangers else self.rosters,
        )
        self.dispatch: Dispatch = self.dispatcher.dispatch
        if self.cluster is not None:
            self.dispatch = self.cluster.dispatching(self.dispatch)
        self.sessions = SessionManager(
            self.domain,
            self.local_router,
            self.hooks,
            self.rosters,
            reroute=self.dispatcher.deliver,
            spawn=self.spawn,
            stream_management=settings.stream_management,
            records=self.cluster,
            resumer=self.cluster,
        )
        self.module_host = ModuleHost(
            settings=settings,
            domain=self.domain_jid,
            services=services,
            rosters=self.rosters,
            hooks=self.hooks,
            dispatcher=self.dispatcher,
            dispatch=self.dispatch,
            router=self.router,
            sessions=self.sessions,
            spawn=self.spawn,
            stats=self.stats,
        )
        self.modules: dict[str, ModuleAPI] = {}
        self.connections: set[C2SConnection] = set()
        self.output = OutputBatch()
        self.unbound: set[C2SConnection] = set()
        """Streams signed in but not bound yet: what ends sessions must end them too."""
        self.shutting_down = False
        self.stream_config = self._stream_config(tls_available=False)
        self._listeners: list[tcp.Listener] = []
        self._keepalive: asyncio.Task[None] | None = None
        self._idle_sweep: asyncio.Task[None] | None = None
        self._ping_sweep: asyncio.Task[None] | None = None
        self._pinged: dict[C2SConnection, float] = {}
        """Streams pinged for their silence and not heard from since, with when."""
        self._tasks: set[asyncio.Task[None]] = set()
        self._collecting: list[asyncio.Task[None]] | None = None
        """While ``spawned_by`` runs: the tasks spawned so far."""
        self.events = EventPump(services.events, self.hooks)
        self.hooks.add(f"network/{ACCOUNT_DELETED}", self._on_account_deleted)
        self.hooks.add(f"network/{ACCOUNT_PASSWORD_CHANGED}", self._on_password_changed)
        self.hooks.add(f"network/{OAUTH_REVOKED}", self._on_access_revoked)
        self.hooks.add(f"network/{OAUTH_APP_SUSPENDED}", self._on_app_suspended)

    def _stream_config(self, *, tls_available: bool) -> StreamConfig:
        limits = self.settings.limits
        return StreamConfig(
            domain=self.domain,
            tls_available=tls_available,
            tls_required=self.settings.c2s.require_tls,
            mechanisms=tuple(self.sasl_drivers),
            max_stanza_bytes=limits.max_stanza_bytes,
            auth_timeout=limits.auth_timeout_seconds,
            max_auth_failures=limits.max_auth_failures,
            raw_mechanisms=RAW_MECHANISMS,
            bound_features=tuple(self.module_host.stream_features),
            caps_ver="".join(ver() for ver in self.module_host.caps[-1:]),
            bound_elements=frozenset(self.module_host.stream_elements),
        )

    def load_modules(self, names: tuple[str, ...] = DEFAULT_MODULES) -> None:
        for name in names:
            self.modules[name] = load_module(self.module_host, name)
        self.stream_config = self._stream_config(tls_available=self.stream_config.tls_available)

    def connect(self, transport: Transport) -> C2SConnection:
        """A client stream over ``transport`` (the listeners' connection factory)."""
        return C2SConnection(self, transport)

    def handle_element(self, session: Session, element: Element) -> None:
        self.module_host.stream_elements[element.ns, element.tag](session, element)

    def sasl_driver(self, mechanism: str) -> SaslDriver | None:
        factory = self.sasl_drivers.get(mechanism)
        return factory(self.authenticator, self.domain) if factory is not None else None

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run background work that shutdown waits for; its failure is logged."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        if self._collecting is not None:
            self._collecting.append(task)
        return task

    def spawned_by(self, work: Callable[[], None]) -> list[asyncio.Task[None]]:
        """Run ``work``; returns the background work it spawned (a cluster node waits for
        it, an offline commit say, before it acknowledges the inbox entry it came from)."""
        outer, self._collecting = self._collecting, []
        try:
            work()
            return self._collecting
        finally:
            if outer is not None:
                outer.extend(self._collecting)
            self._collecting = outer

    def _task_done(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and task.exception() is not None:
            log.error("background work failed", exc_info=task.exception())

    def listed_sessions(self) -> list[SessionRecord]:
        """The sessions the operator sees: this process's, and in a cluster every other
        node's too, from the registry's mirror."""
        listed: list[SessionRecord] = list(self.sessions.all())
        if self.cluster is not None:
            listed.extend(self.cluster.remote_records())
        return listed

    def _on_account_deleted(self, event: NetworkEvent) -> None:
        user = event.subject
        self._end_streams(
            self.sessions.of(user),
            self._unbound(lambda grant: grant.username == user),
            "the account was deleted",
            EndReason.ACCOUNT_DELETED,
        )

    def _on_password_changed(self, event: NetworkEvent) -> None:
        """The streams signed in with the account's old password end with <reset/>, as
        Prosody's do, but the session that changed it (the event's detail). Those of
        app passwords and tokens stay: they are credentials of their own."""
        user, kept = event.subject, event.detail

        def with_password(grant: Grant) -> bool:
            return grant.username == user and grant.app is None

        def kept_on(session: Session) -> bool:
            return kept is not None and resource_mark(session.jid.resource or "") == kept

        changed = StreamError(StreamCondition.RESET, "the account's password was changed")
        for session in list(self.sessions.of(user)):
            if session.app is None and not kept_on(session):
                self.sessions.end(session, changed)
        for connection in self._unbound(with_password):
            connection.close_stream(changed)

    def _on_access_revoked(self, event: NetworkEvent) -> None:
        """The user's grant to an app ended: all of it, or the one app password or token
        family that the event's detail names (events written without one end all)."""
        user, app, credential = event.subject, event.object, event.detail

        def revoked(grant: Grant) -> bool:
            return (
                grant.username == user
                and grant.app == app
                and (credential is None or _credential(grant) == credential)
            )

        self._end_streams(
            [s for s in self.sessions.of(user) if s.grant is not None and revoked(s.grant)],
            self._unbound(revoked),
            "access was revoked",
            EndReason.REVOKED,
        )

    def _on_app_suspended(self, event: NetworkEvent) -> None:
        app = event.subject
        self._end_streams(
            [s for s in self.sessions.all() if s.app == app],
            self._unbound(lambda grant: grant.app == app),
            "access was revoked: the app is suspended",
            EndReason.SUSPENDED,
        )

    def _unbound(self, matches: Callable[[Grant], bool]) -> list[C2SConnection]:
        return [c for c in self.unbound if c.grant is not None and matches(c.grant)]

    def _end_streams(
        self,
        sessions: Sequence[Session],
        unbound: Sequence[C2SConnection],
        text: str,
        reason: EndReason,
    ) -> None:
        error = StreamError(StreamCondition.NOT_AUTHORIZED, text)
        for session in list(sessions):
            self.sessions.end(session, error, reason=reason)
        for connection in unbound:
            connection.close_stream(error)

    @property
    def listening(self) -> bool:
        """Whether every XMPP listener is up and accepting connections."""
        return bool(self._listeners) and all(listener.serving for listener in self._listeners)

    @property
    def ports(self) -> dict[str, int]:
        """The listening ports by role ("c2s", "direct_tls"), known after start(); none
        once drained."""
        return {
            role: listener.sockets[0].getsockname()[1]
            for role, listener in zip(("c2s", "direct_tls"), self._listeners, strict=False)
            if listener.sockets[0].fileno() >= 0
        }

    def drain(self, other_host: str) -> int:
        """Stop accepting client streams, and send every TCP one to ``other_host`` (another
        node's public ``host:port``) with <see-other-host/> (RFC 6120 4.9.3.19). A
        WebSocket client can only be sent to a URI (RFC 7395 3.6.1), which a node does
        not know of another: its stream ends with <system-shutdown/>, and it reconnects
        through the balancer. On a cluster node, a session whose client may resume it
        (XEP-0198) waits for that, as after a lost connection, so that the node the client
        is sent to takes it over; one not resumed by the time this node stops ends then
        (what its client had not acknowledged goes to offline storage). Without a cluster
        the other server cannot resume it: it ends now. Streams that open meanwhile (over
        WebSocket) may neither bind nor resume. Returns how many streams were sent to
        ``other_host``."""
        self.shutting_down = True
        for listener in self._listeners:
            listener.close()
        moved = StreamError(
            StreamCondition.SEE_OTHER_HOST, "this server is being drained", other_host=other_host
        )
        stopping = StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping")
        resumable_elsewhere = self.cluster is not None
        sent = 0
        for connection in list(self.connections):
            over_tcp = connection.stream.framing == "tcp"
            connection.close_stream(
                moved if over_tcp else stopping, keep_session=resumable_elsewhere
            )
            sent += over_tcp
        if not resumable_elsewhere:
            for session in self.sessions.all():  # detached ones, which have no stream
                self.sessions.end(session, moved)
        log.info("draining: sent %d client streams to %s", sent, other_host)
        return sent

    async def drained(self, timeout: float) -> bool:
        """Wait, ``timeout`` seconds at most, until no stream or session is left; whether
        none is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while self.connections or self.sessions.all():
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(DRAIN_POLL_SECONDS)
        return True

    async def start(self, ssl_context: ssl.SSLContext | None, *, reuse_port: bool = False) -> None:
        """Listen; ``reuse_port``: sharing the ports with other workers (SO_REUSEPORT)."""
        self.stream_config = self._stream_config(tls_available=ssl_context is not None)
        if self.cluster is not None:  # before any client can bind
            await self.cluster.start(self.dispatcher, self.sessions, self.spawn, self.spawned_by)
        c2s = self.settings.c2s
        proxy = tcp.ProxyPolicy.from_settings(c2s)
        self._listeners.append(
            await tcp.listen(
                self.connect,
                c2s.host,
                c2s.port,
                ssl_context,
                direct_tls=False,
                proxy=proxy,
                reuse_port=reuse_port,
            )
        )
        if ssl_context is not None:
            self._listeners.append(
                await tcp.listen(
                    self.connect,
                    c2s.host,
                    c2s.direct_tls_port,
                    ssl_context,
                    direct_tls=True,
                    proxy=proxy,
                    reuse_port=reuse_port,
                )
            )
        await self.events.start()
        self._idle_sweep = asyncio.create_task(self._release_idle_parsers(IDLE_SWEEP_SECONDS))
        self._start_timers()

    def _start_timers(self) -> None:
        """The keepalive and ping sweeps, at the intervals of the limits in force."""
        limits = self.limits
        if limits.keepalive_seconds > 0:
            self._keepalive = asyncio.create_task(self._send_keepalives(limits.keepalive_seconds))
        if limits.ping_after_seconds > 0:
            self._ping_sweep = asyncio.create_task(
                self._ping_silent(limits.ping_after_seconds, limits.ping_timeout_seconds)
            )

    def use_limits(self, limits: LimitsSettings) -> None:
        """Take a reload's ``[limits]``: streams opened from now on get them, and so does
        the count of failed sign-ins per address; the keepalive and ping sweeps restart
        at their new intervals. Streams already open keep the limits they began with."""
        self.settings = self.settings.model_copy(update={"limits": limits})
        self.limits = limits
        self.stream_config = self._stream_config(tls_available=self.stream_config.tls_available)
        self.auth_failures.configure(limits)
        if not self._listeners or self.shutting_down:
            return
        for task in (self._keepalive, self._ping_sweep):
            if task is not None:
                task.cancel()
        self._keepalive = self._ping_sweep = None
        self._start_timers()

    async def stop(self) -> None:
        """Stop listening, then end every stream with <system-shutdown/>."""
        self.shutting_down = True
        await self.events.stop()
        for task in (self._keepalive, self._idle_sweep, self._ping_sweep):
            if task is not None:
                task.cancel()
        for listener in self._listeners:
            listener.close()
        stopping = StreamError(StreamCondition.SYSTEM_SHUTDOWN, "the server is stopping")
        for connection in list(self.connections):
            connection.close_stream(stopping)
        for session in self.sessions.all():  # detached ones, which have no stream
            self.sessions.end(session, stopping)
        for listener in self._listeners:
            await listener.wait_closed()
        self._listeners.clear()
        if self._tasks:
            await asyncio.wait(list(self._tasks), timeout=BACKGROUND_WORK_GRACE_SECONDS)
        for stop in self.module_host.stoppers:
            await stop()
        await self.auth_failures.close()
        if self.cluster is not None:
            await self.cluster.stop()
        await asyncio.sleep(0)  # let the transports flush their last bytes

    async def _release_idle_parsers(self, interval: float) -> None:
        """Streams silent for a whole interval give up their XML parser, the largest part
        of an idle connection's memory; what that frees goes back to the system. The
        stanza counts are settled too, so that the lists of tags they wait in stay short."""
        released = 0
        while True:
            await asyncio.sleep(interval)
            self.stats.settle()
            for connection in list(self.connections):
                if connection.read_recently:
                    connection.read_recently = False
                elif connection.stream.release_parser():
                    released += 1
            if released >= RELEASES_PER_TRIM:
                released = 0
                # ctypes lets go of the GIL: the loop runs on while the heap is walked.
                await asyncio.to_thread(return_free_memory)

    async def _send_keepalives(self, interval: float) -> None:
        """RFC 6120 4.6.1: whitespace on bound streams that have been silent for a while."""
        while True:
            await asyncio.sleep(interval)
            for connection in list(self.connections):
                if connection.session is not None and not connection.wrote_recently:
                    connection.keepalive()
                connection.wrote_recently = False

    async def _ping_silent(self, after: float, timeout: float) -> None:
        """XEP-0199 server-to-client pings: a bound stream that has sent nothing for
        ``after`` seconds is pinged, and closed with <connection-timeout/> if it sends
        nothing within ``timeout`` (any input, not only the answer, shows it is alive);
        so is one that leaves the server's XEP-0198 <r/> unanswered that long. Closing
        detaches its session, which may then wait for resumption. The client's answer,
        a result to the server, is dropped by the dispatcher like any other."""
        loop = asyncio.get_running_loop()
        try:
            while True:
                await asyncio.sleep(min(after, timeout) / PING_SWEEPS_PER_INTERVAL)
                now = loop.time()
                self._close_unanswered(now - timeout)
                self._ping_streams_silent_since(now - after, now)
        finally:  # stopped, or restarted by a reload: streams still silent are pinged anew
            self._pinged.clear()

    def _close_unanswered(self, pinged_before: float) -> None:
        pinged = self._pinged
        for connection, sent_at in list(pinged.items()):
            # >=: the stream was silent when pinged, so input stamped with the ping's
            # time came after it (a loop's clock may tick in whole milliseconds).
            if connection.closed or connection.heard_at >= sent_at:
                del pinged[connection]
            elif sent_at <= pinged_before:
                del pinged[connection]
                connection.close_stream(unanswered())

    def _ping_streams_silent_since(self, silent_since: float, now: float) -> None:
        """Ping the bound streams silent since ``silent_since``. A stream with an <r/> out
        (XEP-0198) needs no ping: the request is taken for one, as ejabberd's ack timeout
        does, so that a dead connection that messages are written to is noticed as soon
        as one that is idle. A stream left with stanzas unacknowledged and no request out
        (the end of a burst: ``stream_management.REQUEST_SPACING_SECONDS``) is asked now,
        the same way."""
        pinged = self._pinged
        for connection in list(self.connections):
            session = connection.session
            if session is None or connection in pinged:
                continue
            sm = session.stream_management
            if sm is not None and sm.awaiting:
                pinged[connection] = now
            elif sm is not None and sm.ask():
                connection.write(REQUEST)
                pinged[connection] = now
            elif connection.heard_at <= silent_since:
                connection.send(self._ping(session.jid))
                pinged[connection] = now

    def _ping(self, to: JID) -> Element:
        iq = Element(
            "iq",
            attrs={
                "type": "get",
                "id": f"ping-{random_hex(4)}",
                "from": self.domain,
                "to": str(to),
            },
        )
        iq.add("ping", ns.PING)
        return iq
