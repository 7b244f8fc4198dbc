"""The network event outbox: events written in the transaction of the change they announce.

Repositories call :func:`record_events` inside their own transaction, so an event
exists exactly when its change was committed. Readers poll with
:meth:`SqlEventRepository.since` and resume after the last id they saw, which is
only safe if ids become visible in increasing order: SQLite has a single writer,
and on PostgreSQL writers take the table's EXCLUSIVE lock (readers are not
blocked) just before inserting, holding it to commit.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Integer, bindparam, delete, func, insert, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.db import Database
from chinwag.store.models import NetworkEventRow, utc_now

ROSTER_CHANGED = "roster.changed"
"""subject: the roster's owner; object: the contact whose item changed or went."""
PROFILE_CHANGED = "profile.changed"
"""subject: the account whose profile changed."""
ACCOUNT_DELETED = "account.deleted"
"""subject: the account that no longer exists."""
ACCOUNT_PASSWORD_CHANGED = "account.password_changed"
"""subject: the account whose password was replaced; detail: the mark of the one session
that changed it and stays signed in (``network.events.resource_mark``), or None."""

UNAPPLIED = ""
"""The origin of events no process has applied yet (consequences of a change, such as
the contacts' rosters losing a deleted account): every reader delivers them."""

MAX_ORIGIN_LENGTH = 64

_POSTGRES_SERIALIZE = text("LOCK TABLE network_events IN EXCLUSIVE MODE")
_SINCE = (
    select(
        NetworkEventRow.id,
        NetworkEventRow.kind,
        NetworkEventRow.subject,
        NetworkEventRow.object,
        NetworkEventRow.origin,
        NetworkEventRow.detail,
    )
    .where(NetworkEventRow.id > bindparam("last_id"))
    .order_by(NetworkEventRow.id)
    .limit(bindparam("limit", type_=Integer))
)


@dataclass(frozen=True, slots=True)
class NetworkEvent:
    id: int
    kind: str
    subject: str
    object: str | None
    origin: str
    """The mark of the process that wrote it, and applied it already."""
    detail: str | None = None
    """What narrows the event down, for the kinds that can be narrowed; None: nothing does."""


@dataclass(frozen=True, slots=True)
class NewEvent:
    kind: str
    subject: str
    object: str | None
    origin: str
    detail: str | None = None


async def record_events(session: AsyncSession, events: Sequence[NewEvent]) -> None:
    """Add ``events`` to the outbox in the caller's transaction; call it last in there."""
    if not events:
        return
    assert session.bind is not None
    if session.bind.dialect.name == "postgresql":
        # Sequence values are handed out before commit; serialising the writers makes
        # them commit in id order, so no reader ever skips a late-committing event.
        await session.execute(_POSTGRES_SERIALIZE)
    now = utc_now()
    await session.execute(
        insert(NetworkEventRow),
        [
            {
                "kind": event.kind,
                "subject": event.subject,
                "object": event.object,
                "origin": event.origin,
                "detail": event.detail,
                "created_at": now,
            }
            for event in events
        ],
    )


class SqlEventRepository:
    """Reads and prunes the outbox; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def latest_id(self) -> int:
        async with self._sessions() as session:
            latest = await session.scalar(select(func.max(NetworkEventRow.id)))
        return latest or 0

    async def since(self, last_id: int, limit: int = 1000) -> list[NetworkEvent]:
        # A hot read: every process polls several times a second.
        rows = await self._db.rows(_SINCE, {"last_id": last_id, "limit": limit})
        return [NetworkEvent(*row) for row in rows]

    async def prune(self, before: datetime) -> int:
        """Delete the events written before ``before``; how many went."""
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(NetworkEventRow).where(NetworkEventRow.created_at < before)
            )
        return result.rowcount  # type: ignore[attr-defined]
