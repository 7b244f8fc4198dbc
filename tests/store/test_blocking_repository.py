"""Block lists (XEP-0191): BlockingService over SqlBlockingRepository, and offline storage
refusing what a recipient blocks, on SQLite and PostgreSQL (``network`` fixture)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import func, select

from chinwag.network import blocking as blocking_domain
from chinwag.network.blocking import (
    BLOCKLIST_CHANGED,
    BlockingService,
    InvalidBlockedJID,
    NoSuchAccount,
    TooManyBlocked,
    match_forms,
)
from chinwag.store.blocking import SqlBlockingRepository
from chinwag.store.models import BlockedJid, utc_now
from chinwag.store.offline import NewOfflineMessage, SqlOfflineRepository, StoreResult
from chinwag.xmpp.jid import JID

Network = Any
"""The ``network`` fixture of ``conftest.py`` (which is not importable from here)."""


@pytest.fixture
async def users(network: Network) -> Network:
    await network.add_users("alice", "bob")
    return network


def service(network: Network) -> BlockingService:
    return BlockingService(SqlBlockingRepository(network.db), network.events)


async def stored_rows(network: Network) -> int:
    async with network.db.sessions() as session:
        return int(await session.scalar(select(func.count()).select_from(BlockedJid)) or 0)


async def test_block_list_and_unblock_prepared_jids(users: Network) -> None:
    blocking = service(users)
    assert await blocking.blocked("alice") == []

    added = await blocking.block(
        "Alice", ["Romeo@Montague.NET", "montague.net/Orchard", "romeo@montague.net", "iago.lit"]
    )

    assert added == ["romeo@montague.net", "montague.net/Orchard", "iago.lit"]
    assert await blocking.blocked("ALICE") == [
        "iago.lit",
        "montague.net/Orchard",
        "romeo@montague.net",
    ]
    assert await blocking.block("alice", ["iago.lit"]) == []  # already blocked: no change
    assert await blocking.blocked("bob") == []

    assert await blocking.unblock("alice", ["IAGO.lit", "nobody@nowhere"]) == ["iago.lit"]
    assert await blocking.unblock("alice") == ["montague.net/Orchard", "romeo@montague.net"]
    assert await blocking.unblock("alice") == []
    assert await blocking.blocked("alice") == []
    assert await users.event_tuples() == [
        (BLOCKLIST_CHANGED, "alice", None, "this-process"),
        (BLOCKLIST_CHANGED, "alice", None, "this-process"),
        (BLOCKLIST_CHANGED, "alice", None, "this-process"),
    ]


async def test_bad_input_changes_nothing(users: Network) -> None:
    blocking = service(users)

    with pytest.raises(InvalidBlockedJID, match="is not a JID"):
        await blocking.block("alice", ["romeo@montague.net", "a@b@c"])
    with pytest.raises(InvalidBlockedJID):
        await blocking.unblock("alice", ["x@"])
    with pytest.raises(NoSuchAccount):
        await blocking.block("nobody", ["romeo@montague.net"])
    with pytest.raises(NoSuchAccount):
        await blocking.blocked("nobody")
    with pytest.raises(NoSuchAccount):
        await blocking.unblock("nobody")

    assert await blocking.blocked("alice") == []
    assert await users.events.latest_id() == 0


async def test_a_list_holds_at_most_max_blocked(
    users: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocking_domain, "MAX_BLOCKED", 3)
    blocking = service(users)
    await blocking.block("alice", ["a.example", "b.example"])

    with pytest.raises(TooManyBlocked, match="at most 3"):
        await blocking.block("alice", ["c.example", "d.example"])

    assert await blocking.block("alice", ["a.example", "c.example"]) == ["c.example"]
    assert await blocking.blocked("alice") == ["a.example", "b.example", "c.example"]


async def test_concurrent_blocks_list_a_jid_once(users: Network) -> None:
    blocking = service(users)

    await asyncio.gather(*(blocking.block("alice", ["romeo@montague.net"]) for _ in range(8)))

    assert await blocking.blocked("alice") == ["romeo@montague.net"]
    assert await stored_rows(users) == 1
    assert len(await users.event_tuples()) == 1


async def test_the_longest_jid_is_kept(users: Network) -> None:
    domain = ".".join(["d" * 63] * 16)  # 1023 bytes
    longest = f"{'a' * 1023}@{domain}/{'r' * 1023}"  # 3071 bytes: past any b-tree entry
    blocking = service(users)

    await blocking.block("alice", [longest])

    assert await blocking.blocked("alice") == [longest]


async def test_deleting_an_account_deletes_its_list(users: Network) -> None:
    blocking = service(users)
    await blocking.block("alice", ["romeo@montague.net", "bob@localhost"])
    await blocking.block("bob", ["alice@localhost"])

    await users.accounts.delete_user("alice")

    assert await stored_rows(users) == 1  # bob's entry for alice stays: any JID may be blocked
    assert await blocking.blocked("bob") == ["alice@localhost"]


async def test_offline_storage_refuses_what_the_recipient_blocks(users: Network) -> None:
    blocking = service(users)
    await blocking.block("alice", ["bob@localhost/phone", "spam.example"])
    offline = SqlOfflineRepository(users.db)

    def message(sender: str, recipient: str = "alice") -> NewOfflineMessage:
        return NewOfflineMessage(recipient, "<message/>", utc_now(), match_forms(JID.parse(sender)))

    results = await offline.store_many(
        [
            message("bob@localhost/phone"),
            message("bob@localhost/desk"),
            message("eve@spam.example/x"),
            message("spam.example"),
            message("bob@localhost/phone", "bob"),
            NewOfflineMessage("alice", "<message/>", utc_now()),  # from nobody in particular
        ],
        quota=100,
    )

    assert results == [
        StoreResult.BLOCKED,
        StoreResult.STORED,
        StoreResult.BLOCKED,
        StoreResult.BLOCKED,
        StoreResult.STORED,
        StoreResult.STORED,
    ]
    assert await offline.count("alice") == 2


def test_match_forms_are_what_an_entry_may_name() -> None:
    assert match_forms(JID.parse("romeo@montague.net/orchard")) == (
        "romeo@montague.net/orchard",
        "romeo@montague.net",
        "montague.net/orchard",
        "montague.net",
    )
    assert match_forms(JID.parse("romeo@montague.net")) == ("romeo@montague.net", "montague.net")
    assert match_forms(JID.parse("montague.net/orchard")) == (
        "montague.net/orchard",
        "montague.net",
    )
    assert match_forms(JID.parse("montague.net")) == ("montague.net",)
