"""FullMailboxes: what the offline module remembers of full mailboxes stays bounded, in
number and in age, so a flood to many users cannot grow it and a stale entry ends."""

from __future__ import annotations

import pytest

from chinwag.modules.offline import FullMailboxes

pytestmark = pytest.mark.security


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_a_full_mailbox_is_remembered_until_delivered() -> None:
    full = FullMailboxes(clock=Clock())
    full.add("bob")
    assert "bob" in full and "carol" not in full
    full.discard("bob")
    assert "bob" not in full


def test_a_full_mailbox_is_forgotten_after_a_while() -> None:
    clock = Clock()
    full = FullMailboxes(seconds=10.0, clock=clock)
    full.add("bob")
    clock.now += 9.9
    assert "bob" in full
    clock.now += 0.2
    assert "bob" not in full


def test_only_the_most_recent_full_mailboxes_are_kept() -> None:
    full = FullMailboxes(kept=3, clock=Clock())
    for name in ("a", "b", "c", "d"):
        full.add(name)
    assert [name for name in "abcd" if name in full] == ["b", "c", "d"]
    full.add("b")  # found full again: the newest now
    full.add("e")
    assert [name for name in "bcde" if name in full] == ["b", "d", "e"]
