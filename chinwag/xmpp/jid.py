"""JIDs (RFC 7622): parsing, PRECIS preparation, and a frozen, hashable value type.

Localparts are prepared with the UsernameCaseMapped profile and resourceparts
with OpaqueString (RFC 7622 3.3 and 3.4); domainparts with IDNA2008/UTS 46.
Parsing is cached, because the same few JIDs appear on every routed stanza.
"""

from __future__ import annotations

from functools import lru_cache

import idna
from precis_i18n import get_profile

_LOCALPART = get_profile("UsernameCaseMapped")
_RESOURCEPART = get_profile("OpaqueString")
_MAX_PART_BYTES = 1023
# RFC 7622 3.3.1: characters the localpart may not contain even after PRECIS.
_LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")


class InvalidJID(ValueError):
    """A string that is not a valid JID; the message says why."""


def _precis_reason(error: UnicodeError) -> str:
    reason = error.args[-1] if error.args else str(error)
    return str(reason).replace("DISALLOWED/", "disallowed ")


def prep_localpart(localpart: str) -> str:
    try:
        prepared = _LOCALPART.enforce(localpart)
    except UnicodeError as error:
        raise InvalidJID(f"invalid localpart {localpart!r}: {_precis_reason(error)}") from None
    bad = _LOCALPART_FORBIDDEN.intersection(prepared)
    if bad:
        raise InvalidJID(f"invalid localpart {localpart!r}: contains {''.join(sorted(bad))!r}")
    if len(prepared.encode()) > _MAX_PART_BYTES:
        raise InvalidJID("localpart longer than 1023 bytes")
    return prepared


def prep_domainpart(domain: str) -> str:
    domain = domain.removesuffix(".")
    if not domain:
        raise InvalidJID("empty domainpart")
    if domain.startswith("[") and domain.endswith("]"):
        return domain.lower()  # IPv6 literal
    if domain.isascii() and "xn--" not in domain.lower():
        domain = domain.lower()
        if any(c in domain for c in " \"&'/:<>@\\") or not domain.isprintable():
            raise InvalidJID(f"invalid domainpart {domain!r}")
    else:
        try:
            domain = idna.decode(idna.encode(domain, uts46=True))
        except idna.IDNAError as error:
            raise InvalidJID(f"invalid domainpart {domain!r}: {error}") from None
    if "" in domain.split("."):
        raise InvalidJID(f"invalid domainpart {domain!r}: empty label")
    if len(domain.encode()) > _MAX_PART_BYTES:
        raise InvalidJID("domainpart longer than 1023 bytes")
    return domain


def prep_resourcepart(resource: str) -> str:
    try:
        prepared = _RESOURCEPART.enforce(resource)
    except UnicodeError as error:
        raise InvalidJID(f"invalid resourcepart {resource!r}: {_precis_reason(error)}") from None
    if len(prepared.encode()) > _MAX_PART_BYTES:
        raise InvalidJID("resourcepart longer than 1023 bytes")
    return prepared


class JID:
    """A prepared JID. Equal JIDs compare and hash equal; ``str()`` is canonical."""

    __slots__ = ("_bare", "_hash", "domain", "local", "resource", "text")

    local: str | None
    domain: str
    resource: str | None
    text: str
    """The canonical string form, as ``str()`` gives it."""
    _hash: int
    _bare: JID | None

    def __init__(self, local: str | None, domain: str, resource: str | None = None) -> None:
        object.__setattr__(self, "local", local)
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "resource", resource)
        text = f"{local}@{domain}" if local is not None else domain
        if resource is not None:
            text = f"{text}/{resource}"
        object.__setattr__(self, "text", text)
        object.__setattr__(self, "_hash", hash(text))
        object.__setattr__(self, "_bare", None)

    @staticmethod
    def parse(text: str) -> JID:
        """Parse and prepare ``text``; raises InvalidJID."""
        # Peers choose what they address: only JIDs of a usual length are remembered.
        return _parse_cached(text) if len(text) <= _CACHED_JID_LENGTH else _parse(text)

    @staticmethod
    def make(local: str | None, domain: str, resource: str | None = None) -> JID:
        """Build a JID from parts, preparing each; raises InvalidJID."""
        return JID(
            prep_localpart(local) if local is not None else None,
            prep_domainpart(domain),
            prep_resourcepart(resource) if resource is not None else None,
        )

    @property
    def bare(self) -> JID:
        if self.resource is None:
            return self
        bare = self._bare
        if bare is None:  # made once: routing asks every stanza's target for it
            bare = JID(self.local, self.domain)
            object.__setattr__(self, "_bare", bare)
        return bare

    @property
    def is_bare(self) -> bool:
        return self.resource is None

    def with_resource(self, resource: str) -> JID:
        return JID(self.local, self.domain, resource)

    def __setattr__(self, name: str, value: object) -> None:
        raise AttributeError("JID is immutable")

    def __delattr__(self, name: str) -> None:
        raise AttributeError("JID is immutable")

    def __str__(self) -> str:
        return self.text

    def __repr__(self) -> str:
        return f"JID({self.text!r})"

    def __hash__(self) -> int:
        return self._hash

    def __eq__(self, other: object) -> bool:
        return isinstance(other, JID) and self.text == other.text


_CACHED_JID_LENGTH = 256


def _parse(text: str) -> JID:
    if len(text.encode()) > 3071:
        raise InvalidJID("JID longer than 3071 bytes")
    rest, slash, resource = text.partition("/")
    localpart, at, domain = rest.partition("@")
    if not at:
        domain = rest
    elif not localpart:
        raise InvalidJID(f"{text!r} has an empty localpart")
    if slash and not resource:
        raise InvalidJID(f"{text!r} has an empty resourcepart")
    return JID.make(localpart if at else None, domain, resource if slash else None)


_parse_cached = lru_cache(maxsize=65536)(_parse)
