"""Revision 0012 rebuilds the message archive keyed by account and a time-ordered id:
rows written under revision 0010 are carried over, on SQLite and PostgreSQL, and the
ids clients were given then still name their messages."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import Boolean, DateTime, Integer, String, column, insert, table

from chinwag.store.accounts import ACCOUNT_ID
from chinwag.store.archive import (
    LOW_BITS,
    ArchiveQuery,
    NewArchivedMessage,
    SqlArchiveRepository,
    id_at,
    visible_id,
)
from chinwag.store.db import downgrade_to

Network = Any

T0 = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
OLD_MESSAGES = table(
    "archive_messages",
    column("account_id", Integer()),
    column("archive_id", String()),
    column("archived_at", DateTime(timezone=True)),
    column("peer", String()),
    column("peer_resource", String()),
    column("outgoing", Boolean()),
    column("stanza", String()),
)


def server_id(when: datetime, random: int) -> str:
    """An id as the first design gave it: 14 hex digits of microseconds, 6 random."""
    return f"{id_at(when) >> LOW_BITS:014x}{random:06x}"


def body(n: int) -> str:
    return f"<message xmlns='jabber:client' type='chat'><body>{n}</body></message>"


async def test_rows_of_revision_0010_are_carried_over_with_their_ids(
    network: Network, database: Any
) -> None:
    await network.add_users("alice", "bob")
    async with database.engine.begin() as connection:
        await connection.run_sync(downgrade_to, "0010")
        alice, bob = [
            await connection.scalar(ACCOUNT_ID, {"username": name}) for name in ("alice", "bob")
        ]
        old = [
            # alice: three messages the server archived, the third in the same
            # microsecond as the second with the same low bits; one of another form.
            (alice, server_id(T0, 0x123001), T0, "bob@localhost", "desk", True, 1),
            (
                alice,
                server_id(T0 + timedelta(seconds=1), 0xABC002),
                None,
                "bob@localhost",
                None,
                False,
                2,
            ),
            (
                alice,
                server_id(T0 + timedelta(seconds=1), 0xFFF002),
                None,
                "carol@localhost",
                None,
                False,
                3,
            ),
            (alice, "imported-7", T0 + timedelta(seconds=2), "bob@localhost", "phone", True, 4),
            (bob, server_id(T0, 0x000005), T0, "alice@localhost", "laptop", False, 5),
        ]
        await connection.execute(
            insert(OLD_MESSAGES),
            [
                {
                    "account_id": account,
                    "archive_id": archive_id,
                    "archived_at": at or T0 + timedelta(seconds=1),
                    "peer": peer,
                    "peer_resource": resource,
                    "outgoing": outgoing,
                    "stanza": body(n),
                }
                for account, archive_id, at, peer, resource, outgoing, n in old
            ],
        )
    await database.migrate()
    repo = SqlArchiveRepository(database)

    page = await repo.query("alice", ArchiveQuery())

    assert [item.stanza for item in page.items] == [body(n) for n in (1, 2, 3, 4)]
    first, second, third, imported = page.items
    assert (first.archived_at, first.peer, first.peer_resource, first.outgoing) == (
        T0,
        "bob@localhost",
        "desk",
        True,
    )
    assert second.archived_at == T0 + timedelta(seconds=1)
    assert third.archive_id == visible_id(int(second.archive_id, 16) + 1)  # moved up one
    assert imported.archived_at == T0 + timedelta(seconds=2)
    assert (imported.peer_resource, imported.outgoing) == ("phone", True)
    # The ids clients were given still name the messages.
    after_first = await repo.query("alice", ArchiveQuery(page_after=old[0][1], max=1))
    assert [item.stanza for item in after_first.items] == [body(2)]
    by_id = await repo.query("alice", ArchiveQuery(ids=(old[1][1],)))
    assert [item.stanza for item in by_id.items] == [body(2)]
    bobs = await repo.query("bob", ArchiveQuery())
    assert [(item.stanza, item.outgoing) for item in bobs.items] == [(body(5), False)]
    # And the new table takes new messages, and filters on peers and times.
    later = id_at(T0 + timedelta(minutes=5))
    assert await repo.append(
        [NewArchivedMessage("alice", later, "bob@localhost", None, True, body(6))]
    )
    with_bob = await repo.query(
        "alice", ArchiveQuery(peer="bob@localhost", start=T0 + timedelta(seconds=1))
    )
    assert [item.stanza for item in with_bob.items] == [body(2), body(4), body(6)]


async def test_a_downgrade_and_an_upgrade_keep_the_rows_and_their_ids(
    network: Network, database: Any
) -> None:
    await network.add_users("alice")
    repo = SqlArchiveRepository(database)
    ids = [id_at(T0 + timedelta(seconds=n), n) for n in range(3)]
    await repo.append(
        [
            NewArchivedMessage("alice", i, "bob@localhost", "desk", n == 1, body(n))
            for n, i in enumerate(ids)
        ]
    )
    before = await repo.query("alice", ArchiveQuery())

    async with database.engine.begin() as connection:
        await connection.run_sync(downgrade_to, "0010")
    await database.migrate()

    assert await repo.query("alice", ArchiveQuery()) == before
    assert [item.archive_id for item in before.items] == [visible_id(i) for i in ids]
