"""SqlOfflineRepository, run on SQLite and PostgreSQL by the ``database`` fixture."""

import asyncio
from datetime import UTC, datetime, timedelta, timezone

import pytest

from chinwag.store.accounts import NewAccount, SqlAccountRepository
from chinwag.store.offline import (
    NewOfflineMessage,
    SqlOfflineRepository,
    StoredMessage,
    StoreResult,
)

T0 = datetime(2026, 11, 22, 7, 15, 0, 123456, tzinfo=UTC)
STORED, NO_ACCOUNT, QUOTA_EXCEEDED = (
    StoreResult.STORED,
    StoreResult.NO_ACCOUNT,
    StoreResult.QUOTA_EXCEEDED,
)


def message(n: int) -> str:
    return f"<message xmlns='jabber:client' to='alice@chat.example' type='chat'><body>{n}</body></message>"


def new(username: str, n: int, at: datetime = T0) -> NewOfflineMessage:
    return NewOfflineMessage(username, message(n), at)


async def store(
    offline: SqlOfflineRepository, username: str, stanza: str, stored_at: datetime, quota: int
) -> StoreResult:
    """One message in a batch of its own."""
    [result] = await offline.store_many([NewOfflineMessage(username, stanza, stored_at)], quota)
    return result


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
            await store(offline, "alice", message(n), T0 + timedelta(minutes=n), 10)
            is StoreResult.STORED
        )
    await store(offline, "bob", message(99), T0, 10)
    await store(offline, "alice", message(3), T0.astimezone(cet), 10)

    stored = await offline.fetch("alice")

    assert [m.stanza for m in stored] == [message(n) for n in range(4)]
    assert [m.id for m in stored] == sorted(m.id for m in stored)
    assert [m.stored_at for m in stored] == [T0 + timedelta(minutes=n) for n in range(3)] + [T0]
    assert all(m.stored_at.tzinfo is UTC for m in stored)
    assert isinstance(stored[0], StoredMessage)
    assert [m.stanza for m in await offline.fetch("bob")] == [message(99)]


async def test_storing_for_an_unknown_account_says_so(offline):
    assert await store(offline, "carol", message(1), T0, 10) is StoreResult.NO_ACCOUNT
    assert await offline.fetch("carol") == []
    assert await offline.count("carol") == 0


async def test_the_quota_caps_each_account(offline):
    results = [await store(offline, "alice", message(n), T0, 3) for n in range(5)]

    assert results == [StoreResult.STORED] * 3 + [StoreResult.QUOTA_EXCEEDED] * 2
    assert await offline.count("alice") == 3
    assert await store(offline, "bob", message(1), T0, 3) is StoreResult.STORED
    assert await store(offline, "bob", message(2), T0, 0) is StoreResult.QUOTA_EXCEEDED


async def test_concurrent_stores_never_exceed_the_quota(offline):
    results = await asyncio.gather(*(store(offline, "alice", message(n), T0, 4) for n in range(12)))

    assert results.count(StoreResult.STORED) == 4
    assert await offline.count("alice") == 4


async def test_a_batch_gives_each_message_its_own_result_in_order(offline):
    await store(offline, "bob", message(0), T0, 2)
    batch = [new("alice", 1), new("carol", 2), new("bob", 3), new("bob", 4), new("alice", 5)]

    results = await offline.store_many(batch, 2)

    assert results == [STORED, NO_ACCOUNT, STORED, QUOTA_EXCEEDED, STORED]
    assert [m.stanza for m in await offline.fetch("alice")] == [message(1), message(5)]
    assert [m.stanza for m in await offline.fetch("bob")] == [message(0), message(3)]
    assert await offline.count("carol") == 0


async def test_the_quota_counts_the_messages_before_it_in_the_same_batch(offline):
    await store(offline, "alice", message(0), T0, 10)
    batch = [new("alice", n) for n in range(1, 6)] + [new("bob", n) for n in range(3)]

    results = await offline.store_many(batch, 3)

    assert results == [STORED] * 2 + [QUOTA_EXCEEDED] * 3 + [STORED] * 3
    assert [m.stanza for m in await offline.fetch("alice")] == [message(n) for n in range(3)]
    assert await offline.count("bob") == 3


async def test_a_batch_keeps_each_accounts_messages_in_order_after_the_older_ones(offline):
    await store(offline, "alice", message(-1), T0, 100)
    [older] = await offline.fetch("alice")
    at = [T0 + timedelta(seconds=n) for n in range(20)]
    batch = [new(name, n, at[n]) for n in range(20) for name in ("bob", "alice")]

    assert await offline.store_many(batch, 100) == [STORED] * 40

    for name in ("alice", "bob"):
        stored = [m for m in await offline.fetch(name) if m.id != older.id]
        assert [m.stanza for m in stored] == [message(n) for n in range(20)]
        assert [m.stored_at for m in stored] == at
        ids = [m.id for m in stored]
        assert ids == sorted(set(ids))
        assert ids[0] > older.id


async def test_a_batch_for_unknown_accounts_stores_nothing(offline):
    assert await offline.store_many([new("carol", 1), new("dave", 2)], 10) == [NO_ACCOUNT] * 2
    assert await offline.store_many([], 10) == []

    assert await offline.fetch("carol") == []
    assert await offline.count("alice") == 0


async def test_a_batch_may_hold_more_accounts_than_an_in_clause(offline, database):
    names = [f"user{n:04}" for n in range(1050)]
    await SqlAccountRepository(database).add_many([NewAccount(name, []) for name in names])
    batch = [new(name, n) for n, name in enumerate(names)] + [new(names[-1], -1)]

    results = await offline.store_many(batch, 1)

    assert results == [STORED] * len(names) + [QUOTA_EXCEEDED]
    assert [m.stanza for m in await offline.fetch(names[0])] == [message(0)]
    assert [m.stanza for m in await offline.fetch(names[-1])] == [message(len(names) - 1)]


async def test_concurrent_batches_never_exceed_the_quota(offline):
    """Each batch locks both accounts, listed in either order: they wait, never deadlock."""
    batches = [
        [new("alice", n), new("bob", n)] if n % 2 else [new("bob", n), new("alice", n)]
        for n in range(8)
    ]

    results = await asyncio.gather(*(offline.store_many(batch, 3) for batch in batches))

    assert sum(batch.count(STORED) for batch in results) == 6
    assert await offline.count("alice") == await offline.count("bob") == 3


async def test_delete_removes_that_users_messages_up_to_an_id(offline):
    for n in range(4):
        await store(offline, "alice", message(n), T0, 10)
        await store(offline, "bob", message(n), T0, 10)
    alices = await offline.fetch("alice")

    assert await offline.delete("alice", alices[1].id) == 2

    assert await offline.fetch("alice") == alices[2:]
    assert await offline.count("bob") == 4
    assert await offline.delete("alice", alices[1].id) == 0
    assert await offline.delete("carol", 10**9) == 0


async def test_ids_keep_growing_after_the_newest_messages_are_delivered(offline):
    await store(offline, "alice", message(1), T0, 10)
    await store(offline, "alice", message(2), T0, 10)
    delivered = await offline.fetch("alice")
    await offline.delete("alice", delivered[-1].id)

    await store(offline, "alice", message(3), T0, 10)

    [later] = await offline.fetch("alice")
    assert later.id > delivered[-1].id


async def test_a_deleted_account_takes_its_messages_with_it(offline, database):
    await store(offline, "alice", message(1), T0, 10)

    assert await SqlAccountRepository(database).delete("alice") is True

    await SqlAccountRepository(database).add("alice", [])
    assert await offline.fetch("alice") == []
