"""Offline message storage (XEP-0160): stanzas kept for an account until it comes online.

``store_many`` keeps a batch of messages in one transaction, committed before it
returns, so the senders' streams can move on knowing their messages are safe; a
batch costs one commit however many messages it holds. Messages are ordered
strictly by id, which only ever grows. Its statements are Core, built once:
``fetch`` runs at every initial presence.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Any, Protocol

from sqlalchemy import bindparam, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.accounts import ACCOUNT_ID, in_chunks, lock_accounts
from chinwag.store.blocking import blocking_pairs
from chinwag.store.db import Database
from chinwag.store.models import OfflineMessage

_MESSAGE = OfflineMessage.__table__
# The account is looked up in the statement itself: one round trip.
_OF_ACCOUNT = _MESSAGE.c.account_id == ACCOUNT_ID.scalar_subquery()
_FETCH = (
    select(_MESSAGE.c.id, _MESSAGE.c.stanza, _MESSAGE.c.stored_at)
    .where(_OF_ACCOUNT)
    .order_by(_MESSAGE.c.id)
)
_COUNT = select(func.count()).select_from(_MESSAGE).where(_OF_ACCOUNT)
_DELETE = delete(_MESSAGE).where(_OF_ACCOUNT, _MESSAGE.c.id <= bindparam("up_to_id"))
_COUNTS = (
    select(_MESSAGE.c.account_id, func.count())
    .where(_MESSAGE.c.account_id.in_(bindparam("account_ids", expanding=True)))
    .group_by(_MESSAGE.c.account_id)
)
_INSERT = insert(_MESSAGE)


class StoreResult(Enum):
    STORED = "stored"
    NO_ACCOUNT = "no account"
    QUOTA_EXCEEDED = "quota exceeded"
    BLOCKED = "blocked"
    """The account blocks the sender (XEP-0191)."""


@dataclass(frozen=True, slots=True)
class NewOfflineMessage:
    """A stanza to keep for ``username``."""

    username: str
    stanza: str
    stored_at: datetime
    sender_forms: tuple[str, ...] = ()
    """The forms of the sender's JID that a block list entry names (XEP-0191 JID
    matching): the message is refused if its account blocks any of them."""


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    stanza: str
    stored_at: datetime
    """Timezone-aware, UTC."""


class OfflineRepository(Protocol):
    async def store_many(
        self, messages: Sequence[NewOfflineMessage], quota: int
    ) -> list[StoreResult]:
        """Keep each message unless its account blocks its sender or already has
        ``quota`` messages, counting those kept before it in ``messages``; one result
        per message, in order.

        One transaction, committed when this returns. An account's new messages get
        ids in the order of ``messages``, above every id it had.
        """

    async def fetch(self, username: str) -> list[StoredMessage]:
        """The user's messages, oldest (lowest id) first."""

    async def delete(self, username: str, up_to_id: int) -> int:
        """Remove the user's messages with ids up to ``up_to_id``; how many went."""

    async def count(self, username: str) -> int: ...


class SqlOfflineRepository:
    """OfflineRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def store_many(
        self, messages: Sequence[NewOfflineMessage], quota: int
    ) -> list[StoreResult]:
        async with self._sessions.begin() as session:
            # Locked, so concurrent stores for one user count one after the other.
            locked = await lock_accounts(session, {message.username for message in messages})
            account_ids = {username: account.id for username, account in locked.items()}
            counts = await _counts(session, account_ids.values())
            blocked = await _blocked(session, messages, account_ids)
            results, rows = _admitted(messages, account_ids, counts, blocked, quota)
            if rows:
                await session.execute(_INSERT, rows)
        return results

    async def fetch(self, username: str) -> list[StoredMessage]:
        rows = await self._db.rows(_FETCH, {"username": username})
        return [StoredMessage(*row) for row in rows]

    async def delete(self, username: str, up_to_id: int) -> int:
        async with self._db.engine.begin() as connection:
            result = await connection.execute(_DELETE, {"username": username, "up_to_id": up_to_id})
        return result.rowcount

    async def count(self, username: str) -> int:
        return int(await self._db.scalar(_COUNT, {"username": username}))


async def _counts(session: AsyncSession, account_ids: Collection[int]) -> dict[int, int]:
    """How many messages each of ``account_ids`` has stored (absent: none)."""
    counts: dict[int, int] = {}
    for chunk in in_chunks(sorted(account_ids)):
        rows = await session.execute(_COUNTS, {"account_ids": chunk})
        counts.update({account_id: count for account_id, count in rows})
    return counts


async def _blocked(
    session: AsyncSession, messages: Sequence[NewOfflineMessage], account_ids: Mapping[str, int]
) -> set[tuple[int, str]]:
    """Which (account id, sender form) of ``messages`` the accounts block."""
    pairs = [
        (account_ids[message.username], form)
        for message in messages
        if message.username in account_ids
        for form in message.sender_forms
    ]
    return await blocking_pairs(session, pairs) if pairs else set()


def _admitted(
    messages: Sequence[NewOfflineMessage],
    account_ids: Mapping[str, int],
    counts: dict[int, int],
    blocked: set[tuple[int, str]],
    quota: int,
) -> tuple[list[StoreResult], list[dict[str, Any]]]:
    """Each message's result, and the rows to insert for those stored, in order.

    ``counts`` goes up with every message admitted, so the quota covers the batch.
    """
    results: list[StoreResult] = []
    rows: list[dict[str, Any]] = []
    for message in messages:
        account_id = account_ids.get(message.username)
        if account_id is None:
            results.append(StoreResult.NO_ACCOUNT)
        elif any((account_id, form) in blocked for form in message.sender_forms):
            results.append(StoreResult.BLOCKED)
        elif counts.get(account_id, 0) >= quota:
            results.append(StoreResult.QUOTA_EXCEEDED)
        else:
            counts[account_id] = counts.get(account_id, 0) + 1
            results.append(StoreResult.STORED)
            rows.append(
                {"account_id": account_id, "stanza": message.stanza, "stored_at": message.stored_at}
            )
    return results, rows
