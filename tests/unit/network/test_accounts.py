"""The accounts domain: username rules, credentials, and the AccountService."""

import re

import pytest
from scramp import ScramClient, ScramMechanism

from chinwag.network.accounts import (
    MECHANISMS,
    AccountExists,
    AccountService,
    ImportRejected,
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    RowProblem,
    UserRow,
    derive_credentials,
    normalize_username,
    password_matches,
)
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.db import Database


@pytest.fixture
async def accounts(tmp_path):
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}")
    await db.migrate()
    yield AccountService(SqlAccountRepository(db))
    await db.close()


@pytest.mark.parametrize(
    ("name", "normalized"),
    [
        ("alice", "alice"),
        ("Alice", "alice"),
        ("ÅNGSTRÖM", "ångström"),
        ("\uff2a\uff35\uff2c\uff29\uff25\uff34", "juliet"),  # fullwidth JULIET
        ("ΣΑΣ", "σας"),
        ("juliet.capulet-2_x+y", "juliet.capulet-2_x+y"),
        ("a" * 1023, "a" * 1023),
    ],
)
def test_usernames_are_case_mapped_and_width_mapped(name, normalized):
    assert normalize_username(name) == normalized


@pytest.mark.parametrize(
    ("name", "reason"),
    [
        ("a b", "'a b' is not a valid username: it contains a space"),
        ("", "'' is not a valid username: it is empty"),
        ("x\x00y", "it contains a control character"),
        ("\U0001f4a9", "it contains the symbol '\U0001f4a9' (U+1F4A9)"),
        ("Ⅻ", "compatibility variant"),
        ("\u05d0a", "it mixes right-to-left and left-to-right text"),
        ("a" * 1024, "longer than 1023 bytes"),
        ("é" * 512, "longer than 1023 bytes"),
    ],
)
def test_invalid_usernames_say_why(name, reason):
    with pytest.raises(InvalidUsername, match=re.escape(reason)):
        normalize_username(name)


@pytest.mark.parametrize("char", list("\"&'/:<>@"))
def test_rfc7622_forbidden_characters_are_refused(char):
    with pytest.raises(InvalidUsername) as raised:
        normalize_username(f"ro{char}meo")

    assert str(raised.value).endswith(f"it contains {char!r}")


def test_credentials_cover_both_mechanisms_and_never_hold_the_password():
    password = "correct horse battery staple"

    credentials = derive_credentials(password)

    assert [c.mechanism for c in credentials] == list(MECHANISMS)
    assert all(c.iterations == 4096 for c in credentials)
    for credential in credentials:
        stored = credential.salt + credential.stored_key + credential.server_key
        assert password.encode() not in stored
        assert password not in repr(credential)
    assert derive_credentials(password)[0].salt != credentials[0].salt


@pytest.mark.parametrize("mechanism", MECHANISMS)
def test_credentials_complete_a_real_scram_exchange(mechanism):
    [stored] = [c for c in derive_credentials("pencil") if c.mechanism == mechanism]

    def auth_info(username):
        return stored.salt, stored.stored_key, stored.server_key, stored.iterations

    server = ScramMechanism(mechanism).make_server(auth_info)
    client = ScramClient([mechanism], "user", "pencil")
    server.set_client_first(client.get_client_first())
    client.set_server_first(server.get_server_first())
    server.set_client_final(client.get_client_final())
    client.set_server_final(server.get_server_final())  # raises if the proofs differ


@pytest.mark.parametrize("mechanism", MECHANISMS)
@pytest.mark.parametrize("password", ["pencil", "I\u00adX", "\u2168", "p\u00e4ss w\u00f6rd"])
def test_verifiers_match_scramps_for_the_same_salt(mechanism, password):
    # SASLprep maps the soft hyphen away and U+2168 ROMAN NUMERAL NINE to "IX".
    [ours] = [c for c in derive_credentials(password) if c.mechanism == mechanism]

    theirs = ScramMechanism(mechanism).make_auth_info(
        password, iteration_count=ours.iterations, salt=ours.salt
    )

    assert (ours.salt, ours.stored_key, ours.server_key, ours.iterations) == theirs
    assert password_matches(ours, password)
    assert not password_matches(ours, password + "!")


def test_every_printable_ascii_password_verifies_as_scramp_derives_it():
    password = "".join(chr(code) for code in range(0x20, 0x7F))
    [ours] = [c for c in derive_credentials(password) if c.mechanism == "SCRAM-SHA-256"]

    theirs = ScramMechanism("SCRAM-SHA-256").make_auth_info(
        password, iteration_count=ours.iterations, salt=ours.salt
    )

    assert (ours.salt, ours.stored_key, ours.server_key, ours.iterations) == theirs


@pytest.mark.parametrize(("password", "reason"), [("", "empty"), ("bell\x07", "not usable")])
def test_unusable_passwords_are_refused(password, reason):
    with pytest.raises(InvalidPassword, match=reason):
        derive_credentials(password)


async def test_add_user_returns_the_normalized_name(accounts):
    assert await accounts.add_user("Alice", "secret", "Alice Liddell") == "alice"

    [record] = await accounts.list_users()
    assert (record.username, record.full_name) == ("alice", "Alice Liddell")


async def test_add_user_refuses_a_name_that_exists_in_any_case(accounts):
    await accounts.add_user("alice", "secret")

    with pytest.raises(AccountExists, match="user 'alice' already exists"):
        await accounts.add_user("ALICE", "other")


async def test_add_user_refuses_an_invalid_name(accounts):
    with pytest.raises(InvalidUsername):
        await accounts.add_user("a b", "secret")


async def test_verify_password(accounts):
    await accounts.add_user("alice", "secret")

    assert await accounts.verify_password("alice", "secret")
    assert await accounts.verify_password("ALICE", "secret")
    assert not await accounts.verify_password("alice", "Secret")
    assert not await accounts.verify_password("alice", "")
    assert not await accounts.verify_password("bob", "secret")
    assert not await accounts.verify_password("a b", "secret")


async def test_verify_password_applies_saslprep_like_scram(accounts):
    # RFC 4013 section 3: SOFT HYPHEN maps to nothing, so "I\u00adX" is "IX".
    await accounts.add_user("alice", "I\u00adX")

    assert await accounts.verify_password("alice", "IX")


async def test_change_password(accounts):
    await accounts.add_user("alice", "old")

    assert await accounts.change_password("Alice", "new") == "alice"

    assert await accounts.verify_password("alice", "new")
    assert not await accounts.verify_password("alice", "old")


async def test_change_password_of_unknown_user(accounts):
    with pytest.raises(NoSuchAccount, match="no such user 'ghost'"):
        await accounts.change_password("ghost", "pw")


async def test_delete_user(accounts):
    await accounts.add_user("alice", "secret")

    assert await accounts.delete_user("Alice") is True
    assert await accounts.delete_user("alice") is False
    assert not await accounts.verify_password("alice", "secret")


async def test_scram_credentials_are_found_by_any_spelling(accounts):
    await accounts.add_user("alice", "secret")

    found = await accounts.scram_credentials("ALICE", "SCRAM-SHA-1")

    assert found is not None and found.mechanism == "SCRAM-SHA-1"
    assert await accounts.scram_credentials("a b", "SCRAM-SHA-1") is None


async def test_import_creates_every_user_and_reports_progress(accounts):
    rows = [UserRow(f"User{i}", f"pw{i}", f"User {i}" if i % 2 else None) for i in range(20)]
    ticks = []

    imported = await accounts.import_users(rows, progress=lambda: ticks.append(1))

    assert imported == [f"user{i}" for i in range(20)]
    assert len(ticks) == 20
    assert len(await accounts.list_users()) == 20
    assert await accounts.verify_password("user7", "pw7")


async def test_import_with_bad_rows_imports_nothing_and_names_each_row(accounts):
    await accounts.add_user("taken", "pw")
    rows = [
        UserRow("fine", "pw"),
        UserRow("bad name", "pw"),
        UserRow("taken", "pw"),
        UserRow("Fine", "pw"),
        UserRow("nopass", ""),
    ]

    with pytest.raises(ImportRejected) as raised:
        await accounts.import_users(rows)

    assert [p.index for p in raised.value.problems] == [1, 2, 3, 4]
    assert raised.value.problems[0] == RowProblem(
        1, "'bad name' is not a valid username: it contains a space"
    )
    assert "already exists" in raised.value.problems[1].message
    assert "more than once" in raised.value.problems[2].message
    assert "empty" in raised.value.problems[3].message
    assert [r.username for r in await accounts.list_users()] == ["taken"]


async def test_import_refuses_passwords_scram_cannot_use(accounts):
    with pytest.raises(ImportRejected) as raised:
        await accounts.import_users([UserRow("a", "pw"), UserRow("b", "bell\x07")])

    assert [p.index for p in raised.value.problems] == [1]
    assert await accounts.list_users() == []
