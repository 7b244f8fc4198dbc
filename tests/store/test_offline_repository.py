"""SqlOfflineRepository, run on SQLite and PostgreSQL by the ``database`` fixture."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.offline import SqlOfflineRepository, StoredMessage, StoreResult

T0 = datetime(2026, 11, 22, 7, 15, 0, 123456, tzinfo=UTC)


def message(n: int) -> str:
    return f"<message xmlns='jabber:client' to='alice@chat.example' type='chat'><body>{n}</body></message>"


@pytest.fixture
async def offline(database):
    accounts = SqlAccountRepository(database)
    for name in ("alice", "bob"):
        await accounts.add(name, [])
    return SqlOfflineRepository(database)


async def test_messages_come_back_oldest_first_with_aware_utc_times(offline):
    cet = timezone(timedelta(hours=1))
    for n in range(3):
        assert (
            await offline.store("alice", message(n), T0 + timedelta(minutes=n), 10)
            is StoreResult.STORED
        )
    await offline.store("bob", message(99), T0, 10)
    await offline.store("alice", message(3), T0.astimezone(cet), 10)

    stored = await offline.fetch("alice")

    assert [m.stanza for m in stored] == [message(n) for n in range(4)]
    assert [m.id for m in stored] == sorted(m.id for m in stored)
    assert [m.stored_at for m in stored] == [T0 + timedelta(minutes=n) for n in range(3)] + [T0]
    assert all(m.stored_at.tzinfo is UTC for m in stored)
    assert isinstance(stored[0], StoredMessage)
    assert [m.stanza for m in await offline.fetch("bob")] == [message(99)]


async def test_storing_for_an_unknown_account_says_so(offline):
    assert await offline.store("carol", message(1), T0, 10) is StoreResult.NO_ACCOUNT
    assert await offline.fetch("carol") == []
    assert await offline.count("carol") == 0


async def test_the_quota_caps_each_account(offline):
    results = [await offline.store("alice", message(n), T0, 3) for n in range(5)]

    assert results == [StoreResult.STORED] * 3 + [StoreResult.QUOTA_EXCEEDED] * 2
    assert await offline.count("alice") == 3
    assert await offline.store("bob", message(1), T0, 3) is StoreResult.STORED
    assert await offline.store("bob", message(2), T0, 0) is StoreResult.QUOTA_EXCEEDED


async def test_concurrent_stores_never_exceed_the_quota(offline):
    results = await asyncio.gather(*(offline.store("alice", message(n), T0, 4) for n in range(12)))

    assert results.count(StoreResult.STORED) == 4
    assert await offline.count("alice") == 4


async def test_delete_removes_that_users_messages_up_to_an_id(offline):
    for n in range(4):
        await offline.store("alice", message(n), T0, 10)
        await offline.store("bob", message(n), T0, 10)
    alices = await offline.fetch("alice")

    assert await offline.delete("alice", alices[1].id) == 2

    assert await offline.fetch("alice") == alices[2:]
    assert await offline.count("bob") == 4
    assert await offline.delete("alice", alices[1].id) == 0
    assert await offline.delete("carol", 10**9) == 0


async def test_ids_keep_growing_after_the_newest_messages_are_delivered(offline):
    await offline.store("alice", message(1), T0, 10)
    await offline.store("alice", message(2), T0, 10)
    delivered = await offline.fetch("alice")
    await offline.delete("alice", delivered[-1].id)

    await offline.store("alice", message(3), T0, 10)

    [later] = await offline.fetch("alice")
    assert later.id > delivered[-1].id


async def test_a_deleted_account_takes_its_messages_with_it(offline, database):
    await offline.store("alice", message(1), T0, 10)

    assert await SqlAccountRepository(database).delete("alice") is True

    await SqlAccountRepository(database).add("alice", [])
    assert await offline.fetch("alice") == []
