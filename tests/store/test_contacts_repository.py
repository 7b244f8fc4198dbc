"""ContactService over SqlContactRepository, on SQLite and PostgreSQL (``network`` fixture)."""

import pytest
from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError

from chinwag.network.accounts import InvalidUsername, NoSuchAccount
from chinwag.network.contacts import Contact, InvalidContact, RosterChange, SameAccount
from chinwag.network.events import ACCOUNT_DELETED, ROSTER_CHANGED, UNAPPLIED
from chinwag.network.profiles import ProfileUpdate
from chinwag.store.contacts import SqlContactRepository
from chinwag.store.models import NetworkEventRow, RosterItem

ORIGIN = "this-process"


def item(
    username,
    subscription="none",
    *,
    name=None,
    ask=False,
    pending_in=False,
    approved=False,
    groups=(),
    listed=True,
):
    return Contact(username, name, subscription, ask, pending_in, approved, tuple(groups), listed)


def both(username, name=None, groups=()):
    return item(username, "both", name=name, groups=groups)


async def count(database, model) -> int:
    async with database.sessions() as session:
        return await session.scalar(select(func.count()).select_from(model))


@pytest.fixture
async def users(network):
    await network.add_users("alice", "bob", "carol", full_names={"bob": "Bob Bobson"})
    return network


async def test_add_mutual_links_both_ways_and_bumps_both_versions(users):
    contacts = users.contacts

    await contacts.add_mutual("Alice", "BOB")

    assert await contacts.roster("alice") == (1, [both("bob", "Bob Bobson")])
    assert await contacts.roster("bob") == (1, [both("alice")])
    assert await contacts.roster("carol") == (0, [])
    assert await users.event_tuples() == [
        (ROSTER_CHANGED, "alice", "bob", ORIGIN),
        (ROSTER_CHANGED, "bob", "alice", ORIGIN),
    ]


async def test_add_mutual_is_idempotent(users):
    await users.contacts.add_mutual("alice", "bob")
    latest = await users.events.latest_id()

    await users.contacts.add_mutual("bob", "alice")

    assert (await users.contacts.roster("alice"))[0] == 1
    assert (await users.contacts.roster("bob"))[0] == 1
    assert await users.events.latest_id() == latest


async def test_add_mutual_settles_pending_requests_and_keeps_names_and_groups(users):
    contacts = users.contacts
    await contacts.save(
        [
            RosterChange("alice", "bob", item("bob", name="Bobby", ask=True, groups=["Work"])),
            RosterChange("bob", "alice", item("alice", pending_in=True)),
        ]
    )

    await contacts.add_mutual("alice", "bob")

    assert await contacts.item("alice", "bob") == both("bob", "Bobby", ["Work"])
    assert await contacts.item("bob", "alice") == both("alice")
    assert (await contacts.roster("alice"))[0] == 2
    assert (await contacts.roster("bob"))[0] == 2


async def test_add_many_links_a_mixed_batch_in_one_go(users):
    contacts = users.contacts
    await users.add_users("dave", "erin")
    await contacts.add_mutual("dave", "erin")  # already linked: unchanged
    await contacts.save([RosterChange("carol", "alice", item("alice", name="Al", ask=True))])
    latest = await users.events.latest_id()

    changed = await contacts.add_many(
        [("alice", "bob"), ("bob", "alice"), ("carol", "alice"), ("erin", "dave")]
    )

    assert changed == 4  # alice-bob both ways, carol's item settled, alice's item new
    assert await contacts.roster("alice") == (1, [both("bob", "Bob Bobson"), both("carol")])
    assert await contacts.roster("bob") == (1, [both("alice")])
    assert await contacts.roster("carol") == (2, [both("alice", "Al")])
    assert (await contacts.roster("dave"))[0] == 1
    assert [event[:3] for event in await users.event_tuples(after=latest)] == [
        (ROSTER_CHANGED, "alice", "bob"),
        (ROSTER_CHANGED, "bob", "alice"),
        (ROSTER_CHANGED, "carol", "alice"),
        (ROSTER_CHANGED, "alice", "carol"),
    ]


async def test_add_mutual_refuses_oneself_unknown_and_invalid_names(users):
    contacts = users.contacts

    with pytest.raises(SameAccount, match="'alice' cannot be a contact of themselves"):
        await contacts.add_mutual("alice", "ALICE")
    assert issubclass(SameAccount, ValueError)
    with pytest.raises(NoSuchAccount, match="no such user 'dave'"):
        await contacts.add_mutual("alice", "Dave")
    with pytest.raises(InvalidUsername):
        await contacts.add_mutual("alice", "a b")

    assert await contacts.roster("alice") == (0, [])
    assert await users.events.latest_id() == 0


async def test_remove_mutual_deletes_both_items(users):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    await contacts.add_mutual("alice", "carol")

    assert await contacts.remove_mutual("bob", "alice") is True

    assert await contacts.roster("alice") == (3, [both("carol")])
    assert await contacts.roster("bob") == (2, [])
    assert await contacts.remove_mutual("alice", "bob") is False
    assert (await contacts.roster("alice"))[0] == 3
    with pytest.raises(NoSuchAccount):
        await contacts.remove_mutual("alice", "dave")


async def test_remove_mutual_takes_a_one_sided_item_too(users):
    contacts = users.contacts
    await contacts.save([RosterChange("alice", "bob", item("bob", ask=True))])

    assert await contacts.remove_mutual("alice", "bob") is True

    assert await contacts.item("alice", "bob") is None
    assert (await contacts.roster("bob"))[0] == 0


async def test_save_upserts_and_deletes_and_bumps_each_owner_once(users):
    contacts = users.contacts
    first = await contacts.save(
        [
            RosterChange("alice", "bob", item("bob", "to", name="B", groups=["Friends", "Ünï"])),
            RosterChange("alice", "carol", item("carol", approved=True)),
            RosterChange("bob", "alice", item("alice", "from")),
        ]
    )
    assert first == {"alice": 1, "bob": 1}

    second = await contacts.save(
        [
            RosterChange("Alice", "carol", None),
            RosterChange("alice", "bob", item("bob", "both", groups=["Friends", "Friends"])),
        ]
    )

    assert second == {"Alice": 2, "alice": 2}  # keyed as the caller spelled the owner
    assert await contacts.roster("alice") == (2, [both("bob", "Bob Bobson", ["Friends"])])
    assert await contacts.roster("bob") == (1, [item("alice", "from")])
    events = await users.event_tuples()
    assert [(kind, subject, obj) for kind, subject, obj, _origin in events] == [
        (ROSTER_CHANGED, "alice", "bob"),
        (ROSTER_CHANGED, "alice", "carol"),
        (ROSTER_CHANGED, "bob", "alice"),
        (ROSTER_CHANGED, "alice", "carol"),
        (ROSTER_CHANGED, "alice", "bob"),
    ]
    assert {origin for *_rest, origin in events} == {ORIGIN}


async def test_save_is_all_or_nothing(users, database):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    before = await users.events.latest_id()

    with pytest.raises(NoSuchAccount, match="'dave'"):
        await contacts.save(
            [
                RosterChange("alice", "carol", item("carol", "to")),
                RosterChange("alice", "dave", item("dave", "to")),
            ]
        )
    with pytest.raises(InvalidContact):
        await contacts.save(
            [
                RosterChange("alice", "carol", item("carol", "to")),
                RosterChange("alice", "bob", item("bob", "all")),
            ]
        )
    # Past the service's checks, the database refuses the second item after the first
    # was written: the whole transaction, events included, goes.
    repo = SqlContactRepository(database)
    with pytest.raises(IntegrityError):
        await repo.save(
            [
                RosterChange("alice", "carol", item("carol", "to")),
                RosterChange("alice", "bob", item("bob", "all")),
            ],
            ORIGIN,
        )

    assert await contacts.roster("alice") == (1, [both("bob", "Bob Bobson")])
    assert await contacts.item("alice", "carol") is None
    assert await users.events.latest_id() == before
    assert await count(database, RosterItem) == 2


async def test_save_checks_items(users):
    with pytest.raises(InvalidContact, match="about 'carol'"):
        await users.contacts.save([RosterChange("alice", "bob", item("carol"))])
    with pytest.raises(InvalidContact, match="group"):
        await users.contacts.save([RosterChange("alice", "bob", item("bob", groups=[""]))])


async def test_an_item_with_no_state_is_not_created_but_an_existing_one_is_kept(users):
    contacts = users.contacts
    await contacts.save([RosterChange("bob", "alice", item("alice", listed=False))])
    assert await contacts.item("bob", "alice") is None

    await contacts.add_mutual("alice", "bob")
    await contacts.save([RosterChange("bob", "alice", item("alice"))])

    assert await contacts.item("bob", "alice") == item("alice")
    assert await contacts.list_contacts("bob") == []


async def test_a_row_holding_only_a_request_is_not_listed(users):
    contacts = users.contacts
    await contacts.save(
        [RosterChange("bob", "alice", item("alice", pending_in=True, listed=False))]
    )
    assert await contacts.item("bob", "alice") == item("alice", pending_in=True, listed=False)
    await contacts.save([RosterChange("bob", "alice", item("alice"))])
    assert (await contacts.item("bob", "alice")).listed


async def test_display_names_come_from_the_item_then_the_profile_full_name(users):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    await contacts.add_mutual("alice", "carol")
    await contacts.save([RosterChange("alice", "carol", both("carol", "Caz"))])

    names = {c.username: c.name for c in await contacts.list_contacts("alice")}

    assert names == {"bob": "Bob Bobson", "carol": "Caz"}


async def test_saving_an_item_as_read_does_not_freeze_the_full_name(users):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    read = await contacts.item("alice", "bob")
    assert read is not None and read.name == "Bob Bobson"
    await contacts.save([RosterChange("alice", "bob", read)])

    await users.profiles.replace("bob", ProfileUpdate(fn="Robert"))

    assert (await contacts.item("alice", "bob")).name == "Robert"


async def test_a_full_name_change_bumps_the_rosters_showing_it(users):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    await contacts.add_mutual("carol", "bob")
    await contacts.save([RosterChange("carol", "bob", both("bob", "My Bob"))])
    latest = await users.events.latest_id()

    await users.profiles.set_fields("bob", nickname="bobby")
    assert (await contacts.roster("alice"))[0] == 1

    await users.profiles.set_fields("bob", fn="Robert")

    assert await contacts.roster("alice") == (2, [both("bob", "Robert")])
    assert await contacts.roster("carol") == (2, [both("bob", "My Bob")])
    assert (await users.event_tuples(latest))[-1] == (ROSTER_CHANGED, "alice", "bob", UNAPPLIED)


async def test_deleting_an_account_takes_it_off_every_roster_and_announces_it(users, database):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    await contacts.add_mutual("carol", "bob")
    await contacts.add_mutual("alice", "carol")
    latest = await users.events.latest_id()

    assert await users.accounts.delete_user("Bob") is True

    assert await contacts.roster("alice") == (3, [both("carol")])
    assert await contacts.roster("carol") == (3, [both("alice")])
    assert sorted(await users.event_tuples(latest)) == [
        (ACCOUNT_DELETED, "bob", None, ORIGIN),
        (ROSTER_CHANGED, "alice", "bob", UNAPPLIED),
        (ROSTER_CHANGED, "carol", "bob", UNAPPLIED),
    ]
    assert await count(database, RosterItem) == 2
    assert await users.accounts.delete_user("bob") is False
    assert await count(database, NetworkEventRow) == latest + 3


async def test_lookups_of_unknown_or_invalid_accounts(users):
    contacts = users.contacts

    assert await contacts.account_exists("BOB") is True
    assert await contacts.account_exists("dave") is False
    assert await contacts.account_exists("a b") is False
    assert await contacts.item("alice", "bob") is None
    assert await contacts.item("alice", "a b") is None
    with pytest.raises(NoSuchAccount):
        await contacts.roster("dave")
    with pytest.raises(NoSuchAccount):
        await contacts.list_contacts("dave")


async def test_list_contacts_leaves_out_items_without_a_subscription(users):
    contacts = users.contacts
    await contacts.add_mutual("alice", "bob")
    await contacts.save([RosterChange("alice", "carol", item("carol", ask=True))])

    assert await contacts.list_contacts("alice") == [both("bob", "Bob Bobson")]
    assert len((await contacts.roster("alice"))[1]) == 2
