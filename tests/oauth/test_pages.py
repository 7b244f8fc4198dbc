"""The user's pages: sign-in, CSRF protection, connected apps and app passwords."""

import re
from urllib.parse import urlencode

import httpx

import chinwag.oauth.service
from chinwag.store.oauth import OAUTH_REVOKED
from oauth.support import (
    ALICE,
    ALICE_PASSWORD,
    authorize_path,
    code_for,
    exchange,
    form_to,
    forms,
    pkce,
    shared_loop,
    submit,
)

pytestmark = shared_loop


async def signed_in_apps_page(browser):
    page = await browser.get("/account/signin")
    done = await submit(
        browser, form_to(page, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
    )
    assert done.status_code == 303 and done.headers["location"] == "/account/apps"
    return await browser.get("/account/apps")


async def test_wrong_password_shows_the_form_again(browser):
    page = await browser.get("/account/signin")

    again = await submit(browser, form_to(page, "/account/signin"), username=ALICE, password="nope")

    assert again.status_code == 200
    assert "Wrong username or password." in again.text
    assert (await browser.get("/account/apps")).status_code == 303


async def test_a_failed_sign_in_still_says_which_app_it_continues_to(browser, public_app):
    path = authorize_path(
        public_app.app.client_id,
        scope="wl.messenger",
        code_challenge=pkce().challenge,
        code_challenge_method="S256",
    )
    page = await browser.get(path)
    context = "to continue to <strong>Pocket Chat</strong>"
    assert context in page.text

    again = await submit(browser, form_to(page, "/account/signin"), username=ALICE, password="nope")

    assert again.status_code == 200
    assert "Wrong username or password." in again.text and context in again.text
    done = await submit(
        browser, form_to(again, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
    )
    assert done.status_code == 303 and done.headers["location"] == path


async def test_the_sign_in_page_names_an_app_only_for_a_valid_authorization_request(
    browser, public_app
):
    client_id = public_app.app.client_id
    valid = {
        "scope": "wl.messenger",
        "code_challenge": pkce().challenge,
        "code_challenge_method": "S256",
    }
    for bad in (
        authorize_path("no-such-app", **valid),
        authorize_path(client_id, **valid, redirect_uri="https://elsewhere.example/cb"),
        authorize_path(client_id, scope="wl.messenger"),  # without PKCE
    ):
        page = await browser.get("/account/signin?" + urlencode({"next": bad}))
        assert page.status_code == 200 and "to continue to" not in page.text

    good = authorize_path(client_id, **valid)
    page = await browser.get("/account/signin?" + urlencode({"next": good}))
    assert "to continue to <strong>Pocket Chat</strong>" in page.text


async def test_too_many_wrong_passwords_from_one_address_refuse_even_the_right_one(
    platform, browser
):
    for _ in range(platform.settings.limits.max_auth_failures_per_address):
        page = await browser.get("/account/signin")
        await submit(browser, form_to(page, "/account/signin"), username=ALICE, password="nope")

    page = await browser.get("/account/signin")
    refused = await submit(
        browser, form_to(page, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
    )

    assert refused.status_code == 429
    assert "Too many failed sign-ins from this address; try again in 60 minutes." in refused.text
    apps = await browser.get("/account/apps")
    assert apps.status_code == 303 and apps.headers["location"].startswith("/account/signin")


async def test_sign_in_never_redirects_off_the_site(browser):
    page = await browser.get("/account/signin?next=//evil.example/")

    done = await submit(
        browser, form_to(page, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
    )

    assert done.headers["location"] == "/account/apps"


async def test_usernames_are_case_insensitive_at_sign_in(browser):
    page = await browser.get("/account/signin")

    done = await submit(
        browser, form_to(page, "/account/signin"), username="ALICE", password=ALICE_PASSWORD
    )

    assert done.status_code == 303
    assert "alice@localhost" in (await browser.get("/account/apps")).text


async def test_forms_without_the_csrf_token_are_refused(browser, public_app):
    page = await browser.get("/account/signin")
    signin = form_to(page, "/account/signin")

    missing = await browser.post(
        "/account/signin", data={"username": ALICE, "password": ALICE_PASSWORD}
    )
    wrong = await submit(
        browser, signin, username=ALICE, password=ALICE_PASSWORD, csrf_token="forged"
    )

    assert missing.status_code == wrong.status_code == 403
    assert "did not come from this site" in wrong.text
    challenge = pkce()
    path = authorize_path(
        public_app.app.client_id,
        scope="wl.messenger",
        code_challenge=challenge.challenge,
        code_challenge_method="S256",
    )
    await submit(browser, signin, username=ALICE, password=ALICE_PASSWORD)
    consent = form_to(await browser.get(path), "/oauth/authorize")
    forged = await browser.post(consent.action, data={"decision": "approve"})
    assert forged.status_code == 403
    assert "location" not in forged.headers


async def test_another_browser_session_cannot_reuse_a_token(platform, browser):
    page = await browser.get("/account/signin")
    token = form_to(page, "/account/signin").fields["csrf_token"]
    async with httpx.AsyncClient(base_url=platform.base) as other:
        response = await other.post(
            "/account/signin",
            data={"csrf_token": token, "username": ALICE, "password": ALICE_PASSWORD},
        )
    assert response.status_code == 403


async def test_sign_out(browser):
    page = await signed_in_apps_page(browser)

    done = await submit(browser, form_to(page, "/account/signout"))

    assert done.status_code == 303
    assert (await browser.get("/account/apps")).status_code == 303


async def test_connected_apps_lists_and_revokes(platform, browser, public_app):
    client_id = public_app.app.client_id
    challenge = pkce()
    code = await code_for(browser, client_id, "wl.messenger wl.offline_access", challenge)
    tokens = (await exchange(browser, client_id, code, challenge.verifier)).json()

    page = await browser.get("/account/apps")
    assert "Pocket Chat" in page.text
    assert "send and receive messages" in page.text
    revoke = form_to(page, "/account/apps/revoke")
    assert revoke.fields["client_id"] == client_id

    done = await submit(browser, revoke)

    assert done.status_code == 303
    assert await platform.oauth.check_token(tokens["access_token"]) is None
    assert "No app can use your account." in (await browser.get("/account/apps")).text
    assert [(e.kind, e.subject, e.object) for e in await platform.events()] == [
        (OAUTH_REVOKED, ALICE, client_id)
    ]
    again = await browser.get(
        authorize_path(
            client_id,
            scope="wl.messenger",
            code_challenge=challenge.challenge,
            code_challenge_method="S256",
        )
    )
    assert again.status_code == 200 and "Allow <em>Pocket Chat</em>" in again.text


async def test_app_passwords_are_made_listed_and_revoked(platform, browser, public_app):
    page = await signed_in_apps_page(browser)
    create = form_to(page, "/account/app-passwords")
    assert create.fields["client_id"] == public_app.app.client_id

    made = await submit(browser, create, label="Kitchen tablet")

    assert made.status_code == 200
    password = re.search(r'<p class="secret">([a-z-]+)</p>', made.text).group(1)
    grant = await platform.oauth.check_app_password(ALICE, password)
    assert grant.client_id == public_app.app.client_id
    listed = await browser.get("/account/apps")
    assert "Kitchen tablet" in listed.text and password not in listed.text
    assert "Pocket Chat" in listed.text  # it is a connected app now

    revoke = form_to(listed, "/account/app-passwords/revoke")
    assert (await submit(browser, revoke)).status_code == 303

    assert await platform.oauth.check_app_password(ALICE, password) is None
    assert "Kitchen tablet" not in (await browser.get("/account/apps")).text


async def test_an_account_holds_a_bounded_number_of_app_passwords(
    platform, browser, public_app, monkeypatch
):
    """Each sign-in with a password checks every app password of the account."""
    monkeypatch.setattr(chinwag.oauth.service, "MAX_APP_PASSWORDS", 2)
    page = await signed_in_apps_page(browser)
    for label in ("one", "two"):
        assert (
            await submit(browser, form_to(page, "/account/app-passwords"), label=label)
        ).status_code == 200

    made = await submit(browser, form_to(page, "/account/app-passwords"), label="three")

    assert made.status_code == 400
    assert "at most 2 app passwords" in made.text
    assert len(await platform.oauth.list_app_passwords(ALICE)) == 2


async def test_an_app_password_needs_a_label(browser, public_app):
    page = await signed_in_apps_page(browser)

    made = await submit(browser, form_to(page, "/account/app-passwords"), label="  ")

    assert made.status_code == 400
    assert "label is empty" in made.text


async def test_pages_render_without_javascript_or_external_resources(browser):
    page = await signed_in_apps_page(browser)

    assert all(form.method == "post" for form in forms(page.text))
    for external in ("<script", "<link", "src=", "url("):
        assert external not in page.text
    assert "default-src 'none'" in page.headers["content-security-policy"]
