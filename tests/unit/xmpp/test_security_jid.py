"""Issue 16, point 4: preparing the JIDs a peer chooses is bounded.

A part longer than 1023 bytes as sent is refused before any PRECIS or IDNA work;
printable ASCII parts never reach the PRECIS profiles (whose pure-Python work per
character made a crafted ``to`` cost ~1.3 s of CPU per MB); and the cache of parsed
JIDs stays within its bounds of entries and bytes however many distinct JIDs come.
"""

from __future__ import annotations

import tracemalloc
from typing import Any

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st
from xmpp_helpers import DOMAIN, bound_client, stanza_error_condition

from chinwag.xmpp import jid as jid_module
from chinwag.xmpp.events import StanzaReceived
from chinwag.xmpp.jid import JID, InvalidJID, prep_localpart, prep_resourcepart
from chinwag.xmpp.stream import NEW_JID_CHARS_BURST, NEW_JID_CHARS_PER_SECOND

pytestmark = pytest.mark.security

REAL_LOCALPART = jid_module._LOCALPART
REAL_RESOURCEPART = jid_module._RESOURCEPART


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


class SpyProfile:
    """A PRECIS profile that records what it is asked to enforce."""

    def __init__(self, profile: Any) -> None:
        self.profile = profile
        self.enforced: list[str] = []

    def enforce(self, value: str) -> str:
        self.enforced.append(value)
        return str(self.profile.enforce(value))


@pytest.fixture
def precis_work(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every string given to a PRECIS profile or to IDNA while the test runs."""
    seen: list[str] = []
    local, resource = SpyProfile(REAL_LOCALPART), SpyProfile(REAL_RESOURCEPART)
    local.enforced = resource.enforced = seen
    monkeypatch.setattr(jid_module, "_LOCALPART", local)
    monkeypatch.setattr(jid_module, "_RESOURCEPART", resource)
    real_encode = jid_module.idna.encode

    def encode(domain: str, *args: Any, **kwargs: Any) -> bytes:
        seen.append(domain)
        return real_encode(domain, *args, **kwargs)

    monkeypatch.setattr(jid_module.idna, "encode", encode)
    return seen


@pytest.mark.parametrize(
    ("text", "part"),
    [
        # Width mapping would make this one 342 bytes long: it is refused as it comes.
        (fullwidth("a") * 342 + "@example.com", "localpart"),
        ("İ" * 512 + "@example.com", "localpart"),
        ("juliet@example.com/" + "İ" * 512, "resourcepart"),
        ("juliet@example.com/" + fullwidth("r") * 342, "resourcepart"),
        ("juliet@" + "ü" * 512, "domainpart"),
        ("juliet@" + ".".join(["bücher"] * 150), "domainpart"),
    ],
)
def test_a_part_longer_than_1023_bytes_is_refused_before_any_preparation(
    precis_work: list[str], text: str, part: str
) -> None:
    with pytest.raises(InvalidJID, match=f"{part} longer than 1023 bytes"):
        JID.parse(text)
    assert precis_work == []


def test_a_jid_longer_than_3071_bytes_is_refused_before_any_preparation(
    precis_work: list[str],
) -> None:
    with pytest.raises(InvalidJID, match="JID longer than 3071 bytes"):
        JID.parse("é" * 1000 + "@" + "ü" * 500 + "/" + "é" * 100)
    assert precis_work == []


def test_printable_ascii_parts_never_reach_the_precis_profiles(precis_work: list[str]) -> None:
    for index in range(50):
        jid = JID.parse(f"User{index}-{'x' * 1000}@Example.COM/Res {index} {'y' * 1000}")
        assert jid.local == f"user{index}-{'x' * 1000}"
        assert jid.resource == f"Res {index} {'y' * 1000}"
    assert precis_work == []


def by_the_profile(profile: Any, part: str) -> str | None:
    try:
        return str(profile.enforce(part))
    except UnicodeError:
        return None


def by_chinwag(prep: Any, part: str) -> str | None:
    try:
        return str(prep(part))
    except InvalidJID:
        return None


ascii_text = st.text(st.characters(max_codepoint=0x7F), max_size=40)


@settings(max_examples=300, deadline=None)
@given(ascii_text)
@example("")
@example(" ")
@example("Juliet Capulet")
@example("\x7f")
@example("ROMEO")
def test_ascii_parts_are_prepared_as_the_precis_profiles_prepare_them(part: str) -> None:
    local = by_the_profile(REAL_LOCALPART, part)
    if local is not None and jid_module._LOCALPART_FORBIDDEN.intersection(local):
        local = None
    assert by_chinwag(prep_localpart, part) == local
    assert by_chinwag(prep_resourcepart, part) == by_the_profile(REAL_RESOURCEPART, part)


DISTINCT = 100_000
MAX_RETAINED = 8 << 20
"""Bytes of memory the cache may keep: 8 MiB (the issue saw 76 MB)."""


def test_the_cache_stays_within_its_bounds_after_100000_distinct_jids() -> None:
    tracemalloc.start()
    try:
        before, _ = tracemalloc.get_traced_memory()
        for index in range(DISTINCT):
            if index % 4:
                JID.parse(f"user{index}@example.com/phone")
            else:  # near the longest JID that is cached
                JID.parse(f"u{index}{'a' * 200}@example.com/{'r' * 30}")
        after, _ = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert after - before <= MAX_RETAINED, f"{after - before} bytes kept"
    cache = jid_module._cache
    assert len(cache) <= cache.max_entries
    assert cache.bytes <= cache.max_bytes
    assert cache.bytes == sum(len(text.encode()) for text in cache._jids)


def test_a_jid_in_use_is_still_served_from_the_cache() -> None:
    text = "romeo@example.com/orchard"
    assert JID.parse(text) is JID.parse(text)


def test_a_stream_prepares_new_non_ascii_addresses_within_an_allowance(
    precis_work: list[str],
) -> None:
    """A signed-in client that addresses ever new non-ASCII JIDs gets them prepared up to
    its allowance, then ``<resource-constraint/>`` without any PRECIS work, until time has
    refilled it; cached and ASCII addresses are never charged."""
    client = bound_client()
    local = "é" * 500
    sent = 0
    answered: list[tuple[str, str]] = []
    for index in range(40):
        target = f"{local}{index}@{DOMAIN}"
        events = client.send(f"<message to='{target}' id='m{index}'><body>x</body></message>", 1.0)
        sent += sum(isinstance(event, StanzaReceived) for event in events)
        answered.extend(stanza_error_condition(e) for e in client.read().elements)
    assert 0 < sent <= NEW_JID_CHARS_BURST // len(local) + 1
    assert answered == [("wait", "resource-constraint")] * (40 - sent)
    assert sum(len(work) for work in precis_work) <= NEW_JID_CHARS_BURST + 40
    precis_work.clear()

    events = client.send(f"<message to='ascii-{local.lower()[:1]}x@{DOMAIN}'/>", 1.0)
    assert [type(event) for event in events] == [StanzaReceived]
    refilled = 1.0 + 2 * len(local) / NEW_JID_CHARS_PER_SECOND
    events = client.send(f"<message to='{local}later@{DOMAIN}'/>", refilled)
    assert [type(event) for event in events] == [StanzaReceived]
