"""The blocking domain (XEP-0191): the JIDs each user blocks.

A block list belongs to its user: the blocking module changes it over XMPP, and apps
with the user's consent through the REST API. Each JID is prepared (RFC 7622) on the
way in, so a list holds every JID once, in its canonical form, and an entry matches
an address by plain string comparison. Every change is announced with
``blocklist.changed`` in its transaction, which is how the XMPP side hears of changes
made elsewhere. A list holds at most :data:`MAX_BLOCKED` JIDs.

An entry blocks what XEP-0191's JID matching says: a full JID that resource only, a
bare JID every resource of it, ``domain/resource`` that resource of the domain, and a
domain the domain itself and every address on it.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable

from chinwag.network.accounts import NoSuchAccount, normalize_username
from chinwag.network.events import EventLog
from chinwag.store.blocking import BLOCKLIST_CHANGED, BlockingRepository, TooManyBlocked
from chinwag.xmpp.jid import JID, InvalidJID

__all__ = [
    "BLOCKLIST_CHANGED",
    "MAX_BLOCKED",
    "BlockingService",
    "InvalidBlockedJID",
    "NoSuchAccount",
    "TooManyBlocked",
    "blocks",
    "match_forms",
    "prepare_jid",
]

MAX_BLOCKED = 1000
"""JIDs one block list may hold: each online user's list is kept in memory."""


class InvalidBlockedJID(ValueError):
    """A string that is not a JID; the message says why."""


def prepare_jid(text: str) -> str:
    """The canonical form of the JID ``text``; raises InvalidBlockedJID."""
    try:
        return JID.parse(text).text
    except InvalidJID as error:
        raise InvalidBlockedJID(f"{text!r} is not a JID: {error}") from None


def match_forms(jid: JID) -> tuple[str, ...]:
    """The entries that block ``jid``: itself, its bare JID, its domain with its
    resource, and its domain (each once)."""
    forms = [jid.text]
    if jid.local is not None and jid.resource is not None:
        forms += [jid.bare.text, f"{jid.domain}/{jid.resource}"]
    if jid.text != jid.domain:
        forms.append(jid.domain)
    return tuple(forms)


def blocks(entries: Collection[str], jid: JID) -> bool:
    """Whether a block list with ``entries`` blocks ``jid`` (XEP-0191 JID matching)."""
    if jid.text in entries or jid.domain in entries:
        return True
    if jid.resource is None:
        return False
    return jid.bare.text in entries or f"{jid.domain}/{jid.resource}" in entries


class BlockingService:
    """Use cases over a BlockingRepository; usernames are normalised and JIDs prepared
    on the way in."""

    def __init__(self, repo: BlockingRepository, events: EventLog) -> None:
        self._repo = repo
        self._origin = events.origin

    async def blocked(self, username: str) -> list[str]:
        """The JIDs the user blocks, sorted; raises NoSuchAccount."""
        name = normalize_username(username)
        found = await self._repo.blocked(name)
        if found is None:
            raise NoSuchAccount(name)
        return found

    async def block(self, username: str, jids: Iterable[str]) -> list[str]:
        """Block ``jids``; returns those that were not blocked yet, prepared. Raises
        InvalidBlockedJID, NoSuchAccount or TooManyBlocked, changing nothing."""
        prepared = [prepare_jid(jid) for jid in jids]
        return await self._repo.block(
            normalize_username(username), prepared, MAX_BLOCKED, self._origin
        )

    async def unblock(self, username: str, jids: Iterable[str] | None = None) -> list[str]:
        """Unblock ``jids`` (None: every JID); returns those that were blocked, prepared
        and sorted. Raises InvalidBlockedJID or NoSuchAccount, changing nothing."""
        prepared = None if jids is None else [prepare_jid(jid) for jid in jids]
        return await self._repo.unblock(normalize_username(username), prepared, self._origin)
