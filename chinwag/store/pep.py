"""Personal eventing storage (XEP-0163) and private XML storage (XEP-0049).

A node belongs to an account and keeps its access model and its bound on items; an
item is its id and its payload as XML text. Items are rows with growing ids, so the
newest row of a node is its last published item; publishing an id again replaces the
item and makes it the newest. Every write runs in one transaction; a node holds at
most its ``max_items`` newest items. Bare JIDs other than the owner's may be
affiliated with a node (``member`` or ``outcast``, XEP-0060 §8.9), and JIDs, bare or
full, subscribed to it (§6.1); their rows go with the node. A ``Quota`` bounds what
one account keeps (nodes, and the bytes of its items and private XML together): a
write that would pass it is rolled back whole.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from sqlalchemy import (
    ColumnElement,
    LargeBinary,
    Select,
    cast,
    delete,
    func,
    insert,
    select,
    update,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from chinwag.store.accounts import NoSuchAccount
from chinwag.store.db import Database
from chinwag.store.models import (
    Account,
    PepAffiliation,
    PepItem,
    PepNode,
    PepSubscription,
    PrivateXml,
)

MAX_AFFILIATIONS = 1000
"""JIDs affiliated with one node at most."""
MAX_SUBSCRIPTIONS = 1000
"""JIDs subscribed to one node at most."""
ACCESS_MODELS = ("presence", "open", "roster", "whitelist")
"""Who may read a node (XEP-0060 §4.5): the owner's presence subscribers, anyone,
contacts in some of the owner's roster groups, or the owner alone."""
MAX_ROSTER_GROUPS = 100
"""Roster groups a node's ``roster`` access model names at most."""
MAX_ROSTER_GROUPS_BYTES = 4096
"""Their names' UTF-8 bytes at most, together: kept in the node's row, outside the quota."""


def fitting_roster_groups(groups: Sequence[str]) -> tuple[str, ...]:
    """The first of ``groups`` that fit ``MAX_ROSTER_GROUPS`` and ``MAX_ROSTER_GROUPS_BYTES``."""
    kept: list[str] = []
    size = 0
    for group in groups[:MAX_ROSTER_GROUPS]:
        size += len(group.encode())
        if size > MAX_ROSTER_GROUPS_BYTES:
            break
        kept.append(group)
    return tuple(kept)


@dataclass(frozen=True, slots=True)
class Quota:
    """What one account keeps at most in personal eventing and private XML storage."""

    nodes: int
    bytes: int
    """Of item payloads and private XML together, as UTF-8."""


class QuotaExceeded(Exception):
    """A write would pass the account's quota; nothing of it was kept."""


@dataclass(frozen=True, slots=True)
class NodeConfig:
    access_model: str
    max_items: int
    roster_groups: tuple[str, ...] = ()
    """For the ``roster`` access model: the owner's groups whose contacts may read."""


@dataclass(frozen=True, slots=True)
class StoredItem:
    item_id: str
    payload: str


@dataclass(frozen=True, slots=True)
class Replaced:
    """The items of a node before and after :meth:`PepRepository.replace_items`, oldest
    first."""

    before: tuple[StoredItem, ...]
    after: tuple[StoredItem, ...]


@dataclass(frozen=True, slots=True)
class LastItem:
    """The newest item of one node, for the last-item send on available presence."""

    owner: str
    node: str
    config: NodeConfig
    item: StoredItem


class PepRepository(Protocol):
    async def node(self, username: str, node: str) -> NodeConfig | None: ...

    async def publish(
        self, username: str, node: str, config: NodeConfig, item: StoredItem
    ) -> NodeConfig:
        """Store ``item`` as the newest of ``node``, made with ``config`` if absent; the
        node's configuration. Raises NoSuchAccount, QuotaExceeded."""

    async def items(
        self, username: str, node: str, ids: Sequence[str] | None, newest: int | None
    ) -> list[StoredItem]:
        """The node's items, oldest first: those of ``ids``, or the ``newest`` newest
        (None: all)."""

    async def replace_items(
        self, username: str, node: str, config: NodeConfig, items: Sequence[StoredItem]
    ) -> Replaced: ...

    async def retract(self, username: str, node: str, item_id: str) -> bool: ...

    async def configure(self, username: str, node: str, config: NodeConfig) -> bool: ...

    async def create(self, username: str, node: str, config: NodeConfig) -> bool:
        """Make the node; False when it exists. Raises NoSuchAccount,
        QuotaExceeded."""

    async def delete_node(self, username: str, node: str) -> bool: ...

    async def node_names(self, username: str) -> list[str]: ...

    async def nodes(self, username: str) -> dict[str, NodeConfig]:
        """Every node of the account with its configuration, by name, in name order."""

    async def purge(self, username: str, node: str) -> bool:
        """Remove every item of the node; False when there is no such node."""

    async def affiliations(self, username: str, node: str) -> dict[str, str] | None:
        """The node's affiliations by bare JID; None when there is no such node."""

    async def set_affiliations(self, username: str, node: str, changes: dict[str, str]) -> bool:
        """Set each bare JID's affiliation (``none`` removes it); False when there is no
        such node."""

    async def affiliations_of(
        self, jid: str, usernames: Sequence[str]
    ) -> dict[tuple[str, str], str]:
        """The affiliations of ``jid`` with the nodes of ``usernames``, by (owner, node)."""

    async def last_items(self, usernames: Sequence[str]) -> list[LastItem]:
        """The newest item of every node of ``usernames``."""

    async def subscriptions(self, username: str, node: str) -> list[str] | None:
        """The JIDs subscribed to the node, in the order they subscribed; None when
        there is no such node."""

    async def subscribe(self, username: str, node: str, jids: Sequence[str]) -> bool:
        """Subscribe each of ``jids`` (each kept once), all in one transaction; False
        when there is no such node. Raises TooManySubscriptions, subscribing none."""

    async def unsubscribe(self, username: str, node: str, jids: Sequence[str]) -> int:
        """End the subscriptions of ``jids`` to the node; how many there were."""

    async def subscriptions_of(self, username: str, bare_jid: str) -> list[tuple[str, str]]:
        """(node, JID) of each subscription of ``bare_jid`` or one of its full JIDs to
        the nodes of ``username``."""

    async def private(self, username: str, namespace: str) -> str | None: ...

    async def set_private(self, username: str, namespace: str, payload: str) -> None:
        """Raises NoSuchAccount, QuotaExceeded."""

    async def private_all(self, username: str) -> list[str]: ...


class SqlPepRepository:
    """PepRepository on SQLAlchemy; identical on SQLite and PostgreSQL."""

    def __init__(self, db: Database, quota: Quota | None = None) -> None:
        self._sessions = db.sessions
        self._quota = quota
        self._postgres = db.engine.dialect.name == "postgresql"

    async def node(self, username: str, node: str) -> NodeConfig | None:
        async with self._sessions() as session:
            row = await _node_row(session, username, node)
        return None if row is None else _config(row)

    async def publish(
        self, username: str, node: str, config: NodeConfig, item: StoredItem
    ) -> NodeConfig:
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                row = await _new_node(session, username, node, config)
            await session.execute(
                delete(PepItem).where(PepItem.node_id == row.id, PepItem.item_id == item.item_id)
            )
            await session.execute(
                insert(PepItem).values(node_id=row.id, item_id=item.item_id, payload=item.payload)
            )
            await _trim(session, row.id, row.max_items)
            await self._check_quota(session, row.account_id)
            return _config(row)

    async def items(
        self, username: str, node: str, ids: Sequence[str] | None, newest: int | None
    ) -> list[StoredItem]:
        async with self._sessions() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return []
            query = select(PepItem.item_id, PepItem.payload).where(PepItem.node_id == row.id)
            if ids is not None:
                query = query.where(PepItem.item_id.in_(list(ids)))
            query = query.order_by(PepItem.id.desc())
            if newest is not None:
                query = query.limit(newest)
            found = [StoredItem(i, p) for i, p in await session.execute(query)]
        found.reverse()
        return found

    async def replace_items(
        self, username: str, node: str, config: NodeConfig, items: Sequence[StoredItem]
    ) -> Replaced:
        """Make ``items`` all the node's items (made with ``config`` if absent; the newest
        ``max_items`` kept), in one transaction. Raises NoSuchAccount, QuotaExceeded."""
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                row = await _new_node(session, username, node, config)
            before = await session.execute(
                select(PepItem.item_id, PepItem.payload)
                .where(PepItem.node_id == row.id)
                .order_by(PepItem.id)
            )
            replaced = Replaced(
                tuple(StoredItem(i, p) for i, p in before), tuple(items[-row.max_items :])
            )
            await session.execute(delete(PepItem).where(PepItem.node_id == row.id))
            for item in replaced.after:
                await session.execute(
                    insert(PepItem).values(
                        node_id=row.id, item_id=item.item_id, payload=item.payload
                    )
                )
            await self._check_quota(session, row.account_id)
            return replaced

    async def retract(self, username: str, node: str, item_id: str) -> bool:
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return False
            result = await session.execute(
                delete(PepItem).where(PepItem.node_id == row.id, PepItem.item_id == item_id)
            )
            return bool(result.rowcount)  # type: ignore[attr-defined]

    async def configure(self, username: str, node: str, config: NodeConfig) -> bool:
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return False
            await session.execute(
                update(PepNode)
                .where(PepNode.id == row.id)
                .values(
                    access_model=config.access_model,
                    max_items=config.max_items,
                    roster_groups=json.dumps(config.roster_groups),
                )
            )
            await _trim(session, row.id, config.max_items)
            return True

    async def create(self, username: str, node: str, config: NodeConfig) -> bool:
        async with self._sessions.begin() as session:
            if await _node_row(session, username, node) is not None:
                return False
            row = await _new_node(session, username, node, config)
            await self._check_quota(session, row.account_id)
            return True

    async def delete_node(self, username: str, node: str) -> bool:
        return await self._empty(username, node, keep_node=False)

    async def node_names(self, username: str) -> list[str]:
        async with self._sessions() as session:
            names = await session.scalars(
                select(PepNode.node)
                .join(Account, Account.id == PepNode.account_id)
                .where(Account.username == username)
            )
            return sorted(names)

    async def nodes(self, username: str) -> dict[str, NodeConfig]:
        async with self._sessions() as session:
            rows = await session.scalars(
                select(PepNode)
                .join(Account, Account.id == PepNode.account_id)
                .where(Account.username == username)
                .order_by(PepNode.node)
            )
            return {row.node: _config(row) for row in rows}

    async def purge(self, username: str, node: str) -> bool:
        return await self._empty(username, node, keep_node=True)

    async def _empty(self, username: str, node: str, *, keep_node: bool) -> bool:
        """Remove the node's items, and the node itself unless ``keep_node``."""
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return False
            await session.execute(delete(PepItem).where(PepItem.node_id == row.id))
            if not keep_node:
                await session.execute(delete(PepNode).where(PepNode.id == row.id))
            return True

    async def affiliations(self, username: str, node: str) -> dict[str, str] | None:
        async with self._sessions() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return None
            rows = await session.execute(
                select(PepAffiliation.jid, PepAffiliation.affiliation)
                .where(PepAffiliation.node_id == row.id)
                .order_by(PepAffiliation.id)
            )
            return {jid: affiliation for jid, affiliation in rows}

    async def set_affiliations(self, username: str, node: str, changes: dict[str, str]) -> bool:
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return False
            await session.execute(
                delete(PepAffiliation).where(
                    PepAffiliation.node_id == row.id, PepAffiliation.jid.in_(list(changes))
                )
            )
            for jid, affiliation in changes.items():
                if affiliation != "none":
                    await session.execute(
                        insert(PepAffiliation).values(
                            node_id=row.id, jid=jid, affiliation=affiliation
                        )
                    )
            return True

    async def affiliations_of(
        self, jid: str, usernames: Sequence[str]
    ) -> dict[tuple[str, str], str]:
        if not usernames:
            return {}
        query = (
            select(Account.username, PepNode.node, PepAffiliation.affiliation)
            .join(PepNode, PepNode.id == PepAffiliation.node_id)
            .join(Account, Account.id == PepNode.account_id)
            .where(PepAffiliation.jid == jid, Account.username.in_(list(usernames)))
        )
        async with self._sessions() as session:
            rows = await session.execute(query)
            return {(owner, node): affiliation for owner, node, affiliation in rows}

    async def last_items(self, usernames: Sequence[str]) -> list[LastItem]:
        if not usernames:
            return []
        newest = (
            select(func.max(PepItem.id))
            .join(PepNode, PepNode.id == PepItem.node_id)
            .join(Account, Account.id == PepNode.account_id)
            .where(Account.username.in_(list(usernames)))
            .group_by(PepItem.node_id)
        )
        query = (
            select(
                Account.username,
                PepNode.node,
                PepNode.access_model,
                PepNode.max_items,
                PepNode.roster_groups,
                PepItem.item_id,
                PepItem.payload,
            )
            .join(PepNode, PepNode.id == PepItem.node_id)
            .join(Account, Account.id == PepNode.account_id)
            .where(PepItem.id.in_(newest))
            .order_by(PepItem.id)
        )
        async with self._sessions() as session:
            rows = await session.execute(query)
            return [
                LastItem(u, n, NodeConfig(a, m, tuple(json.loads(g))), StoredItem(i, p))
                for u, n, a, m, g, i, p in rows
            ]

    async def subscriptions(self, username: str, node: str) -> list[str] | None:
        async with self._sessions() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return None
            return list(await session.scalars(_subscribed(row.id)))

    async def subscribe(self, username: str, node: str, jids: Sequence[str]) -> bool:
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None:
                return False
            subscribed = set(await session.scalars(_subscribed(row.id)))
            new = [jid for jid in dict.fromkeys(jids) if jid not in subscribed]
            if len(subscribed) + len(new) > MAX_SUBSCRIPTIONS:
                raise TooManySubscriptions(node)
            if new:
                await session.execute(
                    insert(PepSubscription), [{"node_id": row.id, "jid": jid} for jid in new]
                )
            return True

    async def unsubscribe(self, username: str, node: str, jids: Sequence[str]) -> int:
        async with self._sessions.begin() as session:
            row = await _node_row(session, username, node)
            if row is None or not jids:
                return 0
            result = await session.execute(
                delete(PepSubscription).where(
                    PepSubscription.node_id == row.id, PepSubscription.jid.in_(list(jids))
                )
            )
            return int(result.rowcount)  # type: ignore[attr-defined]

    async def subscriptions_of(self, username: str, bare_jid: str) -> list[tuple[str, str]]:
        query = (
            select(PepNode.node, PepSubscription.jid)
            .join(PepNode, PepNode.id == PepSubscription.node_id)
            .join(Account, Account.id == PepNode.account_id)
            .where(
                Account.username == username,
                (PepSubscription.jid == bare_jid)
                | PepSubscription.jid.startswith(bare_jid + "/", autoescape=True),
            )
            .order_by(PepNode.node, PepSubscription.id)
        )
        async with self._sessions() as session:
            return [(node, jid) for node, jid in await session.execute(query)]

    async def private(self, username: str, namespace: str) -> str | None:
        async with self._sessions() as session:
            payload: str | None = await session.scalar(
                select(PrivateXml.payload)
                .join(Account, Account.id == PrivateXml.account_id)
                .where(Account.username == username, PrivateXml.namespace == namespace)
            )
            return payload

    async def set_private(self, username: str, namespace: str, payload: str) -> None:
        async with self._sessions.begin() as session:
            account_id = await _account_id(session, username)
            await session.execute(
                delete(PrivateXml).where(
                    PrivateXml.account_id == account_id, PrivateXml.namespace == namespace
                )
            )
            await session.execute(
                insert(PrivateXml).values(
                    account_id=account_id, namespace=namespace, payload=payload
                )
            )
            await self._check_quota(session, account_id)

    async def private_all(self, username: str) -> list[str]:
        async with self._sessions() as session:
            payloads = await session.scalars(
                select(PrivateXml.payload)
                .join(Account, Account.id == PrivateXml.account_id)
                .where(Account.username == username)
                .order_by(PrivateXml.namespace)
            )
            return list(payloads)

    async def _check_quota(self, session: AsyncSession, account_id: int) -> None:
        """Raise QuotaExceeded (rolling the transaction back) when the account keeps more
        than its quota."""
        quota = self._quota
        if quota is None:
            return
        nodes = await session.scalar(
            select(func.count()).select_from(PepNode).where(PepNode.account_id == account_id)
        )
        if (nodes or 0) > quota.nodes:
            raise QuotaExceeded(f"an account keeps at most {quota.nodes} PEP nodes")
        if await self._kept_bytes(session, account_id) > quota.bytes:
            raise QuotaExceeded(
                f"an account keeps at most {quota.bytes} bytes of PEP items and private XML"
            )

    def _bytes(self, text: InstrumentedAttribute[str]) -> ColumnElement[int]:
        """The UTF-8 length of ``text``: SQLite's length() of a text counts characters."""
        if self._postgres:
            return func.octet_length(text)
        return func.length(cast(text, LargeBinary))

    async def _kept_bytes(self, session: AsyncSession, account_id: int) -> int:
        items = (
            select(func.coalesce(func.sum(self._bytes(PepItem.payload)), 0))
            .join(PepNode, PepNode.id == PepItem.node_id)
            .where(PepNode.account_id == account_id)
            .scalar_subquery()
        )
        private = (
            select(func.coalesce(func.sum(self._bytes(PrivateXml.payload)), 0))
            .where(PrivateXml.account_id == account_id)
            .scalar_subquery()
        )
        return int(await session.scalar(select(items + private)) or 0)


class TooManySubscriptions(Exception):
    """A node holds ``MAX_SUBSCRIPTIONS`` subscriptions already."""


def _config(row: PepNode) -> NodeConfig:
    return NodeConfig(row.access_model, row.max_items, tuple(json.loads(row.roster_groups)))


def _subscribed(node_id: int) -> Select[str]:
    return (
        select(PepSubscription.jid)
        .where(PepSubscription.node_id == node_id)
        .order_by(PepSubscription.id)
    )


async def _account_id(session: AsyncSession, username: str) -> int:
    account_id: int | None = await session.scalar(
        select(Account.id).where(Account.username == username)
    )
    if account_id is None:
        raise NoSuchAccount(username)
    return account_id


async def _node_row(session: AsyncSession, username: str, node: str) -> PepNode | None:
    row: PepNode | None = await session.scalar(
        select(PepNode)
        .join(Account, Account.id == PepNode.account_id)
        .where(Account.username == username, PepNode.node == node)
    )
    return row


async def _new_node(session: AsyncSession, username: str, node: str, config: NodeConfig) -> PepNode:
    row = PepNode(
        account_id=await _account_id(session, username),
        node=node,
        access_model=config.access_model,
        max_items=config.max_items,
        roster_groups=json.dumps(config.roster_groups),
    )
    session.add(row)
    await session.flush()
    return row


async def _trim(session: AsyncSession, node_id: int, max_items: int) -> None:
    """Keep the node's ``max_items`` newest items."""
    kept = (
        select(PepItem.id)
        .where(PepItem.node_id == node_id)
        .order_by(PepItem.id.desc())
        .limit(max_items)
        .scalar_subquery()
    )
    await session.execute(
        delete(PepItem).where(PepItem.node_id == node_id, PepItem.id.not_in(kept))
    )
