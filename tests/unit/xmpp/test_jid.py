"""JIDs (RFC 7622): parsing, PRECIS preparation of each part, the value type
(bare/full, equality, hashing, immutability) and what must be rejected."""

from __future__ import annotations

import contextlib

import pytest
from hypothesis import example, given, settings
from hypothesis import strategies as st

from chinwag.xmpp import jid as jid_module
from chinwag.xmpp.jid import (
    JID,
    InvalidJID,
    prep_domainpart,
    prep_localpart,
    prep_resourcepart,
)


def fullwidth(ascii_text: str) -> str:
    """The FULLWIDTH forms (U+FF01..U+FF5E) of printable ASCII letters."""
    return "".join(chr(ord(c) + 0xFEE0) for c in ascii_text)


# --- parsing ---------------------------------------------------------------------------


def test_full_jid_parts() -> None:
    jid = JID.parse("juliet@example.com/balcony")
    assert (jid.local, jid.domain, jid.resource) == ("juliet", "example.com", "balcony")
    assert str(jid) == "juliet@example.com/balcony"
    assert not jid.is_bare


def test_bare_jid() -> None:
    jid = JID.parse("juliet@example.com")
    assert (jid.local, jid.domain, jid.resource) == ("juliet", "example.com", None)
    assert jid.is_bare
    assert jid.bare is jid


def test_long_jids_parse_alike_but_are_not_remembered() -> None:
    """Peers choose the JIDs they address: only those of a usual length are cached."""
    text = "juliet@example.com/" + "r" * 300
    before = len(jid_module._cache)
    assert JID.parse(text) == JID.parse(text) == JID("juliet", "example.com", "r" * 300)
    assert len(jid_module._cache) == before


def test_domain_only_and_domain_with_resource() -> None:
    assert JID.parse("example.com") == JID(None, "example.com")
    jid = JID.parse("example.com/service")
    assert (jid.local, jid.domain, jid.resource) == (None, "example.com", "service")


def test_resource_may_contain_at_and_slash() -> None:
    """RFC 7622 3.1: the first '/' ends the bare JID, whatever follows."""
    jid = JID.parse("juliet@example.com/a@b/c")
    assert (jid.local, jid.domain, jid.resource) == ("juliet", "example.com", "a@b/c")
    jid = JID.parse("example.com/x@y")
    assert (jid.local, jid.domain, jid.resource) == (None, "example.com", "x@y")


def test_bare_of_a_full_jid() -> None:
    full = JID.parse("juliet@example.com/balcony")
    assert full.bare == JID.parse("juliet@example.com")
    assert full.bare.resource is None


def test_with_resource() -> None:
    bare = JID.parse("juliet@example.com")
    assert bare.with_resource("orchard") == JID.parse("juliet@example.com/orchard")


def test_make_prepares_each_part() -> None:
    assert JID.make("Juliet", "EXAMPLE.com", "Balcony") == JID.parse("juliet@example.com/Balcony")
    assert JID.make(None, "example.com") == JID.parse("example.com")


# --- preparation ---------------------------------------------------------------------------


def test_localpart_is_case_mapped() -> None:
    assert JID.parse("JuLiEt@example.com").local == "juliet"
    assert prep_localpart("ÉLODIE") == "élodie"


def test_localpart_width_mapping() -> None:
    """Fullwidth characters map to their ASCII equivalents (UsernameCaseMapped)."""
    assert prep_localpart(fullwidth("JULIET")) == "juliet"


def test_localpart_is_nfc_normalised() -> None:
    assert prep_localpart("e\u0301") == "\u00e9"


def test_domain_is_lowercased() -> None:
    assert JID.parse("juliet@EXAMPLE.Com").domain == "example.com"


def test_domain_trailing_dot_is_removed() -> None:
    assert JID.parse("juliet@example.com.") == JID.parse("juliet@example.com")


def test_internationalised_domain_in_u_labels() -> None:
    assert prep_domainpart("Bücher.Example") == "bücher.example"
    assert prep_domainpart(fullwidth("EXAMPLE") + "\u3002com") == "example.com"


def test_domain_a_labels_are_converted_to_u_labels() -> None:
    """RFC 7622 3.2.2: an A-label is converted to its U-label, so both spellings are one JID."""
    assert prep_domainpart("xn--bcher-kva.example") == "bücher.example"
    assert JID.parse("a@xn--bcher-kva.example") == JID.parse("a@bücher.example")


def test_ipv6_literal_domain() -> None:
    assert JID.parse("juliet@[2001:DB8::1]").domain == "[2001:db8::1]"


def test_resource_is_kept_as_is_under_opaque_string() -> None:
    assert JID.parse("juliet@example.com/Balcony Door").resource == "Balcony Door"
    assert prep_resourcepart("ÉLODIE") == "ÉLODIE"
    assert prep_resourcepart("Ⅳ") == "Ⅳ", "no width or compatibility mapping"


def test_resource_is_nfc_normalised_and_spaces_mapped() -> None:
    assert prep_resourcepart("e\u0301") == "\u00e9"
    assert prep_resourcepart("a\u00a0b") == "a b"


# --- the value type ------------------------------------------------------------------------


def test_equal_jids_compare_and_hash_equal() -> None:
    one = JID.parse("Juliet@Example.COM/balcony")
    two = JID("juliet", "example.com", "balcony")
    assert one == two
    assert hash(one) == hash(two)
    assert len({one, two}) == 1
    assert {one: 1}[two] == 1


def test_different_jids_are_not_equal() -> None:
    jid = JID.parse("juliet@example.com/balcony")
    assert jid != JID.parse("juliet@example.com/Balcony"), "resources are case-sensitive"
    assert jid != jid.bare
    assert jid != JID.parse("romeo@example.com/balcony")
    assert JID.parse("example.com") != JID.parse("example.org")


def test_a_jid_is_not_equal_to_its_string() -> None:
    assert JID.parse("juliet@example.com") != "juliet@example.com"


def test_repr() -> None:
    assert repr(JID.parse("juliet@example.com")) == "JID('juliet@example.com')"


@pytest.mark.parametrize("name", ["local", "domain", "resource", "other"])
def test_jids_are_immutable(name: str) -> None:
    jid = JID.parse("juliet@example.com/balcony")
    with pytest.raises(AttributeError):
        setattr(jid, name, "x")
    assert str(jid) == "juliet@example.com/balcony"


@pytest.mark.parametrize("name", ["local", "domain", "resource"])
def test_jid_parts_cannot_be_deleted(name: str) -> None:
    jid = JID.parse("juliet@example.com/balcony")
    with pytest.raises(AttributeError):
        delattr(jid, name)
    assert getattr(jid, name) is not None


# --- rejections ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "@example.com",
        "juliet@",
        "juliet@/balcony",
        "juliet@example.com/",
        "example.com/",
        "/balcony",
        "@",
        ".",
    ],
    ids=repr,
)
def test_empty_parts_are_rejected(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


@pytest.mark.parametrize("char", ['"', "&", "'", ":", "<", ">"])
def test_forbidden_localpart_characters(char: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(f"ju{char}liet@example.com")


@pytest.mark.parametrize(
    "text",
    ["jul iet@example.com", "juliet@exa mple.com", " juliet@example.com", "juliet@example.com "],
    ids=repr,
)
def test_spaces_in_localpart_or_domain_are_rejected(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


@pytest.mark.parametrize(
    "text",
    [
        "juliet@exam<ple.com",
        "juliet@exam\\ple.com",
        "juliet@exa\x07mple.com",
        "juliet@example@com",
        "jul\x00iet@example.com",
        "juliet@example.com/\x07",
        "juliet@example.com/a\u200bb",
        "juliet@example.com/\u0378",
    ],
    ids=repr,
)
def test_other_invalid_characters(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


@pytest.mark.parametrize(
    "text",
    ["a" * 1024 + "@example.com", "juliet@" + "a" * 1024, "juliet@example.com/" + "r" * 1024],
    ids=["localpart", "domainpart", "resourcepart"],
)
def test_over_long_parts_are_rejected(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_over_long_in_bytes_not_characters() -> None:
    """The limit is 1023 octets of UTF-8: 512 two-byte characters are too many."""
    with pytest.raises(InvalidJID):
        JID.parse("é" * 512 + "@example.com")
    assert JID.parse("é" * 511 + "@example.com").local == "é" * 511


def test_longest_allowed_parts() -> None:
    jid = JID.parse("a" * 1023 + "@example.com/" + "r" * 1023)
    assert len(jid.local or "") == 1023 and len(jid.resource or "") == 1023


def test_whole_jid_over_3071_bytes_is_rejected() -> None:
    with pytest.raises(InvalidJID):
        JID.parse("a" * 1023 + "@" + "b" * 1023 + "/" + "c" * 1030)


@pytest.mark.parametrize("text", ["juliet@example..com", "juliet@.example.com", "juliet@a.."])
def test_domain_with_an_empty_label_is_rejected(text: str) -> None:
    with pytest.raises(InvalidJID):
        JID.parse(text)


def test_invalid_idn_is_rejected() -> None:
    with pytest.raises(InvalidJID):
        JID.parse("juliet@ü..example")


def test_invalid_jid_is_a_value_error() -> None:
    assert issubclass(InvalidJID, ValueError)


# --- properties ----------------------------------------------------------------------------------

_jid_chars = st.sampled_from("aZ0.-_@/[]: \u00e0\u00c9\u3002\uff21\u200b\u0378") | st.characters(
    codec="utf-8"
)
jid_like_text = st.text(_jid_chars, max_size=16)


@settings(max_examples=200, deadline=None)
@given(jid_like_text)
def test_parse_only_ever_raises_invalid_jid(text: str) -> None:
    with contextlib.suppress(InvalidJID):
        JID.parse(text)


@settings(max_examples=200, deadline=None)
@given(jid_like_text)
@example("juliet@example.com..")
def test_preparation_is_idempotent(text: str) -> None:
    """A prepared JID's string parses back to the same JID (RFC 7622 3.1 stability)."""
    try:
        jid = JID.parse(text)
    except InvalidJID:
        return
    assert JID.parse(str(jid)) == jid
