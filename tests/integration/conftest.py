"""Fixtures: a real chinwag on free loopback ports, and real slixmpp clients for it.

``server`` is a running chinwag (its own temporary data directory, self-signed
certificate and SQLite database) with the users alice and bob; ``start_server``
starts one with settings overrides, for tests that need small limits:
``await start_server(limits={"auth_timeout_seconds": 0.5})``. Each store starts as a
copy of one migrated once per session, which saves ~0.1 s per server; the tests that
start ``chinwag serve`` or ``running`` themselves begin on fresh stores, which migrate
at start-up.

``connect`` makes a slixmpp client that trusts the self-signed certificate,
signs in and waits for ``session_start``. Every client it made is disconnected
before any server stops: the client fixtures depend on ``start_server``, so
pytest tears them down first.

``chinwag serve`` runs on uvloop when it is installed, so the in-process tests
of ``test_slixmpp.py``, ``test_bad_input.py`` and ``test_proxy_protocol.py`` run on
both event loops.
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack
from pathlib import Path
from typing import Any

import pytest
from slixmpp import ClientXMPP

from chinwag.app import running
from chinwag.config import settings_from_mapping
from chinwag.store.db import migrate

from .support import (
    DOMAIN,
    HOST,
    TIMEOUT,
    USERS,
    AssertServing,
    Connect,
    NewClient,
    RawStream,
    ServerHandle,
    StartServer,
    close_client,
    deep_merge,
    make_client,
    sign_in,
    stream_header,
)

BOTH_LOOPS_MODULES = {"test_slixmpp.py", "test_bad_input.py", "test_proxy_protocol.py"}


def _loop_factories() -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    factories: dict[str, Callable[[], asyncio.AbstractEventLoop]] = {
        "asyncio": asyncio.new_event_loop
    }
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


def pytest_asyncio_loop_factories(
    config: pytest.Config, item: pytest.Item
) -> dict[str, Callable[[], asyncio.AbstractEventLoop]]:
    """The standard loop everywhere; uvloop as well for the in-process client tests."""
    if item.path.name in BOTH_LOOPS_MODULES:
        return _loop_factories()
    return {"asyncio": asyncio.new_event_loop}


PROBE_TIMEOUT = 3.0
_unanswered_on: dict[str, str] = {}
"""Event loop kinds on which a fresh server did not answer a stream header, and why."""


async def _probe(server: ServerHandle, *, proxied: bool = False) -> None:
    """Fail fast when a fresh server does not even send its stream features (after a
    PROXY header that names no client, on a server that wants one).

    A server that accepts connections but never answers would make every test
    wait out its timeouts; after the first such failure on an event loop kind,
    the remaining tests on it fail at once.
    """
    loop_kind = type(asyncio.get_running_loop()).__module__.partition(".")[0]
    if loop_kind in _unanswered_on:
        pytest.fail(
            f"on {loop_kind}, an earlier server did not answer: {_unanswered_on[loop_kind]}"
        )
    raw = await RawStream.open(server.host, server.port)
    try:
        await raw.send((b"PROXY UNKNOWN\r\n" if proxied else b"") + stream_header())
        reply = await raw.read_until(b"</stream:features>", PROBE_TIMEOUT)
    finally:
        raw.abort()
    if b"</stream:features>" not in reply:
        _unanswered_on[loop_kind] = f"a stream header got {reply!r} within {PROBE_TIMEOUT}s"
        pytest.fail(f"on {loop_kind}, {_unanswered_on[loop_kind]}")


@pytest.fixture(scope="session")
def empty_store(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An SQLite store at the newest schema, with nothing in it."""
    path = tmp_path_factory.mktemp("schema") / "chinwag.db"
    asyncio.run(migrate(f"sqlite+aiosqlite:///{path}"))
    return path


@pytest.fixture
async def start_server(tmp_path: Path, empty_store: Path) -> AsyncIterator[StartServer]:
    """A factory of running servers, each in its own data directory; all stop at teardown."""
    async with AsyncExitStack() as stack:
        started = 0

        async def start(*, with_users: bool = True, **overrides: Any) -> ServerHandle:
            nonlocal started
            started += 1
            data_dir = tmp_path / f"server-{started}"
            data_dir.mkdir()
            shutil.copyfile(empty_store, data_dir / "chinwag.db")
            defaults = {
                "domain": DOMAIN,
                "data_dir": str(data_dir),
                "c2s": {"host": HOST, "port": 0, "direct_tls_port": 0},
                "http": {"host": HOST, "port": 0},
            }
            settings = settings_from_mapping(deep_merge(defaults, overrides))
            app = await asyncio.wait_for(stack.enter_async_context(running(settings)), TIMEOUT)
            if with_users:
                for name, password in USERS.items():
                    await app.accounts.add_user(name, password)
                await app.services.contacts.add_mutual("alice", "bob")
            ports = app.xmpp.ports
            handle = ServerHandle(
                host=HOST,
                port=ports["c2s"],
                direct_tls_port=ports["direct_tls"],
                domain=settings.domain,
                app=app,
            )
            await _probe(handle, proxied=settings.c2s.proxy_protocol)
            return handle

        yield start


@pytest.fixture
async def server(start_server: StartServer) -> ServerHandle:
    """A chinwag with the default limits and the users alice and bob."""
    return await start_server()


@pytest.fixture
async def new_client(start_server: StartServer) -> AsyncIterator[NewClient]:
    """A factory of unconnected clients, each closed at teardown before the servers stop."""
    clients: list[ClientXMPP] = []

    def new(
        server: ServerHandle,
        user: str = "alice",
        resource: str | None = "test",
        *,
        password: str | None = None,
        sasl_mech: str | None = None,
        direct_tls: bool = False,
    ) -> ClientXMPP:
        client = make_client(
            server.jid(user, resource),
            server.users[user] if password is None else password,
            sasl_mech=sasl_mech,
            direct_tls=direct_tls,
        )
        clients.append(client)
        return client

    yield new
    await asyncio.gather(*(close_client(client) for client in clients))


@pytest.fixture
def connect(new_client: NewClient) -> Connect:
    """A factory: ``await connect(server, "bob", "phone")`` returns a signed-in client."""

    async def connect_client(
        server: ServerHandle,
        user: str = "alice",
        resource: str | None = "test",
        *,
        password: str | None = None,
        sasl_mech: str | None = None,
        direct_tls: bool = False,
    ) -> ClientXMPP:
        client = new_client(
            server, user, resource, password=password, sasl_mech=sasl_mech, direct_tls=direct_tls
        )
        port = server.direct_tls_port if direct_tls else server.port
        await sign_in(client, server.host, port)
        return client

    return connect_client


@pytest.fixture
def assert_serving(connect: Connect) -> AssertServing:
    """``await assert_serving(server)``: a fresh client still signs in and is answered."""

    async def check(server: ServerHandle) -> None:
        client = await connect(server, "bob", "survivor")
        try:
            await client.plugin["xep_0199"].send_ping(server.domain, timeout=5)
        finally:
            await close_client(client)

    return check
