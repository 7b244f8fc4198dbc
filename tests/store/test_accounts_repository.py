"""SqlAccountRepository, run on SQLite and PostgreSQL by the ``database`` fixture."""

import asyncio
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from chinwag.store.accounts import (
    AccountExists,
    NewAccount,
    NoSuchAccount,
    SqlAccountRepository,
    StoredScram,
)
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.models import Account, Credential, Profile


def scram(mechanism: str, seed: int = 1) -> StoredScram:
    return StoredScram(
        mechanism,
        salt=bytes([seed]) * 16,
        stored_key=bytes([seed + 1]) * 32,
        server_key=bytes([seed + 2]) * 32,
        iterations=4096 + seed,
    )


PAIR = [scram("SCRAM-SHA-1"), scram("SCRAM-SHA-256")]


@pytest.fixture
def repo(database):
    return SqlAccountRepository(database)


async def count(database, model) -> int:
    async with database.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


async def test_credentials_round_trip_per_mechanism(repo):
    await repo.add("alice", PAIR, "Alice Liddell")

    assert await repo.credentials("alice", "SCRAM-SHA-1") == PAIR[0]
    assert await repo.credentials("alice", "SCRAM-SHA-256") == PAIR[1]
    assert await repo.credentials("alice", "SCRAM-SHA-512") is None
    assert await repo.credentials("bob", "SCRAM-SHA-256") is None


async def test_adding_an_existing_username_raises(repo):
    await repo.add("alice", PAIR)

    with pytest.raises(AccountExists) as raised:
        await repo.add("alice", [scram("SCRAM-SHA-1", seed=9)])

    assert raised.value.usernames == ("alice",)
    assert await repo.credentials("alice", "SCRAM-SHA-1") == PAIR[0]


async def test_list_is_sorted_with_full_names_and_utc_creation_times(repo):
    before = datetime.now(UTC) - timedelta(seconds=1)
    await repo.add("carol", PAIR)
    await repo.add("alice", PAIR, "Alice Liddell")
    await repo.add("bob.b", PAIR, "Bob")

    records = await repo.list()

    assert [(r.username, r.full_name) for r in records] == [
        ("alice", "Alice Liddell"),
        ("bob.b", "Bob"),
        ("carol", None),
    ]
    for record in records:
        assert record.created_at.utcoffset() == timedelta(0)
        assert before <= record.created_at <= datetime.now(UTC) + timedelta(seconds=1)


async def test_add_many_creates_everyone_in_one_go(repo, database):
    await repo.add_many([NewAccount(f"user{i}", PAIR, f"User {i}") for i in range(50)])

    assert len(await repo.list()) == 50
    assert await count(database, Credential) == 100
    assert await repo.credentials("user49", "SCRAM-SHA-256") == PAIR[1]


async def test_add_many_is_all_or_nothing(repo, database):
    await repo.add("taken", PAIR)
    batch = [NewAccount("fresh", PAIR), NewAccount("taken", PAIR), NewAccount("other", PAIR)]

    with pytest.raises(AccountExists) as raised:
        await repo.add_many(batch)

    assert raised.value.usernames == ("taken",)
    assert [r.username for r in await repo.list()] == ["taken"]
    assert await count(database, Credential) == 2


async def test_add_many_rejects_a_name_twice_in_the_batch(repo):
    with pytest.raises(AccountExists) as raised:
        await repo.add_many([NewAccount("twin", PAIR), NewAccount("twin", PAIR)])

    assert raised.value.usernames == ("twin",)
    assert await repo.list() == []


async def test_replace_credentials_swaps_every_verifier(repo):
    await repo.add("alice", PAIR)
    new = [scram("SCRAM-SHA-256", seed=7)]

    await repo.replace_credentials("alice", new)

    assert await repo.credentials("alice", "SCRAM-SHA-256") == new[0]
    assert await repo.credentials("alice", "SCRAM-SHA-1") is None


async def test_replace_credentials_of_unknown_user_raises(repo):
    with pytest.raises(NoSuchAccount):
        await repo.replace_credentials("ghost", PAIR)


async def test_delete_removes_the_account_and_what_it_owns(repo, database):
    await repo.add("alice", PAIR, "Alice")
    await repo.add("bob", PAIR)

    assert await repo.delete("alice") is True
    assert await repo.delete("alice") is False

    assert not await repo.exists("alice")
    assert await repo.exists("bob")
    assert await count(database, Credential) == 2
    assert await count(database, Profile) == 1


async def test_existing_handles_more_names_than_one_query_takes(repo):
    await repo.add_many([NewAccount(f"u{i}", []) for i in range(0, 2500, 2)])

    found = await repo.existing(f"u{i}" for i in range(2500))

    assert found == {f"u{i}" for i in range(0, 2500, 2)}


async def test_deleting_an_account_locks_it_and_its_contacts_in_id_order(repo, database):
    """A transaction that holds a contact's row and then wants the account's (as adding
    or changing their contact link does) must not deadlock with the deletion."""
    if database.engine.dialect.name != "postgresql":
        pytest.skip("row locks and deadlocks are PostgreSQL's; SQLite has one writer at a time")
    await repo.add("alice", [])  # the lower id: every locker takes her row first
    await repo.add("xavier", [])
    contacts = SqlContactRepository(database)
    await contacts.link("alice", "xavier", "test")
    version, _items = await contacts.roster("alice")
    account = Account.__table__
    ids = {
        name: await database.scalar(select(account.c.id).where(account.c.username == name), {})
        for name in ("alice", "xavier")
    }

    def lock(name: str):
        return select(account.c.id).where(account.c.id == ids[name]).with_for_update()

    async with database.engine.connect() as other:
        transaction = await other.begin()
        await other.execute(lock("alice"))
        deletion = asyncio.ensure_future(repo.delete("xavier"))
        await asyncio.sleep(0.3)  # the deletion is now waiting for a row lock
        await asyncio.wait_for(other.execute(lock("xavier")), 5)  # deadlocks if it took xavier's
        await transaction.commit()
    assert await asyncio.wait_for(deletion, 5) is True
    assert await contacts.roster("alice") == (version + 1, [])
