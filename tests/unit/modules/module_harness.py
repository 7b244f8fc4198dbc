"""A module against an in-memory host: the server's own hooks, dispatcher, router and
session manager, the network services over a real SQLite store, and connections that
keep what they are sent instead of writing it to a socket.

    harness = await Harness.start(tmp_path, ("message",))
    alice = await harness.bind("alice", "phone")
    bob = await harness.bind("bob", "desk")
    harness.send(alice, "<message to='bob@localhost' type='chat'><body>hi</body></message>")
    assert harness.received(bob) == ["<message to='bob@localhost' ...>"]

``send`` stamps ``from`` and parses ``to`` as a client's stream does, then dispatches
the stanza; ``received`` is what the client's connection was given since the last
call, as the XML it would have read. Nothing here opens a socket or mocks a store.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any

from chinwag.app import build_services
from chinwag.config import Settings, settings_from_mapping
from chinwag.server.api import ModuleHost, load_module
from chinwag.server.dispatch import Dispatcher
from chinwag.server.hooks import Hooks
from chinwag.server.rosters import RosterCache
from chinwag.server.routing.local import LocalRouter
from chinwag.server.services import Services
from chinwag.server.session import Session
from chinwag.server.sessions import SessionManager
from chinwag.store.db import Database
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import parse_stanza

DOMAIN = "localhost"
PASSWORD = "harness-secret"
SETTLE_TIMEOUT = 5.0

MakeHarness = Callable[..., Awaitable["Harness"]]
"""The ``harness`` fixture: ``await harness(modules, **settings)``."""


class MemoryConnection:
    """The transport seam in memory: what its session is sent, and how its stream ended."""

    transport_kind = "memory"

    def __init__(self, harness: Harness) -> None:
        self._harness = harness
        self.session: Session | None = None
        self.sent: list[Element] = []
        self.closed = False
        self.error: StreamError | None = None
        """The stream error the server ended this stream with, if it did."""
        self._listeners: list[asyncio.Future[bool]] = []

    def send(self, stanza: Element) -> None:
        if not self.closed:
            self.sent.append(stanza)
            sm = self.session.stream_management if self.session is not None else None
            if sm is not None:  # as C2SConnection does: kept until the client acknowledges
                sm.unacked.append(stanza.encoded())
                sm.written()

    def close_stream(self, error: StreamError | None = None) -> None:
        """As ``C2SConnection`` does: the stream ends, and its session with it."""
        if self.closed:
            return
        self.closed, self.error = True, error
        self._settle(False)
        session, self.session = self.session, None
        if session is not None:
            self._harness.sessions.detach(session)

    def hold(self, work: Coroutine[Any, Any, None]) -> None:
        self._harness.spawn(work)

    def heard_after_output(self) -> asyncio.Future[bool]:
        heard: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        if self.closed:
            heard.set_result(False)
        else:
            self._listeners.append(heard)
        return heard

    def heard(self) -> None:
        """The client sent something."""
        self._settle(True)

    def _settle(self, heard: bool) -> None:
        listeners, self._listeners = self._listeners, []
        for listener in listeners:
            if not listener.done():
                listener.set_result(heard)


class Harness:
    def __init__(
        self, database: Database, services: Services, settings: Settings, modules: Sequence[str]
    ) -> None:
        self.database = database
        self.services = services
        self._tasks: set[asyncio.Task[None]] = set()
        self.hooks = Hooks()
        rosters = RosterCache(services.contacts)
        router = LocalRouter(self.hooks, node="harness")
        domain = JID.parse(settings.domain)
        self.dispatcher = Dispatcher(
            domain,
            self.hooks,
            router,
            self.spawn,
            contacts_only=None if settings.messages.from_strangers else rosters,
        )
        self.sessions = SessionManager(
            domain.domain,
            router,
            self.hooks,
            rosters,
            reroute=self.dispatcher.deliver,
            spawn=self.spawn,
            stream_management=settings.stream_management,
        )
        self.host = ModuleHost(
            settings=settings,
            domain=domain,
            services=services,
            rosters=rosters,
            hooks=self.hooks,
            dispatcher=self.dispatcher,
            dispatch=self.dispatcher.dispatch,
            router=router,
            sessions=self.sessions,
            spawn=self.spawn,
        )
        self.modules = {name: load_module(self.host, name) for name in modules}

    @classmethod
    async def start(cls, data_dir: Path, modules: Sequence[str], **settings: Any) -> Harness:
        """A host for ``modules`` (loaded in that order) with ``settings`` laid over the
        defaults, on a fresh store in ``data_dir``."""
        config = settings_from_mapping({"domain": DOMAIN, "data_dir": str(data_dir), **settings})
        database = Database.open(config.database_url)
        await database.migrate()
        services, _oauth = build_services(config, database)
        return cls(database, services, config, modules)

    async def close(self) -> None:
        await self.settle()
        await self.database.close()

    # --- accounts and sessions ----------------------------------------------------------

    async def add_users(self, *names: str) -> None:
        for name in names:
            await self.services.accounts.add_user(name, PASSWORD)

    async def add_contacts(self, a: str, b: str) -> None:
        await self.services.contacts.add_mutual(a, b)

    def connect(self) -> MemoryConnection:
        """A client's connection with no session yet (to reattach one to, say)."""
        return MemoryConnection(self)

    async def bind(self, user: str, resource: str) -> MemoryConnection:
        """A client of ``user`` bound as ``resource``; its session is ``.session``."""
        connection = self.connect()
        session = await self.sessions.bind(connection, user, resource, None)
        assert session is not None
        connection.session = session
        return connection

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run a module's background work; ``settle`` waits for it."""
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def settle(self) -> None:
        """Wait, bounded, until the work modules started (storage, answers) is done."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while self._tasks:
                await asyncio.wait(list(self._tasks))

    # --- stanzas ------------------------------------------------------------------------------

    def send(self, client: MemoryConnection, xml: str) -> None:
        """What a client's stream does with a stanza it reads: ``from`` stamped, ``to``
        parsed, then dispatched as the client's."""
        session = client.session
        assert session is not None, "the client has no session"
        client.heard()
        stanza = parse_stanza(xml)
        stanza.attrs["from"] = str(session.jid)
        stanza.wire = None
        to = stanza.attrs.get("to")
        self.dispatcher.dispatch(stanza, JID.parse(to) if to is not None else None, session)

    def send_element(self, client: MemoryConnection, xml: str) -> None:
        """A top-level element that is not a stanza (XEP-0352's <inactive/>, say), handed
        to the module that registered it as a client's stream does."""
        session = client.session
        assert session is not None, "the client has no session"
        client.heard()
        element = parse_stanza(xml)
        self.host.stream_elements[element.ns, element.tag](session, element)

    async def arrived(self, client: MemoryConnection, count: int) -> list[str]:
        """Wait, bounded, until ``client`` has been sent ``count`` stanzas; ``received``."""
        async with asyncio.timeout(SETTLE_TIMEOUT):
            while len(client.sent) < count:
                await asyncio.sleep(0.01)
        return self.received(client)

    def received(self, client: MemoryConnection) -> list[str]:
        """What ``client`` was sent since the last call, as XML text."""
        sent, client.sent = client.sent, []
        return [stanza.encoded().decode() for stanza in sent]
