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
costs ~10 microseconds, where the hand-off to aiosqlite's thread and back costs
tens of times that. There each statement is compiled once (:class:`SqliteRead`) and
run on the driver's own cursor, with the conversions its column types define, since
SQLAlchemy's execution of an already compiled statement costs two to three times the
read itself.

An SQLite file holds password verifiers and token digests, so it is created readable
by the server's user only (mode 0600, in a directory made 0700 if it is new) before
SQLite writes anything; SQLite gives its ``-wal`` and ``-shm`` files the database's
mode. An existing database, ``-wal`` and ``-shm`` that others may read are made 0600
when opened; an existing directory is left as the operator made it.

On PostgreSQL, an upgrade holds a transaction-level advisory lock (``MIGRATION_LOCK``)
from before Alembic reads the schema's revision until it commits: nodes of a cluster
that start together migrate one after the other, and those that come later find the
schema at head and change nothing.

Writes of many rows at once (the archive's batches) go through :meth:`Database.write`:
on an SQLite file they run on a thread of their own, with a synchronous connection of
their own, in one hand-off from the event loop (each step of an async transaction
through aiosqlite would wait for a turn of a busy event loop), and while SQLite works
on one statement the interpreter's lock is free for the event loop. Elsewhere they run
on a pooled connection of the async engine.

:meth:`Database.time_calls` has every call to the database timed, in one place: the
engine's cursor events for what goes through SQLAlchemy, and the prepared reads.
"""

from __future__ import annotations

import asyncio
import logging
import os
import sqlite3
import time
from collections import namedtuple
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, TypeVar, cast

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.util.exc import CommandError
from sqlalchemy import Connection, Dialect, Engine, Select, create_engine, event, inspect, text
from sqlalchemy.engine import URL, ExecutionContext, make_url
from sqlalchemy.exc import DBAPIError
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from chinwag.store.secret_files import PRIVATE_DIRECTORY_MODE

SQLITE_BUSY_TIMEOUT_MS = 5000
SQLITE_CACHE_KIB = 32_768
"""Page cache of each SQLite connection, at most (SQLite's default is 2 MiB): a batch of
the archive touches a page or two of each b-tree per account that talks, which at a
thousand accounts no longer fit in 2 MiB, and each page missed is read again."""
MIGRATIONS = "chinwag.store:migrations"
_REVISION_TABLE = "alembic_version"
PRIVATE_FILE_MODE = 0o600
MIGRATION_LOCK = 0x6368_696E_7761_6701
"""The PostgreSQL advisory lock key (a bigint) that serialises schema upgrades."""
_SQLITE_COMPANIONS = ("-wal", "-shm")

log = logging.getLogger(__name__)

CallObserver = Callable[[str, float], None]
"""Told of each call to the database: its operation (see :func:`operation`) and how many
seconds it took."""
_T = TypeVar("_T")
OPERATIONS = frozenset({"select", "insert", "update", "delete"})
_CALL_STARTED = "_chinwag_call_started"


class MigrationError(Exception):
    """The database's schema cannot be brought to this chinwag's newest revision."""


class NoDatabase(Exception):
    """The database a URL names does not exist yet, or holds no chinwag schema."""


class Database:
    """An engine plus the session factory that repositories open transactions with."""

    def __init__(
        self, engine: AsyncEngine, reader: Engine | None = None, writer: Engine | None = None
    ) -> None:
        self.engine = engine
        self.sessions: async_sessionmaker[AsyncSession] = async_sessionmaker(
            engine, expire_on_commit=False
        )
        self._reader = reader
        """SQLite only: a synchronous engine on the same file for the hot reads."""
        self._reading: Connection | None = None
        self._driver: sqlite3.Connection | None = None
        """The driver's connection under ``_reading``, which the prepared reads use."""
        self._prepared: dict[Select[*tuple[Any, ...]], SqliteRead] = {}
        self._observe: CallObserver | None = None
        self._writer = writer
        """SQLite only: a synchronous engine on the same file for :meth:`write`."""
        self._writing: ThreadPoolExecutor | None = None
        """The one thread that runs :meth:`write` on ``_writer``, started at its first use."""

    @classmethod
    def open(cls, url: str, *, connect_args: Mapping[str, Any] | None = None) -> Database:
        """Create the engine; ``connect_args`` go to the driver (e.g. asyncpg server_settings)."""
        engine = create_async_engine(url, connect_args=dict(connect_args or {}))
        if engine.dialect.name != "sqlite":
            return cls(engine)
        _prepare_sqlite(engine.sync_engine)
        reader = _sqlite_side_engine(engine, isolation_level="AUTOCOMMIT")
        return cls(engine, reader, _sqlite_side_engine(engine, pool_size=1, max_overflow=0))

    async def write(self, work: Callable[[Connection], _T]) -> _T:
        """What ``work`` returns, run with a connection in a transaction of its own that
        commits when it returns (and rolls back if it raises). On an SQLite file, on the
        writer's thread; elsewhere on a pooled connection of the async engine."""
        if self._writer is None:
            async with self.engine.begin() as connection:
                return await connection.run_sync(work)
        if self._writing is None:
            self._writing = ThreadPoolExecutor(1, thread_name_prefix="chinwag-db-writer")
        writer = self._writer
        return await asyncio.get_running_loop().run_in_executor(
            self._writing, _in_transaction, writer, work
        )

    async def rows(
        self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]
    ) -> Sequence[Any]:
        """Every row of the read-only ``statement`` (a module constant: SQLite keeps each
        one compiled) run with ``params``, outside the ORM; columns by name or position."""
        if self._reader is not None:
            return self._read(statement, params)
        async with self.engine.connect() as connection:
            return (await connection.execute(statement, params)).all()

    async def scalar(self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]) -> Any:
        """The first column of the first row of the read-only ``statement``, or None."""
        if self._reader is not None:
            rows = self._read(statement, params)
            return rows[0][0] if rows else None
        async with self.engine.connect() as connection:
            return await connection.scalar(statement, params)

    def _read(self, statement: Select[*tuple[Any, ...]], params: Mapping[str, Any]) -> list[Any]:
        """``statement`` on the SQLite reader's connection, opened on first use; a failed
        read closes it, so the next one starts on a fresh connection."""
        assert self._reader is not None
        prepared = self._prepared.get(statement)
        if prepared is None:
            prepared = self._prepared[statement] = SqliteRead(statement, self._reader.dialect)
        if self._driver is None:
            self._reading = self._reader.connect()
            # SQLAlchemy types the driver's connection as Any or None (None once detached);
            # on a connection just opened on pysqlite it is the sqlite3 one.
            self._driver = cast(sqlite3.Connection, self._reading.connection.driver_connection)
        observe = self._observe
        try:
            if observe is None:
                return prepared.rows(self._driver, params)
            started = time.perf_counter()
            rows = prepared.rows(self._driver, params)
            observe("select", time.perf_counter() - started)
            return rows
        except BaseException:
            self._close_reading()
            raise

    def time_calls(self, observe: CallObserver) -> None:
        """Tell ``observe`` of every statement run from now on, with how long it took
        (what fails is not timed). Once per database."""
        if self._observe is not None:
            raise RuntimeError("the database's calls are timed already")
        self._observe = observe
        for engine in (self.engine.sync_engine, self._writer):
            if engine is not None:
                event.listen(engine, "before_cursor_execute", _call_started)
                event.listen(engine, "after_cursor_execute", _call_ended(observe))

    def _close_reading(self) -> None:
        if self._reading is not None:
            self._reading.close()
        self._reading = self._driver = None

    @classmethod
    async def open_existing(cls, url: str) -> Database:
        """Open a database that chinwag made before (at any revision of its schema);
        raise NoDatabase instead of creating one, as :meth:`open` and :meth:`migrate` do."""
        file = sqlite_file(url)
        if file is not None and not file.exists():
            raise NoDatabase(f"no database at {file}")
        db = cls.open(url)
        try:
            async with db.engine.connect() as connection:
                made = await connection.run_sync(
                    lambda sync: inspect(sync).has_table(_REVISION_TABLE)
                )
        except BaseException:
            await db.close()
            raise
        if not made:
            await db.close()
            raise NoDatabase(f"the database {redacted(url)} holds no chinwag tables")
        return db

    async def migrate(self) -> None:
        """Bring the schema to the newest revision (``alembic upgrade head``); raises
        MigrationError for a schema that Alembic cannot upgrade, such as a newer chinwag's."""
        try:
            async with self.engine.begin() as connection:
                await connection.run_sync(_upgrade_to_head)
        except CommandError as error:
            shown = self.engine.url.render_as_string(hide_password=True)
            raise MigrationError(
                f"cannot migrate the database {shown}: {error} (made by a newer chinwag?)"
            ) from error

    async def revision(self) -> str | None:
        """The schema's revision (None: no chinwag schema)."""
        async with self.engine.connect() as connection:
            return await connection.run_sync(
                lambda sync: MigrationContext.configure(sync).get_current_revision()
            )

    async def close(self) -> None:
        self._close_reading()
        if self._reader is not None:
            self._reader.dispose()
        if self._writing is not None:
            await asyncio.to_thread(self._writing.shutdown)
            self._writing = None
        if self._writer is not None:
            self._writer.dispose()
        await self.engine.dispose()


def _in_transaction(engine: Engine, work: Callable[[Connection], _T]) -> _T:
    with engine.begin() as connection:
        return work(connection)


class SqliteRead:
    """A SELECT compiled once for SQLite and run on the driver's cursor, with the
    conversions that SQLAlchemy's column types define for its parameters and results."""

    def __init__(self, statement: Select[*tuple[Any, ...]], dialect: Dialect) -> None:
        compiled = statement.compile(dialect=dialect)
        if compiled.positiontup is None or compiled.post_compile_params:
            raise ValueError("only statements with plain positional parameters are prepared")
        self.sql = compiled.string
        binds = [compiled.binds[key] for key in compiled.positiontup]
        self._arguments = [
            (bind.key if bind.required else None, bind.effective_value) for bind in binds
        ]
        """For each ``?`` in order: the caller's parameter that fills it, or a constant."""
        self._bind_processors = _processors(
            [bind.type.dialect_impl(dialect).bind_processor(dialect) for bind in binds]
        )
        self._result_processors = _processors(
            [
                column.type.dialect_impl(dialect).result_processor(dialect, None)
                for column in statement.selected_columns
            ]
        )
        self._row: Callable[[Sequence[Any]], Any] | None = None
        """Makes a row addressable by the names that SQLAlchemy's rows have (the labels
        in the compiled SQL, which the driver reports); made at the first execution."""

    def rows(self, connection: sqlite3.Connection, params: Mapping[str, Any]) -> list[Any]:
        arguments = [value if key is None else params[key] for key, value in self._arguments]
        if self._bind_processors is not None:
            arguments = _converted(self._bind_processors, arguments)
        try:
            cursor = connection.execute(self.sql, arguments)
            fetched = cursor.fetchall()
        except sqlite3.Error as error:
            raise DBAPIError.instance(self.sql, arguments, error, sqlite3.Error) from error
        make, convert = self._row, self._result_processors
        if make is None:
            names = [column[0] for column in cursor.description]
            # Its fields are known only now, so to mypy it is a plain tuple class, without _make.
            make = self._row = cast(Any, namedtuple("Row", names, rename=True))._make
        if convert is None:
            return [make(row) for row in fetched]
        return [make(_converted(convert, row)) for row in fetched]


_Processor = Callable[[Any], Any] | None


def _processors(processors: list[_Processor]) -> list[_Processor] | None:
    """``processors``, or None when none of them converts anything."""
    return processors if any(processors) else None


def _converted(processors: list[_Processor], values: Sequence[Any]) -> list[Any]:
    return [
        value if process is None else process(value)
        for process, value in zip(processors, values, strict=True)
    ]


def operation(statement: str) -> str:
    """The operation of an SQL statement: select, insert, update, delete, or other."""
    first = statement.lstrip()[:6].lower()
    return first if first in OPERATIONS else "other"


def _call_started(
    _connection: Connection,
    _cursor: object,
    _statement: str,
    _parameters: object,
    context: ExecutionContext | None,
    _executemany: bool,
) -> None:
    if context is not None:
        setattr(context, _CALL_STARTED, time.perf_counter())


def _call_ended(observe: CallObserver) -> Callable[..., None]:
    def ended(
        _connection: Connection,
        _cursor: object,
        statement: str,
        _parameters: object,
        context: ExecutionContext | None,
        _executemany: bool,
    ) -> None:
        started: float | None = getattr(context, _CALL_STARTED, None)
        if started is not None:
            observe(operation(statement), time.perf_counter() - started)

    return ended


async def migrate(url: str) -> None:
    """Create or upgrade the database at ``url``."""
    db = Database.open(url)
    try:
        await db.migrate()
    finally:
        await db.close()


def sqlite_file(url: str) -> Path | None:
    """The file of an SQLite database URL; None for another database, or one in memory."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "sqlite" or not _on_disk(parsed):
        return None
    return Path(parsed.database or "")


def _on_disk(url: URL) -> bool:
    database = url.database or ""
    return database not in ("", ":memory:") and not database.startswith("file:")


def _prepare_sqlite(engine: Engine) -> None:
    if _on_disk(engine.url):
        _private_database_file(Path(engine.url.database or ""))
    event.listen(engine, "connect", _sqlite_pragmas)


def _private_database_file(path: Path) -> None:
    """Create the SQLite file at ``path`` for this user only, or make an existing one so."""
    path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    try:
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE_MODE))
    except FileExistsError:
        for each in (path, *(path.with_name(path.name + end) for end in _SQLITE_COMPANIONS)):
            try:
                if each.stat().st_mode & 0o077:
                    each.chmod(PRIVATE_FILE_MODE)
            except FileNotFoundError:
                pass
            except OSError as error:
                log.warning("others may read %s, and it cannot be made private: %s", each, error)


def _sqlite_side_engine(engine: AsyncEngine, **options: Any) -> Engine | None:
    """A synchronous engine on the same SQLite file, with ``options`` (none for an
    in-memory database, which another engine could not see): the prepared reads' (in
    autocommit) and :meth:`Database.write`'s (one connection)."""
    if not _on_disk(engine.url):
        return None
    side = create_engine(engine.url.set(drivername="sqlite+pysqlite"), **options)
    _prepare_sqlite(side)
    return side


def _sqlite_pragmas(dbapi_connection: Any, _record: object) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cursor.execute(f"PRAGMA cache_size=-{SQLITE_CACHE_KIB}")
    cursor.close()


def _upgrade_to_head(connection: Connection) -> None:
    if connection.dialect.name == "postgresql":
        # Released when the upgrade's transaction ends, committed or not.
        connection.execute(text("SELECT pg_advisory_xact_lock(:key)"), {"key": MIGRATION_LOCK})
    command.upgrade(_alembic_config(connection), "head")


def downgrade_to(connection: Connection, revision: str) -> None:
    """Take the schema back to ``revision`` (``alembic downgrade``), as an operator going
    back to an older chinwag would, and as the tests of a migration do."""
    command.downgrade(_alembic_config(connection), revision)


def _alembic_config(connection: Connection) -> Config:
    # No ini file: Alembic then leaves logging alone, and env.py uses this connection.
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    config.attributes["connection"] = connection
    return config


async def read_snapshot(connection: AsyncConnection) -> None:
    """Make every read that follows on ``connection`` see one state of the database, as
    an export or a copy must while the server may write."""
    if connection.dialect.name == "sqlite":
        # pysqlite opens no transaction before a write, so each SELECT would see the
        # database of its own moment; an explicit one holds a WAL snapshot.
        await connection.exec_driver_sql("BEGIN")
    else:
        await connection.execution_options(isolation_level="REPEATABLE READ")


def redacted(url: str) -> str:
    """``url`` with its password hidden, for messages."""
    return make_url(url).render_as_string(hide_password=True)
