"""The README's "Connect a client" example runs as written against a live server, without
a deprecation warning."""

from __future__ import annotations

import ast
import asyncio
import re
import sys
from pathlib import Path

from .support import TIMEOUT, USERS, Connect, ServerHandle, watch

README = Path(__file__).resolve().parents[2] / "README.md"


def readme_example(port: int) -> str:
    code = re.search(r"```python\n(.*?)```", README.read_text(), re.S)
    assert code is not None, "the README lost its Python example"
    # The README speaks of the default port and of the users it adds; the fixture has its own.
    return code.group(1).replace("5222", str(port)).replace('"wonderland"', repr(USERS["alice"]))


async def test_the_readme_example_signs_in_and_reaches_bob(
    server: ServerHandle, connect: Connect
) -> None:
    bob = await connect(server, "bob", "phone")
    bob.send_presence()
    received = watch(bob, "message")

    process = await asyncio.create_subprocess_exec(
        sys.executable,
        "-W",
        "error::DeprecationWarning",
        "-c",
        readme_example(server.port),
        stderr=asyncio.subprocess.PIPE,
    )
    message = await asyncio.wait_for(received, TIMEOUT)
    _out, err = await asyncio.wait_for(process.communicate(), TIMEOUT)

    assert message["body"] == "Hello, Bob!"
    assert str(message["from"]).startswith("alice@localhost/laptop")
    assert process.returncode == 0, err.decode()


def test_the_readme_example_uses_no_event_loop_api_that_newer_pythons_deprecate() -> None:
    """Python 3.12 and 3.13 warn of ``asyncio.get_event_loop()`` outside a running loop
    (3.14 refuses it), where 3.11 says nothing: the example runs its client in
    ``asyncio.run`` instead."""
    tree = ast.parse(readme_example(5222))
    called = {
        node.func.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
    }

    assert "run" in called
    assert called.isdisjoint({"get_event_loop", "run_until_complete", "run_forever"})
