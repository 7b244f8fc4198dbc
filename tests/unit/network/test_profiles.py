"""ProfileService's checks on what a profile may hold, without storage."""

from collections.abc import Mapping

import pytest

from chinwag.network.profiles import InvalidProfile, Profile, ProfileService


class _Recording:
    """A ProfileRepository that keeps the last update."""

    def __init__(self) -> None:
        self.values: Mapping[str, object] | None = None

    async def get(self, username: str) -> Profile | None:
        return None

    async def update(self, username: str, values: Mapping[str, object], origin: str) -> Profile:
        self.values = values
        return Profile(None, None, None, None, None)


class _Events:
    origin = "test"


@pytest.mark.parametrize("char", ["\x00", "\x01", "\x1f", "\ud800", "\ufffe", "\uffff"])
async def test_text_that_xml_cannot_carry_is_refused(char):
    repo = _Recording()
    profiles = ProfileService(repo, _Events())  # type: ignore[arg-type]

    with pytest.raises(InvalidProfile, match=f"U\\+{ord(char):04X}, which XMPP cannot carry"):
        await profiles.set_fields("alice", fn=f"Al{char}ice")
    assert repo.values is None


async def test_tabs_and_line_breaks_are_text():
    repo = _Recording()
    profiles = ProfileService(repo, _Events())  # type: ignore[arg-type]

    await profiles.set_fields("alice", fn="Alice\tL.", nickname=" al\r\nice ")

    assert repo.values == {"fn": "Alice\tL.", "nickname": "al\r\nice"}
