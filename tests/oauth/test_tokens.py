"""Refresh rotation and replay, revocation (RFC 7009), introspection (RFC 7662), metadata (RFC 8414)."""

import pytest_asyncio
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from chinwag.store.oauth import OAUTH_REVOKED
from oauth.support import OTHER_CALLBACK, code_for, exchange, pkce, refresh, shared_loop

pytestmark = shared_loop


@pytest_asyncio.fixture(loop_scope="session")
async def tokens(browser, public_app):
    """Tokens of alice for the public app, with a refresh token."""
    challenge = pkce()
    code = await code_for(
        browser, public_app.app.client_id, "wl.messenger wl.offline_access", challenge
    )
    response = await exchange(browser, public_app.app.client_id, code, challenge.verifier)
    return response.json()


async def test_refresh_rotates_the_refresh_token(platform, browser, public_app, tokens):
    response = await refresh(browser, public_app.app.client_id, tokens["refresh_token"])

    assert response.status_code == 200, response.text
    renewed = response.json()
    assert renewed["refresh_token"] != tokens["refresh_token"]
    assert renewed["access_token"] != tokens["access_token"]
    assert renewed["scope"] == "wl.messenger wl.offline_access"
    assert await platform.oauth.check_token(renewed["access_token"])
    again = await refresh(browser, public_app.app.client_id, renewed["refresh_token"])
    assert again.status_code == 200, again.text


async def test_reusing_a_refresh_token_revokes_the_family(platform, browser, public_app, tokens):
    client_id = public_app.app.client_id
    renewed = (await refresh(browser, client_id, tokens["refresh_token"])).json()

    replay = await refresh(browser, client_id, tokens["refresh_token"])

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert await platform.oauth.check_token(renewed["access_token"]) is None
    assert await platform.oauth.check_token(tokens["access_token"]) is None
    stolen = await refresh(browser, client_id, renewed["refresh_token"])
    assert stolen.json()["error"] == "invalid_grant"
    assert [(e.kind, e.subject, e.object) for e in await platform.events()] == [
        (OAUTH_REVOKED, "alice", client_id)
    ]


async def test_a_refresh_may_narrow_but_not_widen_the_scope(browser, public_app, tokens):
    client_id = public_app.app.client_id
    wider = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
            "scope": "wl.messenger wl.basic",
        },
    )
    assert wider.json()["error"] == "invalid_scope"

    narrower = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": tokens["refresh_token"],
            "client_id": client_id,
            "scope": "wl.messenger",
        },
    )
    assert narrower.status_code == 200, narrower.text
    assert narrower.json()["scope"] == "wl.messenger"
    assert "refresh_token" not in narrower.json()


async def test_a_refresh_token_of_another_app_is_refused(platform, browser, tokens):
    other = await platform.oauth.register_app("Other", [OTHER_CALLBACK], public=True)

    response = await refresh(browser, other.app.client_id, tokens["refresh_token"])

    assert response.json()["error"] == "invalid_grant"


async def test_revoking_a_token_ends_its_grant(platform, browser, public_app, tokens):
    client_id = public_app.app.client_id

    response = await browser.post(
        "/oauth/revoke",
        data={
            "token": tokens["access_token"],
            "token_type_hint": "access_token",
            "client_id": client_id,
        },
    )

    assert response.status_code == 200, response.text
    assert await platform.oauth.check_token(tokens["access_token"]) is None
    assert (await refresh(browser, client_id, tokens["refresh_token"])).json()[
        "error"
    ] == "invalid_grant"
    assert [(e.kind, e.subject, e.object) for e in await platform.events()] == [
        (OAUTH_REVOKED, "alice", client_id)
    ]
    unknown = await browser.post(
        "/oauth/revoke", data={"token": "nonsense", "client_id": client_id}
    )
    assert unknown.status_code == 200


async def test_introspection_tells_active_from_inactive(platform, browser, confidential_app):
    client_id, secret = confidential_app.app.client_id, confidential_app.client_secret
    challenge = pkce()
    code = await code_for(
        browser, client_id, "wl.basic wl.offline_access", challenge, redirect_uri=OTHER_CALLBACK
    )
    issued = (
        await exchange(
            browser, client_id, code, challenge.verifier, secret=secret, redirect_uri=OTHER_CALLBACK
        )
    ).json()

    active = await browser.post(
        "/oauth/introspect", data={"token": issued["access_token"]}, auth=(client_id, secret)
    )

    assert active.status_code == 200, active.text
    body = active.json()
    assert body["active"] is True
    assert body["client_id"] == client_id
    assert body["username"] == body["sub"] == "alice"
    assert body["scope"] == "wl.basic wl.offline_access"
    assert body["token_type"] == "Bearer"
    assert body["exp"] - body["iat"] == 3600
    as_refresh = await browser.post(
        "/oauth/introspect",
        data={"token": issued["refresh_token"], "token_type_hint": "refresh_token"},
        auth=(client_id, secret),
    )
    assert as_refresh.json()["active"] is True

    await platform.oauth.revoke_token(issued["access_token"])
    for token in (issued["access_token"], issued["refresh_token"], "nonsense"):
        inactive = await browser.post(
            "/oauth/introspect", data={"token": token}, auth=(client_id, secret)
        )
        assert inactive.json() == {"active": False}


async def test_introspection_needs_a_confidential_app(browser, public_app, tokens):
    response = await browser.post(
        "/oauth/introspect",
        data={"token": tokens["access_token"], "client_id": public_app.app.client_id},
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_metadata_describes_the_server(platform, browser):
    response = await browser.get("/.well-known/oauth-authorization-server")

    assert response.status_code == 200
    metadata = response.json()
    AuthorizationServerMetadata(metadata).validate()
    assert metadata["issuer"] == platform.base
    assert metadata["token_endpoint"] == platform.base + "/oauth/token"
    assert metadata["revocation_endpoint"] == platform.base + "/oauth/revoke"
    assert metadata["introspection_endpoint"] == platform.base + "/oauth/introspect"
    assert metadata["code_challenge_methods_supported"] == ["S256"]
    assert set(metadata["scopes_supported"]) == {
        "wl.archive",
        "wl.basic",
        "wl.blocking",
        "wl.messenger",
        "wl.offline_access",
    }
    # The implicit grant is off by default ([oauth] allow_implicit).
    assert set(metadata["grant_types_supported"]) == {"authorization_code", "refresh_token"}
