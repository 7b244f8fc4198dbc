"""The authorization code grant with PKCE, through the real sign-in and consent pages."""

from oauth.support import (
    ALICE,
    CALLBACK,
    OTHER_CALLBACK,
    authorize_path,
    code_for,
    exchange,
    form_to,
    pkce,
    redirect_params,
    shared_loop,
    sign_in_and_consent,
)

pytestmark = shared_loop

MESSENGER_OFFLINE = "wl.messenger wl.offline_access"


async def test_public_app_signs_in_and_gets_tokens(platform, browser, public_app):
    client_id = public_app.app.client_id
    challenge = pkce()

    page = await browser.get(
        authorize_path(
            client_id,
            scope=MESSENGER_OFFLINE,
            state="xyz",
            code_challenge=challenge.challenge,
            code_challenge_method="S256",
        )
    )
    assert page.status_code == 200
    assert "Pocket Chat" in page.text and 'name="password"' in page.text
    assert (
        "<script" not in page.text
        and "http" not in page.text.split("<main>")[0].split("</title>")[1]
    )

    code = await code_for(browser, client_id, MESSENGER_OFFLINE, challenge)
    response = await exchange(browser, client_id, code, challenge.verifier)

    assert response.status_code == 200, response.text
    assert response.headers["cache-control"] == "no-store"
    tokens = response.json()
    assert tokens["token_type"] == "Bearer"
    assert tokens["expires_in"] == 3600
    assert tokens["scope"] == MESSENGER_OFFLINE
    assert tokens["refresh_token"]
    grant = await platform.oauth.check_token(tokens["access_token"])
    assert grant.username == ALICE
    assert grant.client_id == client_id
    assert grant.scopes == {"wl.messenger", "wl.offline_access"}


async def test_consent_page_says_what_the_app_may_do(browser, public_app):
    challenge = pkce()
    path = authorize_path(
        public_app.app.client_id,
        scope="wl.basic wl.messenger",
        code_challenge=challenge.challenge,
        code_challenge_method="S256",
    )
    page = await browser.get(path)
    signed_in = await browser.post(
        "/account/signin",
        data={
            **form_to(page, "/account/signin").fields,
            "username": ALICE,
            "password": "wonderland",
        },
    )
    consent = await browser.get(signed_in.headers["location"])

    assert "Allow <em>Pocket Chat</em>" in consent.text
    assert "Read your profile and your contact list." in consent.text
    assert "send and receive messages" in consent.text
    assert "Keep this access" not in consent.text
    assert consent.headers["x-frame-options"] == "DENY"
    assert "frame-ancestors 'none'" in consent.headers["content-security-policy"]


async def test_no_refresh_token_without_offline_access(browser, public_app):
    challenge = pkce()
    code = await code_for(browser, public_app.app.client_id, "wl.messenger", challenge)

    tokens = (await exchange(browser, public_app.app.client_id, code, challenge.verifier)).json()

    assert "refresh_token" not in tokens
    assert tokens["scope"] == "wl.messenger"


async def test_confidential_app_registered_without_pkce_authenticates_and_may_skip_it(
    platform, browser
):
    app = await platform.oauth.register_app("Bridge", [OTHER_CALLBACK], require_pkce=False)
    client_id, secret = app.app.client_id, app.client_secret
    code = await code_for(browser, client_id, "wl.basic", None, redirect_uri=OTHER_CALLBACK)

    response = await exchange(
        browser, client_id, code, None, secret=secret, redirect_uri=OTHER_CALLBACK
    )

    assert response.status_code == 200, response.text
    assert (await platform.oauth.check_token(response.json()["access_token"])).scopes == {
        "wl.basic"
    }


async def test_confidential_app_with_pkce_and_secret_in_the_form(browser, confidential_app):
    client_id, secret = confidential_app.app.client_id, confidential_app.client_secret
    challenge = pkce()
    code = await code_for(browser, client_id, "wl.basic", challenge, redirect_uri=OTHER_CALLBACK)

    response = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": OTHER_CALLBACK,
            "client_id": client_id,
            "client_secret": secret,
            "code_verifier": challenge.verifier,
        },
    )

    assert response.status_code == 200, response.text


async def test_remembered_consent_skips_the_page_for_the_same_scopes(browser, public_app):
    client_id = public_app.app.client_id
    await code_for(browser, client_id, "wl.messenger", pkce())
    challenge = pkce()
    pkce_params = {"code_challenge": challenge.challenge, "code_challenge_method": "S256"}

    again = await browser.get(
        authorize_path(client_id, scope="wl.messenger", state="2", **pkce_params)
    )
    assert redirect_params(again)["state"] == "2"
    assert (
        await exchange(browser, client_id, redirect_params(again)["code"], challenge.verifier)
    ).status_code == 200

    more = await browser.get(
        authorize_path(client_id, scope="wl.basic wl.messenger", **pkce_params)
    )
    assert more.status_code == 200
    assert "Read your profile" in more.text


async def test_consent_not_remembered_asks_again(browser, public_app):
    client_id = public_app.app.client_id
    challenge = pkce()
    path = authorize_path(
        client_id,
        scope="wl.messenger",
        code_challenge=challenge.challenge,
        code_challenge_method="S256",
    )
    first = await sign_in_and_consent(browser, path, remember=False)
    assert "code" in redirect_params(first)

    again = await browser.get(path)

    assert again.status_code == 200
    assert "Allow <em>Pocket Chat</em>" in again.text


async def test_redirect_uri_may_be_left_out_when_only_one_is_registered(platform, browser):
    app = await platform.oauth.register_app("Solo", [CALLBACK], public=True)
    challenge = pkce()
    redirect = await sign_in_and_consent(
        browser,
        "/oauth/authorize?"
        + f"response_type=code&client_id={app.app.client_id}&scope=wl.messenger"
        + f"&code_challenge={challenge.challenge}&code_challenge_method=S256",
    )
    assert redirect.headers["location"].startswith(CALLBACK + "?code=")
    code = redirect_params(redirect)["code"]

    response = await browser.post(
        "/oauth/token",
        data={
            "grant_type": "authorization_code",
            "code": code,
            "client_id": app.app.client_id,
            "code_verifier": challenge.verifier,
        },
    )

    assert response.status_code == 200, response.text
