"""Message archive storage (XEP-0313): each account's archived messages and preferences.

An archived message is one row per archive that keeps it, keyed by ``(account, id)``.
The id is a 64-bit integer that grows with time: the microseconds since the epoch
when it was given, times 2**10, plus a low part (ten bits) that keeps ids of one
process apart within a microsecond and those of processes sharing the database apart
(``ArchiveIds``). It is the message's XEP-0359 stanza-id and the RSM key, written as
16 hex digits (:func:`visible_id`), and the time it holds is the time of archiving,
so that a time filter is an id range. Ids given before this design (20 hex digits:
14 of microseconds and 6 random) are read as the id they were migrated to.

``append`` keeps a batch of messages, for any accounts, in one transaction through
:meth:`Database.write`, in statements run through the driver that find each account's
id themselves (on SQLite inserts from JSON arrays of ``SQLITE_STATEMENT_ROWS`` rows, on
PostgreSQL one insert of arrays); messages for accounts that do not exist (any more)
are left out. A query is a range of the account's ids narrowed by peer, read a page at
a time through the primary key or the ``(account, peer, id)`` index, and counted up to
``COUNT_LIMIT``; an id it names that the account's archive does not hold fails it
(``UnknownArchiveId``). ``ends`` reads each end of the account's primary-key range.
Rows go with their account (ON DELETE CASCADE) and with ``purge``.
"""

from __future__ import annotations

import json
import logging
import random
import re
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

from sqlalchemy import ColumnElement, Connection, bindparam, delete, func, insert, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncConnection

from chinwag.store.accounts import ACCOUNT_ID, in_chunks
from chinwag.store.db import Database
from chinwag.store.events import UNAPPLIED, NewEvent, record_events
from chinwag.store.models import Account, ArchivedMessage, ArchivePrefs

log = logging.getLogger(__name__)

_ACCOUNT = Account.__table__
_MESSAGE = ArchivedMessage.__table__
_PREFS = ArchivePrefs.__table__
_IDS_OF = select(_ACCOUNT.c.username, _ACCOUNT.c.id).where(
    _ACCOUNT.c.username.in_(bindparam("usernames", expanding=True))
)
_PREFS_OF = (
    select(_ACCOUNT.c.username, _PREFS.c.default, _PREFS.c.always, _PREFS.c.never)
    .select_from(_PREFS.join(_ACCOUNT, _ACCOUNT.c.id == _PREFS.c.account_id))
    .where(_ACCOUNT.c.username.in_(bindparam("usernames", expanding=True)))
)
_HELD = select(_MESSAGE.c.id).where(
    _MESSAGE.c.account_id == bindparam("account_id"), _MESSAGE.c.id == bindparam("id")
)
_HELD_OF = select(_MESSAGE.c.id).where(
    _MESSAGE.c.account_id == bindparam("account_id"),
    _MESSAGE.c.id.in_(bindparam("ids", expanding=True)),
)
_FIRST = select(func.min(_MESSAGE.c.id)).where(_MESSAGE.c.account_id == bindparam("account_id"))
_LAST = select(func.max(_MESSAGE.c.id)).where(_MESSAGE.c.account_id == bindparam("account_id"))
"""Each alone, so that SQLite reads one end of the primary key for it (min and max in one
statement would read every row of the account)."""
ARCHIVE_PREFS_CHANGED = "archive.prefs_changed"
"""subject: the account whose archiving preferences (XEP-0313) were set."""
_ACCOUNT_EXISTS = select(_ACCOUNT.c.id).where(_ACCOUNT.c.id == bindparam("id"))
_PURGE = delete(_MESSAGE).where(_MESSAGE.c.id < bindparam("below"))
_COLUMNS = ("account_id", "id", "peer", "peer_resource", "outgoing", "stanza")
_SQLITE_INSERT = (
    f"INSERT INTO {_MESSAGE.name} ({', '.join(_COLUMNS)}) "
    "SELECT a.id, "
    + ", ".join(f"json_extract(m.value, '$[{field}]')" for field in range(1, 6))
    + f" FROM json_each(?) AS m CROSS JOIN {_ACCOUNT.name} AS a"
    " ON a.username = json_extract(m.value, '$[0]')"
)
"""A batch on SQLite: statements over JSON arrays of the queued tuples, each account's
id found by the statement (no row is made for an account that does not exist). SQLite
runs each in one step, without the interpreter's lock: an ``executemany`` takes the lock
back after every row, and with the event loop busy each row then waited for it.
``json_extract`` rather than ``->>``, which SQLite has only since 3.38."""
SQLITE_STATEMENT_ROWS = 5_000
"""Rows a statement takes, at most: encoding their JSON holds the interpreter's lock,
and the event loop waits meanwhile. Its longest wait for a batch of 50,000 rows was 10
to 15 ms in statements of 5,000, and 60 to 100 ms in one statement."""
_ARRAYS_INSERT = (
    f"INSERT INTO {_MESSAGE.name} ({', '.join(_COLUMNS)}) "
    "SELECT a.id, m.id, m.peer, m.peer_resource, m.outgoing, m.stanza "
    "FROM unnest($1::text[], $2::bigint[], $3::text[], $4::text[], $5::boolean[], $6::text[]) "
    "AS m(username, id, peer, peer_resource, outgoing, stanza) "
    f"JOIN {_ACCOUNT.name} a ON a.username = m.username"
)
"""A batch on PostgreSQL: one statement, one array a column."""
_INSERT_ONE = insert(_MESSAGE)

LOW_BITS = 10
"""Bits of an id below its microseconds: 63 bits hold microseconds until the year 2255."""
_LOW = (1 << LOW_BITS) - 1
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_VISIBLE = re.compile(r"[0-9a-f]{16}")
_LEGACY = re.compile(r"[0-9a-f]{20}")
"""The ids of the first design: 14 hex digits of microseconds and 6 random ones."""
CONFLICT_RETRIES = 8
POLICIES = ("always", "never", "roster")
COUNT_LIMIT = 1_000
"""Results counted at most: counting a million rows would take longer than reading a
page, so a larger result set has no count (RSM's <count/> is optional)."""


class UnknownArchiveId(LookupError):
    """A query named an archive id the account's archive does not hold."""

    def __init__(self, archive_id: str) -> None:
        self.archive_id = archive_id
        super().__init__(f"no archived message has the id '{archive_id}'")


# --- ids ------------------------------------------------------------------------------------


MAX_ID = 2**63 - 1
"""The largest id a 64-bit signed column holds (microseconds until the year 2255)."""


def id_at(when: datetime, low: int = 0) -> int:
    """The id of time ``when`` with low part ``low``: the smallest of its microsecond
    for ``low`` 0; a time before 1970 or after ids run out is the first or last id."""
    archive_id = (when - _EPOCH) // timedelta(microseconds=1) << LOW_BITS | low
    return min(max(archive_id, 0), MAX_ID)


def time_of(archive_id: int) -> datetime:
    """When the message with that id was archived (timezone-aware, UTC)."""
    return _EPOCH + timedelta(microseconds=archive_id >> LOW_BITS)


def visible_id(archive_id: int) -> str:
    """The id as clients see it: XEP-0359's stanza-id, RSM's ``<first/>``, ``<last/>``."""
    return f"{archive_id:016x}"


def parsed_id(text: str) -> int | None:
    """The id a client names, in this form or the first design's; None for any other."""
    if _VISIBLE.fullmatch(text):
        archive_id = int(text, 16)
    elif _LEGACY.fullmatch(text):
        archive_id = legacy_id(text)
    else:
        return None
    return archive_id if archive_id <= MAX_ID else None  # no row holds it


def legacy_id(text: str) -> int:
    """The id that an id of the first design (20 hex digits) was migrated to."""
    return int(text[:14], 16) << LOW_BITS | int(text[14:], 16) & _LOW


class ArchiveIds:
    """Archive ids for one process: they grow with time and never repeat here; the low
    part starts at random in each microsecond, so that processes sharing a database
    are unlikely to meet (``append`` moves an id that does meet another). Not secret,
    so not from the system's random source: a system call per id cost 7 % of the
    server's time under load."""

    def __init__(self) -> None:
        self._last = 0

    def __call__(self) -> int:
        archive_id = time.time_ns() // 1000 << LOW_BITS | random.getrandbits(LOW_BITS)
        if archive_id <= self._last:
            archive_id = self._last + 1
        self._last = archive_id
        return archive_id


# --- what is kept ---------------------------------------------------------------------------


ArchiveRow = tuple[str, int, str, str | None, bool, str]
"""A message to archive, as queued: the fields of :class:`NewArchivedMessage` in order.
The queue holds plain tuples, which the garbage collector stops tracking at its first
look, where it would walk a tuple subclass's as long as they are queued."""


class NewArchivedMessage(NamedTuple):
    """A message to archive for ``username``: ``peer`` is the other party's bare JID;
    ``id`` is given before it is stored (:class:`ArchiveIds`) and holds its time. The
    fields in the order of the batch's columns, so that a batch goes to the driver as it
    was queued."""

    username: str
    id: int
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
class ArchiveEnd:
    """The first or last message of an archive (XEP-0313 §7, archive metadata)."""

    archive_id: str
    archived_at: datetime
    """Timezone-aware, UTC."""


@dataclass(frozen=True, slots=True)
class ArchiveQuery:
    """What to read: the filters of XEP-0313 §4.1 and a page of XEP-0059.

    ``after_id``/``before_id`` bound the result set itself (XEP-0313's extended
    fields); ``page_after``/``page_before`` choose a page in it (RSM). ``last_page``
    pages from the end: RSM's ``<before/>``, empty or not. Ids are as clients see them.
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
    keeps_everything: bool = field(init=False, repr=False, compare=False)
    """Every message is archived, whoever the peer: looked at for each message routed."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "keeps_everything", self.default == "always" and not self.never)


class ArchiveRepository(Protocol):
    async def append(self, messages: Sequence[ArchiveRow]) -> int:
        """Keep ``messages`` in one transaction; those for accounts that do not exist are
        left out. How many were kept."""

    async def query(self, username: str, query: ArchiveQuery) -> ArchivePage:
        """A page of the account's archive (empty for no account); raises
        UnknownArchiveId for an id it does not hold."""

    async def ends(self, username: str) -> tuple[ArchiveEnd, ArchiveEnd] | None:
        """The account's first and last archived messages; None for an empty archive
        (or no account)."""

    async def prefs(self, usernames: Iterable[str]) -> dict[str, Prefs]:
        """The stored preferences of those of ``usernames`` that have set any."""

    async def set_prefs(self, username: str, prefs: Prefs) -> bool:
        """Store the account's preferences; False when there is no such account."""

    async def purge(self, before: datetime) -> int:
        """Delete every message archived before ``before``; how many went."""


Row = tuple[int, int, str, str | None, bool, str]
"""A row of ``archive_messages`` in the order of ``_COLUMNS``."""


class SqlArchiveRepository:
    """ArchiveRepository on SQLAlchemy; identical on SQLite and PostgreSQL. Setting
    preferences writes an ``archive.prefs_changed`` event, marked with ``origin``."""

    def __init__(self, db: Database, origin: str = UNAPPLIED) -> None:
        self._db = db
        self._origin = origin
        self._sqlite = db.engine.dialect.name == "sqlite"

    async def append(self, messages: Sequence[ArchiveRow]) -> int:
        if not messages:
            return 0
        sqlite = self._sqlite

        def insert(connection: Connection) -> int:
            if sqlite:
                kept = 0
                for start in range(0, len(messages), SQLITE_STATEMENT_ROWS):
                    rows = json.dumps(messages[start : start + SQLITE_STATEMENT_ROWS])
                    kept += connection.exec_driver_sql(_SQLITE_INSERT, (rows,)).rowcount
                return kept
            columns = tuple(list(column) for column in zip(*messages, strict=True))
            return connection.exec_driver_sql(_ARRAYS_INSERT, columns).rowcount

        try:
            return await self._db.write(insert)
        except IntegrityError:
            # An id met another process's, or an account went while the batch was being
            # written: row by row, each in a transaction of its own.
            return await self._append_one_by_one(messages)

    async def _append_one_by_one(self, messages: Sequence[ArchiveRow]) -> int:
        async with self._db.engine.connect() as connection:
            rows = await _rows(connection, messages)
        kept = 0
        for row in rows:
            kept += await self._insert_moving_id(row)
        return kept

    async def _insert_moving_id(self, row: Row) -> int:
        """Insert ``row``, under the next free id if its own is taken; 0 when its account
        has gone."""
        account_id, archive_id, *rest = row
        for _ in range(CONFLICT_RETRIES):
            try:
                async with self._db.engine.begin() as connection:
                    values = dict(zip(_COLUMNS, (account_id, archive_id, *rest), strict=True))
                    await connection.execute(_INSERT_ONE, values)
                return 1
            except IntegrityError:
                async with self._db.engine.connect() as connection:
                    if await connection.scalar(_ACCOUNT_EXISTS, {"id": account_id}) is None:
                        return 0
                log.warning(
                    "archive id %s was taken in account %d: the message is stored under the "
                    "next one",
                    visible_id(archive_id),
                    account_id,
                )
                archive_id += 1
        log.error("an archived message could not be stored: %d ids taken", CONFLICT_RETRIES)
        return 0

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

    async def ends(self, username: str) -> tuple[ArchiveEnd, ArchiveEnd] | None:
        async with self._db.engine.connect() as connection:
            account_id = await connection.scalar(ACCOUNT_ID, {"username": username})
            if account_id is None:
                return None
            first = await connection.scalar(_FIRST, {"account_id": account_id})
            last = await connection.scalar(_LAST, {"account_id": account_id})
        if first is None or last is None:
            return None
        return _end(first), _end(last)

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
            result = await connection.execute(_PURGE, {"below": id_at(before)})
        return result.rowcount


async def _rows(connection: AsyncConnection, messages: Sequence[ArchiveRow]) -> list[Row]:
    """The rows of ``messages`` whose accounts exist."""
    ids = await _account_ids(connection, {message[0] for message in messages})
    return [
        (ids[username], archive_id, peer, resource, outgoing, stanza)
        for username, archive_id, peer, resource, outgoing, stanza in messages
        if username in ids
    ]


async def _account_ids(connection: AsyncConnection, usernames: set[str]) -> dict[str, int]:
    ids: dict[str, int] = {}
    for chunk in in_chunks(sorted(usernames)):
        rows = await connection.execute(_IDS_OF, {"usernames": chunk})
        ids.update({username: account_id for username, account_id in rows})
    return ids


async def _held_id(connection: AsyncConnection, account_id: int, archive_id: str) -> int:
    """The id a client named, which the account's archive must hold."""
    found = parsed_id(archive_id)
    if (
        found is None
        or await connection.scalar(_HELD, {"account_id": account_id, "id": found}) is None
    ):
        raise UnknownArchiveId(archive_id)
    return found


async def _filters(
    connection: AsyncConnection, account_id: int, query: ArchiveQuery
) -> list[ColumnElement[bool]]:
    """The conditions of the whole result set (what is counted): ranges of the
    account's ids, narrowed by peer."""
    c = _MESSAGE.c
    where: list[ColumnElement[bool]] = [c.account_id == account_id]
    if query.peer is not None:
        where.append(c.peer == query.peer)
        if query.peer_resource is not None:
            where.append(c.peer_resource == query.peer_resource)
    if query.start is not None:
        where.append(c.id >= id_at(query.start))
    if query.end is not None:
        where.append(c.id <= id_at(query.end, _LOW))
    if query.after_id is not None:
        where.append(c.id > await _held_id(connection, account_id, query.after_id))
    if query.before_id is not None:
        where.append(c.id < await _held_id(connection, account_id, query.before_id))
    if query.ids is not None:
        where.append(c.id.in_(await _held_ids(connection, account_id, query.ids)))
    return where


async def _held_ids(
    connection: AsyncConnection, account_id: int, texts: Sequence[str]
) -> list[int]:
    """The ids a client named, every one of which the account's archive must hold."""
    named = {text: parsed_id(text) for text in texts}
    wanted = sorted({found for found in named.values() if found is not None})
    held: set[int] = set()
    if wanted:
        found = await connection.scalars(_HELD_OF, {"account_id": account_id, "ids": wanted})
        held = set(found.all())
    for text, archive_id in named.items():
        if archive_id not in held:
            raise UnknownArchiveId(text)
    return sorted(held)


def _end(archive_id: int) -> ArchiveEnd:
    return ArchiveEnd(visible_id(archive_id), time_of(archive_id))


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
        bounds.append(c.id > await _held_id(connection, account_id, query.page_after))
    if query.page_before is not None:
        bounds.append(c.id < await _held_id(connection, account_id, query.page_before))
    backwards = query.last_page or query.page_before is not None
    order = c.id.desc() if backwards else c.id.asc()
    statement = (
        select(c.id, c.peer, c.peer_resource, c.outgoing, c.stanza)
        .where(*bounds)
        .order_by(order)
        .limit(query.max + 1)
    )
    rows = (await connection.execute(statement)).all()
    complete = len(rows) <= query.max
    items = [
        ArchivedItem(visible_id(row_id), time_of(row_id), peer, resource, bool(outgoing), stanza)
        for row_id, peer, resource, outgoing, stanza in rows[: query.max]
    ]
    if backwards:
        items.reverse()
    return ArchivePage(items, complete, 0)
