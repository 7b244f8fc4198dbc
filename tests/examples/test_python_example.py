"""examples/python/chat.py against a live chinwag, the test playing the browser.

The example runs in a subprocess as a user would run it (``--no-browser``): it
prints the authorization URL, which the test opens over HTTP, signing alice in
and allowing the app through the forms, then follows the redirect to the
example's loopback listener. The example then signs in over XMPP with
X-MESSENGER-OAUTH2; bob, a slixmpp client, receives its message and answers.
"""

from __future__ import annotations

import asyncio
from typing import Any

from integration.support import TIMEOUT, Connect, StartServer, free_port

from .support import URL_LINE, LineProcess, approve_in_browser, python_example_command

RUN_TIMEOUT = 30.0


async def test_the_python_example_signs_in_with_oauth_and_chats(
    start_server: StartServer, connect: Connect
):
    server = await start_server()
    assert server.app is not None
    redirect_port = free_port()
    registered = await server.app.oauth.register_app(
        "Chat example", [f"http://127.0.0.1:{redirect_port}/callback"], public=True
    )
    client_id = registered.app.client_id

    bob = await connect(server, "bob", "phone")
    received: asyncio.Future[Any] = asyncio.get_running_loop().create_future()

    def on_message(message: Any) -> None:
        if message["body"] and not received.done():
            received.set_result(message)
            bob.send_message(mto=message["from"], mbody="Hi Alice, Bob here", mtype="chat")

    bob.add_event_handler("message", on_message)
    bob.send_presence()

    example = await LineProcess.start(
        *python_example_command(
            "--server",
            f"http://{server.host}:{server.app.http.port}",
            "--xmpp-host",
            server.host,
            "--xmpp-port",
            str(server.port),
            "--domain",
            server.domain,
            f"--client-id={client_id}",  # a client ID may start with "-"
            "--redirect-port",
            str(redirect_port),
            "--to",
            "bob@localhost",
            "--message",
            "Hello Bob, from the example",
            "--no-browser",
            "--insecure",
            "--until-reply",
            "--timeout",
            str(RUN_TIMEOUT),
        )
    )
    try:
        url = (await example.line(URL_LINE, TIMEOUT)).group(1)
        landing = await approve_in_browser(url, "alice", server.users["alice"])
        assert landing.status_code == 200 and "Signed in." in landing.text, landing.text

        await example.line(r"^Signed in as alice@localhost/", TIMEOUT)
        message = await asyncio.wait_for(received, TIMEOUT)
        assert message["body"] == "Hello Bob, from the example"
        assert message["from"].bare == "alice@localhost"
        assert message["type"] == "chat"
        [session] = [
            session
            for session in server.app.xmpp.router.all_sessions()
            if str(session.jid) == str(message["from"])
        ]
        assert session.app == client_id  # signed in with the app's token

        await example.line(r"^contact: bob@localhost ", TIMEOUT)
        await example.line(r"^presence: bob@localhost/phone is available", TIMEOUT)
        await example.line(r"^message from bob@localhost/phone: Hi Alice, Bob here$", TIMEOUT)
        assert await example.wait(TIMEOUT) == 0, example.output
        assert example.lines[-1] == "Bye"
    finally:
        await example.stop()
