"""A migrated, empty ``Database`` per test, on SQLite and on PostgreSQL.

Every test in ``tests/store`` that asks for ``database`` (or ``network``, the
domain services over it) runs on both engines. The
PostgreSQL run gets a schema of its own (through asyncpg's ``search_path``),
dropped afterwards; it is skipped, with the reason, when the server is unreachable.
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chinwag.network.accounts import AccountService
from chinwag.network.contacts import ContactService
from chinwag.network.events import EventLog
from chinwag.network.profiles import ProfileService
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.db import Database
from chinwag.store.profiles import SqlProfileRepository

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"


async def _on_postgres(statement: str) -> None:
    engine = create_async_engine(POSTGRES_URL, connect_args={"timeout": 3})
    try:
        async with engine.begin() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


async def _postgres_problem() -> str | None:
    try:
        await _on_postgres("SELECT 1")
    except Exception as error:  # whatever stops us reaching it is the reason to skip
        return f"{type(error).__name__}: {error}".splitlines()[0]
    return None


@pytest.fixture(scope="session")
def postgres_problem() -> str | None:
    """Why PostgreSQL cannot be used, or None; probed once per session."""
    return asyncio.run(_postgres_problem())


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def database(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_problem: str | None
) -> AsyncIterator[Database]:
    schema = None
    if request.param == "sqlite":
        db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}")
    elif postgres_problem is not None:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {postgres_problem}")
    else:
        schema = f"test_{uuid.uuid4().hex}"
        await _on_postgres(f'CREATE SCHEMA "{schema}"')
        db = Database.open(POSTGRES_URL, connect_args={"server_settings": {"search_path": schema}})
    try:
        await db.migrate()
        yield db
    finally:
        await db.close()
        if schema is not None:
            await _on_postgres(f'DROP SCHEMA "{schema}" CASCADE')


class Network:
    """The network domain's services over one migrated store, as the server wires them."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.events = EventLog(db, origin="this-process")
        self.account_repo = SqlAccountRepository(db)
        self.accounts = AccountService(self.account_repo, self.events)
        self.contacts = ContactService(SqlContactRepository(db), self.events)
        self.profiles = ProfileService(SqlProfileRepository(db), self.events)

    async def add_users(self, *names: str, full_names: dict[str, str] | None = None) -> None:
        """Create accounts directly: no credentials, so no key derivation to wait for."""
        full_names = full_names or {}
        for name in names:
            await self.account_repo.add(name, [], full_names.get(name))

    async def event_tuples(self, after: int = 0) -> list[tuple[str, str, str | None, str]]:
        """(kind, subject, object, origin) of every event after ``after``, in order."""
        return [(e.kind, e.subject, e.object, e.origin) for e in await self.events.since(after)]


@pytest.fixture
def network(database: Database) -> Network:
    return Network(database)
