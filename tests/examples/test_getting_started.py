"""docs/getting-started.md: every command runs, in order, against a live server.

The server is ``chinwag serve`` in a subprocess, as in the guide, with a
settings file (``CHINWAG_CONFIG``) that puts it on free loopback ports and a
temporary data directory; the guide's ports are replaced by those. Every line
of every ``sh`` block is either run here or is a known setup line (the install,
which is how this test suite itself runs, and the browser example's build,
which ``tests/browser`` runs); any other line fails the test.

The Python example runs as the guide says, with the test playing the browser
and options that point it at this server; bob, signed in with slixmpp, answers it.
"""

from __future__ import annotations

import asyncio
import html
import re
import shlex
import sys
from pathlib import Path
from typing import Any

import httpx
import pytest
from integration.signin_support import run_chinwag
from integration.support import TIMEOUT, close_client, free_port, make_client, sign_in
from integration.test_serve import ServeProcess, clean_env, write_config

from tests.browser_example import NotBuilt, build_browser_example

from .support import (
    DOC_BUILD,
    REPO,
    URL_LINE,
    LineProcess,
    approve_in_browser,
)

DOC = REPO / "docs" / "getting-started.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
SETUP_LINES = {
    "python3 -m venv .venv && .venv/bin/pip install -e . -r examples/python/requirements.txt",
    ". .venv/bin/activate",
}
DOC_HTTP, DOC_REDIRECT_PORT = "127.0.0.1:5280", "8765"
BROWSER_URL = "http://127.0.0.1:5280/examples/browser/?client_id=CLIENT_ID"
PASSWORDS = {"alice": "wonderland", "bob": "builder"}


def commands() -> list[str]:
    lines = []
    for kind, body in FENCE.findall(DOC.read_text()):
        assert kind == "sh", f"a {kind} block that no test runs"
        lines += [line for line in body.splitlines() if line.strip()]
    return lines


def test_the_install_line_installs_what_the_python_example_imports():
    requirements = (REPO / "examples" / "python" / "requirements.txt").read_text().split()
    assert {line.partition(">")[0] for line in requirements} == {"slixmpp", "httpx"}
    assert set(commands()) >= SETUP_LINES
    assert DOC_BUILD in commands()
    assert BROWSER_URL in DOC.read_text()


@pytest.mark.slow
async def test_every_command_of_the_getting_started_guide_runs(tmp_path: Path):
    http_port, c2s_port, redirect_port = free_port(), free_port(), free_port()
    config = write_config(
        tmp_path / "chinwag.toml",
        {
            "data_dir": str(tmp_path / "data"),
            "c2s": {"port": c2s_port, "direct_tls_port": free_port()},
            "http": {"port": http_port},
        },
    )
    web = f"http://127.0.0.1:{http_port}"

    def localized(line: str) -> str:
        return line.replace(DOC_HTTP, f"127.0.0.1:{http_port}").replace(
            f":{DOC_REDIRECT_PORT}/", f":{redirect_port}/"
        )

    serve: ServeProcess | None = None
    bob = None
    client_id = ""
    ran: list[str] = []
    try:
        for line in commands():
            if line in SETUP_LINES or line == DOC_BUILD:
                continue
            ran.append(line)
            if line == "chinwag serve":
                serve = await ServeProcess.start(
                    cwd=tmp_path, env=clean_env(CHINWAG_CONFIG=str(config))
                )
                await serve.announced()
            elif line.startswith("chinwag "):
                assert serve is not None, "a command before the server started"
                args = shlex.split(localized(line))[1:]
                done = await run_chinwag(config, *args)
                assert done.returncode == 0, (line, done.stdout, done.stderr)
                if args[:2] == ["app", "register"]:
                    client_id = re.search(r"client_id:\s+(\S+)", done.stdout).group(1)
                if args[:2] == ["contacts", "add"]:
                    # "Sign bob in with any XMPP client": slixmpp, which answers alice.
                    bob = await _bob(c2s_port)
            elif line.startswith("python examples/python/chat.py "):
                assert client_id and bob is not None
                await _run_python_example(
                    line.replace("CLIENT_ID", client_id), web, c2s_port, redirect_port, bob
                )
            else:
                raise AssertionError(f"a line of the guide that no test runs: {line}")

        assert [line.split()[:2] for line in ran] == [
            ["chinwag", "serve"],
            ["chinwag", "user"],
            ["chinwag", "user"],
            ["chinwag", "contacts"],
            ["chinwag", "app"],
            ["python", "examples/python/chat.py"],
        ]
        await _check_browser_example(web, client_id)
    finally:
        if bob is not None:
            await close_client(bob)
        if serve is not None:
            assert await serve.stop() == 0, serve.output


async def _bob(port: int) -> Any:
    bob = make_client("bob@localhost/phone", PASSWORDS["bob"])
    await sign_in(bob, "127.0.0.1", port)
    bob.messages = asyncio.get_running_loop().create_future()

    def answer(message: Any) -> None:
        if message["body"] and not bob.messages.done():
            bob.messages.set_result(message)
            bob.send_message(mto=message["from"], mbody="Hi Alice!", mtype="chat")

    bob.add_event_handler("message", answer)
    bob.send_presence()
    return bob


async def _run_python_example(
    line: str, web: str, c2s_port: int, redirect_port: int, bob: Any
) -> None:
    args = shlex.split(line)[1:]
    overrides = [
        f"--server={web}",
        f"--xmpp-port={c2s_port}",
        f"--redirect-port={redirect_port}",
        "--no-browser",
        "--until-reply",
        "--timeout=30",
    ]
    example = await LineProcess.start(sys.executable, *args, *overrides, env=clean_env())
    try:
        url = (await example.line(URL_LINE, TIMEOUT)).group(1)
        assert url.startswith(f"{web}/oauth/authorize?")
        landing = await approve_in_browser(url, "alice", PASSWORDS["alice"])
        assert landing.status_code == 200, landing.text
        message = await asyncio.wait_for(bob.messages, TIMEOUT)
        assert message["body"] == "Hello, Bob!"
        await example.line(r"^presence: bob@localhost/phone is available", TIMEOUT)
        await example.line(r"^message from bob@localhost/phone: Hi Alice!$", TIMEOUT)
        assert await example.wait(TIMEOUT) == 0, example.output
    finally:
        await example.stop()


async def _check_browser_example(web: str, client_id: str) -> None:
    """The page the guide opens is served once built as the guide says (before that, a
    page that says how to build it)."""
    url = BROWSER_URL.replace("http://" + DOC_HTTP, web).replace("CLIENT_ID", client_id)
    try:
        await asyncio.to_thread(build_browser_example)
        built = True
    except NotBuilt:
        built = False
    async with httpx.AsyncClient(timeout=TIMEOUT) as http:
        page = await http.get(url)
        config = await http.get(f"{web}/examples/browser/config.json")
    assert config.json() == {"domain": "localhost", "websocket": f"ws://{web[7:]}/xmpp-websocket"}
    if not built:
        assert page.status_code == 404 and DOC_BUILD in html.unescape(page.text), page.text
        pytest.skip("examples/browser is not built: only its 404 page was checked")
    assert page.status_code == 200 and "xmpp.min.js" in page.text, page.text
