"""Fixtures for the REST API and the developer portal.

``site`` is the web application on a fresh SQLite store (a copy of one migrated
once, with alice, bob, carol and the operator admin), driven in process through
httpx's ASGI transport: a ``browser`` that keeps cookies and follows no
redirect, and an ``api`` client. Who is online is whatever the test puts in
``site.online``.

The tests that need a real XMPP server and real clients use the integration
suite's ``start_server`` and ``new_client`` (re-exported here).
"""

from __future__ import annotations

import asyncio
import shutil
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from integration.conftest import empty_store, new_client, start_server  # noqa: F401  (fixtures)
from starlette.applications import Starlette

from chinwag.config import Settings, settings_from_mapping
from chinwag.network.accounts import AccountService
from chinwag.network.blocking import BlockingService
from chinwag.network.contacts import ContactService
from chinwag.network.events import EventLog
from chinwag.network.profiles import ProfileService
from chinwag.oauth.service import OAuthService
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.blocking import SqlBlockingRepository
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.db import Database
from chinwag.store.events import NetworkEvent, SqlEventRepository
from chinwag.store.oauth import SqlOAuthRepository
from chinwag.store.profiles import SqlProfileRepository
from chinwag.web.app import build_web_app
from chinwag.web.presence import ResourcePresence

PASSWORDS = {"alice": "wonderland", "bob": "builder", "carol": "singer", "admin": "operator"}
OPERATOR = "admin"
BASE_URL = "http://127.0.0.1"
"""Loopback: Authlib refuses OAuth requests over plain http elsewhere."""


@dataclass
class Site:
    settings: Settings
    database: Database
    accounts: AccountService
    oauth: OAuthService
    contacts: ContactService
    profiles: ProfileService
    blocking: BlockingService
    admin_token: str = ""
    app: Starlette | None = None
    online: dict[str, list[ResourcePresence]] = field(default_factory=dict)

    def presence(self, username: str) -> Sequence[ResourcePresence]:
        return self.online.get(username, ())

    async def events(self) -> list[NetworkEvent]:
        return await SqlEventRepository(self.database).since(0)


@pytest.fixture(scope="session")
def web_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A migrated SQLite file with the users, copied for each test."""
    settings = settings_from_mapping({"data_dir": str(tmp_path_factory.mktemp("web-template"))})

    async def build() -> None:
        database = Database.open(settings.database_url)
        try:
            await database.migrate()
            accounts = AccountService(SqlAccountRepository(database))
            for name, password in PASSWORDS.items():
                await accounts.add_user(name, password)
        finally:
            await database.close()

    asyncio.run(build())
    return settings.data_path / "chinwag.db"


@pytest_asyncio.fixture
async def site(tmp_path: Path, web_template: Path) -> AsyncIterator[Site]:
    settings = settings_from_mapping(
        {"data_dir": str(tmp_path), "http": {"operators": [OPERATOR.upper()]}}
    )
    shutil.copyfile(web_template, settings.data_path / "chinwag.db")
    database = Database.open(settings.database_url)
    events = EventLog(database)
    accounts = AccountService(SqlAccountRepository(database), events)
    site = Site(
        settings=settings,
        database=database,
        accounts=accounts,
        oauth=OAuthService(SqlOAuthRepository(database), accounts, settings.oauth),
        contacts=ContactService(SqlContactRepository(database), events),
        profiles=ProfileService(SqlProfileRepository(database), events),
        blocking=BlockingService(SqlBlockingRepository(database), events),
    )
    site.app = build_web_app(
        settings,
        accounts,
        site.oauth,
        contacts=site.contacts,
        profiles=site.profiles,
        blocking=site.blocking,
        presence=site.presence,
    )
    site.admin_token = site.app.state.admin_token
    try:
        yield site
    finally:
        await database.close()


def client_of(site: Site) -> httpx.AsyncClient:
    """An httpx client of the site, in process; it keeps cookies and follows no redirect."""
    assert site.app is not None
    transport = httpx.ASGITransport(app=site.app)
    return httpx.AsyncClient(transport=transport, base_url=BASE_URL, follow_redirects=False)


@pytest_asyncio.fixture
async def browser(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(site) as client:
        yield client


@pytest_asyncio.fixture
async def api(site: Site) -> AsyncIterator[httpx.AsyncClient]:
    async with client_of(site) as client:
        yield client
