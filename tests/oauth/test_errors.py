"""Every error is the one RFC 6749 names, redirected only to a redirect URI that can be trusted."""

from urllib.parse import urlencode

from sqlalchemy import update

from chinwag.store.models import utc_now
from chinwag.store.oauth_models import OAuthCode
from oauth.support import (
    CALLBACK,
    authorize_path,
    code_for,
    exchange,
    pkce,
    redirect_params,
    shared_loop,
    sign_in_and_consent,
)

pytestmark = shared_loop


def with_pkce(**params: str) -> dict[str, str]:
    return {"code_challenge": pkce().challenge, "code_challenge_method": "S256", **params}


async def test_a_wrong_redirect_uri_is_shown_and_never_followed(browser, public_app):
    path = authorize_path(
        public_app.app.client_id,
        redirect_uri="https://evil.example/cb",
        scope="wl.messenger",
        **with_pkce(),
    )

    page = await browser.get(path)

    assert page.status_code == 400
    assert "location" not in page.headers
    assert "invalid_request" in page.text
    assert "evil.example/cb is not supported" in page.text


async def test_a_redirect_uri_that_only_starts_like_a_registered_one_is_refused(
    browser, public_app
):
    path = authorize_path(
        public_app.app.client_id,
        redirect_uri=CALLBACK + "/more",
        scope="wl.messenger",
        **with_pkce(),
    )

    page = await browser.get(path)

    assert page.status_code == 400 and "location" not in page.headers


async def test_an_unknown_app_is_shown_and_never_redirected(browser):
    page = await browser.get(authorize_path("no-such-app", scope="wl.messenger", **with_pkce()))

    assert page.status_code == 400
    assert "invalid_client" in page.text


async def test_an_unknown_scope_is_invalid_scope(browser, public_app):
    path = authorize_path(
        public_app.app.client_id, scope="wl.messenger wl.photos", state="s", **with_pkce()
    )

    error = redirect_params(await browser.get(path))

    assert error == {
        "error": "invalid_scope",
        "error_description": error["error_description"],
        "state": "s",
    }


async def test_no_scope_is_invalid_scope(browser, public_app):
    path = authorize_path(public_app.app.client_id, state="s", **with_pkce())

    assert redirect_params(await browser.get(path))["error"] == "invalid_scope"


async def test_an_unknown_response_type_is_unsupported_response_type(browser, public_app):
    path = authorize_path(
        public_app.app.client_id, response_type="id_token", scope="wl.messenger", state="s"
    )

    error = redirect_params(await browser.get(path))

    assert error["error"] == "unsupported_response_type" and error["state"] == "s"


async def test_denied_consent_is_access_denied_with_the_state(platform, browser, public_app):
    path = authorize_path(
        public_app.app.client_id, scope="wl.messenger", state="keep me", **with_pkce()
    )

    redirect = await sign_in_and_consent(browser, path, decision="deny")

    assert redirect.headers["location"].startswith(CALLBACK + "?")
    error = redirect_params(redirect)
    assert error["error"] == "access_denied"
    assert error["state"] == "keep me"
    assert await platform.oauth.connected_apps("alice") == []


async def test_a_public_app_must_send_a_code_challenge(browser, public_app):
    path = authorize_path(public_app.app.client_id, scope="wl.messenger", state="s")

    error = redirect_params(await browser.get(path))

    assert error["error"] == "invalid_request" and error["state"] == "s"
    assert "code_challenge" in error["error_description"]


async def test_the_plain_challenge_method_is_refused(browser, public_app):
    path = authorize_path(
        public_app.app.client_id,
        scope="wl.messenger",
        code_challenge=pkce().verifier,
        code_challenge_method="plain",
    )

    error = redirect_params(await browser.get(path))

    assert error["error"] == "invalid_request"
    assert "S256" in error["error_description"]


async def test_a_wrong_code_verifier_is_invalid_grant(browser, public_app):
    challenge = pkce()
    code = await code_for(browser, public_app.app.client_id, "wl.messenger", challenge)

    response = await exchange(browser, public_app.app.client_id, code, pkce().verifier)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_grant"


async def test_a_missing_code_verifier_is_invalid_request(browser, public_app):
    # RFC 6749 5.2: a missing required parameter is invalid_request (a wrong one, invalid_grant).
    code = await code_for(browser, public_app.app.client_id, "wl.messenger", pkce())

    response = await exchange(browser, public_app.app.client_id, code, None)

    assert response.status_code == 400
    assert response.json()["error"] == "invalid_request"
    assert "code_verifier" in response.json()["error_description"]


async def test_a_bad_client_secret_is_invalid_client_401(browser, confidential_app):
    client_id = confidential_app.app.client_id
    challenge = pkce()
    code = await code_for(
        browser,
        client_id,
        "wl.basic",
        challenge,
        redirect_uri=confidential_app.app.redirect_uris[0],
    )

    response = await exchange(
        browser,
        client_id,
        code,
        challenge.verifier,
        secret="wrong",
        redirect_uri=confidential_app.app.redirect_uris[0],
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"
    assert response.headers["www-authenticate"].startswith("Basic ")


async def test_a_confidential_app_cannot_pose_as_public(browser, confidential_app):
    client_id = confidential_app.app.client_id
    challenge = pkce()
    code = await code_for(
        browser,
        client_id,
        "wl.basic",
        challenge,
        redirect_uri=confidential_app.app.redirect_uris[0],
    )

    response = await exchange(
        browser,
        client_id,
        code,
        challenge.verifier,
        redirect_uri=confidential_app.app.redirect_uris[0],
    )

    assert response.status_code == 401
    assert response.json()["error"] == "invalid_client"


async def test_a_replayed_code_is_invalid_grant_and_revokes_its_tokens(
    platform, browser, public_app
):
    client_id = public_app.app.client_id
    challenge = pkce()
    code = await code_for(browser, client_id, "wl.messenger wl.offline_access", challenge)
    first = (await exchange(browser, client_id, code, challenge.verifier)).json()

    replay = await exchange(browser, client_id, code, challenge.verifier)

    assert replay.status_code == 400
    assert replay.json()["error"] == "invalid_grant"
    assert await platform.oauth.check_token(first["access_token"]) is None
    refreshed = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "refresh_token",
            "refresh_token": first["refresh_token"],
            "client_id": client_id,
        },
    )
    assert refreshed.json()["error"] == "invalid_grant"


async def test_a_code_needs_the_redirect_uri_it_was_issued_with(browser, public_app):
    challenge = pkce()
    code = await code_for(browser, public_app.app.client_id, "wl.messenger", challenge)

    response = await exchange(
        browser,
        public_app.app.client_id,
        code,
        challenge.verifier,
        redirect_uri=public_app.app.redirect_uris[1],
    )

    assert response.json()["error"] == "invalid_grant"


async def test_an_expired_code_is_invalid_grant(platform, browser, public_app):
    challenge = pkce()
    code = await code_for(browser, public_app.app.client_id, "wl.messenger", challenge)
    async with platform.database.sessions.begin() as session:
        await session.execute(update(OAuthCode).values(expires_at=utc_now()))

    response = await exchange(browser, public_app.app.client_id, code, challenge.verifier)

    assert response.json()["error"] == "invalid_grant"


async def test_token_endpoint_errors(browser, public_app):
    client_id = public_app.app.client_id
    cases = [
        (
            {"grant_type": "password", "username": "alice", "password": "x"},
            "unsupported_grant_type",
        ),
        ({"grant_type": "authorization_code", "client_id": client_id}, "invalid_request"),
        (
            {"grant_type": "authorization_code", "code": "made-up", "client_id": client_id},
            "invalid_grant",
        ),
        (
            {"grant_type": "refresh_token", "refresh_token": "made-up", "client_id": client_id},
            "invalid_grant",
        ),
    ]
    for data, error in cases:
        response = await browser.post(
            "/oauth/token",
            content=urlencode(data),
            headers={"content-type": "application/x-www-form-urlencoded"},
        )
        assert response.status_code == 400, (data, response.text)
        assert response.json()["error"] == error, data


async def test_a_suspended_app_is_refused(platform, browser, public_app):
    await platform.oauth.suspend_app(public_app.app.client_id)

    page = await browser.get(
        authorize_path(public_app.app.client_id, scope="wl.messenger", **with_pkce())
    )

    assert page.status_code == 400
    assert "invalid_client" in page.text


async def test_plain_http_is_refused_off_the_loopback_address(browser, public_app):
    elsewhere = {"host": "chat.example"}

    token = await browser.post(
        "/oauth/token", data={"grant_type": "refresh_token"}, headers=elsewhere
    )
    page = await browser.get(
        authorize_path(public_app.app.client_id, scope="wl.messenger"), headers=elsewhere
    )

    assert token.status_code == 400
    assert token.json()["error"] == "insecure_transport"
    assert page.status_code == 400 and "insecure_transport" in page.text
