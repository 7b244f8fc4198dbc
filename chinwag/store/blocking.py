"""Block list storage (XEP-0191): the JIDs each account blocks, as canonical strings.

JIDs reaching this layer are already prepared (the network domain parses them), so
two spellings of one JID are one string here. Every writer locks the owner's account
row first (:func:`lock_accounts`): changes to one list are serialised on both engines,
a JID is listed once, and the limit holds. A change that changes anything is
announced with ``blocklist.changed`` in its transaction. The list is read at every
resource binding, through a Core statement built once.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol

from sqlalchemy import bindparam, delete, insert, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.accounts import NoSuchAccount, in_chunks, lock_accounts
from chinwag.store.db import Database
from chinwag.store.events import NewEvent, record_events
from chinwag.store.models import Account, BlockedJid

BLOCKLIST_CHANGED = "blocklist.changed"
"""subject: the account whose block list changed."""

_ACCOUNT = Account.__table__
_BLOCKED_JID = BlockedJid.__table__
# An account that blocks nobody gives one row with a NULL jid; no account, no row.
_BLOCKED = (
    select(_BLOCKED_JID.c.jid)
    .select_from(_ACCOUNT.outerjoin(_BLOCKED_JID, _BLOCKED_JID.c.account_id == _ACCOUNT.c.id))
    .where(_ACCOUNT.c.username == bindparam("username"))
)


class TooManyBlocked(Exception):
    def __init__(self, limit: int) -> None:
        self.limit = limit
        super().__init__(f"a block list holds at most {limit} JIDs")


class BlockingRepository(Protocol):
    async def blocked(self, username: str) -> list[str] | None:
        """The JIDs the account blocks, sorted; None when there is no such account."""

    async def block(self, username: str, jids: Sequence[str], limit: int, origin: str) -> list[str]:
        """Add those of ``jids`` not on the list yet and return them, in the order given.

        Raises NoSuchAccount, or TooManyBlocked when the list would hold more than
        ``limit`` JIDs; either way nothing changes.
        """

    async def unblock(self, username: str, jids: Sequence[str] | None, origin: str) -> list[str]:
        """Take ``jids`` off the list (None: every JID) and return those that were on it,
        sorted. Raises NoSuchAccount."""


class SqlBlockingRepository:
    """BlockingRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def blocked(self, username: str) -> list[str] | None:
        rows = await self._db.rows(_BLOCKED, {"username": username})
        if not rows:
            return None
        # Sorted here: PostgreSQL's locale collation and SQLite's binary one disagree.
        return sorted(row.jid for row in rows if row.jid is not None)

    async def block(self, username: str, jids: Sequence[str], limit: int, origin: str) -> list[str]:
        async with self._sessions.begin() as session:
            account_id = await _locked(session, username)
            listed = await _listed(session, account_id)
            added = [jid for jid in dict.fromkeys(jids) if jid not in listed]
            if len(listed) + len(added) > limit:
                raise TooManyBlocked(limit)
            if added:
                await session.execute(
                    insert(BlockedJid), [{"account_id": account_id, "jid": jid} for jid in added]
                )
                await record_events(session, [NewEvent(BLOCKLIST_CHANGED, username, None, origin)])
        return added

    async def unblock(self, username: str, jids: Sequence[str] | None, origin: str) -> list[str]:
        async with self._sessions.begin() as session:
            account_id = await _locked(session, username)
            listed = await _listed(session, account_id)
            removed = sorted(listed if jids is None else listed.intersection(jids))
            for chunk in in_chunks(removed):
                await session.execute(
                    delete(BlockedJid).where(
                        BlockedJid.account_id == account_id, BlockedJid.jid.in_(chunk)
                    )
                )
            if removed:
                await record_events(session, [NewEvent(BLOCKLIST_CHANGED, username, None, origin)])
        return removed


async def blocking_pairs(
    session: AsyncSession, pairs: Iterable[tuple[int, str]]
) -> set[tuple[int, str]]:
    """Those of ``pairs`` (account id, JID) where the account blocks the JID, read in
    the caller's transaction: offline storage refuses what a recipient blocks."""
    wanted = sorted(set(pairs))
    found: set[tuple[int, str]] = set()
    for chunk in in_chunks(wanted):
        rows = await session.execute(
            select(BlockedJid.account_id, BlockedJid.jid).where(
                tuple_(BlockedJid.account_id, BlockedJid.jid).in_(chunk)
            )
        )
        found.update((account_id, jid) for account_id, jid in rows)
    return found


async def _locked(session: AsyncSession, username: str) -> int:
    """Lock the account's row for the rest of the transaction; its id."""
    locked = await lock_accounts(session, [username])
    if username not in locked:
        raise NoSuchAccount(username)
    return locked[username].id


async def _listed(session: AsyncSession, account_id: int) -> set[str]:
    return set(
        await session.scalars(select(BlockedJid.jid).where(BlockedJid.account_id == account_id))
    )
