"""OAuthService without HTTP: what the CLI and the XMPP sign-in use."""

from datetime import timedelta

import pytest
from scramp import ScramClient, ScramException, ScramMechanism
from sqlalchemy import update

from chinwag.network.accounts import NoSuchAccount
from chinwag.oauth.service import (
    OAUTH_APP_SUSPENDED,
    OAUTH_REVOKED,
    AppSuspended,
    InvalidRegistration,
    InvalidRequest,
    NoSuchApp,
    UnknownScope,
)
from chinwag.oauth.tokens import digest
from chinwag.store.models import utc_now
from chinwag.store.oauth import SqlOAuthRepository
from chinwag.store.oauth_models import OAuthToken
from oauth.support import ALICE, ALICE_PASSWORD, CALLBACK, shared_loop

pytestmark = shared_loop


async def test_issued_tokens_sign_in_until_revoked(services, public_app):
    client_id = public_app.app.client_id

    issued = await services.oauth.issue_token(
        client_id, "Alice", "wl.offline_access wl.messenger", ttl=120
    )

    assert issued.expires_in == 120 and issued.refresh_token
    assert issued.response()["scope"] == "wl.messenger wl.offline_access"
    grant = await services.oauth.check_token(issued.access_token)
    assert (grant.username, grant.client_id) == (ALICE, client_id)
    assert grant.scopes == {"wl.messenger", "wl.offline_access"}
    assert timedelta(seconds=110) < grant.expires_at - utc_now() <= timedelta(seconds=120)
    assert [c.client_id for c in await services.oauth.connected_apps(ALICE)] == [client_id]

    assert await services.oauth.revoke_token(issued.refresh_token)

    assert await services.oauth.check_token(issued.access_token) is None
    assert not await services.oauth.revoke_token("unknown")
    assert [(e.kind, e.subject, e.object) for e in await services.events()] == [
        (OAUTH_REVOKED, ALICE, client_id)
    ]


async def test_no_refresh_token_without_offline_access(services, public_app):
    issued = await services.oauth.issue_token(public_app.app.client_id, ALICE, ["wl.messenger"])

    assert issued.refresh_token is None
    assert issued.expires_in == services.settings.oauth.access_token_ttl_seconds


async def test_issuing_checks_app_user_and_scopes(services, public_app):
    client_id = public_app.app.client_id
    with pytest.raises(UnknownScope, match=r"wl\.photos"):
        await services.oauth.issue_token(client_id, ALICE, "wl.messenger wl.photos")
    with pytest.raises(NoSuchAccount):
        await services.oauth.issue_token(client_id, "bob", "wl.messenger")
    with pytest.raises(NoSuchApp):
        await services.oauth.issue_token("nope", ALICE, "wl.messenger")
    await services.oauth.suspend_app(client_id)
    with pytest.raises(AppSuspended):
        await services.oauth.issue_token(client_id, ALICE, "wl.messenger")


async def test_expired_tokens_do_not_sign_in(services, public_app):
    issued = await services.oauth.issue_token(public_app.app.client_id, ALICE, "wl.messenger")
    async with services.database.sessions.begin() as session:
        await session.execute(update(OAuthToken).values(expires_at=utc_now()))

    assert await services.oauth.check_token(issued.access_token) is None


async def test_suspension_ends_tokens_for_good(services, public_app):
    client_id = public_app.app.client_id
    issued = await services.oauth.issue_token(client_id, ALICE, "wl.messenger")

    await services.oauth.suspend_app(client_id)

    assert await services.oauth.check_token(issued.access_token) is None
    assert (await services.oauth.get_app(client_id)).status == "suspended"
    await services.oauth.resume_app(client_id)
    assert await services.oauth.check_token(issued.access_token) is None
    assert [(e.kind, e.subject) for e in await services.events()] == [
        (OAUTH_APP_SUSPENDED, client_id)
    ]


async def test_deleting_an_app(services, public_app):
    client_id = public_app.app.client_id
    issued = await services.oauth.issue_token(client_id, ALICE, "wl.messenger")

    await services.oauth.delete_app(client_id)

    assert await services.oauth.get_app(client_id) is None
    assert await services.oauth.check_token(issued.access_token) is None
    assert [(e.kind, e.subject) for e in await services.events()] == [
        (OAUTH_APP_SUSPENDED, client_id)
    ]
    for change in (
        services.oauth.suspend_app,
        services.oauth.resume_app,
        services.oauth.delete_app,
    ):
        with pytest.raises(NoSuchApp):
            await change(client_id)


async def test_apps_of_their_owners(services, confidential_app):
    mine = await services.oauth.register_app("Mine", [CALLBACK], owner="ALICE")
    await services.oauth.register_app("Bob's", [CALLBACK], owner="bob")

    assert [app.client_id for app in await services.oauth.apps_of("Alice")] == [mine.app.client_id]
    assert mine.app.owner == ALICE
    assert await services.oauth.apps_of("nobody") == []
    assert await services.oauth.apps_of("not a name") == []
    assert (await services.oauth.owned_app(mine.app.client_id, "alice")).name == "Mine"
    assert (await services.oauth.owned_app(mine.app.client_id, None)).name == "Mine"
    for owner in ("bob", "not a name"):
        with pytest.raises(NoSuchApp):
            await services.oauth.owned_app(mine.app.client_id, owner)
    with pytest.raises(NoSuchApp):  # an app registered without an owner is nobody's
        await services.oauth.owned_app(confidential_app.app.client_id, ALICE)


async def test_rotating_a_secret(services):
    registered = await services.oauth.register_app("Mine", [CALLBACK], owner=ALICE)
    client_id = registered.app.client_id
    issued = await services.oauth.issue_token(client_id, ALICE, "wl.basic")

    with pytest.raises(NoSuchApp):
        await services.oauth.rotate_secret(client_id, owner="bob")
    secret = await services.oauth.rotate_secret(client_id, owner=ALICE)
    again = await services.oauth.rotate_secret(client_id)  # an operator's, without owner

    assert len({registered.client_secret, secret, again}) == 3
    record = await SqlOAuthRepository(services.database).app(client_id)
    assert record is not None and record.secret_hash == digest(again)
    assert await services.oauth.check_token(issued.access_token) is not None  # tokens stay
    with pytest.raises(NoSuchApp):
        await services.oauth.rotate_secret("no-such-app")


async def test_a_public_app_has_no_secret_to_rotate(services, public_app):
    with pytest.raises(InvalidRequest, match="public app"):
        await services.oauth.rotate_secret(public_app.app.client_id)


async def test_deleting_only_ones_own_app(services):
    client_id = (await services.oauth.register_app("Mine", [CALLBACK], owner=ALICE)).app.client_id

    with pytest.raises(NoSuchApp):
        await services.oauth.delete_app(client_id, owner="bob")
    assert await services.oauth.get_app(client_id) is not None
    await services.oauth.delete_app(client_id, owner="Alice")
    assert await services.oauth.get_app(client_id) is None


@pytest.mark.parametrize(
    "uri",
    [
        "https://app.example/cb",
        "http://127.0.0.1:9000/cb",
        "http://localhost/cb",
        "http://[::1]:8080/cb",
        "com.example.chat:/oauth",
    ],
)
async def test_redirect_uris_an_app_may_register(services, uri):
    registered = await services.oauth.register_app("App", [uri, uri])

    assert registered.app.redirect_uris == (uri,)
    assert registered.client_secret and not registered.app.public


@pytest.mark.parametrize(
    ("uri", "reason"),
    [
        ("http://app.example/cb", "must use https"),
        ("https://app.example/cb#top", "fragment"),
        ("/relative", "must use https"),
        ("javascript:alert(1)", "must use https"),
    ],
)
async def test_redirect_uris_an_app_may_not_register(services, uri, reason):
    with pytest.raises(InvalidRegistration, match=reason):
        await services.oauth.register_app("App", [uri])


async def test_an_app_needs_a_name_and_a_redirect_uri(services):
    with pytest.raises(InvalidRegistration, match="name"):
        await services.oauth.register_app("  ", [CALLBACK])
    with pytest.raises(InvalidRegistration, match="redirect URI"):
        await services.oauth.register_app("App", [])


async def test_editing_an_app(services):
    registered = await services.oauth.register_app("Mine", [CALLBACK], owner=ALICE)
    client_id = registered.app.client_id
    issued = await services.oauth.issue_token(client_id, ALICE, "wl.basic")

    renamed = await services.oauth.update_app(client_id, name="  Ours  ", owner="Alice")
    assert (renamed.name, renamed.redirect_uris, renamed.require_pkce) == (
        "Ours",
        (CALLBACK,),
        True,
    )
    moved = await services.oauth.update_app(
        client_id, redirect_uris=["https://new.example/cb", "com.example.chat:/oauth"]
    )
    assert moved.name == "Ours"
    assert moved.redirect_uris == ("https://new.example/cb", "com.example.chat:/oauth")
    relaxed = await services.oauth.update_app(client_id, require_pkce=False)
    assert not relaxed.require_pkce and relaxed.redirect_uris == moved.redirect_uris
    assert await services.oauth.get_app(client_id) == relaxed
    assert (await services.oauth.update_app(client_id, require_pkce=True)).require_pkce
    assert await services.oauth.check_token(issued.access_token) is not None  # tokens stay


async def test_an_edit_is_checked_as_a_registration_is(services, public_app):
    client_id = (await services.oauth.register_app("Mine", [CALLBACK], owner=ALICE)).app.client_id
    before = await services.oauth.get_app(client_id)

    for change, reason in [
        ({"name": " "}, "name is empty"),
        ({"redirect_uris": []}, "at least one redirect URI"),
        ({"redirect_uris": ["http://app.example/cb"]}, "must use https"),
        ({"redirect_uris": [CALLBACK, "https://app.example/cb#top"]}, "fragment"),
    ]:
        with pytest.raises(InvalidRegistration, match=reason):
            await services.oauth.update_app(client_id, **change)
    with pytest.raises(InvalidRegistration, match="public app always uses PKCE"):
        await services.oauth.update_app(public_app.app.client_id, require_pkce=False)
    with pytest.raises(NoSuchApp):
        await services.oauth.update_app(client_id, name="Theirs", owner="bob")
    with pytest.raises(NoSuchApp):
        await services.oauth.update_app("no-such-app", name="X")

    assert await services.oauth.get_app(client_id) == before
    assert (await services.oauth.get_app(public_app.app.client_id)).require_pkce


async def test_an_app_password_signs_in_with_plain(services, public_app):
    client_id = public_app.app.client_id

    password_id, password = await services.oauth.create_app_password("Alice", client_id, "laptop")

    grant = await services.oauth.check_app_password(ALICE, password)
    assert (grant.username, grant.client_id, grant.app_password_id) == (
        ALICE,
        client_id,
        password_id,
    )
    assert await services.oauth.check_app_password(ALICE, ALICE_PASSWORD) is None
    assert await services.oauth.check_app_password("bob", password) is None
    assert await services.oauth.check_app_password("not a name", password) is None
    [listed] = await services.oauth.list_app_passwords(ALICE)
    assert listed.label == "laptop" and listed.last_used_at is None
    await services.oauth.app_password_used(grant)
    [listed] = await services.oauth.list_app_passwords(ALICE)
    assert listed.last_used_at is not None


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-1", "SCRAM-SHA-256"])
async def test_an_app_password_signs_in_with_scram_on_the_account_salt(
    services, public_app, mechanism
):
    await services.oauth.create_app_password(ALICE, public_app.app.client_id, "other")
    _, password = await services.oauth.create_app_password(ALICE, public_app.app.client_id, "phone")
    account = await services.accounts.scram_credentials(ALICE, mechanism)

    candidates = await services.oauth.app_password_candidates(ALICE, account)

    assert len(candidates) == 2
    assert {(s.salt, s.iterations) for s, _ in candidates} == {(account.salt, account.iterations)}
    matched = [
        grant for scram, grant in candidates if scram_exchange_succeeds(mechanism, scram, password)
    ]
    assert [grant.client_id for grant in matched] == [public_app.app.client_id]


def scram_exchange_succeeds(mechanism, scram, password) -> bool:
    """One RFC 5802 exchange of a client knowing ``password`` with a server holding ``scram``."""
    server = ScramMechanism(mechanism).make_server(
        lambda _username: (scram.salt, scram.stored_key, scram.server_key, scram.iterations)
    )
    client = ScramClient([mechanism], ALICE, password)
    server.set_client_first(client.get_client_first())
    client.set_server_first(server.get_server_first())
    try:
        server.set_client_final(client.get_client_final())
    except ScramException:
        return False
    client.set_server_final(server.get_server_final())
    return True


async def test_app_passwords_follow_their_app(services, public_app):
    client_id = public_app.app.client_id
    password_id, password = await services.oauth.create_app_password(ALICE, client_id, "phone")

    await services.oauth.suspend_app(client_id)
    assert await services.oauth.check_app_password(ALICE, password) is None
    account = await services.accounts.scram_credentials(ALICE, "SCRAM-SHA-256")
    assert await services.oauth.app_password_candidates(ALICE, account) == []
    with pytest.raises(AppSuspended):
        await services.oauth.create_app_password(ALICE, client_id, "tablet")

    await services.oauth.resume_app(client_id)
    assert await services.oauth.check_app_password(ALICE, password) is not None

    assert await services.oauth.revoke_app_password(ALICE, password_id)
    assert not await services.oauth.revoke_app_password(ALICE, password_id)
    assert await services.oauth.check_app_password(ALICE, password) is None
    assert (await services.events())[-1].kind == OAUTH_REVOKED


async def test_revoking_the_app_revokes_its_app_passwords(services, public_app):
    _, password = await services.oauth.create_app_password(ALICE, public_app.app.client_id, "phone")

    assert await services.oauth.revoke_app_for_user(ALICE, public_app.app.client_id)

    assert await services.oauth.check_app_password(ALICE, password) is None
    assert await services.oauth.connected_apps(ALICE) == []


async def test_after_a_password_change_old_app_passwords_still_work_with_scram_and_plain(
    services, public_app
):
    _, password = await services.oauth.create_app_password(ALICE, public_app.app.client_id, "phone")

    await services.accounts.change_password(ALICE, "new password")

    # The account's salts stay, so one SCRAM exchange still checks the old verifiers.
    for mechanism in ("SCRAM-SHA-1", "SCRAM-SHA-256"):
        account = await services.accounts.scram_credentials(ALICE, mechanism)
        [(_, grant)] = await services.oauth.app_password_candidates(ALICE, account)
        assert grant.client_id == public_app.app.client_id
    assert await services.oauth.check_app_password(ALICE, password) is not None
    assert await services.accounts.verify_password(ALICE, "new password")
