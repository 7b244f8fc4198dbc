"""Web sessions kept on the server, run on SQLite and PostgreSQL by the ``database`` fixture:
a session lasts until it is ended, expires, or its user's password or account goes."""

from datetime import timedelta

import pytest

import chinwag.store.oauth
from chinwag.store.accounts import NoSuchAccount, SqlAccountRepository, StoredScram
from chinwag.store.models import utc_now
from chinwag.store.oauth import SqlOAuthRepository

pytestmark = pytest.mark.security

SESSION, OTHER = b"s" * 32, b"o" * 32


def scram(mechanism: str, seed: int) -> StoredScram:
    return StoredScram(
        mechanism, bytes([seed]) * 16, bytes([seed + 1]) * 32, bytes([seed + 2]) * 32, 4096
    )


def password(seed: int) -> list[StoredScram]:
    return [scram("SCRAM-SHA-1", seed), scram("SCRAM-SHA-256", seed)]


@pytest.fixture
async def accounts(database):
    accounts = SqlAccountRepository(database)
    await accounts.add("alice", password(1))
    await accounts.add("bob", password(4))
    return accounts


@pytest.fixture
def repo(database, accounts):
    return SqlOAuthRepository(database)


def in_an_hour():
    return utc_now() + timedelta(hours=1)


async def test_a_session_names_its_user_until_it_ends(repo):
    await repo.add_web_session("alice", SESSION, in_an_hour())
    await repo.add_web_session("bob", OTHER, in_an_hour())

    assert await repo.web_session_user(SESSION) == "alice"
    await repo.end_web_session(SESSION)

    assert await repo.web_session_user(SESSION) is None
    assert await repo.web_session_user(OTHER) == "bob"
    assert await repo.web_session_user(b"x" * 32) is None


async def test_an_expired_session_names_nobody_and_is_forgotten(repo):
    await repo.add_web_session("alice", SESSION, utc_now() - timedelta(seconds=1))

    assert await repo.web_session_user(SESSION) is None
    await repo.add_web_session("alice", OTHER, in_an_hour())
    await repo.add_web_session("alice", SESSION, in_an_hour())  # its old row is gone
    assert await repo.web_session_user(SESSION) == "alice"


async def test_an_account_keeps_a_bounded_number_of_sessions_the_newest(repo, monkeypatch):
    monkeypatch.setattr(chinwag.store.oauth, "MAX_WEB_SESSIONS", 3)
    hashes = [bytes([n]) * 32 for n in range(5)]
    await repo.add_web_session("bob", OTHER, in_an_hour())
    for id_hash in hashes:
        await repo.add_web_session("alice", id_hash, in_an_hour())

    assert [await repo.web_session_user(h) for h in hashes] == [None, None, *["alice"] * 3]
    assert await repo.web_session_user(OTHER) == "bob"


async def test_a_new_password_ends_the_sessions_of_the_old_one(repo, accounts):
    await repo.add_web_session("alice", SESSION, in_an_hour())
    await repo.add_web_session("bob", OTHER, in_an_hour())

    await accounts.replace_credentials("alice", password(7))

    assert await repo.web_session_user(SESSION) is None
    assert await repo.web_session_user(OTHER) == "bob"


async def test_deleting_the_account_ends_its_sessions(repo, accounts):
    await repo.add_web_session("alice", SESSION, in_an_hour())

    assert await accounts.delete("alice")

    assert await repo.web_session_user(SESSION) is None


async def test_only_an_account_with_a_password_can_have_one(repo, accounts):
    await accounts.add("carol", [])

    for name in ("carol", "nobody"):
        with pytest.raises(NoSuchAccount):
            await repo.add_web_session(name, SESSION, in_an_hour())
