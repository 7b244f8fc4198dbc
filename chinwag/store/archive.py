"""Message archive storage (XEP-0313): each account's archived messages and preferences.

``append`` keeps a batch of messages, for any accounts, in one transaction; messages
for accounts that do not exist (any more) are left out. An account's messages are
ordered by the row id, which only grows; clients know them by ``archive_id``, an
opaque string given by the caller (XEP-0359's stanza-id, stamped before the message
is stored). A query is a range of that order narrowed by peer and time, read through
the ``(account, id)`` or ``(account, peer, id)`` index a page at a time, and counted.
Rows go with their account (ON DELETE CASCADE) and with ``purge``.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy import ColumnElement, bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection

from chinwag.store.accounts import ACCOUNT_ID, in_chunks
from chinwag.store.db import Database
from chinwag.store.events import UNAPPLIED, NewEvent, record_events
from chinwag.store.models import Account, ArchivedMessage, ArchivePrefs

_ACCOUNT = Account.__table__
_MESSAGE = ArchivedMessage.__table__
_PREFS = ArchivePrefs.__table__
_INSERT = insert(_MESSAGE)
_IDS_OF = select(_ACCOUNT.c.username, _ACCOUNT.c.id).where(
    _ACCOUNT.c.username.in_(bindparam("usernames", expanding=True))
)
_PREFS_OF = (
    select(_ACCOUNT.c.username, _PREFS.c.default, _PREFS.c.always, _PREFS.c.never)
    .select_from(_PREFS.join(_ACCOUNT, _ACCOUNT.c.id == _PREFS.c.account_id))
    .where(_ACCOUNT.c.username.in_(bindparam("usernames", expanding=True)))
)
_ROW_OF = select(_MESSAGE.c.id).where(
    _MESSAGE.c.account_id == bindparam("account_id"),
    _MESSAGE.c.archive_id == bindparam("archive_id"),
)
NO_ID = 2**63 - 1
"""Above every id."""
ARCHIVE_PREFS_CHANGED = "archive.prefs_changed"
"""subject: the account whose archiving preferences (XEP-0313) were set."""
_PURGE = delete(_MESSAGE).where(_MESSAGE.c.archived_at < bindparam("before"))

POLICIES = ("always", "never", "roster")
COUNT_LIMIT = 1_000
"""Results counted at most: counting a million rows would take longer than reading a
page, so a larger result set has no count (RSM's <count/> is optional)."""


class UnknownArchiveId(LookupError):
    """A query named an archive id the account's archive does not hold."""

    def __init__(self, archive_id: str) -> None:
        self.archive_id = archive_id
        super().__init__(f"no archived message has the id '{archive_id}'")


@dataclass(frozen=True, slots=True)
class NewArchivedMessage:
    """A message to archive for ``username``: ``peer`` is the other party's bare JID."""

    username: str
    archive_id: str
    archived_at: datetime
    peer: str
    peer_resource: str | None
    outgoing: bool
    stanza: str


@dataclass(frozen=True, slots=True)
class ArchivedItem:
    archive_id: str
    archived_at: datetime
    """Timezone-aware, UTC."""
    peer: str
    peer_resource: str | None
    outgoing: bool
    stanza: str


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """What to read: the filters of XEP-0313 §4.1 and a page of XEP-0059.

    ``after_id``/``before_id`` bound the result set itself (XEP-0313's extended
    fields); ``page_after``/``page_before`` choose a page in it (RSM). ``last_page``
    pages from the end: RSM's ``<before/>``, empty or not.
    """

    peer: str | None = None
    peer_resource: str | None = None
    start: datetime | None = None
    end: datetime | None = None
    after_id: str | None = None
    before_id: str | None = None
    ids: tuple[str, ...] | None = None
    page_after: str | None = None
    page_before: str | None = None
    last_page: bool = False
    max: int = 50


@dataclass(frozen=True, slots=True)
class ArchivePage:
    items: list[ArchivedItem]
    """Oldest first, whichever way the page was read."""
    complete: bool
    """The page reaches the end of the result set in the direction it was read."""
    count: int | None
    """Items in the whole result set; None when there are more than COUNT_LIMIT."""


@dataclass(frozen=True, slots=True)
class Prefs:
    """XEP-0313 §6 preferences: bare JIDs in ``always`` are archived, in ``never`` not;
    others by ``default``."""

    default: str
    always: frozenset[str] = field(default_factory=frozenset)
    never: frozenset[str] = field(default_factory=frozenset)


class ArchiveRepository(Protocol):
    async def append(self, messages: Sequence[NewArchivedMessage]) -> int:
        """Keep ``messages`` in one transaction, in order; those for accounts that do not
        exist are left out. How many were kept."""

    async def query(self, username: str, query: ArchiveQuery) -> ArchivePage:
        """A page of the account's archive (empty for no account); raises
        UnknownArchiveId for an id it does not hold."""

    async def prefs(self, usernames: Iterable[str]) -> dict[str, Prefs]:
        """The stored preferences of those of ``usernames`` that have set any."""

    async def set_prefs(self, username: str, prefs: Prefs) -> bool:
        """Store the account's preferences; False when there is no such account."""

    async def purge(self, before: datetime) -> int:
        """Delete every message archived before ``before``; how many went."""


class SqlArchiveRepository:
    """ArchiveRepository on SQLAlchemy; identical on SQLite and PostgreSQL. Setting
    preferences writes an ``archive.prefs_changed`` event, marked with ``origin``."""

    def __init__(self, db: Database, origin: str = UNAPPLIED) -> None:
        self._db = db
        self._origin = origin

    async def append(self, messages: Sequence[NewArchivedMessage]) -> int:
        if not messages:
            return 0
        async with self._db.engine.begin() as connection:
            ids = await _account_ids(connection, {message.username for message in messages})
            rows = [
                _row(ids[message.username], message)
                for message in messages
                if message.username in ids
            ]
            if rows:
                await connection.execute(_INSERT, rows)
        return len(rows)

    async def query(self, username: str, query: ArchiveQuery) -> ArchivePage:
        async with self._db.engine.connect() as connection:
            account_id = await connection.scalar(ACCOUNT_ID, {"username": username})
            if account_id is None:
                return ArchivePage([], True, 0)
            where = await _filters(connection, account_id, query)
            matching = select(_MESSAGE.c.id).where(*where).limit(COUNT_LIMIT + 1).subquery()
            count = int(await connection.scalar(select(func.count()).select_from(matching)) or 0)
            page = await _page(connection, account_id, where, query)
        return ArchivePage(page.items, page.complete, count if count <= COUNT_LIMIT else None)

    async def prefs(self, usernames: Iterable[str]) -> dict[str, Prefs]:
        found: dict[str, Prefs] = {}
        async with self._db.engine.connect() as connection:
            for chunk in in_chunks(sorted(set(usernames))):
                rows = await connection.execute(_PREFS_OF, {"usernames": chunk})
                for username, default, always, never in rows:
                    found[username] = Prefs(
                        default, frozenset(json.loads(always)), frozenset(json.loads(never))
                    )
        return found

    async def set_prefs(self, username: str, prefs: Prefs) -> bool:
        async with self._db.sessions.begin() as session:
            account_id = await session.scalar(ACCOUNT_ID, {"username": username})
            if account_id is None:
                return False
            await session.execute(delete(_PREFS).where(_PREFS.c.account_id == account_id))
            await session.execute(
                insert(_PREFS),
                {
                    "account_id": account_id,
                    "default": prefs.default,
                    "always": json.dumps(sorted(prefs.always)),
                    "never": json.dumps(sorted(prefs.never)),
                },
            )
            event = NewEvent(ARCHIVE_PREFS_CHANGED, username, None, self._origin)
            await record_events(session, [event])
        return True

    async def purge(self, before: datetime) -> int:
        async with self._db.engine.begin() as connection:
            result = await connection.execute(_PURGE, {"before": before})
        return result.rowcount


async def _account_ids(connection: AsyncConnection, usernames: set[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in in_chunks(sorted(usernames)):
        rows = await connection.execute(_IDS_OF, {"usernames": chunk})
        ids.update({username: account_id for username, account_id in rows})
    return ids


def _row(account_id: int, message: NewArchivedMessage) -> dict[str, Any]:
    return {
        "account_id": account_id,
        "archive_id": message.archive_id,
        "archived_at": message.archived_at,
        "peer": message.peer,
        "peer_resource": message.peer_resource,
        "outgoing": message.outgoing,
        "stanza": message.stanza,
    }


async def _row_id(connection: AsyncConnection, account_id: int, archive_id: str) -> int:
    row_id = await connection.scalar(_ROW_OF, {"account_id": account_id, "archive_id": archive_id})
    if row_id is None:
        raise UnknownArchiveId(archive_id)
    return int(row_id)


async def _time_bound(
    connection: AsyncConnection, account_id: int, when: datetime, *, first: bool
) -> int:
    """The id of the account's first message archived at or after ``when`` (``first``),
    or of its last one at or before it, through the time index: the id range it starts
    or ends lets a query walk the id index from there rather than filter every row
    (which PostgreSQL's planner chose, taking most of a second on a million rows). Ids
    grow with the time of archiving; the time itself is still compared exactly."""
    c = _MESSAGE.c
    if first:
        statement = select(c.id).where(c.account_id == account_id, c.archived_at >= when)
        statement = statement.order_by(c.archived_at, c.id)
    else:
        statement = select(c.id).where(c.account_id == account_id, c.archived_at <= when)
        statement = statement.order_by(c.archived_at.desc(), c.id.desc())
    found = await connection.scalar(statement.limit(1))
    if found is None:  # nothing in the range: a bound no id meets
        return NO_ID if first else -1
    return int(found)


async def _filters(
    connection: AsyncConnection, account_id: int, query: ArchiveQuery
) -> list[ColumnElement[bool]]:
    """The conditions of the whole result set (what is counted)."""
    c = _MESSAGE.c
    where: list[ColumnElement[bool]] = [c.account_id == account_id]
    if query.peer is not None:
        where.append(c.peer == query.peer)
        if query.peer_resource is not None:
            where.append(c.peer_resource == query.peer_resource)
    if query.start is not None:
        where.append(c.archived_at >= query.start)
        where.append(c.id >= await _time_bound(connection, account_id, query.start, first=True))
    if query.end is not None:
        where.append(c.archived_at <= query.end)
        where.append(c.id <= await _time_bound(connection, account_id, query.end, first=False))
    if query.after_id is not None:
        where.append(c.id > await _row_id(connection, account_id, query.after_id))
    if query.before_id is not None:
        where.append(c.id < await _row_id(connection, account_id, query.before_id))
    if query.ids is not None:
        # Each looked up by its own index first: the planner would rather walk the
        # account's rows in id order.
        rows = await connection.execute(
            select(c.id).where(c.account_id == account_id, c.archive_id.in_(query.ids))
        )
        where.append(c.id.in_([row_id for (row_id,) in rows]))
    return where


async def _page(
    connection: AsyncConnection,
    account_id: int,
    where: list[ColumnElement[bool]],
    query: ArchiveQuery,
) -> ArchivePage:
    """One page of ``max`` items; one more is read to tell whether the page is the last."""
    c = _MESSAGE.c
    bounds = list(where)
    if query.page_after is not None:
        bounds.append(c.id > await _row_id(connection, account_id, query.page_after))
    if query.page_before is not None:
        bounds.append(c.id < await _row_id(connection, account_id, query.page_before))
    backwards = query.last_page or query.page_before is not None
    order = c.id.desc() if backwards else c.id.asc()
    statement = (
        select(c.archive_id, c.archived_at, c.peer, c.peer_resource, c.outgoing, c.stanza)
        .where(*bounds)
        .order_by(order)
        .limit(query.max + 1)
    )
    rows = (await connection.execute(statement)).all()
    complete = len(rows) <= query.max
    items = [ArchivedItem(*row) for row in rows[: query.max]]
    if backwards:
        items.reverse()
    return ArchivePage(items, complete, 0)
