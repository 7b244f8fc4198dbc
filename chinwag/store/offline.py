"""Offline message storage (XEP-0160): stanzas kept for an account until it comes online.

``store`` commits before it returns, so a sender's stream can move on knowing the
message is safe. Messages are ordered strictly by id, which only ever grows.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from enum import Enum
from typing import Protocol

from sqlalchemy import ScalarSelect, delete, func, insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.accounts import lock_accounts
from chinwag.store.db import Database
from chinwag.store.models import Account, OfflineMessage


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
        self._sessions = db.sessions

    async def store(
        self, username: str, stanza: str, stored_at: datetime, quota: int
    ) -> StoreResult:
        async with self._sessions.begin() as session:
            # Locked, so concurrent stores for one user count one after the other.
            locked = await lock_accounts(session, [username])
            if username not in locked:
                return StoreResult.NO_ACCOUNT
            account_id = locked[username].id
            if await _count(session, account_id) >= quota:
                return StoreResult.QUOTA_EXCEEDED
            await session.execute(
                insert(OfflineMessage).values(
                    account_id=account_id, stanza=stanza, stored_at=stored_at
                )
            )
        return StoreResult.STORED

    async def fetch(self, username: str) -> list[StoredMessage]:
        query = (
            select(OfflineMessage.id, OfflineMessage.stanza, OfflineMessage.stored_at)
            .where(OfflineMessage.account_id == _account_id(username))
            .order_by(OfflineMessage.id)
        )
        async with self._sessions() as session:
            rows = await session.execute(query)
            return [StoredMessage(*row) for row in rows]

    async def delete(self, username: str, up_to_id: int) -> int:
        async with self._sessions.begin() as session:
            result = await session.execute(
                delete(OfflineMessage).where(
                    OfflineMessage.account_id == _account_id(username),
                    OfflineMessage.id <= up_to_id,
                )
            )
        return result.rowcount  # type: ignore[attr-defined, no-any-return]

    async def count(self, username: str) -> int:
        async with self._sessions() as session:
            return await _count(session, _account_id(username))


def _account_id(username: str) -> ScalarSelect[int]:
    return select(Account.id).where(Account.username == username).scalar_subquery()


async def _count(session: AsyncSession, account_id: int | ScalarSelect[int]) -> int:
    counted = await session.scalar(
        select(func.count())
        .select_from(OfflineMessage)
        .where(OfflineMessage.account_id == account_id)
    )
    return counted or 0
