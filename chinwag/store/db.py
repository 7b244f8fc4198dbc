"""The database handle: one async engine and session factory, and schema migrations.

SQLite (``sqlite+aiosqlite://``) is the default; PostgreSQL (``postgresql+asyncpg://``)
is chosen by URL. Migrations are Alembic revisions shipped inside the package.

Reads on the hot paths (sign-in, resource binding, initial presence) skip the ORM:
they run Core statements built once, with bind parameters, through :meth:`Database.rows`
and :meth:`Database.scalar` on a pooled connection, which costs a fraction of an
ORM session's Python time per call.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Executable, Row, event
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 5000
MIGRATIONS = "chinwag.store:migrations"


class Database:
    """An engine plus the session factory that repositories open transactions with."""

    def __init__(self, engine: AsyncEngine) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )

    @classmethod
    def open(cls, url: str, *, connect_args: Mapping[str, Any] | None = None) -> Database:
        """Create the engine; ``connect_args`` go to the driver (e.g. asyncpg server_settings)."""
        engine = create_async_engine(url, connect_args=dict(connect_args or {}))
        if engine.dialect.name == "sqlite":
            _prepare_sqlite(engine)
        return cls(engine)

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Row[Any]]:
        """Every row of the read-only ``statement`` run with ``params``, outside the ORM."""
        async with self.engine.connect() as connection:
            return (await connection.execute(statement, params)).all()

    async def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first column of the first row of the read-only ``statement``, or None."""
        async with self.engine.connect() as connection:
            return await connection.scalar(statement, params)

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        await self.engine.dispose()


async def migrate(url: str) -> None:
    """Create or upgrade the database at ``url``."""
    db = Database.open(url)
    try:
        await db.migrate()
    finally:
        await db.close()


def _prepare_sqlite(engine: AsyncEngine) -> None:
    database = engine.url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).parent.mkdir(parents=True, exist_ok=True)
    event.listen(engine.sync_engine, "connect", _sqlite_pragmas)


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.close()


def _upgrade_to_head(connection: Connection) -> None:
    # No ini file: Alembic then leaves logging alone, and env.py uses this connection.
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    command.upgrade(config, "head")


def redacted(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)
