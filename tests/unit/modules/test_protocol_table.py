"""docs/protocol.md names every spec that a module declares in its SPEC."""

import importlib
import pkgutil
from pathlib import Path

import pytest

import chinwag.modules
from chinwag.server.api import Spec
from chinwag.server.xmpp_server import DEFAULT_MODULES

PROTOCOL_DOC = Path(__file__).resolve().parents[3] / "docs" / "protocol.md"
MODULE_NAMES = sorted(info.name for info in pkgutil.iter_modules(chinwag.modules.__path__))


def test_every_module_is_loaded_by_default() -> None:
    assert sorted(DEFAULT_MODULES) == MODULE_NAMES


@pytest.mark.parametrize("name", MODULE_NAMES)
def test_the_support_table_names_each_module_spec(name: str) -> None:
    spec = importlib.import_module(f"chinwag.modules.{name}").SPEC
    assert isinstance(spec, Spec)
    table = PROTOCOL_DOC.read_text()
    rows = [spec.spec] if f"| {spec.spec} |" in table else [p.strip() for p in spec.spec.split(",")]
    for row in rows:
        assert f"| {row} |" in table, f"{row} is missing from the table in docs/protocol.md"
