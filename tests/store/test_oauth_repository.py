"""SqlOAuthRepository, run on SQLite and PostgreSQL by the ``database`` fixture."""

from dataclasses import replace
from datetime import timedelta

import pytest

from chinwag.store.accounts import NoSuchAccount, SqlAccountRepository, StoredScram
from chinwag.store.events import SqlEventRepository
from chinwag.store.models import utc_now
from chinwag.store.oauth import (
    OAUTH_APP_SUSPENDED,
    OAUTH_REVOKED,
    TOKEN_RETENTION,
    NewApp,
    NewCode,
    NewToken,
    NoSuchApp,
    SqlOAuthRepository,
    app_password_credential,
    token_family_credential,
)

ORIGIN = "test-origin"


def scram(mechanism: str, seed: int = 1) -> StoredScram:
    return StoredScram(
        mechanism, bytes([seed]) * 16, bytes([seed + 1]) * 32, bytes([seed + 2]) * 32, 4096
    )


def new_app(client_id: str = "app1", *, public: bool = False) -> NewApp:
    return NewApp(
        client_id=client_id,
        name=f"App {client_id}",
        secret_hash=None if public else b"h" * 32,
        redirect_uris=("https://app.example/cb", "http://127.0.0.1:9/cb"),
        public=public,
        allow_implicit=False,
        owner="alice",
    )


def new_token(
    seed: str, family: str = "fam1", client_id: str = "app1", user: str = "alice"
) -> NewToken:
    now = utc_now()
    return NewToken(
        access_hash=f"a-{seed}".encode(),
        refresh_hash=f"r-{seed}".encode(),
        family_id=family,
        client_id=client_id,
        username=user,
        scope="wl.messenger wl.offline_access",
        issued_at=now,
        expires_at=now + timedelta(hours=1),
        refresh_expires_at=now + timedelta(days=1),
    )


@pytest.fixture
async def repo(database):
    accounts = SqlAccountRepository(database)
    await accounts.add("alice", [scram("SCRAM-SHA-256")])
    await accounts.add("bob", [scram("SCRAM-SHA-256")])
    oauth = SqlOAuthRepository(database)
    await oauth.add_app(new_app())
    return oauth


@pytest.fixture
def events(database):
    return SqlEventRepository(database)


async def kinds(events) -> list[tuple[str, str, str | None, str]]:
    return [(e.kind, e.subject, e.object, e.origin) for e in await events.since(0)]


async def details(events) -> list[str | None]:
    """What narrows each event down: the credential an ``oauth.revoked`` is about."""
    return [e.detail for e in await events.since(0)]


async def test_apps_round_trip(repo):
    await repo.add_app(new_app("app2", public=True))

    app = await repo.app("app1")
    assert app.name == "App app1"
    assert app.redirect_uris == ("https://app.example/cb", "http://127.0.0.1:9/cb")
    assert app.secret_hash == b"h" * 32
    assert app.active and app.owner == "alice"
    assert (await repo.app("app2")).public
    assert [a.client_id for a in await repo.apps()] == ["app1", "app2"]
    assert await repo.app("nope") is None


async def test_suspending_revokes_tokens_and_announces_it(repo, events):
    await repo.add_token(new_token("1"))

    assert await repo.suspend_app("app1", ORIGIN)

    token = await repo.token_by_access(b"a-1")
    assert token.revoked and not token.app_active
    assert (await repo.app("app1")).status == "suspended"
    assert await kinds(events) == [(OAUTH_APP_SUSPENDED, "app1", None, ORIGIN)]
    assert await repo.resume_app("app1")
    assert (await repo.app("app1")).active
    assert (await repo.token_by_access(b"a-1")).revoked
    assert not await repo.suspend_app("nope", ORIGIN)


async def test_deleting_an_app_deletes_what_it_owns(repo, events):
    await repo.add_token(new_token("1"))
    await repo.grant_consent("alice", "app1", "wl.messenger", True)

    assert await repo.delete_app("app1", ORIGIN)

    assert await repo.app("app1") is None
    assert await repo.token_by_access(b"a-1") is None
    assert await repo.consents("alice") == []
    assert await kinds(events) == [(OAUTH_APP_SUSPENDED, "app1", None, ORIGIN)]
    assert not await repo.delete_app("app1", ORIGIN)


async def test_a_code_is_claimed_once(repo):
    code = NewCode(
        code_hash=b"c1",
        client_id="app1",
        username="alice",
        redirect_uri="https://app.example/cb",
        scope="wl.messenger",
        code_challenge="x" * 43,
        code_challenge_method="S256",
        family_id="fam1",
        expires_at=utc_now() + timedelta(minutes=1),
    )
    await repo.add_code(code)

    first = await repo.claim_code(b"c1")
    again = await repo.claim_code(b"c1")

    assert not first.replayed
    assert first.code.username == "alice" and first.code.client_id == "app1"
    assert first.code.code_challenge == "x" * 43
    assert again.replayed
    assert await repo.claim_code(b"unknown") is None


async def test_codes_need_a_known_app_and_user(repo):
    code = NewCode(b"c", "app1", "ghost", None, "wl.basic", None, None, "f", utc_now())
    with pytest.raises(NoSuchAccount):
        await repo.add_code(code)
    with pytest.raises(NoSuchApp):
        await repo.add_token(new_token("1", client_id="nope"))


async def test_rotation_happens_once(repo):
    token_id = await repo.add_token(new_token("1"))

    assert (await repo.token_by_refresh(b"r-1")).id == token_id
    assert await repo.rotate(token_id)
    assert not await repo.rotate(token_id)
    assert (await repo.token_by_refresh(b"r-1")).rotated


async def test_revoking_a_family_spares_the_others(repo, events):
    await repo.add_token(new_token("1", "fam1"))
    await repo.add_token(new_token("2", "fam1"))
    await repo.add_token(new_token("3", "fam2"))

    assert await repo.revoke_family("fam1", ORIGIN)
    assert not await repo.revoke_family("fam1", ORIGIN)

    assert (await repo.token_by_access(b"a-1")).revoked
    assert (await repo.token_by_access(b"a-2")).revoked
    assert not (await repo.token_by_access(b"a-3")).revoked
    assert await kinds(events) == [(OAUTH_REVOKED, "alice", "app1", ORIGIN)]
    assert await details(events) == [token_family_credential("fam1")]


async def test_consent_accumulates_scopes(repo):
    await repo.grant_consent("alice", "app1", "wl.messenger", True)
    await repo.grant_consent("alice", "app1", "wl.basic wl.messenger", None)

    consent = await repo.consent("alice", "app1")
    assert consent.scope == "wl.basic wl.messenger"
    assert consent.remembered and consent.app_name == "App app1"

    await repo.grant_consent("alice", "app1", "wl.basic", False)
    assert not (await repo.consent("alice", "app1")).remembered
    assert await repo.consent("bob", "app1") is None
    with pytest.raises(NoSuchAccount):
        await repo.grant_consent("ghost", "app1", "wl.basic", True)


async def test_revoking_a_user_app_ends_tokens_consent_and_app_passwords(repo, events):
    await repo.add_token(new_token("1"))
    await repo.add_token(new_token("2", "fam2", user="bob"))
    await repo.grant_consent("alice", "app1", "wl.messenger", True)
    await repo.add_app_password("alice", "app1", "phone", [scram("SCRAM-SHA-256", 5)])

    assert await repo.revoke_user_app("alice", "app1", ORIGIN)
    assert not await repo.revoke_user_app("alice", "app1", ORIGIN)

    assert (await repo.token_by_access(b"a-1")).revoked
    assert not (await repo.token_by_access(b"a-2")).revoked
    assert await repo.consents("alice") == []
    assert await repo.app_passwords("alice") == []
    assert await kinds(events) == [(OAUTH_REVOKED, "alice", "app1", ORIGIN)]
    assert await details(events) == [None]  # the whole grant, whatever signed in with it


async def test_app_passwords(repo, events):
    verifiers = [scram("SCRAM-SHA-1", 3), scram("SCRAM-SHA-256", 5)]
    password_id = await repo.add_app_password("alice", "app1", "phone", verifiers)

    [record] = await repo.app_passwords("alice")
    assert (record.id, record.client_id, record.label, record.last_used_at) == (
        password_id,
        "app1",
        "phone",
        None,
    )
    [verifier] = await repo.app_password_verifiers("alice", "SCRAM-SHA-256")
    assert verifier.scram == verifiers[1] and verifier.client_id == "app1"

    when = utc_now()
    await repo.touch_app_password(password_id, when)
    assert (await repo.app_passwords("alice"))[0].last_used_at == when

    await repo.suspend_app("app1", ORIGIN)
    assert await repo.app_password_verifiers("alice", "SCRAM-SHA-256") == []

    assert not await repo.delete_app_password("bob", password_id, ORIGIN)
    assert await repo.delete_app_password("alice", password_id, ORIGIN)
    assert await repo.app_passwords("alice") == []
    assert (await kinds(events))[-1] == (OAUTH_REVOKED, "alice", "app1", ORIGIN)
    assert (await details(events))[-1] == app_password_credential(password_id)


async def test_an_issuance_goes_a_while_after_its_last_token_stopped_working(repo):
    """Each new issuance deletes those past ``TOKEN_RETENTION`` since their last token
    (the refresh token, or the access token without one) expired; the others stay, so
    that a rotated refresh token replayed meanwhile is still recognised."""
    long_ago = utc_now() - TOKEN_RETENTION - timedelta(days=2)
    recently = utc_now() - TOKEN_RETENTION + timedelta(days=1)
    old_refresh = replace(
        new_token("old"), expires_at=long_ago, refresh_expires_at=long_ago + timedelta(days=1)
    )
    old_access_only = replace(
        new_token("bare"), refresh_hash=None, expires_at=long_ago, refresh_expires_at=None
    )
    expired_access_live_refresh = replace(new_token("live"), expires_at=long_ago)
    within_retention = replace(
        new_token("recent"), expires_at=recently, refresh_expires_at=recently
    )
    for token in (old_refresh, old_access_only, expired_access_live_refresh, within_retention):
        await repo.add_token(token)

    await repo.add_token(new_token("new"))

    assert await repo.token_by_refresh(b"r-old") is None
    assert await repo.token_by_access(b"a-bare") is None
    assert await repo.token_by_refresh(b"r-live") is not None
    assert await repo.token_by_refresh(b"r-recent") is not None
    assert await repo.token_by_refresh(b"r-new") is not None
