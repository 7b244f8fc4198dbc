"""The browser example and the developer portal in a real browser (headless Chromium).

A user opens the browser example that chinwag serves, signs in on chinwag's
page and allows the app; the page exchanges the code (PKCE), connects over
WebSocket with xmpp.js, shows bob online, sends him a message that his slixmpp
client receives, and shows his answer. Once its access token has expired, the
page trades its refresh token for new tokens instead of asking to sign in
again; signing out revokes them. Then a user registers an app through the
developer portal's forms. Each test is bounded by ``TEST_SECONDS``.
"""

from __future__ import annotations

import asyncio
import time
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlencode, urlsplit

import pytest
from integration.support import Connect, StartServer
from sqlalchemy import update

from chinwag.oauth.tokens import digest
from chinwag.store.models import utc_now
from chinwag.store.oauth_models import OAuthToken

TEST_SECONDS = 30.0
TOKENS_KEY = "chinwag-example:tokens"
"""Where the page keeps its tokens in sessionStorage."""


def web_base(server: Any) -> str:
    return f"http://{server.host}:{server.app.http.port}"


async def open_signed_in(server: Any, page: Any) -> tuple[str, str]:
    """Register the example, open it, sign in as alice and allow it; the example's
    address and client ID once the page is connected."""
    base = web_base(server)
    example = f"{base}/examples/browser/"
    registered = await server.app.oauth.register_app("Browser chat", [example], public=True)
    client_id = registered.app.client_id

    await page.goto(f"{example}?{urlencode({'client_id': client_id})}")
    await page.click("#signin-button")
    # chinwag's sign-in page, then its consent page.
    await page.wait_for_url(f"{base}/oauth/authorize?*")
    await page.fill("#username", "alice")
    await page.fill("#password", server.users["alice"])
    await page.click("button[type=submit]")
    await page.wait_for_selector("text=Allow")
    assert "Browser chat" in await page.inner_text("h1")
    await page.click("button[value=approve]")

    # Back in the example: signed in over WebSocket.
    await page.wait_for_url(example)
    await page.wait_for_selector("#status[data-state=online]")
    assert "alice@localhost/" in await page.inner_text("#status")
    return example, client_id


async def stored_tokens(page: Any) -> Any:
    return await page.evaluate("key => JSON.parse(sessionStorage.getItem(key))", TOKENS_KEY)


async def refresh_error(page: Any, server: Any, client_id: str, refresh_token: str) -> str | None:
    """What the token endpoint says to the refresh token: None if it grants new tokens."""
    response = await page.request.post(
        f"{web_base(server)}/oauth/token",
        form={
            "grant_type": "refresh_token",
            "refresh_token": refresh_token,
            "client_id": client_id,
        },
    )
    return None if response.ok else (await response.json())["error"]


async def test_the_browser_example_signs_in_and_chats(
    start_server: StartServer, connect: Connect, browser_example: Path, page: Any
):
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        bob = await connect(server, "bob", "laptop")
        received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_message(message: Any) -> None:
            if message["body"] and not received.done():
                received.set_result(message)
                bob.send_message(mto=message["from"], mbody="Hi Alice, from Bob", mtype="chat")

        bob.add_event_handler("message", on_message)
        bob.send_presence()

        _, client_id = await open_signed_in(server, page)
        bob_item = page.locator('#contacts li[data-jid="bob@localhost"]')
        await bob_item.and_(page.locator("[data-status=online]")).wait_for()

        [session] = [
            session
            for session in server.app.xmpp.router.all_sessions()
            if str(session.jid).startswith("alice@localhost/")
        ]
        assert session.app == client_id and session.transport_kind == "websocket"

        await bob_item.click()
        await page.fill("#body", "Hello Bob, from the browser")
        await page.click("#send")
        message = await received
        assert message["body"] == "Hello Bob, from the browser"
        assert message["from"].bare == "alice@localhost"

        reply = page.locator("#messages li.incoming", has_text="Hi Alice, from Bob")
        await reply.wait_for()
        assert await reply.get_attribute("data-peer") == "bob@localhost"
        outgoing = page.locator("#messages li.outgoing")
        assert await outgoing.all_inner_texts() == ["Hello Bob, from the browser"]


async def test_the_browser_example_shows_its_chat_only_once_signed_in(
    start_server: StartServer, browser_example: Path, page: Any
):
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        example = f"{web_base(server)}/examples/browser/"
        await page.goto(example)
        await page.wait_for_selector("#status[data-state=setup]")
        assert not await page.is_visible("#chat")
        registered = await server.app.oauth.register_app("Browser chat", [example], public=True)
        await page.goto(f"{example}?{urlencode({'client_id': registered.app.client_id})}")
        await page.wait_for_selector("#status[data-state=signed-out]")
        assert await page.is_visible("#signin-button")
        assert not await page.is_visible("#chat")

        await open_signed_in(server, page)

        assert await page.is_visible("#chat")
        assert not await page.is_visible("#signin-button")


@pytest.mark.parametrize("page_knows", [False, True], ids=["refused", "expired"])
async def test_the_browser_example_refreshes_an_expired_access_token(
    start_server: StartServer, browser_example: Path, page: Any, page_knows: bool
):
    """The access token expires in chinwag's store while its refresh token lives. The
    reloaded page signs in with new tokens, and does not go through /oauth/authorize:
    after chinwag refused the old access token over SASL ("refused"), or before
    connecting, when the page knows the token has expired ("expired")."""
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        _, client_id = await open_signed_in(server, page)
        old = await stored_tokens(page)
        assert old.get("refreshToken") and old["expiresAt"] > time.time() * 1000

        async with server.app.database.sessions.begin() as session:
            expired = await session.execute(
                update(OAuthToken)
                .where(OAuthToken.access_hash == digest(old["accessToken"]))
                .values(expires_at=utc_now() - timedelta(seconds=1))
            )
            assert expired.rowcount == 1
        if page_knows:
            await page.evaluate(
                """key => {
                  const tokens = JSON.parse(sessionStorage.getItem(key));
                  sessionStorage.setItem(key, JSON.stringify({ ...tokens, expiresAt: Date.now() }));
                }""",
                TOKENS_KEY,
            )

        seen: list[str] = []
        page.on("request", lambda request: seen.append(urlsplit(request.url).path))
        page.on("websocket", lambda _: seen.append("websocket"))
        await page.reload()
        await page.wait_for_selector("#status[data-state=online]")
        assert "Connected as alice@localhost/" in await page.inner_text("#status")
        assert "/oauth/authorize" not in seen
        steps = [step for step in seen if step in ("/oauth/token", "websocket")]
        if page_knows:
            assert steps == ["/oauth/token", "websocket"]
        else:
            assert steps == ["websocket", "/oauth/token"]

        new = await stored_tokens(page)
        assert new["accessToken"] != old["accessToken"]
        assert new["refreshToken"] != old["refreshToken"]
        assert new["expiresAt"] > time.time() * 1000 + 60_000
        assert await server.app.oauth.check_token(new["accessToken"]) is not None
        # Rotated: the old refresh token is used up. Presenting it again is taken
        # for a theft, and ends the whole grant, the page's session included.
        assert await refresh_error(page, server, client_id, old["refreshToken"]) == "invalid_grant"
        await page.wait_for_selector("#status[data-state=signed-out]")
        assert await stored_tokens(page) is None


async def test_the_browser_example_asks_to_sign_in_when_its_refresh_token_is_refused(
    start_server: StartServer, browser_example: Path, page: Any
):
    """Both tokens revoked while the page was closed: chinwag refuses the access token,
    then the refresh token, and the page asks to sign in again."""
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        example, _ = await open_signed_in(server, page)
        tokens = await stored_tokens(page)
        await page.goto("about:blank")
        assert await server.app.oauth.revoke_token(tokens["refreshToken"])

        await page.goto(example)
        await page.wait_for_selector("#status[data-state=signed-out]")
        assert await page.is_visible("#signin-button")
        assert await stored_tokens(page) is None


async def test_signing_out_of_the_browser_example_revokes_its_tokens(
    start_server: StartServer, browser_example: Path, page: Any
):
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        example, client_id = await open_signed_in(server, page)
        tokens = await stored_tokens(page)
        assert tokens.get("refreshToken")

        await page.click("#signout")
        await page.wait_for_selector("#status[data-state=signed-out]")
        assert page.url == example
        assert await stored_tokens(page) is None
        assert (
            await refresh_error(page, server, client_id, tokens["refreshToken"]) == "invalid_grant"
        )
        assert await server.app.oauth.check_token(tokens["accessToken"]) is None


async def test_a_developer_registers_an_app_in_the_portal(start_server: StartServer, page: Any):
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        base = web_base(server)

        await page.goto(f"{base}/developers")
        await page.wait_for_url(f"{base}/account/signin?*")
        await page.fill("#username", "alice")
        await page.fill("#password", server.users["alice"])
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{base}/developers")
        assert "You have not registered an app yet." in await page.inner_text("main")

        await page.fill("#name", "Pocket Chat")
        await page.fill("#redirect_uris", "http://127.0.0.1:8765/callback")
        await page.check("#public")
        await page.click("form[action='/developers/apps'] button[type=submit]")
        await page.wait_for_selector("#client-id")
        assert "Your app is registered." in await page.inner_text("main")
        client_id = (await page.inner_text("#client-id")).strip()

        app = await server.app.oauth.owned_app(client_id, "alice")
        assert app.name == "Pocket Chat" and app.public
        assert list(app.redirect_uris) == ["http://127.0.0.1:8765/callback"]
        assert await page.locator("#client-secret").count() == 0  # a public app has none

        await page.click("text=Developer portal")
        await page.wait_for_url(f"{base}/developers")
        assert client_id in await page.inner_text("table")
