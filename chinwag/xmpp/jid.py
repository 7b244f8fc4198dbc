"""JIDs (RFC 7622): parsing, PRECIS preparation, and a frozen, hashable value type.

Localparts are prepared with the UsernameCaseMapped profile and resourceparts
with OpaqueString (RFC 7622 3.3 and 3.4); domainparts with IDNA2008/UTS 46.
Parsing is cached, because the same few JIDs appear on every routed stanza.

Peers choose the JIDs they address, so preparing one must cost little whatever it
holds: a part longer than 1023 bytes is refused as it comes, before any PRECIS or
IDNA work (which costs time in proportion to it), a printable ASCII part is prepared
without the profiles (which would leave it as it is, localparts lowercased), and
the cache is bounded by entries and by the bytes of the JIDs it keeps.
"""

from __future__ import annotations

import threading

import idna
from precis_i18n import get_profile

_LOCALPART = get_profile("UsernameCaseMapped")
_RESOURCEPART = get_profile("OpaqueString")
_MAX_PART_BYTES = 1023
_MAX_JID_BYTES = 3071
# RFC 7622 3.3.1: characters the localpart may not contain even after PRECIS.
_LOCALPART_FORBIDDEN = frozenset("\"&'/:<>@")


class InvalidJID(ValueError):
    """A string that is not a valid JID; the message says why."""


def _precis_reason(error: UnicodeError) -> str:
    reason = error.args[-1] if error.args else str(error)
    return str(reason).replace("DISALLOWED/", "disallowed ")


def _refuse_long(part: str, name: str) -> None:
    """RFC 7622 3.2-3.4: no part is longer than 1023 bytes, checked here on the part as
    given (preparation may change its length: it is checked again after)."""
    if len(part) > _MAX_PART_BYTES or len(part.encode()) > _MAX_PART_BYTES:
        raise InvalidJID(f"{name} longer than {_MAX_PART_BYTES} bytes")


def prep_localpart(localpart: str) -> str:
    _refuse_long(localpart, "localpart")
    if localpart and localpart.isascii() and localpart.isprintable() and " " not in localpart:
        # RFC 8264 9.11: printable ASCII but space is PVALID in the IdentifierClass, and
        # UsernameCaseMapped only lowercases it.
        prepared = localpart.lower()
    else:
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
    _refuse_long(domain, "domainpart")
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
    _refuse_long(resource, "resourcepart")
    if resource and resource.isascii() and resource.isprintable():
        # Printable ASCII is valid in the FreeformClass, and OpaqueString leaves it as it is.
        return resource
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
        jid = _cache.get(text)
        if jid is None:
            jid = _parse(text)
            _cache.remember(text, jid)
        return jid

    @staticmethod
    def cached(text: str) -> JID | None:
        """The JID ``text`` names if it was parsed lately, else None; prepares nothing."""
        return _cache.get(text)

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


def split_jid(text: str) -> tuple[str | None, str, str | None]:
    """The parts of ``text`` as given, unprepared: (localpart, domainpart, resourcepart).
    Raises InvalidJID for an empty part and for one that is too long, which costs no
    preparation work."""
    if len(text) > _MAX_JID_BYTES or len(text.encode()) > _MAX_JID_BYTES:
        raise InvalidJID(f"JID longer than {_MAX_JID_BYTES} bytes")
    rest, slash, resource = text.partition("/")
    localpart, at, domain = rest.partition("@")
    if not at:
        domain = rest
    elif not localpart:
        raise InvalidJID(f"{text!r} has an empty localpart")
    if slash and not resource:
        raise InvalidJID(f"{text!r} has an empty resourcepart")
    parts = (localpart if at else None, domain, resource if slash else None)
    for part, name in zip(parts, ("localpart", "domainpart", "resourcepart"), strict=True):
        if part is not None:
            _refuse_long(part, name)
    return parts


def _parse(text: str) -> JID:
    return JID.make(*split_jid(text))


class _JIDCache:
    """Parsed JIDs by their text, at most ``max_entries`` of them holding at most
    ``max_bytes`` of text, and none longer than ``max_jid_bytes``: a peer that addresses
    ever new JIDs only pushes out the oldest ones.

    Looking up is a dictionary lookup; adding (after a parse, which costs far more) takes
    a lock, as JIDs are parsed on worker threads too.
    """

    def __init__(self, max_entries: int, max_bytes: int, max_jid_bytes: int) -> None:
        self.max_entries = max_entries
        self.max_bytes = max_bytes
        self.max_jid_bytes = max_jid_bytes
        self.bytes = 0
        """Bytes (UTF-8) of the texts kept."""
        self._jids: dict[str, JID] = {}
        self._lock = threading.Lock()
        self.get = self._jids.get

    def __len__(self) -> int:
        return len(self._jids)

    def remember(self, text: str, jid: JID) -> None:
        size = len(text.encode())
        if size > self.max_jid_bytes:
            return
        jids = self._jids
        with self._lock:
            if text in jids:
                return
            while jids and (len(jids) >= self.max_entries or self.bytes + size > self.max_bytes):
                oldest = next(iter(jids))
                del jids[oldest]
                self.bytes -= len(oldest.encode())
            jids[text] = jid
            self.bytes += size


_cache = _JIDCache(max_entries=8192, max_bytes=1 << 19, max_jid_bytes=256)
"""Eight thousand JIDs of usual length; a few MiB of memory at most."""
