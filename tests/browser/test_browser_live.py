"""The operators' live page in a real browser (headless Chromium): an operator signs in,
the page draws its charts from the figures it polls, and the sessions chart moves when
a slixmpp client signs in; its script runs under the page's Content-Security-Policy
with nothing from elsewhere. Someone who is not an operator is refused. Bounded by
``TEST_SECONDS``."""

from __future__ import annotations

import asyncio
from typing import Any

from integration.support import Connect, StartServer

TEST_SECONDS = 40.0
LIVE = "/developers/admin/live"


def page_errors(message: Any) -> list[str]:
    """A console error, but the browser's own request for a favicon, which is not served."""
    if message.type != "error" or message.location.get("url", "").endswith("/favicon.ico"):
        return []
    return [message.text]


async def sign_in_to_live(page: Any, base: str, user: str, password: str) -> None:
    await page.goto(f"{base}{LIVE}")
    await page.wait_for_url(f"{base}/account/signin?*")
    await page.fill("#username", user)
    await page.fill("#password", password)
    await page.click("button[type=submit]")


async def test_an_operator_watches_sessions_move_on_the_live_page(
    start_server: StartServer, connect: Connect, page: Any
) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server(http={"operators": ["alice"]})
        assert server.app is not None
        base = f"http://{server.host}:{server.app.http.port}"
        errors: list[str] = []
        page.on("pageerror", lambda error: errors.append(str(error)))
        page.on("console", lambda message: errors.extend(page_errors(message)))
        await sign_in_to_live(page, base, "alice", server.users["alice"])
        await page.wait_for_url(f"{base}{LIVE}")
        # Selectors, not wait_for_function: the page's policy forbids evaluating strings.
        await page.wait_for_selector("#live-status:has-text('Updated at')")
        assert await page.inner_text("#now-sessions") == "0"
        drawn = await page.get_attribute("#chart-sessions polyline", "points")
        assert drawn  # the moment's sample, at least

        await connect(server, "bob", "phone")
        await page.wait_for_selector("#now-sessions:text-is('1')", timeout=10_000)
        redrawn = await page.get_attribute("#chart-sessions polyline", "points")
        assert redrawn != drawn
        assert "ms" in await page.inner_text("#now-lag")
        assert errors == []  # the script ran: no CSP refusal, no exception


async def test_the_live_page_is_for_operators_only(start_server: StartServer, page: Any) -> None:
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server(http={"operators": ["alice"]})
        assert server.app is not None
        base = f"http://{server.host}:{server.app.http.port}"
        await sign_in_to_live(page, base, "bob", server.users["bob"])
        await page.wait_for_url(f"{base}{LIVE}")
        assert "Only the network's operators" in await page.inner_text("main")
        answer = await page.request.get(f"{base}{LIVE}.json")
        assert answer.status == 403
