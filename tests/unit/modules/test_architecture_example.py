"""docs/architecture.md: its example module works as the page says, in the harness."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from module_harness import MakeHarness

from chinwag.server.api import ModuleAPI

DOC = Path(__file__).resolve().parents[3] / "docs" / "architecture.md"


def example_setup() -> Any:
    [source] = [
        block
        for block in re.findall(r"```python\n(.*?)```", DOC.read_text(), re.S)
        if "def setup(api" in block
    ]
    namespace: dict[str, object] = {}
    exec(compile(source, str(DOC), "exec"), namespace)
    return namespace["setup"]


async def test_the_example_module_only_registers_handlers_and_works(
    harness: MakeHarness,
) -> None:
    host = await harness(("presence", "message"), messages={"from_strangers": True})
    example = ModuleAPI(host.host, "example")
    example_setup()(example)
    assert {kind for kind, _ in example.registered} == {"hook"}
    await host.add_users("alice", "bob", "spam")
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    host.received(bob)

    host.send(alice, "<message to='spam@localhost' type='chat'><body>x</body></message>")
    host.send(alice, "<message to='bob@localhost' type='chat'><body>hi</body></message>")

    [refused] = host.received(alice)
    assert "not-acceptable" in refused
    assert "<body>hi</body>" in host.received(bob)[-1]
