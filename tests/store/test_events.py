"""EventLog, the outbox reader, on SQLite and PostgreSQL (``network`` fixture)."""

import asyncio
import re
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import column, insert, table, update

from chinwag.network.events import (
    ACCOUNT_DELETED,
    PROFILE_CHANGED,
    ROSTER_CHANGED,
    EventLog,
    NetworkEvent,
)
from chinwag.network.profiles import ProfileUpdate
from chinwag.server.events import RETENTION, EventPump
from chinwag.server.hooks import Hooks
from chinwag.store.db import downgrade_to
from chinwag.store.events import NewEvent, record_events
from chinwag.store.models import NetworkEventRow, UTCDateTime, utc_now
from chinwag.store.oauth import OAUTH_REVOKED, app_password_credential


async def test_an_empty_log(network):
    assert await network.events.latest_id() == 0
    assert await network.events.since(0) == []
    assert await network.events.prune(timedelta(0)) == 0


def test_each_log_has_its_own_origin_unless_given_one(database):
    first, second = EventLog(database), EventLog(database)

    assert re.fullmatch("[0-9a-f]{16}", first.origin)
    assert first.origin != second.origin
    assert EventLog(database, origin="node-1").origin == "node-1"
    with pytest.raises(ValueError, match="origin"):
        EventLog(database, origin="")  # reserved for events nobody has applied


async def test_every_kind_is_written_with_the_change_and_read_in_order(network):
    await network.add_users("alice", "bob")
    await network.contacts.add_mutual("alice", "bob")
    await network.profiles.replace("bob", ProfileUpdate(nickname="bobby"))
    await network.accounts.delete_user("alice")

    events = await network.events.since(0)

    assert [(e.kind, e.subject, e.object) for e in events] == [
        (ROSTER_CHANGED, "alice", "bob"),
        (ROSTER_CHANGED, "bob", "alice"),
        (PROFILE_CHANGED, "bob", None),
        (ACCOUNT_DELETED, "alice", None),
        (ROSTER_CHANGED, "bob", "alice"),
    ]
    assert all(isinstance(e, NetworkEvent) for e in events)
    assert [e.id for e in events] == sorted({e.id for e in events})
    assert await network.events.latest_id() == events[-1].id
    assert [e.origin for e in events] == ["this-process"] * 4 + [""]


async def test_since_resumes_after_an_id_and_pages(network):
    await network.add_users(*(f"user{n}" for n in range(6)))
    for n in range(1, 6):
        await network.contacts.add_mutual("user0", f"user{n}")
    everything = await network.events.since(0)
    assert len(everything) == 10

    page = await network.events.since(everything[2].id, limit=4)

    assert page == everything[3:7]
    assert await network.events.since(everything[-1].id) == []


async def test_another_process_reads_what_this_one_wrote(network, database):
    other = EventLog(database)
    await network.add_users("alice", "bob")

    await network.contacts.add_mutual("alice", "bob")

    assert {e.origin for e in await other.since(0)} == {network.events.origin}
    assert network.events.origin != other.origin


async def test_prune_removes_old_events_and_ids_never_come_back(network, database):
    await network.add_users("alice", "bob", "carol")
    await network.contacts.add_mutual("alice", "bob")
    old = await network.events.latest_id()
    await network.contacts.add_mutual("alice", "carol")
    async with database.sessions.begin() as session:
        await session.execute(
            update(NetworkEventRow)
            .where(NetworkEventRow.id <= old)
            .values(created_at=datetime.now(UTC) - timedelta(days=2))
        )

    assert await network.events.prune(timedelta(days=1)) == 2
    assert [(e.subject, e.object) for e in await network.events.since(0)] == [
        ("alice", "carol"),
        ("carol", "alice"),
    ]

    newest = await network.events.latest_id()
    assert await network.events.prune(timedelta(0)) == 2
    assert await network.events.latest_id() == 0
    await network.contacts.remove_mutual("alice", "bob")
    assert min(e.id for e in await network.events.since(0)) > newest


async def test_no_event_becomes_visible_before_an_earlier_one_commits(network, database):
    """Readers resume after the last id seen: a lower id committing later would be lost."""
    await network.add_users("alice", "bob")
    async with database.sessions.begin() as session:
        await record_events(session, [NewEvent(PROFILE_CHANGED, "alice", None, "slow-writer")])
        later = asyncio.create_task(network.contacts.add_mutual("alice", "bob"))
        await asyncio.sleep(0.3)  # long enough for the later writer to commit, were it let

        assert await network.events.since(0) == []
        assert not later.done()
    await later

    events = await network.events.since(0)
    assert [(e.kind, e.origin) for e in events] == [
        (PROFILE_CHANGED, "slow-writer"),
        (ROSTER_CHANGED, "this-process"),
        (ROSTER_CHANGED, "this-process"),
    ]
    assert [e.id for e in events] == sorted(e.id for e in events)


async def test_the_running_servers_pump_prunes_what_is_past_retention(network, database):
    await network.add_users("alice", "bob", "carol")
    await network.contacts.add_mutual("alice", "bob")
    old = await network.events.latest_id()
    await network.contacts.add_mutual("alice", "carol")
    async with database.sessions.begin() as session:
        await session.execute(
            update(NetworkEventRow)
            .where(NetworkEventRow.id <= old)
            .values(created_at=datetime.now(UTC) - RETENTION - timedelta(minutes=1))
        )

    assert await EventPump(network.events, Hooks()).prune() == 2
    assert len(await network.events.since(0)) == 2


async def test_a_detail_travels_with_its_event_and_is_none_without_one(network, database):
    async with database.sessions.begin() as session:
        await record_events(
            session,
            [
                NewEvent(OAUTH_REVOKED, "alice", "app1", "p", app_password_credential(7)),
                NewEvent(OAUTH_REVOKED, "alice", "app1", "p"),
            ],
        )

    assert [e.detail for e in await network.events.since(0)] == ["app-password:7", None]


async def test_events_written_before_the_detail_existed_read_as_not_narrowed(network, database):
    """An event in the outbox across an upgrade, written by a process that knew no detail."""
    async with database.engine.begin() as connection:
        await connection.run_sync(downgrade_to, "0004")
    old_events = table(
        "network_events",
        column("kind"),
        column("subject"),
        column("object"),
        column("origin"),
        column("created_at", UTCDateTime()),
    )
    async with database.engine.begin() as connection:
        await connection.execute(
            insert(old_events).values(
                kind=OAUTH_REVOKED, subject="alice", object="app1", origin="", created_at=utc_now()
            )
        )
    await database.migrate()

    [event] = await network.events.since(0)

    assert (event.kind, event.subject, event.object, event.detail) == (
        OAUTH_REVOKED,
        "alice",
        "app1",
        None,
    )
