"""Make the module harness importable as ``module_harness`` whatever pytest's import mode,
and give tests a ``harness`` factory whose hosts are closed after the test."""

import sys
from collections.abc import AsyncIterator, Sequence
from pathlib import Path
from typing import Any

import pytest

_HERE = str(Path(__file__).resolve().parent)
if _HERE not in sys.path:
    sys.path.insert(0, _HERE)

from module_harness import Harness, MakeHarness  # noqa: E402


@pytest.fixture
async def harness(tmp_path: Path) -> AsyncIterator[MakeHarness]:
    """``await harness(("message", "presence"), messages={"from_strangers": True})``."""
    made: list[Harness] = []

    async def make(modules: Sequence[str], **settings: Any) -> Harness:
        host = await Harness.start(tmp_path / f"host-{len(made)}", modules, **settings)
        made.append(host)
        return host

    yield make
    for host in made:
        await host.close()
