"""Offline message storage (XEP-0160): stanzas kept for an account until it comes online.

``store`` commits before it returns, so a sender's stream can move on knowing the
message is safe. Messages are ordered strictly by id, which only ever grows.
Its statements are Core, built once: ``fetch`` runs at every initial presence.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from sqlalchemy import bindparam, delete, func, insert, select

from chinwag.store.accounts import ACCOUNT_ID, lock_accounts
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


class StoreResult(Enum):
    STORED = "stored"
    NO_ACCOUNT = "no account"
    QUOTA_EXCEEDED = "quota exceeded"


@dataclass(frozen=True, slots=True)
class StoredMessage:
    id: int
    stanza: str
    stored_at: datetime
    """Timezone-aware, UTC."""


class OfflineRepository(Protocol):
    async def store(
        self, username: str, stanza: str, stored_at: datetime, quota: int
    ) -> StoreResult:
        """Keep ``stanza`` for ``username`` unless it has ``quota`` messages already.

        One transaction, committed when this returns STORED.
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

    async def store(
        self, username: str, stanza: str, stored_at: datetime, quota: int
    ) -> StoreResult:
        async with self._sessions.begin() as session:
            # Locked, so concurrent stores for one user count one after the other.
            locked = await lock_accounts(session, [username])
            if username not in locked:
                return StoreResult.NO_ACCOUNT
            if await session.scalar(_COUNT, {"username": username}) >= quota:
                return StoreResult.QUOTA_EXCEEDED
            await session.execute(
                insert(OfflineMessage).values(
                    account_id=locked[username].id, stanza=stanza, stored_at=stored_at
                )
            )
        return StoreResult.STORED

    async def fetch(self, username: str) -> list[StoredMessage]:
        rows = await self._db.rows(_FETCH, {"username": username})
        return [StoredMessage(*row) for row in rows]

    async def delete(self, username: str, up_to_id: int) -> int:
        async with self._db.engine.begin() as connection:
            result = await connection.execute(_DELETE, {"username": username, "up_to_id": up_to_id})
        return result.rowcount

    async def count(self, username: str) -> int:
        return int(await self._db.scalar(_COUNT, {"username": username}))
