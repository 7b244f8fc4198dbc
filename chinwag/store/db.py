"""The database handle: one async engine and session factory, and schema migrations.

SQLite (``sqlite+aiosqlite://``) is the default; PostgreSQL (``postgresql+asyncpg://``)
is chosen by URL. Migrations are Alembic revisions shipped inside the package.

Reads on the hot paths (sign-in, resource binding, initial presence) skip the ORM:
they run Core statements built once, with bind parameters, through :meth:`Database.rows`
and :meth:`Database.scalar` on a pooled connection, which costs a fraction of an
ORM session's Python time per call. On an SQLite file they run on the calling thread,
through a synchronous connection of their own, kept open in autocommit mode so that
each read is its own transaction and no pool checkout or rollback surrounds it: in
WAL mode a reader never waits for a writer, and an indexed read of a few cached pages
costs tens of microseconds, where the hand-off to aiosqlite's thread and back costs
ten times that.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, TypeVar

from alembic import command
from alembic.config import Config
from sqlalchemy import Connection, Engine, Executable, Row, create_engine, event
from sqlalchemy.engine import URL, make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

SQLITE_BUSY_TIMEOUT_MS = 5000
MIGRATIONS = "chinwag.store:migrations"
_T = TypeVar("_T")


class Database:
    """An engine plus the session factory that repositories open transactions with."""

    def __init__(self, engine: AsyncEngine, reader: Engine | None = None) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._reader = reader
        """SQLite only: a synchronous engine on the same file for the hot reads."""
        self._reading: Connection | None = None

    @classmethod
    def open(cls, url: str, *, connect_args: Mapping[str, Any] | None = None) -> Database:
        """Create the engine; ``connect_args`` go to the driver (e.g. asyncpg server_settings)."""
        engine = create_async_engine(url, connect_args=dict(connect_args or {}))
        if engine.dialect.name != "sqlite":
            return cls(engine)
        _prepare_sqlite(engine.sync_engine)
        return cls(engine, _sqlite_reader(engine))

    async def rows(self, statement: Executable, params: Mapping[str, Any]) -> Sequence[Row[Any]]:
        """Every row of the read-only ``statement`` run with ``params``, outside the ORM."""
        if self._reader is not None:
            return self._read(lambda connection: connection.execute(statement, params).all())
        async with self.engine.connect() as connection:
            return (await connection.execute(statement, params)).all()

    async def scalar(self, statement: Executable, params: Mapping[str, Any]) -> Any:
        """The first column of the first row of the read-only ``statement``, or None."""
        if self._reader is not None:
            return self._read(lambda connection: connection.scalar(statement, params))
        async with self.engine.connect() as connection:
            return await connection.scalar(statement, params)

    def _read(self, query: Callable[[Connection], _T]) -> _T:
        """``query`` on the SQLite reader's connection, opened on first use; a failed
        read closes it, so the next one starts on a fresh connection."""
        assert self._reader is not None
        if self._reading is None:
            self._reading = self._reader.connect()
        try:
            return query(self._reading)
        except BaseException:
            self._close_reading()
            raise

    def _close_reading(self) -> None:
        if self._reading is not None:
            self._reading.close()
            self._reading = None

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``)."""
        async with self.engine.begin() as connection:
            await connection.run_sync(_upgrade_to_head)

    async def close(self) -> None:
        self._close_reading()
        if self._reader is not None:
            self._reader.dispose()
        await self.engine.dispose()


async def migrate(url: str) -> None:
    """Create or upgrade the database at ``url``."""
    db = Database.open(url)
    try:
        await db.migrate()
    finally:
        await db.close()


def _on_disk(url: URL) -> bool:
    database = url.database
    return bool(database) and database != ":memory:" and not database.startswith("file:")


def _prepare_sqlite(engine: Engine) -> None:
    if _on_disk(engine.url):
        Path(engine.url.database or "").parent.mkdir(parents=True, exist_ok=True)
    event.listen(engine, "connect", _sqlite_pragmas)


def _sqlite_reader(engine: AsyncEngine) -> Engine | None:
    """A synchronous engine on the same SQLite file (none for an in-memory database,
    which another engine could not see)."""
    if not _on_disk(engine.url):
        return None
    reader = create_engine(
        engine.url.set(drivername="sqlite+pysqlite"), isolation_level="AUTOCOMMIT"
    )
    _prepare_sqlite(reader)
    return reader


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
