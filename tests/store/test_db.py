"""Database opening and migrations."""

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from chinwag.store.accounts import ACCOUNT_ID, SqlAccountRepository
from chinwag.store.db import Database, migrate, redacted
from chinwag.store.models import Base


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
            await db.rows(text("SELECT no_such_column FROM account"), {})

        assert await db.scalar(ACCOUNT_ID, {"username": "alice"}) is not None
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


def test_redacted_hides_the_password():
    shown = redacted("postgresql+asyncpg://chinwag:s3cret@db.example/chat")

    assert "s3cret" not in shown
    assert shown.startswith("postgresql+asyncpg://chinwag:")
