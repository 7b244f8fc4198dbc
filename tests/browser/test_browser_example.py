"""The browser example and the developer portal in a real browser (headless Chromium).

A user opens the browser example that chinwag serves, signs in on chinwag's
page and allows the app; the page exchanges the code (PKCE), connects over
WebSocket with xmpp.js, shows bob online, sends him a message that his slixmpp
client receives, and shows his answer. Then a user registers an app through
the developer portal's forms. Each test is bounded by ``TEST_SECONDS``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from integration.support import Connect, StartServer

TEST_SECONDS = 30.0


def web_base(server: Any) -> str:
    return f"http://{server.host}:{server.app.http.port}"


async def test_the_browser_example_signs_in_and_chats(
    start_server: StartServer, connect: Connect, browser_example: Path, page: Any
):
    async with asyncio.timeout(TEST_SECONDS):
        server = await start_server()
        base = web_base(server)
        example = f"{base}/examples/browser/"
        registered = await server.app.oauth.register_app("Browser chat", [example], public=True)
        client_id = registered.app.client_id

        bob = await connect(server, "bob", "laptop")
        received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

        def on_message(message: Any) -> None:
            if message["body"] and not received.done():
                received.set_result(message)
                bob.send_message(mto=message["from"], mbody="Hi Alice, from Bob", mtype="chat")

        bob.add_event_handler("message", on_message)
        bob.send_presence()

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

        # Back in the example: signed in over WebSocket, bob online in the contacts.
        await page.wait_for_url(example)
        await page.wait_for_selector("#status[data-state=online]")
        assert "alice@localhost/" in await page.inner_text("#status")
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
