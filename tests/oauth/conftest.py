"""A running web listener on a fresh SQLite store, and a browser to drive it with httpx.

``services`` gives each test a fresh SQLite store (a copy of one migrated once,
with the user alice) and the accounts and OAuth services on it, configured by
``config`` (which a test module may override); ``platform`` serves the web application on them
through an ``HTTPServer`` on 127.0.0.1, port 0. ``browser`` is an httpx client on
it that keeps cookies and follows no redirect, so each test sees every hop of a
flow.

Starting and stopping uvicorn costs a quarter of a second, so one listener serves
the whole session and each test gets its own application (and store) behind it.
The tests and fixtures run on the session's event loop for that (``shared_loop``).
"""

from __future__ import annotations

import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import pytest_asyncio
from starlette.types import ASGIApp, Receive, Scope, Send

from chinwag.config import HTTPSettings, Settings, settings_from_mapping
from chinwag.network.accounts import AccountService
from chinwag.oauth.service import OAuthService, RegisteredApp
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.db import Database
from chinwag.store.events import NetworkEvent, SqlEventRepository
from chinwag.store.oauth import SqlOAuthRepository
from chinwag.web.app import build_web_app
from chinwag.web.server import HTTPServer
from oauth.support import ALICE, ALICE_PASSWORD, CALLBACK, OTHER_CALLBACK


@dataclass
class Services:
    settings: Settings
    database: Database
    accounts: AccountService
    oauth: OAuthService

    async def events(self) -> list[NetworkEvent]:
        return await SqlEventRepository(self.database).since(0)


@dataclass
class Platform(Services):
    base: str = ""


class _Swappable:
    """The listener's application: each test's own."""

    app: ASGIApp | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        assert self.app is not None, "no test application"
        await self.app(scope, receive, send)


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def listener() -> AsyncIterator[tuple[_Swappable, int]]:
    application = _Swappable()
    server = HTTPServer(application, HTTPSettings(port=0))
    await server.start()
    try:
        yield application, server.port
    finally:
        await server.stop()


@pytest_asyncio.fixture(scope="session", loop_scope="session")
async def template_database(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with alice, copied for each test (migrating takes longer)."""
    settings = settings_from_mapping({"data_dir": str(tmp_path_factory.mktemp("template"))})
    database = Database.open(settings.database_url)
    try:
        await database.migrate()
        await AccountService(SqlAccountRepository(database)).add_user(ALICE, ALICE_PASSWORD)
    finally:
        await database.close()
    return settings.data_path / "chinwag.db"


@pytest.fixture
def config() -> dict[str, Any]:
    """The test's settings besides ``data_dir``: the defaults, unless a module overrides it."""
    return {}


@pytest_asyncio.fixture(loop_scope="session")
async def services(
    tmp_path: Path, template_database: Path, config: dict[str, Any]
) -> AsyncIterator[Services]:
    """A store with alice and the services on it, without a listener."""
    settings = settings_from_mapping({**config, "data_dir": str(tmp_path)})
    shutil.copyfile(template_database, settings.data_path / "chinwag.db")
    database = Database.open(settings.database_url)
    accounts = AccountService(SqlAccountRepository(database))
    oauth = OAuthService(SqlOAuthRepository(database), accounts, settings.oauth)
    try:
        yield Services(settings, database, accounts, oauth)
    finally:
        await database.close()


@pytest_asyncio.fixture(loop_scope="session")
async def platform(services: Services, listener: tuple[_Swappable, int]) -> AsyncIterator[Platform]:
    application, port = listener
    application.app = build_web_app(services.settings, services.accounts, services.oauth)
    try:
        yield Platform(**vars(services), base=f"http://127.0.0.1:{port}")
    finally:
        application.app = None


@pytest_asyncio.fixture(loop_scope="session")
async def browser(platform: Platform) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=platform.base, follow_redirects=False) as client:
        yield client


@pytest_asyncio.fixture(loop_scope="session")
async def public_app(services: Services) -> RegisteredApp:
    return await services.oauth.register_app("Pocket Chat", [CALLBACK, OTHER_CALLBACK], public=True)


@pytest_asyncio.fixture(loop_scope="session")
async def confidential_app(services: Services) -> RegisteredApp:
    return await services.oauth.register_app("Chat Server Bridge", [OTHER_CALLBACK])
