"""Database opening, migrations, and the hot reads outside the ORM."""

import threading
from datetime import timedelta

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import literal_column, select, table, text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from chinwag.store import accounts, blocking, contacts, events, oauth, offline
from chinwag.store.accounts import ACCOUNT_ID, SqlAccountRepository, StoredScram
from chinwag.store.blocking import SqlBlockingRepository
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.db import Database, migrate, operation, redacted
from chinwag.store.models import Base, utc_now
from chinwag.store.oauth import NewApp, NewToken, SqlOAuthRepository
from chinwag.store.offline import NewOfflineMessage, SqlOfflineRepository
from chinwag.store.profiles import SqlProfileRepository


async def test_migrations_create_exactly_the_models(database):
    def differences(connection):
        return compare_metadata(MigrationContext.configure(connection), Base.metadata)

    async with database.engine.connect() as connection:
        assert await connection.run_sync(differences) == []


async def test_migrating_twice_is_harmless(database):
    await database.migrate()


async def test_reads_outside_the_orm_return_rows_or_none_and_give_the_connection_back(
    database,
):
    await SqlAccountRepository(database).add("alice", [])

    rows = await database.rows(ACCOUNT_ID, {"username": "alice"})

    assert len(rows) == 1
    assert await database.scalar(ACCOUNT_ID, {"username": "alice"}) == rows[0].id
    assert await database.rows(ACCOUNT_ID, {"username": "bob"}) == []
    assert await database.scalar(ACCOUNT_ID, {"username": "bob"}) is None
    assert database.engine.pool.checkedout() == 0  # type: ignore[attr-defined]


async def test_every_call_is_timed_once_by_operation(database):
    timed: list[tuple[str, float]] = []
    database.time_calls(lambda kind, seconds: timed.append((kind, seconds)))

    await SqlAccountRepository(database).add("alice", [])
    added = len(timed)
    await database.rows(ACCOUNT_ID, {"username": "alice"})  # the hot read, outside the ORM
    assert [kind for kind, _ in timed[added:]] == ["select"]
    async with database.engine.begin() as connection:
        await connection.execute(text("DELETE FROM offline_messages"))

    kinds = [kind for kind, _ in timed]
    assert "insert" in kinds[:added]
    assert kinds[-1] == "delete"
    assert all(seconds >= 0 for _, seconds in timed)
    with pytest.raises(RuntimeError):
        database.time_calls(lambda kind, seconds: None)


def test_operation_names_the_statement_kind():
    assert operation("  SELECT accounts.id FROM accounts") == "select"
    assert operation("INSERT INTO account (username) VALUES (?)") == "insert"
    assert operation("update accounts SET x = 1") == "update"
    assert operation("DELETE FROM offline_messages") == "delete"
    assert operation("WITH recent AS (SELECT 1) SELECT * FROM recent") == "other"
    assert operation("BEGIN") == "other"


async def test_sqlite_file_is_created_with_wal_and_foreign_keys(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'new' / 'dir' / 'chinwag.db'}"

    await migrate(url)

    assert (tmp_path / "new" / "dir" / "chinwag.db").is_file()
    db = Database.open(url)
    try:
        async with db.engine.connect() as connection:
            assert (await connection.scalar(text("PRAGMA journal_mode"))) == "wal"
            assert (await connection.scalar(text("PRAGMA foreign_keys"))) == 1
            assert (await connection.scalar(text("PRAGMA busy_timeout"))) > 0
    finally:
        await db.close()


async def test_sqlite_hot_reads_run_on_the_calling_thread_and_see_every_commit(
    tmp_path, monkeypatch
):
    url = f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}"
    await migrate(url)
    db = Database.open(url)
    try:
        assert await db.scalar(ACCOUNT_ID, {"username": "alice"}) is None
        await SqlAccountRepository(db).add("alice", [])  # committed by the asynchronous engine

        def no_hand_off(_engine):
            raise AssertionError("a hot read went to aiosqlite's thread")

        monkeypatch.setattr(AsyncEngine, "connect", no_hand_off)
        assert await db.scalar(ACCOUNT_ID, {"username": "alice"}) is not None
        assert len(await db.rows(ACCOUNT_ID, {"username": "alice"})) == 1
    finally:
        monkeypatch.undo()
        await db.close()


async def test_a_failed_sqlite_hot_read_leaves_the_next_one_working(tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}"
    await migrate(url)
    db = Database.open(url)
    try:
        await SqlAccountRepository(db).add("alice", [])
        with pytest.raises(OperationalError):
            await db.rows(
                select(literal_column("no_such_column")).select_from(table("account")), {}
            )

        assert await db.scalar(ACCOUNT_ID, {"username": "alice"}) is not None
    finally:
        await db.close()


def _scram(mechanism: str) -> StoredScram:
    return StoredScram(mechanism, b"s" * 16, b"k" * 32, b"v" * 32, 4096)


async def _everything_read_hot(db: Database) -> None:
    """Rows for every hot read: accounts with credentials, contacts with a profile name,
    a blocked JID, an offline message (a timestamp), an app with a token and an app
    password."""
    await SqlAccountRepository(db).add("alice", [_scram("SCRAM-SHA-256")])
    await SqlAccountRepository(db).add("bob", [_scram("SCRAM-SHA-256")], "Bob Builder")
    await SqlProfileRepository(db).update("bob", {"nickname": "bobby"}, "test")
    await SqlContactRepository(db).link("alice", "bob", "test")
    await SqlBlockingRepository(db).block("alice", ["romeo@montague.net"], 10, "test")
    await SqlOfflineRepository(db).store_many(
        [NewOfflineMessage("alice", "<message/>", utc_now() - timedelta(minutes=5))], 100
    )
    repository = SqlOAuthRepository(db)
    await repository.add_app(
        NewApp("app1", "App", b"h" * 32, ("https://app.example/cb",), False, False, "alice")
    )
    now = utc_now()
    await repository.add_token(
        NewToken(
            b"a",
            b"r",
            "family",
            "app1",
            "alice",
            "wl.messenger",
            now,
            now + timedelta(hours=1),
            now + timedelta(days=1),
        )
    )
    await repository.add_app_password("alice", "app1", "phone", [_scram("SCRAM-SHA-256")])


HOT_READS = [
    (accounts.ACCOUNT_ID, {"username": "alice"}),
    (accounts._CREDENTIALS, {"username": "alice", "mechanism": "SCRAM-SHA-256"}),
    (contacts._ROSTER, {"owner": "alice"}),
    (contacts._ROSTER, {"owner": "nobody"}),
    (contacts._ROSTER_ITEM, {"owner": "alice", "contact": "bob"}),
    (blocking._BLOCKED, {"username": "alice"}),
    (blocking._BLOCKED, {"username": "bob"}),
    (blocking._BLOCKED, {"username": "nobody"}),
    (offline._FETCH, {"username": "alice"}),
    (offline._COUNT, {"username": "alice"}),
    (oauth._TOKEN_BY_ACCESS, {"hash": b"a"}),
    (oauth._TOKEN_BY_REFRESH, {"hash": b"r"}),
    (oauth._APP_PASSWORD_VERIFIERS, {"username": "alice", "mechanism": "SCRAM-SHA-256"}),
    (events._SINCE, {"last_id": 1, "limit": 2}),
]


@pytest.mark.parametrize(("statement", "params"), HOT_READS)
async def test_compiled_sqlite_reads_give_what_sqlalchemy_gives(tmp_path, statement, params):
    url = f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}"
    await migrate(url)
    db = Database.open(url)
    try:
        await _everything_read_hot(db)
        async with db.engine.connect() as connection:
            expected = (await connection.execute(statement, params)).all()

        rows = await db.rows(statement, params)

        assert [tuple(row) for row in rows] == [tuple(row) for row in expected]
        assert [list(map(type, row)) for row in rows] == [list(map(type, row)) for row in expected]
        for row, wanted in zip(rows, expected, strict=True):
            assert [getattr(row, name) for name in wanted._fields if name.isidentifier()] == [
                getattr(wanted, name) for name in wanted._fields if name.isidentifier()
            ]
        assert await db.scalar(statement, params) == (expected[0][0] if expected else None)
    finally:
        await db.close()


async def test_an_in_memory_sqlite_database_reads_through_its_one_engine():
    db = Database.open("sqlite+aiosqlite://")
    try:
        await db.migrate()
        await SqlAccountRepository(db).add("alice", [])
        assert await db.scalar(ACCOUNT_ID, {"username": "alice"}) is not None
    finally:
        await db.close()


async def test_sqlite_file_writes_run_on_one_writer_thread_and_commit_or_roll_back(
    tmp_path, monkeypatch
):
    url = f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}"
    await migrate(url)
    db = Database.open(url)
    insert = "INSERT INTO account (username, created_at) VALUES (?, CURRENT_TIMESTAMP)"

    def add(username, fail=False):
        def work(connection):
            connection.exec_driver_sql(insert, (username,))
            if fail:
                raise RuntimeError("after the insert")
            return threading.current_thread().name

        return work

    try:

        def no_hand_off(_engine):
            raise AssertionError("a batch write went through aiosqlite")

        monkeypatch.setattr(AsyncEngine, "begin", no_hand_off)
        names = {await db.write(add("alice")), await db.write(add("bob"))}
        with pytest.raises(RuntimeError):
            await db.write(add("carol", fail=True))
        monkeypatch.undo()

        assert len(names) == 1 and names.pop().startswith("chinwag-db-writer")
        for username, kept in (("alice", True), ("bob", True), ("carol", False)):
            assert (await db.scalar(ACCOUNT_ID, {"username": username}) is not None) is kept
    finally:
        monkeypatch.undo()
        await db.close()


async def test_writes_to_an_in_memory_sqlite_database_go_through_its_one_engine():
    db = Database.open("sqlite+aiosqlite://")
    try:
        await db.migrate()
        await db.write(
            lambda connection: connection.exec_driver_sql(
                "INSERT INTO account (username, created_at) VALUES ('alice', CURRENT_TIMESTAMP)"
            )
        )
        assert await db.scalar(ACCOUNT_ID, {"username": "alice"}) is not None
    finally:
        await db.close()


def test_redacted_hides_the_password():
    shown = redacted("postgresql+asyncpg://chinwag:s3cret@db.example/chat")

    assert "s3cret" not in shown
    assert shown.startswith("postgresql+asyncpg://chinwag:")
