"""The message archive's storage (XEP-0313), on SQLite and PostgreSQL (``network`` fixture):
appending in batches, every filter and page of a query, preferences, retention and
deletion with the account."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from chinwag.store import archive as archive_store
from chinwag.store.archive import (
    LOW_BITS,
    ArchiveQuery,
    NewArchivedMessage,
    Prefs,
    SqlArchiveRepository,
    UnknownArchiveId,
    id_at,
    visible_id,
)

Network = Any
"""The ``network`` fixture of ``conftest.py`` (which is not importable from here)."""

T0 = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def v(n: int) -> str:
    """The id clients see of message ``n``, archived ``n`` minutes after T0."""
    return visible_id(id_at(T0 + timedelta(minutes=n)))


NAMES = {v(n): f"id{n}" for n in range(20)}


def message(
    n: int, username: str = "alice", peer: str = "bob@localhost", resource: str | None = "desk"
) -> NewArchivedMessage:
    return NewArchivedMessage(
        username=username,
        id=id_at(T0 + timedelta(minutes=n)),
        peer=peer,
        peer_resource=resource,
        outgoing=n % 2 == 0,
        stanza=f"<message xmlns='jabber:client' type='chat'><body>{n}</body></message>",
    )


@pytest.fixture
async def archive(network: Network) -> SqlArchiveRepository:
    await network.add_users("alice", "bob", "carol")
    repo = SqlArchiveRepository(network.db)
    # alice: 1..6 with bob (5 from bob's laptop), 7..9 with carol; bob: 10.
    batch = [message(n) for n in range(1, 5)]
    batch.append(message(5, resource="laptop"))
    batch.append(message(6))
    batch += [message(n, peer="carol@localhost", resource=None) for n in (7, 8, 9)]
    batch.append(message(10, username="bob", peer="alice@localhost"))
    batch.append(message(11, username="nobody"))  # no account: left out
    assert await repo.append(batch) == 10
    return repo


def ids(page: Any) -> list[str]:
    return [NAMES[item.archive_id] for item in page.items]


async def test_a_query_reads_in_order_and_counts(archive: SqlArchiveRepository) -> None:
    page = await archive.query("alice", ArchiveQuery(max=50))

    assert ids(page) == [f"id{n}" for n in range(1, 10)]
    assert (page.complete, page.count) == (True, 9)
    first = page.items[0]
    assert first.archived_at == T0 + timedelta(minutes=1)
    assert (first.peer, first.peer_resource, first.outgoing) == ("bob@localhost", "desk", False)
    assert "<body>1</body>" in first.stanza


async def test_with_a_bare_or_a_full_jid(archive: SqlArchiveRepository) -> None:
    bare = await archive.query("alice", ArchiveQuery(peer="carol@localhost"))
    full = await archive.query("alice", ArchiveQuery(peer="bob@localhost", peer_resource="laptop"))

    assert ids(bare) == ["id7", "id8", "id9"]
    assert ids(full) == ["id5"] and full.count == 1


async def test_start_end_and_the_extended_fields(archive: SqlArchiveRepository) -> None:
    timed = ArchiveQuery(start=T0 + timedelta(minutes=3), end=T0 + timedelta(minutes=5))
    assert ids(await archive.query("alice", timed)) == ["id3", "id4", "id5"]
    late = ArchiveQuery(start=T0 + timedelta(days=1))
    early = ArchiveQuery(end=T0)
    assert (await archive.query("alice", late)).count == 0
    assert (await archive.query("alice", early)).count == 0
    ancient, far = datetime(684, 12, 23, tzinfo=UTC), datetime(9999, 1, 1, tzinfo=UTC)
    assert (await archive.query("alice", ArchiveQuery(end=ancient))).count == 0
    assert (await archive.query("alice", ArchiveQuery(start=far))).count == 0
    assert (await archive.query("alice", ArchiveQuery(start=ancient, end=far))).count == 9
    ranged = ArchiveQuery(after_id=v(2), before_id=v(6))
    assert ids(await archive.query("alice", ranged)) == ["id3", "id4", "id5"]
    assert ids(await archive.query("alice", ArchiveQuery(ids=(v(8), v(2), v(8))))) == [
        "id2",
        "id8",
    ]


async def test_pages_forwards_with_after(archive: SqlArchiveRepository) -> None:
    first = await archive.query("alice", ArchiveQuery(max=4))
    second = await archive.query("alice", ArchiveQuery(max=4, page_after=v(4)))
    third = await archive.query("alice", ArchiveQuery(max=4, page_after=v(8)))

    assert (ids(first), first.complete, first.count) == (["id1", "id2", "id3", "id4"], False, 9)
    assert (ids(second), second.complete) == (["id5", "id6", "id7", "id8"], False)
    assert (ids(third), third.complete, third.count) == (["id9"], True, 9)


async def test_pages_backwards_from_the_end(archive: SqlArchiveRepository) -> None:
    last = await archive.query("alice", ArchiveQuery(max=4, last_page=True))
    before = await archive.query("alice", ArchiveQuery(max=4, last_page=True, page_before=v(6)))
    start = await archive.query("alice", ArchiveQuery(max=4, last_page=True, page_before=v(2)))

    assert (ids(last), last.complete) == (["id6", "id7", "id8", "id9"], False)
    assert (ids(before), before.complete) == (["id2", "id3", "id4", "id5"], False)
    assert (ids(start), start.complete) == (["id1"], True)


async def test_an_exact_page_is_complete_and_max_zero_only_counts(
    archive: SqlArchiveRepository,
) -> None:
    exact = await archive.query("alice", ArchiveQuery(peer="carol@localhost", max=3))
    counted = await archive.query("alice", ArchiveQuery(max=0))

    assert (ids(exact), exact.complete) == (["id7", "id8", "id9"], True)
    assert (ids(counted), counted.complete, counted.count) == ([], False, 9)


@pytest.mark.parametrize(
    "query",
    [
        ArchiveQuery(after_id=v(10)),  # bob's message, not alice's
        ArchiveQuery(before_id="nope"),
        ArchiveQuery(page_after="nope"),
        ArchiveQuery(last_page=True, page_before=v(10)),
        ArchiveQuery(after_id="ffffffffffffffff"),  # more than a 64-bit column holds
        ArchiveQuery(before_id="ffffffffffffffffffff"),  # the first design's form, as large
        ArchiveQuery(ids=(v(8), v(10))),  # XEP-0313 §4.1.3: any of them unknown
        ArchiveQuery(ids=(v(2), "nope")),
    ],
)
async def test_an_unknown_id_is_refused(archive: SqlArchiveRepository, query: ArchiveQuery) -> None:
    with pytest.raises(UnknownArchiveId):
        await archive.query("alice", query)


async def test_no_account_has_an_empty_archive(archive: SqlArchiveRepository) -> None:
    page = await archive.query("nobody", ArchiveQuery())
    assert (page.items, page.complete, page.count) == ([], True, 0)
    assert await archive.ends("nobody") is None
    assert await archive.ends("carol") is None  # an account with nothing archived


async def test_the_ends_of_an_archive_are_its_first_and_last_messages(
    archive: SqlArchiveRepository,
) -> None:
    ends = await archive.ends("alice")

    assert ends is not None
    first, last = ends
    assert (NAMES[first.archive_id], first.archived_at) == ("id1", T0 + timedelta(minutes=1))
    assert (NAMES[last.archive_id], last.archived_at) == ("id9", T0 + timedelta(minutes=9))


async def test_preferences_are_stored_per_account(archive: SqlArchiveRepository) -> None:
    assert await archive.prefs(["alice", "bob"]) == {}
    prefs = Prefs("roster", frozenset({"carol@localhost"}), frozenset({"spam@localhost"}))

    assert await archive.set_prefs("alice", prefs)
    assert await archive.set_prefs("alice", prefs)  # replaced, not duplicated
    assert not await archive.set_prefs("nobody", prefs)
    assert await archive.prefs(["alice", "bob", "nobody"]) == {"alice": prefs}


async def test_purge_deletes_what_is_older(archive: SqlArchiveRepository) -> None:
    assert await archive.purge(T0 + timedelta(minutes=4)) == 3  # alice's 1, 2, 3

    page = await archive.query("alice", ArchiveQuery())
    assert ids(page)[0] == "id4" and page.count == 6


async def test_deleting_an_account_deletes_its_archive(
    network: Network, archive: SqlArchiveRepository
) -> None:
    await archive.set_prefs("alice", Prefs("never"))
    assert await network.accounts.delete_user("alice")

    await network.add_users("alice")  # a new account of the same name starts empty
    assert (await archive.query("alice", ArchiveQuery())).count == 0
    assert await archive.prefs(["alice"]) == {}
    assert (await archive.query("bob", ArchiveQuery())).count == 1


async def test_a_large_result_set_is_not_counted(
    archive: SqlArchiveRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(archive_store, "COUNT_LIMIT", 8)

    everything = await archive.query("alice", ArchiveQuery(max=2))
    eight = await archive.query("alice", ArchiveQuery(after_id=v(1), max=2))

    assert (ids(everything), everything.count) == (["id1", "id2"], None)
    assert eight.count == 8


async def test_an_id_of_the_first_design_names_the_message_it_was_migrated_to(
    archive: SqlArchiveRepository,
) -> None:
    """Ids were 14 hex digits of microseconds and 6 random ones: a client that kept one
    still pages from it."""
    micros = id_at(T0 + timedelta(minutes=4)) >> LOW_BITS
    legacy = f"{micros:014x}abc000"  # the low ten bits of the random part are 0

    page = await archive.query("alice", ArchiveQuery(page_after=legacy, max=2))

    assert ids(page) == ["id5", "id6"]


async def test_an_id_another_process_took_moves_to_the_next_free_one(
    archive: SqlArchiveRepository,
) -> None:
    taken = message(3)
    clash = NewArchivedMessage("alice", taken.id, "dave@localhost", None, True, "<message/>")

    assert await archive.append([clash, message(12)]) == 2

    page = await archive.query("alice", ArchiveQuery(peer="dave@localhost"))
    assert [item.archive_id for item in page.items] == [visible_id(taken.id + 1)]
    assert (await archive.query("alice", ArchiveQuery())).count == 11


async def test_a_batch_keeps_every_field_as_given(network: Network) -> None:
    """A batch travels to SQLite as JSON: quotes, backslashes, line breaks, characters
    outside ASCII and the BMP, a missing resource, both directions and the largest id
    come back as they went in, whether the rows are tuples or NewArchivedMessages."""
    await network.add_users("alice")
    repo = SqlArchiveRepository(network.db)
    stanza = (
        '<message xmlns="jabber:client" type=\'chat\'><body>"quoted" \\ back\\slash\n'
        "line\ttab é ü 漢字 😀 &lt;&amp;</body></message>"
    )
    rows = [
        ("alice", archive_store.MAX_ID, "bob@localhost", None, True, stanza),
        NewArchivedMessage("alice", id_at(T0), "dé@localhost", "desk 😀", False, stanza),
    ]

    assert await repo.append(rows) == 2

    page = await repo.query("alice", ArchiveQuery(max=10))
    kept = [(i.peer, i.peer_resource, i.outgoing, i.stanza) for i in page.items]
    assert kept == [
        ("dé@localhost", "desk 😀", False, stanza),
        ("bob@localhost", None, True, stanza),
    ]
    assert page.items[1].archive_id == visible_id(archive_store.MAX_ID)


async def test_a_batch_larger_than_a_statement_is_kept_whole(
    network: Network, monkeypatch: pytest.MonkeyPatch
) -> None:
    """On SQLite a batch goes in statements of ``SQLITE_STATEMENT_ROWS``, one transaction:
    every row is kept, in order, but those of an account that does not exist."""
    monkeypatch.setattr(archive_store, "SQLITE_STATEMENT_ROWS", 2)
    await network.add_users("alice")
    repo = SqlArchiveRepository(network.db)
    batch = [message(n) for n in range(1, 4)]
    batch.insert(1, message(9, username="nobody"))
    batch += [message(n) for n in range(4, 8)]

    assert await repo.append(batch) == 7
    page = await repo.query("alice", ArchiveQuery(max=50))
    assert ids(page) == [f"id{n}" for n in range(1, 8)]
