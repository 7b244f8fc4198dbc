"""``chinwag contacts`` and ``chinwag profile``, run as the installed console command."""

import base64
import json

import pytest
from cli_support import error_line

from chinwag.network.events import PROFILE_CHANGED, ROSTER_CHANGED

PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(256))


@pytest.fixture
async def chinwag_with_users(chinwag):
    async with chinwag.network() as services:
        for name, full_name in (("alice", "Alice Liddell"), ("bob", None), ("carol", None)):
            await services.accounts.add_user(name, "pw", full_name)
    return chinwag


async def test_contacts_and_profiles_end_to_end(chinwag_with_users):
    chinwag = chinwag_with_users
    (chinwag.directory / "bob.png").write_bytes(PNG)

    added = chinwag("contacts", "add", "Alice", "BOB", "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout) == {"users": ["alice", "bob"], "contacts": True}

    profile = chinwag("profile", "set", "bob", "--fn", "Bob Bobson", "--photo", "bob.png", "--json")
    assert profile.returncode == 0, profile.stderr
    assert json.loads(profile.stdout) == {
        "username": "bob",
        "jid": "bob@chat.example",
        "fn": "Bob Bobson",
        "nickname": None,
        "email": None,
        "photo_type": "image/png",
        "photo": base64.b64encode(PNG).decode(),
    }

    listed = chinwag("contacts", "list", "alice", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "username": "bob",
            "jid": "bob@chat.example",
            "name": "Bob Bobson",
            "subscription": "both",
        }
    ]

    shown = chinwag("profile", "show", "bob")
    assert shown.returncode == 0, shown.stderr
    assert "Bob Bobson" in shown.stdout
    assert f"image/png, {len(PNG)} bytes" in shown.stdout

    removed = chinwag("contacts", "remove", "bob", "alice")
    assert removed.returncode == 0, removed.stderr
    assert "no longer contacts" in removed.stdout

    async with chinwag.network() as services:
        assert await services.contacts.roster("alice") == (3, [])  # add, bob's name, remove
        assert await services.contacts.roster("bob") == (2, [])
        assert (await services.profiles.get("alice")).fn == "Alice Liddell"
        events = await services.events.since(0)
    assert [(e.kind, e.subject, e.object) for e in events] == [
        (ROSTER_CHANGED, "alice", "bob"),
        (ROSTER_CHANGED, "bob", "alice"),
        (PROFILE_CHANGED, "bob", None),
        (ROSTER_CHANGED, "alice", "bob"),  # bob's new full name shows on alice's roster
        (ROSTER_CHANGED, "alice", "bob"),
        (ROSTER_CHANGED, "bob", "alice"),
    ]
    # Each command is a process of its own, so a running server applies every change.
    assert len({e.origin for e in events}) == 4
    assert services.events.origin not in {e.origin for e in events}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("contacts", "remove", "alice", "bob"), "error: 'alice' and 'bob' are not contacts"),
        (("contacts", "add", "alice", "Alice"), "error: 'alice' cannot be a contact of themselves"),
        (
            ("profile", "set", "alice", "--photo", "notes.txt"),
            "error: notes.txt is not an image: it is text/plain (use .png, .jpg, .gif, .webp, ...)",
        ),
    ],
)
def test_refusals_are_one_line(chinwag_with_users, args, message):
    result = chinwag_with_users(*args)

    assert result.returncode == 1
    assert error_line(result) == message
    assert result.stdout == ""


async def test_contacts_import_is_all_or_nothing(chinwag_with_users):
    chinwag = chinwag_with_users

    rejected = chinwag("contacts", "import", "-", stdin="alice,bob\ncarol,carol\nbob\n")
    assert rejected.returncode == 1
    assert "line 3: expected a,b" in rejected.stderr
    rejected = chinwag("contacts", "import", "-", stdin="alice,bob\ncarol,carol\n")
    assert "line 2: 'carol' cannot be a contact of themselves" in rejected.stderr
    rejected = chinwag("contacts", "import", "-", stdin="alice,bob\nbob,nobody\n")
    assert "line 2: no such user 'nobody'" in rejected.stderr
    async with chinwag.network() as services:
        assert await services.contacts.list_contacts("alice") == []

    imported = chinwag("contacts", "import", "-", "--json", stdin="alice,bob\nbob,carol\n")
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout) == {"pairs": 2, "changed_items": 4}
    async with chinwag.network() as services:
        assert [c.username for c in await services.contacts.list_contacts("bob")] == [
            "alice",
            "carol",
        ]
