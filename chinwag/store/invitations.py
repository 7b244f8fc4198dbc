"""Invitation storage: sign-up links, each kept as the digest of its token and spent on
one account, in the transaction that creates that account."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, bindparam, insert, select, update
from sqlalchemy.exc import IntegrityError

from chinwag.store.accounts import AccountExists, NewAccount, account_exists, insert_accounts
from chinwag.store.db import Database
from chinwag.store.models import Invitation

_INVITATION = Invitation.__table__
_BY_HASH = select(
    _INVITATION.c.id,
    _INVITATION.c.created_by,
    _INVITATION.c.created_at,
    _INVITATION.c.expires_at,
    _INVITATION.c.used_at,
    _INVITATION.c.used_by,
).where(_INVITATION.c.token_hash == bindparam("token_hash"))


@dataclass(frozen=True)
class InvitationRecord:
    id: int
    created_by: str
    created_at: datetime
    expires_at: datetime
    used_at: datetime | None
    used_by: str | None


class InvitationSpent(Exception):
    """The token names no invitation that can still be used (none, used or expired)."""


class SqlInvitationRepository:
    """Invitations on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def add(
        self, token_hash: bytes, created_by: str, created_at: datetime, expires_at: datetime
    ) -> InvitationRecord:
        async with self._sessions.begin() as session:
            invitation_id = await session.scalar(
                insert(Invitation)
                .values(
                    token_hash=token_hash,
                    created_by=created_by,
                    created_at=created_at,
                    expires_at=expires_at,
                )
                .returning(Invitation.id)
            )
        assert invitation_id is not None
        return InvitationRecord(invitation_id, created_by, created_at, expires_at, None, None)

    async def find(self, token_hash: bytes) -> InvitationRecord | None:
        rows = await self._db.rows(_BY_HASH, {"token_hash": token_hash})
        return _record(rows[0]) if rows else None

    async def username_taken(self, username: str) -> bool:
        return await account_exists(self._db, username)

    async def spend(self, token_hash: bytes, account: NewAccount, now: datetime) -> None:
        """Create ``account`` with the invitation, and mark it used by it, together.

        Raises InvitationSpent when the invitation is not there, was used or has expired
        by ``now`` (of two that race for it, one wins), and AccountExists when the name
        is taken; either way, nothing changes.
        """
        try:
            async with self._sessions.begin() as session:
                spent = await session.scalar(
                    update(Invitation)
                    .where(
                        Invitation.token_hash == token_hash,
                        Invitation.used_at.is_(None),
                        Invitation.expires_at > now,
                    )
                    .values(used_at=now, used_by=account.username)
                    .returning(Invitation.id)
                )
                if spent is None:
                    raise InvitationSpent
                await insert_accounts(session, [account])
        except IntegrityError:
            if not await account_exists(self._db, account.username):
                raise
            raise AccountExists([account.username]) from None


def _record(row: Row[Any]) -> InvitationRecord:
    return InvitationRecord(
        row.id, row.created_by, row.created_at, row.expires_at, row.used_at, row.used_by
    )
