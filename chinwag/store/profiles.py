"""Profile storage: the vCard-like public data of an account.

Every change is announced with ``profile.changed``; a change of the full name
also changes how the account is shown on the rosters that have no name of their
own for it, so those rosters' versions go up and each gets ``roster.changed``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields
from typing import Any, Protocol

from sqlalchemy import bindparam, insert, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.accounts import NoSuchAccount, bump_roster_versions, lock_accounts
from chinwag.store.db import Database
from chinwag.store.events import (
    PROFILE_CHANGED,
    ROSTER_CHANGED,
    UNAPPLIED,
    NewEvent,
    record_events,
)
from chinwag.store.models import Account, RosterItem
from chinwag.store.models import Profile as ProfileRow


@dataclass(frozen=True, slots=True)
class Profile:
    fn: str | None
    """Full name."""
    nickname: str | None
    email: str | None
    photo_type: str | None
    """The photo's media type, e.g. image/png."""
    photo: bytes | None


@dataclass(frozen=True, slots=True)
class ProfileUpdate:
    """A whole new profile: fields left out are cleared (vCard set semantics)."""

    fn: str | None = None
    nickname: str | None = None
    email: str | None = None
    photo_type: str | None = None
    photo: bytes | None = None


PROFILE_FIELDS = tuple(field.name for field in fields(Profile))
EMPTY_PROFILE = Profile(None, None, None, None, None)


class ProfileRepository(Protocol):
    async def get(self, username: str) -> Profile | None:
        """None when there is no such account."""

    async def update(
        self, username: str, values: Mapping[str, str | bytes | None], origin: str
    ) -> Profile:
        """Set the given fields only and return the whole profile; raises NoSuchAccount."""


class SqlProfileRepository:
    """ProfileRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def get(self, username: str) -> Profile | None:
        rows = await self._db.rows(_PROFILE, {"username": username})
        return _profile(rows[0][1:]) if rows else None

    async def update(
        self, username: str, values: Mapping[str, str | bytes | None], origin: str
    ) -> Profile:
        unknown = set(values) - set(PROFILE_FIELDS)
        if unknown:
            raise TypeError(f"not profile fields: {', '.join(sorted(unknown))}")
        async with self._sessions.begin() as session:
            locked = await lock_accounts(session, [username])
            if username not in locked:
                raise NoSuchAccount(username)
            account_id = locked[username].id
            before = await _stored(session, account_id)
            if before is None:
                await session.execute(
                    insert(ProfileRow).values({"account_id": account_id, **values})
                )
            elif values:
                await session.execute(
                    update(ProfileRow)
                    .where(ProfileRow.account_id == account_id)
                    .values(dict(values))
                )
            after = (await _stored(session, account_id)) or EMPTY_PROFILE
            events = [NewEvent(PROFILE_CHANGED, username, None, origin)]
            if after.fn != (before or EMPTY_PROFILE).fn:
                events += await _rename_on_rosters(session, username, account_id)
            await record_events(session, events)
        return after


_COLUMNS = (
    ProfileRow.fn,
    ProfileRow.nickname,
    ProfileRow.email,
    ProfileRow.photo_type,
    ProfileRow.photo,
)

# Read at every first sign-in (the photo's hash), outside the ORM: no account, no row.
_PROFILE = (
    select(Account.id, *_COLUMNS)
    .outerjoin(ProfileRow, ProfileRow.account_id == Account.id)
    .where(Account.username == bindparam("username"))
)


def _profile(row: Sequence[Any]) -> Profile:
    fn, nickname, email, photo_type, photo = row
    return Profile(fn, nickname, email, photo_type, None if photo is None else bytes(photo))


async def _stored(session: AsyncSession, account_id: int) -> Profile | None:
    row = (
        await session.execute(select(*_COLUMNS).where(ProfileRow.account_id == account_id))
    ).one_or_none()
    return None if row is None else _profile(row)


async def _rename_on_rosters(
    session: AsyncSession, username: str, account_id: int
) -> list[NewEvent]:
    """Bump the rosters that show ``username`` by its full name; their events."""
    holders = select(RosterItem.owner_id).where(
        RosterItem.contact_id == account_id, RosterItem.name.is_(None)
    )
    owners = await bump_roster_versions(session, holders)
    # No process has pushed the new name to these rosters yet: every reader must.
    return [NewEvent(ROSTER_CHANGED, owner, username, UNAPPLIED) for owner in sorted(owners)]
