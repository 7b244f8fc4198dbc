"""ProfileService over SqlProfileRepository, on SQLite and PostgreSQL (``network`` fixture)."""

import pytest
from sqlalchemy import delete

from chinwag.network.accounts import NoSuchAccount
from chinwag.network.events import PROFILE_CHANGED
from chinwag.network.profiles import MAX_PHOTO_BYTES, InvalidProfile, Profile, ProfileUpdate
from chinwag.store.models import Profile as ProfileRow

EMPTY = Profile(None, None, None, None, None)
PHOTO = bytes(range(256)) * 4  # every byte value, so nothing is lost as text


@pytest.fixture
async def users(network):
    await network.add_users("alice", "bob", full_names={"alice": "Alice Liddell"})
    return network


async def test_the_full_name_given_at_sign_up_is_the_profile_fn(users):
    await users.accounts.add_user("Carol", "pw", "Carol Danvers")

    assert await users.profiles.get("alice") == Profile("Alice Liddell", None, None, None, None)
    assert await users.profiles.get("CAROL") == Profile("Carol Danvers", None, None, None, None)
    assert await users.profiles.get("bob") == EMPTY


async def test_unknown_or_invalid_accounts_have_no_profile(users):
    assert await users.profiles.get("dave") is None
    assert await users.profiles.get("a b") is None
    with pytest.raises(NoSuchAccount, match="no such user 'dave'"):
        await users.profiles.replace("Dave", ProfileUpdate(fn="Dave"))
    with pytest.raises(NoSuchAccount):
        await users.profiles.set_fields("dave", fn="Dave")
    assert await users.events.latest_id() == 0


async def test_replace_sets_every_field_and_clears_the_missing_ones(users):
    profiles = users.profiles
    full = ProfileUpdate("Alice L.", "ali", "alice@example.org", "image/png", PHOTO)

    assert await profiles.replace("Alice", full) == Profile(
        "Alice L.", "ali", "alice@example.org", "image/png", PHOTO
    )
    assert await profiles.get("alice") == Profile(
        "Alice L.", "ali", "alice@example.org", "image/png", PHOTO
    )

    assert await profiles.replace("alice", ProfileUpdate(nickname="al")) == Profile(
        None, "al", None, None, None
    )
    assert await profiles.get("alice") == Profile(None, "al", None, None, None)
    assert await users.event_tuples() == [
        (PROFILE_CHANGED, "alice", None, "this-process"),
        (PROFILE_CHANGED, "alice", None, "this-process"),
    ]


async def test_set_fields_changes_only_the_given_ones(users):
    profiles = users.profiles
    await profiles.set_fields(
        "alice", email="alice@example.org", photo_type="image/jpeg", photo=PHOTO
    )

    updated = await profiles.set_fields("alice", nickname="  ali  ", fn="")

    assert updated == Profile(None, "ali", "alice@example.org", "image/jpeg", PHOTO)
    assert await profiles.get("alice") == updated
    assert await profiles.set_fields("alice", photo=None) == Profile(
        None, "ali", "alice@example.org", None, None
    )
    with pytest.raises(InvalidProfile, match="not profile fields: colour"):
        await profiles.set_fields("alice", colour="blue")
    with pytest.raises(InvalidProfile, match="email must be text"):
        await profiles.set_fields("alice", email=42)


async def test_photos_are_limited_in_size(users):
    profiles = users.profiles
    largest = b"\x89" * MAX_PHOTO_BYTES
    assert (
        await profiles.set_fields("bob", photo_type="image/png", photo=largest)
    ).photo == largest
    latest = await users.events.latest_id()

    with pytest.raises(
        InvalidProfile, match="the photo is too large: 262,145 bytes, the limit is 256 KiB"
    ):
        await profiles.replace("bob", ProfileUpdate(photo_type="image/png", photo=largest + b"!"))

    assert (await profiles.get("bob")).photo == largest
    assert await users.events.latest_id() == latest


async def test_text_fields_are_limited_in_length(users):
    with pytest.raises(InvalidProfile, match="fn is longer than 1024 characters"):
        await users.profiles.set_fields("bob", fn="x" * 1025)


async def test_an_account_without_a_profile_row_gets_one_on_update(users, database):
    async with database.sessions.begin() as session:
        await session.execute(delete(ProfileRow))
    assert await users.profiles.get("alice") == EMPTY

    assert await users.profiles.set_fields("alice", fn="Alice") == Profile(
        "Alice", None, None, None, None
    )
    assert await users.profiles.get("alice") == Profile("Alice", None, None, None, None)


async def test_deleting_the_account_deletes_the_profile(users):
    await users.profiles.set_fields("bob", fn="Bob")

    await users.accounts.delete_user("bob")

    assert await users.profiles.get("bob") is None
    await users.add_users("bob")
    assert await users.profiles.get("bob") == EMPTY
