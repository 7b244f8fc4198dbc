"""docs/security.md states the defaults of the settings its tables name: each row that
names a setting (`section.key`, first in its last cell) shows that setting's default, so the page cannot drift
from chinwag/config.py unnoticed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from chinwag.config import Settings

pytestmark = pytest.mark.security

DOC = Path(__file__).resolve().parents[2] / "docs" / "security.md"
_SETTING = re.compile(r"`([a-z_]+)\.([a-z_]+)`")


def _spellings(value: object) -> set[str]:
    """The ways the page may write a default: 1000, 1,000, 3600 s..."""
    if isinstance(value, bool) or not isinstance(value, int | float):
        return {str(value).lower()}
    number = int(value) if float(value).is_integer() else value
    return {str(number), f"{number:,}"}


def _rows() -> list[tuple[str, str, str]]:
    rows = []
    for line in DOC.read_text().splitlines():
        cells = line.split("|")
        if len(cells) > 3 and not line.startswith("|---"):
            setting = _SETTING.match(cells[-2].strip())
            if setting is not None:
                rows.append((setting.group(1), setting.group(2), line))
    return rows


def test_the_page_names_settings() -> None:
    assert {key for _section, key, _line in _rows()} >= {
        "max_auth_failures_per_address",
        "stanzas_per_second",
        "bytes_per_second",
        "offline_quota",
    }


@pytest.mark.parametrize(("section", "key", "line"), _rows())
def test_each_named_setting_shows_its_default(section: str, key: str, line: str) -> None:
    defaults = Settings()
    value = getattr(getattr(defaults, section), key)
    if isinstance(value, bool | str | tuple):
        return  # switches and lists: the row says what they do, not a number
    cells = line.split("|")
    assert any(spelling in cells[2] for spelling in _spellings(value)), (
        f"{section}.{key} defaults to {value}, which its row does not show: {line}"
    )
