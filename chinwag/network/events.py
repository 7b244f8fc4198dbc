"""The network's change events, read from the transactional outbox.

Repositories write an event in the very transaction of the change it announces
(so an event exists exactly when its change does), marked with the origin of the
process that made the change. Readers (the XMPP server's event pump) poll
:meth:`EventLog.since` and skip their own events, which they applied already.

Kinds: ``roster.changed`` (subject: roster owner, object: contact),
``profile.changed`` and ``account.deleted`` (subject: the account),
``account.password_changed`` (subject: the account; detail: the :func:`resource_mark` of
the session that changed it, which stays signed in), ``blocklist.changed`` (subject:
the account whose block list changed, ``network/blocking.py``),
``archive.prefs_changed`` (subject: the account whose archiving preferences were set,
``store/archive.py``). Consequences
nobody has applied yet, such as contacts losing a deleted account, carry the
origin :data:`UNAPPLIED`, so every reader delivers them.
"""

from __future__ import annotations

import hashlib
import secrets
from datetime import timedelta

from chinwag.store.db import Database
from chinwag.store.events import (
    ACCOUNT_DELETED,
    ACCOUNT_PASSWORD_CHANGED,
    MAX_ORIGIN_LENGTH,
    PROFILE_CHANGED,
    ROSTER_CHANGED,
    UNAPPLIED,
    NetworkEvent,
    SqlEventRepository,
)
from chinwag.store.models import utc_now

__all__ = [
    "ACCOUNT_DELETED",
    "ACCOUNT_PASSWORD_CHANGED",
    "PROFILE_CHANGED",
    "ROSTER_CHANGED",
    "UNAPPLIED",
    "EventLog",
    "NetworkEvent",
    "resource_mark",
]


def resource_mark(resource: str) -> str:
    """What names one resource of an account in an event's detail: a resource may be
    longer than a detail holds, so its SHA-256, in hex."""
    return hashlib.sha256(resource.encode()).hexdigest()


class EventLog:
    """Reads the outbox, and holds the origin this process marks its own changes with."""

    def __init__(self, db: Database, origin: str | None = None) -> None:
        if origin is not None and not 0 < len(origin) <= MAX_ORIGIN_LENGTH:
            raise ValueError(f"an origin is 1 to {MAX_ORIGIN_LENGTH} characters")
        self._repo = SqlEventRepository(db)
        self.origin = origin if origin is not None else secrets.token_hex(8)

    async def latest_id(self) -> int:
        """The id of the newest event; 0 when there is none."""
        return await self._repo.latest_id()

    async def since(self, last_id: int, limit: int = 1000) -> list[NetworkEvent]:
        """Up to ``limit`` events after ``last_id``, in id (and commit) order."""
        return await self._repo.since(last_id, limit)

    async def prune(self, older_than: timedelta) -> int:
        """Delete events written more than ``older_than`` ago; how many went."""
        return await self._repo.prune(utc_now() - older_than)
