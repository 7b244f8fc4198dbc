"""The archive's retention task (``[archive] retention_days``) over a real SQLite store."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path

from chinwag.server.retention import ArchiveRetention
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.archive import ArchiveQuery, NewArchivedMessage, SqlArchiveRepository, id_at
from chinwag.store.db import Database

now = datetime.now(UTC)


async def archive_of(tmp_path: Path) -> tuple[Database, SqlArchiveRepository]:
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}")
    await db.migrate()
    await SqlAccountRepository(db).add("alice", [])
    repo = SqlArchiveRepository(db)
    await repo.append(
        [
            NewArchivedMessage(
                "alice",
                id_at(now - timedelta(days=days)),
                "bob@localhost",
                None,
                False,
                "<message xmlns='jabber:client'><body/></message>",
            )
            for days in (40, 10, 0)
        ]
    )
    return db, repo


async def test_started_it_purges_at_once_and_stops(tmp_path: Path) -> None:
    db, repo = await archive_of(tmp_path)
    retention = ArchiveRetention(repo, days=30, every=3600)
    try:
        retention.start()
        for _ in range(100):
            if (await repo.query("alice", ArchiveQuery())).count == 2:
                break
            await asyncio.sleep(0.02)
        await retention.stop()
        page = await repo.query("alice", ArchiveQuery())
        assert [item.archived_at.date() for item in page.items] == [
            (now - timedelta(days=days)).date() for days in (10, 0)
        ]
        assert await ArchiveRetention(repo, days=5).purge() == 1
    finally:
        await db.close()


async def test_zero_days_keeps_everything(tmp_path: Path) -> None:
    db, repo = await archive_of(tmp_path)
    retention = ArchiveRetention(repo, days=0)
    try:
        retention.start()
        await asyncio.sleep(0.05)
        await retention.stop()
        assert (await repo.query("alice", ArchiveQuery())).count == 3
    finally:
        await db.close()
