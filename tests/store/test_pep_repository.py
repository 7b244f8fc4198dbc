"""PEP nodes and items, and private XML storage, over SqlPepRepository on SQLite and
PostgreSQL (``network`` fixture): auto-create, replacement, the bound on items, reads
by id and newest, last items, configuration (with the ``roster`` model's groups),
affiliations, subscriptions, and everything going with the account."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy import func, select

import chinwag.store.pep
from chinwag.store.accounts import NoSuchAccount
from chinwag.store.models import PepItem, PepNode, PrivateXml
from chinwag.store.pep import (
    NodeConfig,
    Quota,
    QuotaExceeded,
    Replaced,
    SqlPepRepository,
    StoredItem,
    TooManySubscriptions,
)

Network = Any
"""The ``network`` fixture of ``conftest.py``."""

PRESENCE = NodeConfig("presence", 3)


@pytest.fixture
async def pep(network: Network) -> SqlPepRepository:
    await network.add_users("alice", "bob")
    return SqlPepRepository(network.db)


def item(n: int) -> StoredItem:
    return StoredItem(f"i{n}", f"<n xmlns='urn:example'>{n}</n>")


async def test_publish_creates_the_node_and_keeps_the_newest_items(pep: SqlPepRepository) -> None:
    for n in range(5):
        assert await pep.publish("alice", "urn:example", PRESENCE, item(n)) == PRESENCE

    assert await pep.node("alice", "urn:example") == PRESENCE
    assert [i.item_id for i in await pep.items("alice", "urn:example", None, None)] == [
        "i2",
        "i3",
        "i4",
    ]
    assert await pep.items("alice", "urn:example", None, 1) == [item(4)]
    assert await pep.items("alice", "urn:example", ["i3", "i9"], None) == [item(3)]
    assert await pep.items("bob", "urn:example", None, None) == []


async def test_publishing_an_id_again_replaces_it_and_makes_it_the_last(
    pep: SqlPepRepository,
) -> None:
    await pep.publish("alice", "n", PRESENCE, item(1))
    await pep.publish("alice", "n", PRESENCE, item(2))
    await pep.publish("alice", "n", PRESENCE, StoredItem("i1", "<x xmlns='urn:x'/>"))
    await pep.publish("bob", "m", NodeConfig("open", 1), item(7))

    last = await pep.last_items(["alice", "bob"])
    assert [(x.owner, x.node, x.config, x.item) for x in last] == [
        ("alice", "n", PRESENCE, StoredItem("i1", "<x xmlns='urn:x'/>")),
        ("bob", "m", NodeConfig("open", 1), item(7)),
    ]


async def test_retract_configure_delete(pep: SqlPepRepository) -> None:
    for n in range(3):
        await pep.publish("alice", "n", PRESENCE, item(n))
    assert await pep.retract("alice", "n", "i2")
    assert not await pep.retract("alice", "n", "i2")
    assert await pep.configure("alice", "n", NodeConfig("whitelist", 1))
    assert await pep.node("alice", "n") == NodeConfig("whitelist", 1)
    assert await pep.items("alice", "n", None, None) == [item(1)]
    assert not await pep.create("alice", "n", PRESENCE)
    assert await pep.create("alice", "other", PRESENCE)
    assert await pep.node_names("alice") == ["n", "other"]
    assert await pep.delete_node("alice", "n")
    assert not await pep.delete_node("alice", "n")
    assert await pep.node("alice", "n") is None


async def test_private_storage(pep: SqlPepRepository) -> None:
    assert await pep.private("alice", "storage:bookmarks") is None
    await pep.set_private("alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'/>")
    await pep.set_private(
        "alice", "storage:bookmarks", "<storage xmlns='storage:bookmarks'>x</storage>"
    )
    assert await pep.private("alice", "storage:bookmarks") == (
        "<storage xmlns='storage:bookmarks'>x</storage>"
    )
    assert await pep.private_all("alice") == ["<storage xmlns='storage:bookmarks'>x</storage>"]
    with pytest.raises(NoSuchAccount):
        await pep.set_private("nobody", "a:b", "<a xmlns='a:b'/>")
    with pytest.raises(NoSuchAccount):
        await pep.publish("nobody", "n", PRESENCE, item(1))


async def test_deleting_the_account_deletes_its_nodes_items_and_private_storage(
    pep: SqlPepRepository, network: Network
) -> None:
    await pep.publish("alice", "n", PRESENCE, item(1))
    await pep.set_private("alice", "a:b", "<a xmlns='a:b'/>")
    await pep.publish("bob", "n", PRESENCE, item(1))

    assert await network.accounts.delete_user("alice")

    async with network.db.sessions() as session:
        counts = [
            await session.scalar(select(func.count()).select_from(table))
            for table in (PepNode, PepItem, PrivateXml)
        ]
    assert counts == [1, 1, 0]


async def test_replace_items_makes_them_all_the_nodes_items(pep: SqlPepRepository) -> None:
    await pep.publish("alice", "b", NodeConfig("whitelist", 2), item(1))

    replaced = await pep.replace_items("alice", "b", PRESENCE, [item(2), item(3), item(4)])

    assert replaced == Replaced((item(1),), (item(3), item(4)))
    assert await pep.node("alice", "b") == NodeConfig("whitelist", 2)  # kept, and its bound
    assert await pep.items("alice", "b", None, None) == [item(3), item(4)]
    assert await pep.replace_items("bob", "new", PRESENCE, []) == Replaced((), ())
    assert await pep.node("bob", "new") == PRESENCE


async def test_purge_empties_the_node_and_keeps_it(pep: SqlPepRepository) -> None:
    for n in range(2):
        await pep.publish("alice", "n", PRESENCE, item(n))

    assert await pep.purge("alice", "n")

    assert await pep.items("alice", "n", None, None) == []
    assert await pep.node("alice", "n") == PRESENCE
    assert not await pep.purge("alice", "missing")


async def test_affiliations_are_set_read_removed_and_go_with_the_node(
    pep: SqlPepRepository,
) -> None:
    await pep.create("alice", "w", NodeConfig("whitelist", 3))
    await pep.create("alice", "p", PRESENCE)
    assert await pep.affiliations("alice", "w") == {}
    assert await pep.affiliations("alice", "missing") is None
    assert not await pep.set_affiliations("alice", "missing", {"bob@x": "member"})

    assert await pep.set_affiliations("alice", "w", {"bob@x": "member", "eve@x": "outcast"})
    assert await pep.set_affiliations("alice", "w", {"bob@x": "outcast"})  # replaced
    assert await pep.set_affiliations("alice", "p", {"bob@x": "member"})

    assert await pep.affiliations("alice", "w") == {"eve@x": "outcast", "bob@x": "outcast"}
    assert await pep.affiliations_of("bob@x", ["alice", "bob"]) == {
        ("alice", "w"): "outcast",
        ("alice", "p"): "member",
    }
    await pep.set_affiliations("alice", "w", {"bob@x": "none"})
    assert await pep.affiliations("alice", "w") == {"eve@x": "outcast"}
    await pep.delete_node("alice", "p")
    assert await pep.affiliations_of("bob@x", ["alice"]) == {}
    assert await pep.affiliations_of("bob@x", []) == {}


async def test_deleting_an_account_deletes_the_grants_others_gave_it(
    pep: SqlPepRepository, network: Network
) -> None:
    await network.add_users("b_b", "bob_")
    await pep.create("alice", "w", NodeConfig("whitelist", 3))
    grants = {"bob@x": "member", "bob@y/phone": "member", "b_b@x": "member", "bob_@x": "member"}
    assert await pep.set_affiliations("alice", "w", grants)

    assert await network.accounts.delete_user("bob")
    assert await network.accounts.delete_user("b_b")
    assert await pep.affiliations("alice", "w") == {"bob_@x": "member"}


async def test_a_roster_node_keeps_its_groups(pep: SqlPepRepository) -> None:
    friends = NodeConfig("roster", 3, ("friends", "Ünïcode"))
    await pep.publish("alice", "r", friends, item(1))
    assert await pep.node("alice", "r") == friends
    assert [last.config for last in await pep.last_items(["alice"])] == [friends]

    work = NodeConfig("roster", 2, ("work",))
    assert await pep.configure("alice", "r", work)
    assert await pep.node("alice", "r") == work
    assert await pep.configure("alice", "r", PRESENCE)
    assert await pep.node("alice", "r") == PRESENCE


async def test_subscriptions_are_kept_once_listed_ended_and_go_with_the_node(
    pep: SqlPepRepository,
) -> None:
    await pep.create("alice", "n", PRESENCE)
    await pep.create("alice", "m", PRESENCE)
    assert await pep.subscriptions("alice", "n") == []
    assert await pep.subscriptions("alice", "missing") is None
    assert not await pep.subscribe("alice", "missing", ["bob@x"])

    assert await pep.subscribe("alice", "n", ["bob@x/phone"])
    assert await pep.subscribe("alice", "n", ["bob@x"])
    assert await pep.subscribe("alice", "n", ["bob@x"])  # kept once
    assert await pep.subscribe("alice", "n", ["bobby@x"])
    assert await pep.subscribe("alice", "m", ["bob@x"])

    assert await pep.subscriptions("alice", "n") == ["bob@x/phone", "bob@x", "bobby@x"]
    assert await pep.subscriptions_of("alice", "bob@x") == [
        ("m", "bob@x"),
        ("n", "bob@x/phone"),
        ("n", "bob@x"),
    ]
    assert await pep.subscriptions_of("bob", "bob@x") == []
    assert await pep.unsubscribe("alice", "n", ["bob@x/phone", "nobody@x"]) == 1
    assert await pep.unsubscribe("alice", "n", ["bob@x/phone"]) == 0
    assert await pep.unsubscribe("alice", "missing", ["bob@x"]) == 0
    assert await pep.subscriptions("alice", "n") == ["bob@x", "bobby@x"]
    await pep.delete_node("alice", "m")
    assert await pep.subscriptions_of("alice", "bob@x") == [("n", "bob@x")]


async def test_a_node_takes_a_bounded_number_of_subscriptions(
    pep: SqlPepRepository, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(chinwag.store.pep, "MAX_SUBSCRIPTIONS", 3)
    await pep.create("alice", "n", PRESENCE)
    assert await pep.subscribe("alice", "n", ["u0@x"])
    with pytest.raises(TooManySubscriptions):  # all or none
        await pep.subscribe("alice", "n", ["u1@x", "u2@x", "u3@x"])
    assert await pep.subscriptions("alice", "n") == ["u0@x"]
    assert await pep.subscribe("alice", "n", ["u1@x", "u2@x", "u1@x", "u0@x"])

    with pytest.raises(TooManySubscriptions):
        await pep.subscribe("alice", "n", ["one-more@x"])
    assert await pep.subscribe("alice", "n", ["u0@x"])  # one already there is no more
    assert await pep.subscriptions("alice", "n") == ["u0@x", "u1@x", "u2@x"]


async def test_deleting_an_account_ends_its_subscriptions(
    pep: SqlPepRepository, network: Network
) -> None:
    await network.add_users("b_b", "bob_")
    await pep.create("alice", "n", PRESENCE)
    for jid in ("bob@x", "bob@x/phone", "b_b@x", "bob_@x/desk"):
        await pep.subscribe("alice", "n", [jid])

    assert await network.accounts.delete_user("bob")
    assert await network.accounts.delete_user("b_b")
    assert await pep.subscriptions("alice", "n") == ["bob_@x/desk"]


async def test_a_quota_bounds_an_accounts_nodes_and_bytes(network: Network) -> None:
    """Every write that would keep more than the quota is rolled back whole; bytes are
    UTF-8 bytes of items and private XML together, and other accounts are not counted."""
    await network.add_users("alice", "bob")
    pep = SqlPepRepository(network.db, Quota(nodes=2, bytes=100))
    text = "<n xmlns='u'>{}</n>"  # 17 bytes and the content
    await pep.publish("alice", "a", PRESENCE, StoredItem("i", text.format("x" * 30)))
    await pep.create("alice", "b", PRESENCE)
    await pep.publish("bob", "c", PRESENCE, StoredItem("i", text.format("x" * 80)))

    with pytest.raises(QuotaExceeded):
        await pep.create("alice", "c", PRESENCE)
    with pytest.raises(QuotaExceeded):
        await pep.publish("alice", "c", PRESENCE, StoredItem("i", text.format("")))
    assert await pep.node_names("alice") == ["a", "b"]
    with pytest.raises(QuotaExceeded):  # 47 + 17 + 2 * 19: "é" is two bytes
        await pep.publish("alice", "b", PRESENCE, StoredItem("j", text.format("é" * 19)))
    assert await pep.items("alice", "b", None, None) == []
    await pep.publish("alice", "b", PRESENCE, StoredItem("j", text.format("é" * 18)))
    await pep.publish("alice", "a", PRESENCE, StoredItem("i", text.format("")))  # replaced
    with pytest.raises(QuotaExceeded):
        await pep.set_private("alice", "p", "<p xmlns='p'>" + "x" * 40 + "</p>")
    assert await pep.private("alice", "p") is None
    await pep.set_private("alice", "p", "<p xmlns='p'/>")
    with pytest.raises(QuotaExceeded):
        await pep.replace_items("alice", "b", PRESENCE, [StoredItem("k", "x" * 70)])
    assert [item.item_id for item in await pep.items("alice", "b", None, None)] == ["j"]


async def test_the_nodes_of_an_account_come_with_their_configuration(
    pep: SqlPepRepository,
) -> None:
    friends = NodeConfig("roster", 2, ("Friends",))
    await pep.create("alice", "b", friends)
    await pep.create("alice", "a", PRESENCE)
    await pep.create("bob", "c", PRESENCE)

    assert await pep.nodes("alice") == {"a": PRESENCE, "b": friends}
    assert list(await pep.nodes("alice")) == ["a", "b"]
    assert await pep.nodes("nobody") == {}
