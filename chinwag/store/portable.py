"""Whole accounts out of the store and into it, for XEP-0227 export and import.

:func:`dump` reads every account with what it owns (SCRAM verifiers, profile, roster
items, offline messages, PEP nodes with their items, affiliations and subscriptions,
private XML), a
batch at a time, all from one snapshot of the database.
:class:`Loader` adds new accounts with all of that inside one transaction, so that
an import lands whole or not at all. Roster items wait until every account of the
import is in, since an item may name an account that comes later.

App passwords, tokens, apps and consents are not accounts' portable data (XEP-0227
has no place for them): neither side touches them.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Iterable, Sequence
from contextlib import asynccontextmanager
from dataclasses import asdict, dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import Row, insert, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from chinwag.store.accounts import StoredScram, in_chunks
from chinwag.store.db import Database, read_snapshot
from chinwag.store.models import (
    Account,
    Credential,
    OfflineMessage,
    PepAffiliation,
    PepItem,
    PepNode,
    PepSubscription,
    PrivateXml,
    Profile,
    RosterItem,
)
from chinwag.store.pep import StoredItem
from chinwag.store.profiles import Profile as ProfileData

DUMP_BATCH = 100
"""Accounts read per round of queries: what an export holds in memory at once."""

_CONTACT = Account.__table__.alias("contact")
_CREDENTIAL = Credential.__table__
_PROFILE = Profile.__table__
_ITEM = RosterItem.__table__
_MESSAGE = OfflineMessage.__table__
_NODE = PepNode.__table__
_PEP_ITEM = PepItem.__table__
_AFFILIATION = PepAffiliation.__table__
_SUBSCRIPTION = PepSubscription.__table__
_PRIVATE = PrivateXml.__table__


@dataclass(frozen=True, slots=True)
class PortableItem:
    """One roster item, as the store keeps it."""

    contact: str
    """The contact's username (an account of this server)."""
    name: str | None
    """The owner's own name for the contact (not the contact's full name)."""
    subscription: str
    ask: bool
    pending_in: bool
    approved: bool
    groups: tuple[str, ...]
    listed: bool


@dataclass(frozen=True, slots=True)
class PortableMessage:
    """An offline message: the stanza as stored, and when it was."""

    stanza: str
    stored_at: datetime


@dataclass(frozen=True, slots=True)
class PortableNode:
    """A PEP node with its configuration, items (oldest first), affiliations and
    subscriptions."""

    node: str
    access_model: str
    max_items: int
    items: tuple[StoredItem, ...]
    affiliations: tuple[tuple[str, str], ...] = ()
    """(bare JID, ``member`` or ``outcast``) of each JID affiliated with the node, in the
    order they were set; the account, its owner, is not among them."""
    roster_groups: tuple[str, ...] = ()
    """The owner's roster groups that read the node under the ``roster`` access model."""
    subscriptions: tuple[str, ...] = ()
    """The JIDs, bare or full, subscribed to the node, in the order they subscribed."""


@dataclass(frozen=True, slots=True)
class PortableAccount:
    username: str
    credentials: tuple[StoredScram, ...]
    profile: ProfileData
    roster: tuple[PortableItem, ...]
    offline: tuple[PortableMessage, ...]
    pep: tuple[PortableNode, ...] = ()
    private: tuple[tuple[str, str], ...] = ()
    """(namespace, ``<query xmlns='jabber:iq:private'>`` text) of each stored fragment."""


async def dump(db: Database, batch_size: int = DUMP_BATCH) -> AsyncIterator[list[PortableAccount]]:
    """Every account, in the order they were made, ``batch_size`` at a time, as one
    snapshot sees them (changes made meanwhile are not seen)."""
    async with db.engine.connect() as connection:
        await read_snapshot(connection)
        after = 0
        while True:
            accounts = (
                await connection.execute(
                    select(Account.id, Account.username)
                    .where(Account.id > after)
                    .order_by(Account.id)
                    .limit(batch_size)
                )
            ).all()
            if not accounts:
                return
            yield await _read_batch(connection, {row.id: row.username for row in accounts})
            after = accounts[-1].id


async def _read_batch(
    connection: AsyncConnection, usernames: dict[int, str]
) -> list[PortableAccount]:
    ids = list(usernames)
    credentials: dict[int, list[StoredScram]] = {account_id: [] for account_id in ids}
    for scram in await connection.execute(
        select(_CREDENTIAL).where(_CREDENTIAL.c.account_id.in_(ids))
    ):
        credentials[scram.account_id].append(_stored_scram(scram))
    profiles = {
        profile.account_id: ProfileData(
            profile.fn,
            profile.nickname,
            profile.email,
            profile.photo_type,
            _bytes_or_none(profile.photo),
        )
        for profile in await connection.execute(
            select(_PROFILE).where(_PROFILE.c.account_id.in_(ids))
        )
    }
    rosters: dict[int, list[PortableItem]] = {account_id: [] for account_id in ids}
    items = (
        select(_ITEM, _CONTACT.c.username)
        .join(_CONTACT, _CONTACT.c.id == _ITEM.c.contact_id)
        .where(_ITEM.c.owner_id.in_(ids))
        .order_by(_ITEM.c.owner_id, _CONTACT.c.username)
    )
    for item in await connection.execute(items):
        rosters[item.owner_id].append(_item(item))
    offline: dict[int, list[PortableMessage]] = {account_id: [] for account_id in ids}
    messages = (
        select(_MESSAGE.c.account_id, _MESSAGE.c.stanza, _MESSAGE.c.stored_at)
        .where(_MESSAGE.c.account_id.in_(ids))
        .order_by(_MESSAGE.c.id)
    )
    for message in await connection.execute(messages):
        offline[message.account_id].append(PortableMessage(message.stanza, message.stored_at))
    pep = await _read_nodes(connection, ids)
    private: dict[int, list[tuple[str, str]]] = {account_id: [] for account_id in ids}
    fragments = (
        select(_PRIVATE.c.account_id, _PRIVATE.c.namespace, _PRIVATE.c.payload)
        .where(_PRIVATE.c.account_id.in_(ids))
        .order_by(_PRIVATE.c.namespace)
    )
    for fragment in await connection.execute(fragments):
        private[fragment.account_id].append((fragment.namespace, fragment.payload))
    return [
        PortableAccount(
            username,
            tuple(credentials[account_id]),
            profiles.get(account_id, ProfileData(None, None, None, None, None)),
            tuple(rosters[account_id]),
            tuple(offline[account_id]),
            tuple(pep[account_id]),
            tuple(private[account_id]),
        )
        for account_id, username in usernames.items()
    ]


async def _read_nodes(connection: AsyncConnection, ids: list[int]) -> dict[int, list[PortableNode]]:
    nodes = (
        await connection.execute(
            select(_NODE).where(_NODE.c.account_id.in_(ids)).order_by(_NODE.c.node)
        )
    ).all()
    items: dict[int, list[StoredItem]] = {node.id: [] for node in nodes}
    affiliations: dict[int, list[tuple[str, str]]] = {node.id: [] for node in nodes}
    subscriptions: dict[int, list[str]] = {node.id: [] for node in nodes}
    for chunk in in_chunks(list(items)):
        for item in await connection.execute(
            select(_PEP_ITEM.c.node_id, _PEP_ITEM.c.item_id, _PEP_ITEM.c.payload)
            .where(_PEP_ITEM.c.node_id.in_(chunk))
            .order_by(_PEP_ITEM.c.id)
        ):
            items[item.node_id].append(StoredItem(item.item_id, item.payload))
        for row in await connection.execute(
            select(_AFFILIATION.c.node_id, _AFFILIATION.c.jid, _AFFILIATION.c.affiliation)
            .where(_AFFILIATION.c.node_id.in_(chunk))
            .order_by(_AFFILIATION.c.id)
        ):
            affiliations[row.node_id].append((row.jid, row.affiliation))
        for subscribed in await connection.execute(
            select(_SUBSCRIPTION.c.node_id, _SUBSCRIPTION.c.jid)
            .where(_SUBSCRIPTION.c.node_id.in_(chunk))
            .order_by(_SUBSCRIPTION.c.id)
        ):
            subscriptions[subscribed.node_id].append(subscribed.jid)
    found: dict[int, list[PortableNode]] = {account_id: [] for account_id in ids}
    for node in nodes:
        found[node.account_id].append(
            PortableNode(
                node.node,
                node.access_model,
                node.max_items,
                tuple(items[node.id]),
                tuple(affiliations[node.id]),
                tuple(json.loads(node.roster_groups)),
                tuple(subscriptions[node.id]),
            )
        )
    return found


def _stored_scram(row: Row[Any]) -> StoredScram:
    return StoredScram(
        row.mechanism, bytes(row.salt), bytes(row.stored_key), bytes(row.server_key), row.iterations
    )


def _bytes_or_none(value: bytes | None) -> bytes | None:
    return None if value is None else bytes(value)


def _item(row: Row[Any]) -> PortableItem:
    return PortableItem(
        row.username,
        row.name,
        row.subscription,
        bool(row.ask),
        bool(row.pending_in),
        bool(row.approved),
        tuple(json.loads(row.groups)),
        bool(row.listed),
    )


class Loader:
    """Adds accounts and all they own in the one transaction of ``session``."""

    def __init__(self, session: AsyncSession) -> None:
        self._session = session
        self._rosters: list[tuple[int, str, tuple[PortableItem, ...]]] = []
        """(account id, username, items) of the accounts added, for :meth:`finish`."""

    async def existing(self, usernames: Iterable[str]) -> set[str]:
        """Those of ``usernames`` that have an account already."""
        found: set[str] = set()
        for chunk in in_chunks(list(usernames)):
            found.update(
                await self._session.scalars(
                    select(Account.username).where(Account.username.in_(chunk))
                )
            )
        return found

    async def add(self, accounts: Sequence[PortableAccount]) -> None:
        """Create ``accounts`` (none may exist yet) with their verifiers, profiles and
        offline messages; their roster items are added by :meth:`finish`."""
        if not accounts:
            return
        inserted = await self._session.execute(
            insert(Account).returning(Account.username, Account.id),
            [{"username": account.username} for account in accounts],
        )
        id_of = {username: account_id for username, account_id in inserted}
        await self._session.execute(
            insert(Profile),
            [{"account_id": id_of[a.username], **asdict(a.profile)} for a in accounts],
        )
        await self._insert(
            Credential,
            [
                {"account_id": id_of[account.username], **asdict(scram)}
                for account in accounts
                for scram in account.credentials
            ],
        )
        await self._insert(
            OfflineMessage,
            [
                {"account_id": id_of[a.username], "stanza": m.stanza, "stored_at": m.stored_at}
                for a in accounts
                for m in a.offline
            ],
        )
        await self._insert(
            PrivateXml,
            [
                {"account_id": id_of[a.username], "namespace": namespace, "payload": payload}
                for a in accounts
                for namespace, payload in a.private
            ],
        )
        for account in accounts:
            await self._add_nodes(id_of[account.username], account.pep)
        self._rosters += [(id_of[a.username], a.username, a.roster) for a in accounts if a.roster]

    async def _add_nodes(self, account_id: int, nodes: Sequence[PortableNode]) -> None:
        if not nodes:
            return
        inserted = await self._session.execute(
            insert(PepNode).returning(PepNode.node, PepNode.id),
            [
                {
                    "account_id": account_id,
                    "node": node.node,
                    "access_model": node.access_model,
                    "max_items": node.max_items,
                    "roster_groups": json.dumps(node.roster_groups),
                }
                for node in nodes
            ],
        )
        node_ids = {name: node_id for name, node_id in inserted}
        await self._insert(
            PepItem,
            [
                {"node_id": node_ids[node.node], "item_id": item.item_id, "payload": item.payload}
                for node in nodes
                for item in node.items
            ],
        )
        await self._insert(
            PepAffiliation,
            [
                {"node_id": node_ids[node.node], "jid": jid, "affiliation": affiliation}
                for node in nodes
                for jid, affiliation in node.affiliations
            ],
        )
        await self._insert(
            PepSubscription,
            [
                {"node_id": node_ids[node.node], "jid": jid}
                for node in nodes
                for jid in node.subscriptions
            ],
        )

    async def finish(self) -> list[tuple[str, PortableItem]]:
        """Add the roster items of every account added; returns (owner, item) of the
        items left out because the contact has no account."""
        contacts = {item.contact for _, _, items in self._rosters for item in items}
        ids: dict[str, int] = {}
        for chunk in in_chunks(sorted(contacts)):
            found = await self._session.execute(
                select(Account.username, Account.id).where(Account.username.in_(chunk))
            )
            ids.update({username: account_id for username, account_id in found})
        rows: list[dict[str, Any]] = []
        missing: list[tuple[str, PortableItem]] = []
        for owner_id, owner, items in self._rosters:
            for item in items:
                contact_id = ids.get(item.contact)
                if contact_id is None:
                    missing.append((owner, item))
                else:
                    rows.append(_item_row(owner_id, contact_id, item))
        await self._insert(RosterItem, rows)
        return missing

    async def _insert(self, model: type[Any], rows: list[dict[str, Any]]) -> None:
        # In slices: one executemany of a whole import's offline messages could be large.
        for chunk in in_chunks(rows):
            await self._session.execute(insert(model), list(chunk))


def _item_row(owner_id: int, contact_id: int, item: PortableItem) -> dict[str, Any]:
    return {
        "owner_id": owner_id,
        "contact_id": contact_id,
        "name": item.name,
        "subscription": item.subscription,
        "ask": item.ask,
        "pending_in": item.pending_in,
        "approved": item.approved,
        "groups": json.dumps(list(item.groups), ensure_ascii=False),
        "listed": item.listed,
    }


@asynccontextmanager
async def loading(db: Database) -> AsyncIterator[Loader]:
    """A Loader whose transaction commits when the block ends, or rolls back if it raises."""
    async with db.sessions.begin() as session:
        yield Loader(session)
