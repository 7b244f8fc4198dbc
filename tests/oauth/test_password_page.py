"""The password page: a signed-in user changes their password with the current one and
the new one twice. Every other browser is signed out, this one stays signed in, the XMPP
side is told (``account.password_changed``), and app passwords and tokens keep working."""

import httpx

from chinwag.network.events import ACCOUNT_PASSWORD_CHANGED
from oauth.support import ALICE, ALICE_PASSWORD, form_to, shared_loop, submit

pytestmark = shared_loop

PASSWORD = "/account/password"
NEW_PASSWORD = "through the looking-glass"


async def signed_in(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/account/signin")
    done = await submit(
        browser, form_to(page, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
    )
    assert done.status_code == 303


async def change(
    browser: httpx.AsyncClient,
    current: str = ALICE_PASSWORD,
    new: str = NEW_PASSWORD,
    again: str | None = None,
) -> httpx.Response:
    page = await browser.get(PASSWORD)
    assert page.status_code == 200
    return await submit(
        browser,
        form_to(page, PASSWORD),
        current_password=current,
        new_password=new,
        new_password_again=new if again is None else again,
    )


async def test_signed_out_the_page_asks_to_sign_in_and_comes_back(browser):
    page = await browser.get(PASSWORD)

    assert page.status_code == 303
    assert page.headers["location"] == "/account/signin?next=%2Faccount%2Fpassword"


async def test_a_user_changes_their_password(platform, browser, public_app):
    await signed_in(browser)
    async with httpx.AsyncClient(base_url=platform.base) as other:
        await signed_in(other)
        _, app_password = await platform.oauth.create_app_password(
            ALICE, public_app.app.client_id, "phone"
        )
        token = await platform.oauth.issue_token(public_app.app.client_id, ALICE, "wl.messenger")

        done = await change(browser)

        assert done.status_code == 303 and done.headers["location"] == f"{PASSWORD}?changed=1"
        shown = await browser.get(done.headers["location"])
        assert shown.status_code == 200 and 'id="changed"' in shown.text
        assert (await browser.get("/account/apps")).status_code == 200  # still signed in here
        assert (await other.get("/account/apps")).status_code == 303  # signed out there

    assert await platform.accounts.verify_password(ALICE, NEW_PASSWORD)
    assert not await platform.accounts.verify_password(ALICE, ALICE_PASSWORD)
    assert await platform.oauth.check_app_password(ALICE, app_password) is not None
    account = await platform.accounts.scram_credentials(ALICE, "SCRAM-SHA-256")
    assert await platform.oauth.app_password_candidates(ALICE, account) != []
    assert await platform.oauth.check_token(token.access_token) is not None
    changed = [
        (e.subject, e.detail) for e in await platform.events() if e.kind == ACCOUNT_PASSWORD_CHANGED
    ]
    assert changed == [(ALICE, None)]  # no session stays: each signed in with the old one


async def test_the_signed_in_browser_gets_a_new_session_and_form_token(platform, browser):
    await signed_in(browser)
    before = form_to(await browser.get(PASSWORD), PASSWORD).fields["csrf_token"]
    copied = httpx.Cookies(browser.cookies)

    assert (await change(browser)).status_code == 303

    after = form_to(await browser.get(PASSWORD), PASSWORD).fields["csrf_token"]
    assert after != before
    async with httpx.AsyncClient(base_url=platform.base, cookies=copied) as copy:
        assert (await copy.get("/account/apps")).status_code == 303


async def test_a_wrong_current_password_changes_nothing_and_counts_as_a_failure(platform, browser):
    await signed_in(browser)

    refused = await change(browser, current="not my password")

    assert refused.status_code == 400
    assert "That is not your current password." in refused.text
    assert await platform.accounts.verify_password(ALICE, ALICE_PASSWORD)
    assert [e for e in await platform.events() if e.kind == ACCOUNT_PASSWORD_CHANGED] == []
    for _ in range(platform.settings.limits.max_auth_failures_per_address - 1):
        await change(browser, current="not my password")
    banned = await change(browser)
    assert banned.status_code == 429 and "Too many failed sign-ins" in banned.text
    assert await platform.accounts.verify_password(ALICE, ALICE_PASSWORD)


async def test_the_new_password_must_be_given_twice_alike(platform, browser):
    await signed_in(browser)

    refused = await change(browser, again="through the looking-glasS")

    assert refused.status_code == 400 and "The two new passwords differ." in refused.text
    assert await platform.accounts.verify_password(ALICE, ALICE_PASSWORD)


async def test_a_new_password_must_be_long_enough(platform, browser):
    await signed_in(browser)

    refused = await change(browser, new="short")

    assert refused.status_code == 400
    assert "Choose another password: the password is shorter than 8 characters." in refused.text
    assert await platform.accounts.verify_password(ALICE, ALICE_PASSWORD)


async def test_the_form_needs_its_csrf_token(platform, browser):
    await signed_in(browser)
    form = form_to(await browser.get(PASSWORD), PASSWORD)

    forged = await submit(
        browser,
        form,
        csrf_token="forged",
        current_password=ALICE_PASSWORD,
        new_password=NEW_PASSWORD,
        new_password_again=NEW_PASSWORD,
    )

    assert forged.status_code == 403
    assert await platform.accounts.verify_password(ALICE, ALICE_PASSWORD)


async def test_the_pages_link_to_the_password_page(browser):
    await signed_in(browser)

    assert f'href="{PASSWORD}"' in (await browser.get("/account/apps")).text
