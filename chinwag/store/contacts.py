"""Roster storage: each account's contacts with their subscription state, and the
roster version that every change bumps, announced in the same transaction.

Usernames reaching this layer are already normalised. Every writer locks the
rows of the rosters' owners first (:func:`lock_accounts`), so changes to one
roster are serialised on both engines.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from sqlalchemy import and_, bindparam, delete, insert, or_, select, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from chinwag.store.accounts import (
    NoSuchAccount,
    account_exists,
    bump_roster_versions,
    in_chunks,
    lock_accounts,
)
from chinwag.store.db import Database
from chinwag.store.events import ROSTER_CHANGED, NewEvent, record_events
from chinwag.store.models import Account, Profile, RosterItem

SUBSCRIPTIONS = ("none", "to", "from", "both")


@dataclass(frozen=True, slots=True)
class Contact:
    """One roster item of an owner."""

    username: str
    """The contact's account."""
    name: str | None
    """The item's own name if set, else the contact's profile full name (FN), else None."""
    subscription: str
    """"none", "to", "from" or "both"."""
    ask: bool
    """An outbound subscription request is pending."""
    pending_in: bool
    """An inbound subscription request waits for the owner's answer."""
    approved: bool
    """Pre-approved (RFC 6121 3.4)."""
    groups: tuple[str, ...]
    listed: bool = True
    """On the owner's roster; False while the row only holds a pending inbound request."""


@dataclass(frozen=True, slots=True)
class RosterChange:
    owner: str
    contact: str
    item: Contact | None
    """None deletes the item."""


class ContactRepository(Protocol):
    async def roster(self, owner: str) -> tuple[int, list[Contact]] | None:
        """The roster version and items (by contact username); None if no such account."""

    async def item(self, owner: str, contact: str) -> Contact | None: ...

    async def save(self, changes: Sequence[RosterChange], origin: str) -> dict[str, int]:
        """Apply every change in one transaction and bump each owner's version once.

        Returns the new version by owner; writes one ``roster.changed`` event per
        change, marked with ``origin``. Raises NoSuchAccount, changing nothing.
        """

    async def link(self, a: str, b: str, origin: str) -> bool:
        """Make both items subscription 'both'; False if they already were."""

    async def link_many(self, pairs: Sequence[tuple[str, str]], origin: str) -> int:
        """``link`` for many pairs in one transaction; how many items changed."""

    async def unlink(self, a: str, b: str, origin: str) -> bool:
        """Delete both items; False if there were none."""

    async def exists(self, username: str) -> bool: ...


_OWNER = Account.__table__.alias("owner")
_CONTACT = Account.__table__.alias("contact")
_ITEM = RosterItem.__table__
_PROFILE = Profile.__table__
_ITEM_COLUMNS = (
    _CONTACT.c.username,
    _ITEM.c.name,
    _PROFILE.c.fn,
    _ITEM.c.subscription,
    _ITEM.c.ask,
    _ITEM.c.pending_in,
    _ITEM.c.approved,
    _ITEM.c.groups,
    _ITEM.c.listed,
)

# One statement, so the version and the items come from the same snapshot; an
# account without items gives one row of NULL items.
_ROSTER = (
    select(_OWNER.c.roster_version, *_ITEM_COLUMNS)
    .select_from(
        _OWNER.outerjoin(_ITEM, _ITEM.c.owner_id == _OWNER.c.id)
        .outerjoin(_CONTACT, _CONTACT.c.id == _ITEM.c.contact_id)
        .outerjoin(_PROFILE, _PROFILE.c.account_id == _ITEM.c.contact_id)
    )
    .where(_OWNER.c.username == bindparam("owner"))
)
_ROSTER_ITEM = (
    select(*_ITEM_COLUMNS)
    .select_from(
        _ITEM.join(_OWNER, _OWNER.c.id == _ITEM.c.owner_id)
        .join(_CONTACT, _CONTACT.c.id == _ITEM.c.contact_id)
        .outerjoin(_PROFILE, _PROFILE.c.account_id == _ITEM.c.contact_id)
    )
    .where(_OWNER.c.username == bindparam("owner"), _CONTACT.c.username == bindparam("contact"))
)


class SqlContactRepository:
    """ContactRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database) -> None:
        self._db = db
        self._sessions = db.sessions

    async def roster(self, owner: str) -> tuple[int, list[Contact]] | None:
        rows = await self._db.rows(_ROSTER, {"owner": owner})
        if not rows:
            return None
        items = [_contact(row[1:]) for row in rows if row.username is not None]
        # Sorted here: PostgreSQL's locale collation and SQLite's binary one disagree.
        return rows[0].roster_version, sorted(items, key=lambda item: item.username)

    async def item(self, owner: str, contact: str) -> Contact | None:
        rows = await self._db.rows(_ROSTER_ITEM, {"owner": owner, "contact": contact})
        return _contact(rows[0]) if rows else None

    async def save(self, changes: Sequence[RosterChange], origin: str) -> dict[str, int]:
        if not changes:
            return {}
        owners = {change.owner for change in changes}
        async with self._sessions.begin() as session:
            locked = await lock_accounts(session, owners)
            ids = {name: account.id for name, account in locked.items()}
            ids |= await _account_ids(session, {c.contact for c in changes} - ids.keys())
            missing = sorted(owners.union(c.contact for c in changes) - ids.keys())
            if missing:
                raise NoSuchAccount(missing[0])
            for change in changes:
                await _write_item(session, ids[change.owner], ids[change.contact], change.item)
            versions = await bump_roster_versions(
                session, select(Account.id).where(Account.id.in_([ids[o] for o in owners]))
            )
            await record_events(
                session,
                [NewEvent(ROSTER_CHANGED, c.owner, c.contact, origin) for c in changes],
            )
        return versions

    async def link(self, a: str, b: str, origin: str) -> bool:
        return await self.link_many([(a, b)], origin) > 0

    async def link_many(self, pairs: Sequence[tuple[str, str]], origin: str) -> int:
        # A few statements for the whole batch, not a read and a write per item: a bulk
        # import of thousands of pairs takes seconds.
        async with self._sessions.begin() as session:
            ids = await _locked_accounts(session, {name for pair in pairs for name in pair})
            items = dict.fromkeys(
                (owner, contact) for a, b in pairs for owner, contact in ((a, b), (b, a))
            )
            stored = await _stored_items(session, [(ids[o], ids[c]) for o, c in items])
            added: list[dict[str, Any]] = []
            updated: list[dict[str, Any]] = []
            changed = []
            for owner, contact in items:
                key = (ids[owner], ids[contact])
                current = stored.get(key)
                linked = _linked(current)
                if current == linked:
                    continue
                row = {"owner_id": key[0], "contact_id": key[1], **linked}
                (added if current is None else updated).append(row)
                changed.append((owner, contact))
            if added:
                await session.execute(insert(RosterItem), added)
            if updated:
                await session.execute(update(RosterItem), updated)
            if changed:
                await _bump_and_announce(session, ids, changed, origin)
        return len(changed)

    async def unlink(self, a: str, b: str, origin: str) -> bool:
        async with self._sessions.begin() as session:
            ids = await _locked_pair(session, a, b)
            name_of = {account_id: name for name, account_id in ids.items()}
            deleted = await session.execute(
                delete(RosterItem)
                .where(
                    or_(
                        and_(RosterItem.owner_id == ids[a], RosterItem.contact_id == ids[b]),
                        and_(RosterItem.owner_id == ids[b], RosterItem.contact_id == ids[a]),
                    )
                )
                .returning(RosterItem.owner_id, RosterItem.contact_id)
            )
            changed = sorted((name_of[owner], name_of[contact]) for owner, contact in deleted)
            if not changed:
                return False
            await _bump_and_announce(session, ids, changed, origin)
        return True

    async def exists(self, username: str) -> bool:
        return await account_exists(self._db, username)


def _contact(row: Sequence[Any]) -> Contact:
    username, own_name, fn, subscription, ask, pending_in, approved, groups, listed = row
    return Contact(
        username,
        own_name if own_name is not None else fn,
        subscription,
        bool(ask),
        bool(pending_in),
        bool(approved),
        tuple(json.loads(groups)),
        bool(listed),
    )


async def _account_ids(session: AsyncSession, usernames: Iterable[str]) -> dict[str, int]:
    names = list(usernames)
    if not names:
        return {}
    rows = await session.execute(
        select(Account.username, Account.id).where(Account.username.in_(names))
    )
    return {username: account_id for username, account_id in rows}


async def _locked_pair(session: AsyncSession, a: str, b: str) -> dict[str, int]:
    return await _locked_accounts(session, {a, b})


async def _locked_accounts(session: AsyncSession, names: set[str]) -> dict[str, int]:
    locked = await lock_accounts(session, names)
    missing = sorted(names - locked.keys())
    if missing:
        raise NoSuchAccount(missing[0])
    return {name: account.id for name, account in locked.items()}


_LINK_COLUMNS = (
    RosterItem.name,
    RosterItem.subscription,
    RosterItem.ask,
    RosterItem.pending_in,
    RosterItem.approved,
    RosterItem.groups,
    RosterItem.listed,
)


def _linked(current: dict[str, Any] | None) -> dict[str, Any]:
    """An item made subscription 'both', keeping its name and groups."""
    name, groups = (current["name"], current["groups"]) if current else (None, "[]")
    return {
        "name": name,
        "subscription": "both",
        "ask": False,
        "pending_in": False,
        "approved": False,
        "groups": groups,
        "listed": True,
    }


async def _stored_items(
    session: AsyncSession, keys: Sequence[tuple[int, int]]
) -> dict[tuple[int, int], dict[str, Any]]:
    """The linking columns of the items stored under ``keys`` (owner id, contact id)."""
    stored = {}
    for chunk in in_chunks(keys):
        rows = await session.execute(
            select(RosterItem.owner_id, RosterItem.contact_id, *_LINK_COLUMNS).where(
                tuple_(RosterItem.owner_id, RosterItem.contact_id).in_(chunk)
            )
        )
        for row in rows:
            owner_id, contact_id, *values = row
            stored[owner_id, contact_id] = {
                column.key: value for column, value in zip(_LINK_COLUMNS, values, strict=True)
            }
    return stored


async def _write_item(
    session: AsyncSession, owner_id: int, contact_id: int, item: Contact | None
) -> None:
    if item is None:
        await session.execute(
            delete(RosterItem).where(
                RosterItem.owner_id == owner_id, RosterItem.contact_id == contact_id
            )
        )
        return
    stored_name, fn, exists = (
        await session.execute(
            select(RosterItem.name, Profile.fn, RosterItem.subscription)
            .select_from(Account)
            .outerjoin(
                RosterItem,
                and_(RosterItem.owner_id == owner_id, RosterItem.contact_id == Account.id),
            )
            .outerjoin(Profile, Profile.account_id == Account.id)
            .where(Account.id == contact_id)
        )
    ).one()
    row = {
        "name": _own_name(item.name, stored_name, fn) if exists is not None else item.name,
        "subscription": item.subscription,
        "ask": item.ask,
        "pending_in": item.pending_in,
        "approved": item.approved,
        "groups": json.dumps(list(item.groups), ensure_ascii=False),
        "listed": item.listed,
    }
    if exists is None and _stateless(row):
        return  # e.g. the other side of removing a one-way item: no row to create
    await _put_row(session, owner_id, contact_id, row, exists is not None)


def _own_name(given: str | None, stored: str | None, fn: str | None) -> str | None:
    """The name to store for an existing item now shown as ``given``.

    Items read back carry the contact's FN when they have no name of their own; a
    caller saving such an item unchanged must not freeze that FN into the item.
    """
    if given is None or given == stored:
        return given
    return None if given == fn else given


def _stateless(row: dict[str, Any]) -> bool:
    return row["subscription"] == "none" and not (
        row["listed"]
        or row["ask"]
        or row["pending_in"]
        or row["approved"]
        or row["name"]
        or row["groups"] != "[]"
    )


async def _put_row(
    session: AsyncSession, owner_id: int, contact_id: int, row: dict[str, Any], exists: bool
) -> None:
    # The owner's row is locked, so nobody else adds or removes this item meanwhile.
    if exists:
        await session.execute(
            update(RosterItem)
            .where(RosterItem.owner_id == owner_id, RosterItem.contact_id == contact_id)
            .values(row)
        )
    else:
        await session.execute(
            insert(RosterItem).values({"owner_id": owner_id, "contact_id": contact_id, **row})
        )


async def _bump_and_announce(
    session: AsyncSession, ids: dict[str, int], changed: Sequence[tuple[str, str]], origin: str
) -> None:
    owner_ids = [ids[owner] for owner, _contact in changed]
    await bump_roster_versions(session, select(Account.id).where(Account.id.in_(owner_ids)))
    await record_events(
        session, [NewEvent(ROSTER_CHANGED, owner, contact, origin) for owner, contact in changed]
    )
