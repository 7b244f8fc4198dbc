"""The sign-up page of an invitation: with ``[auth] invitations = true`` an invitation's
link makes one account and signs the browser in; a used, expired or unknown one says so;
off (the default), there is no such page at all."""

from collections.abc import AsyncIterator
from datetime import timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from sqlalchemy import update

from chinwag.network.invitations import InvitationService
from chinwag.store.invitations import SqlInvitationRepository
from chinwag.store.models import Invitation, utc_now
from chinwag.web.app import build_web_app
from oauth.support import ALICE, form_to, shared_loop, submit

pytestmark = shared_loop

PASSWORD = "a long enough password"


@pytest.fixture
def config() -> dict[str, Any]:
    return {"auth": {"invitations": True}}


@pytest_asyncio.fixture(loop_scope="session")
async def invitations(platform, listener) -> AsyncIterator[InvitationService]:
    """The platform's listener serving an application with the sign-up page."""
    service = InvitationService(SqlInvitationRepository(platform.database))
    application, _ = listener
    application.app = build_web_app(
        platform.settings, platform.accounts, platform.oauth, invitations=service
    )
    yield service


async def invite(invitations: InvitationService, lifetime: timedelta = timedelta(days=7)) -> str:
    made = await invitations.create("the operator", lifetime)
    return f"/invite/{made.token}"


async def sign_up(
    browser: httpx.AsyncClient,
    link: str,
    username: str = "dinah",
    password: str = PASSWORD,
    again: str | None = None,
) -> httpx.Response:
    page = await browser.get(link)
    assert page.status_code == 200, page.text
    return await submit(
        browser,
        form_to(page, link),
        username=username,
        password=password,
        password_again=password if again is None else again,
    )


async def test_an_invitation_makes_one_account_and_signs_in(platform, browser, invitations):
    link = await invite(invitations)

    done = await sign_up(browser, link, username="Dinah")

    assert done.status_code == 303 and done.headers["location"] == "/account/welcome"
    welcome = await browser.get("/account/welcome")
    assert '<strong id="address">dinah@localhost</strong>' in welcome.text
    assert await platform.accounts.verify_password("dinah", PASSWORD)
    used = await browser.get(link)
    assert used.status_code == 410 and "This invitation has made its account." in used.text
    assert '<form method="post" action="/invite/' not in used.text


async def test_a_used_invitation_makes_no_second_account(platform, browser, invitations):
    link = await invite(invitations)
    first = await browser.get(link)
    async with httpx.AsyncClient(base_url=platform.base) as other:
        second = await other.get(link)
        assert (await sign_up(browser, link)).status_code == 303

        late = await submit(
            other,
            form_to(second, link),
            username="kitty",
            password=PASSWORD,
            password_again=PASSWORD,
        )

    assert first.status_code == 200
    assert late.status_code == 410 and "Invitation used" in late.text
    assert [user.username for user in await platform.accounts.list_users()] == [ALICE, "dinah"]


async def test_an_expired_invitation_says_so(platform, browser, invitations):
    link = await invite(invitations)
    async with platform.database.sessions.begin() as session:
        await session.execute(
            update(Invitation).values(expires_at=utc_now() - timedelta(minutes=1))
        )

    page = await browser.get(link)

    assert page.status_code == 410
    assert "Invitation expired" in page.text and "Ask whoever sent it" in page.text
    assert '<form method="post" action="/invite/' not in page.text


async def test_an_unknown_invitation_is_not_found(browser, invitations):
    for link in ("/invite/no-such-token", "/invite/" + "x" * 5000):
        page = await browser.get(link)
        assert page.status_code == 404 and "No such invitation" in page.text


@pytest.mark.parametrize(
    ("username", "password", "again", "message"),
    [
        (
            "dinah cat",
            PASSWORD,
            None,
            "&#39;dinah cat&#39; is not a valid username: it contains a space.",
        ),
        ("dinah@home", PASSWORD, None, "is not a valid username: it contains &#39;@&#39;."),
        (ALICE, PASSWORD, None, "User &#39;alice&#39; already exists."),
        ("dinah", "short", None, "The password is shorter than 8 characters."),
        ("dinah", PASSWORD, "another long password", "The two passwords differ."),
    ],
    ids=["space", "at-sign", "taken", "short-password", "mismatch"],
)
async def test_a_bad_form_keeps_the_invitation_open(
    platform, browser, invitations, username, password, again, message
):
    link = await invite(invitations)

    refused = await sign_up(browser, link, username, password, again)

    assert refused.status_code == 400 and message in refused.text
    assert [user.username for user in await platform.accounts.list_users()] == [ALICE]
    assert (await sign_up(browser, link)).status_code == 303  # still good for one account


async def test_the_form_needs_its_csrf_token(platform, browser, invitations):
    link = await invite(invitations)
    await browser.get(link)

    forged = await browser.post(
        link, data={"username": "dinah", "password": PASSWORD, "password_again": PASSWORD}
    )

    assert forged.status_code == 403
    assert [user.username for user in await platform.accounts.list_users()] == [ALICE]


async def test_only_the_token_digest_is_stored(platform, invitations):
    link = await invite(invitations)
    token = link.removeprefix("/invite/")

    async with platform.database.engine.connect() as connection:
        rows = (await connection.exec_driver_sql("SELECT * FROM invitations")).all()

    assert len(rows) == 1 and token not in repr(rows) and token.encode() not in repr(rows).encode()


async def test_without_the_setting_there_is_no_page(platform, browser, listener):
    service = InvitationService(SqlInvitationRepository(platform.database))
    made = await service.create("the operator", timedelta(days=1))
    application, _ = listener
    off = platform.settings.model_copy(
        update={"auth": platform.settings.auth.model_copy(update={"invitations": False})}
    )
    application.app = build_web_app(off, platform.accounts, platform.oauth, invitations=service)

    page = await browser.get(f"/invite/{made.token}")
    posted = await browser.post(f"/invite/{made.token}", data={"username": "dinah"})

    assert page.status_code == posted.status_code == 404
    assert [user.username for user in await platform.accounts.list_users()] == [ALICE]
