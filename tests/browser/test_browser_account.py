"""The user's password page in a real browser (headless Chromium): a signed-in user
changes their password through the form, stays signed in, and signs in with the new one
next time. Bounded by ``TEST_SECONDS``."""

from __future__ import annotations

import asyncio
from typing import Any

from integration.support import StartServer

TEST_SECONDS = 30.0
NEW_PASSWORD = "a much better password"


async def sign_in(page: Any, base: str, password: str) -> None:
    await page.goto(f"{base}/account/password")
    await page.wait_for_url(f"{base}/account/signin?*")
    await page.fill("#username", "alice")
    await page.fill("#password", password)
    await page.click("button[type=submit]")


async def test_a_user_changes_their_password_in_the_browser(
    start_server: StartServer, page: Any
) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        assert server.app is not None
        base = f"http://{server.host}:{server.app.http.port}"
        await sign_in(page, base, server.users["alice"])
        await page.wait_for_url(f"{base}/account/password")

        await page.fill("#current_password", server.users["alice"])
        await page.fill("#new_password", NEW_PASSWORD)
        await page.fill("#new_password_again", "not the same")
        await page.click("form[action='/account/password'] button[type=submit]")
        assert "The two new passwords differ." in await page.inner_text("main")

        await page.fill("#current_password", server.users["alice"])
        await page.fill("#new_password", NEW_PASSWORD)
        await page.fill("#new_password_again", NEW_PASSWORD)
        await page.click("form[action='/account/password'] button[type=submit]")
        await page.wait_for_selector("#changed")
        assert page.url == f"{base}/account/password?changed=1"
        assert "Your password is changed." in await page.inner_text("#changed")

        await page.click("text=Connected apps")  # still signed in
        await page.wait_for_url(f"{base}/account/apps")
        await page.click("header button[type=submit]")  # sign out
        await page.wait_for_url(f"{base}/account/signin")

        await sign_in(page, base, server.users["alice"])
        assert "Wrong username or password." in await page.inner_text("main")
        await page.fill("#username", "alice")
        await page.fill("#password", NEW_PASSWORD)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/account/password")
        assert await server.app.accounts.verify_password("alice", NEW_PASSWORD)
