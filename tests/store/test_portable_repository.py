"""store/portable.py: whole accounts out (dump) and in (Loader), on SQLite and PostgreSQL."""

from dataclasses import replace
from datetime import UTC, datetime

import pytest

from chinwag.store.accounts import StoredScram
from chinwag.store.contacts import Contact, RosterChange, SqlContactRepository
from chinwag.store.offline import NewOfflineMessage, SqlOfflineRepository
from chinwag.store.pep import NodeConfig, SqlPepRepository, StoredItem
from chinwag.store.portable import (
    PortableAccount,
    PortableItem,
    PortableMessage,
    PortableNode,
    dump,
    loading,
)
from chinwag.store.profiles import Profile

T0 = datetime(2026, 3, 4, 5, 6, 7, 890000, tzinfo=UTC)
SHA1 = StoredScram("SCRAM-SHA-1", b"salt-1", b"s" * 20, b"k" * 20, 4096)
SHA256 = StoredScram("SCRAM-SHA-256", b"salt-2", b"S" * 32, b"K" * 32, 8192)
EMPTY = Profile(None, None, None, None, None)


LINKED = PortableItem("", None, "both", False, False, False, (), True)


def item(contact: str, **changes: object) -> PortableItem:
    return replace(LINKED, contact=contact, **changes)


async def everything(database) -> list[PortableAccount]:
    return [
        account for batch in [b async for b in dump(database, batch_size=2)] for account in batch
    ]


async def test_dump_reads_every_account_with_all_it_owns(network):
    await network.account_repo.add("alice", [SHA1, SHA256], "Alice")
    await network.add_users("bob", "carol")
    await network.contacts.add_mutual("alice", "bob")
    await SqlContactRepository(network.db).save(
        [
            RosterChange(
                "alice",
                "carol",
                Contact("carol", "Caz", "to", True, True, True, ("Work", "Ünï"), True),
            )
        ],
        "test",
    )
    await network.profiles.set_fields("alice", nickname="ali", photo=bytes(range(256)))
    await network.profiles.set_fields("alice", photo_type="image/webp")
    offline = SqlOfflineRepository(network.db)
    stanza = "<message xmlns='jabber:client' type='chat'><body>hi</body></message>"
    await offline.store_many([NewOfflineMessage("bob", stanza, T0)], 10)

    alice, bob, carol = await everything(network.db)

    assert alice == PortableAccount(
        "alice",
        (SHA1, SHA256),
        Profile("Alice", "ali", None, "image/webp", bytes(range(256))),
        (
            item("bob"),
            item(
                "carol",
                name="Caz",
                subscription="to",
                ask=True,
                pending_in=True,
                approved=True,
                groups=("Work", "Ünï"),
            ),
        ),
        (),
    )
    assert bob.username == "bob"
    assert bob.roster == (item("alice"),)
    assert bob.offline == (PortableMessage(stanza, T0),)
    assert carol == PortableAccount("carol", (), EMPTY, (), ())


async def test_dump_of_an_empty_store_yields_nothing(database):
    assert await everything(database) == []


async def test_loaded_accounts_come_back_as_they_went_in(database):
    accounts = [
        PortableAccount(
            "alice",
            (SHA256,),
            Profile("Alice", None, "a@example.org", "image/png", b"\x89PNG"),
            (item("bob", name="Bobby", groups=("Friends",)),),
            (PortableMessage("<message xmlns='jabber:client'><body>1</body></message>", T0),),
        ),
        PortableAccount("bob", (SHA1,), EMPTY, (item("alice"), item("ghost")), ()),
    ]
    async with loading(database) as loader:
        assert await loader.existing(["alice", "nobody"]) == set()
        await loader.add(accounts[:1])
        await loader.add(accounts[1:])  # alice's contact comes in a later batch
        missing = await loader.finish()

    assert missing == [("bob", item("ghost"))]
    alice, bob = await everything(database)
    assert alice == accounts[0]
    assert bob == PortableAccount("bob", (SHA1,), EMPTY, (item("alice"),), ())


async def test_a_failed_load_leaves_nothing_behind(database):
    with pytest.raises(RuntimeError):
        async with loading(database) as loader:
            await loader.add([PortableAccount("alice", (SHA1,), EMPTY, (), ())])
            raise RuntimeError("a problem later in the file")

    assert await everything(database) == []


async def test_existing_names_the_accounts_there_already(network, database):
    await network.add_users("alice")

    async with loading(database) as loader:
        assert await loader.existing(["alice", "bob"]) == {"alice"}


async def test_pep_nodes_go_out_and_in_with_their_affiliations_and_subscriptions(network, database):
    await network.add_users("alice")
    pep = SqlPepRepository(network.db)
    await pep.publish("alice", "n", NodeConfig("whitelist", 5), StoredItem("i", "<p xmlns='x'/>"))
    await pep.create("alice", "empty", NodeConfig("open", 2))
    await pep.create("alice", "friends", NodeConfig("roster", 1, ("Friends", "Family")))
    await pep.subscribe("alice", "friends", ["bob@chat.example/phone"])
    await pep.subscribe("alice", "friends", ["eve@elsewhere.example"])
    await pep.set_affiliations(
        "alice", "n", {"bob@chat.example": "member", "eve@elsewhere.example": "outcast"}
    )
    await pep.set_affiliations("alice", "empty", {"carol@chat.example": "outcast"})

    [alice] = await everything(network.db)

    assert alice.pep == (
        PortableNode("empty", "open", 2, (), (("carol@chat.example", "outcast"),)),
        PortableNode(
            "friends",
            "roster",
            1,
            (),
            (),
            ("Friends", "Family"),
            ("bob@chat.example/phone", "eve@elsewhere.example"),
        ),
        PortableNode(
            "n",
            "whitelist",
            5,
            (StoredItem("i", "<p xmlns='x'/>"),),
            (("bob@chat.example", "member"), ("eve@elsewhere.example", "outcast")),
        ),
    )
    copy = replace(alice, username="alice2")
    async with loading(database) as loader:
        await loader.add([copy])
        await loader.finish()
    loaded = {account.username: account for account in await everything(database)}
    assert loaded["alice2"].pep == alice.pep
    assert await SqlPepRepository(database).affiliations("alice2", "n") == {
        "bob@chat.example": "member",
        "eve@elsewhere.example": "outcast",
    }
    assert await SqlPepRepository(database).subscriptions("alice2", "friends") == [
        "bob@chat.example/phone",
        "eve@elsewhere.example",
    ]
