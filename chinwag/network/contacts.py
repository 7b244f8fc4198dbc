"""The contacts domain: who is on whose roster, and with what subscription.

The network owns the contact list: operators link accounts (CLI, REST, portal)
with :meth:`ContactService.add_mutual`, and the XMPP roster module reads it and,
when full RFC 6121 roster management is on, changes it through
:meth:`ContactService.save`. Every change bumps the owner's roster version and is
announced with a ``roster.changed`` event in the same transaction.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

from chinwag.network.accounts import InvalidUsername, NoSuchAccount, normalize_username
from chinwag.network.events import EventLog
from chinwag.store.contacts import SUBSCRIPTIONS, Contact, ContactRepository, RosterChange

__all__ = [
    "Contact",
    "ContactService",
    "InvalidContact",
    "NoSuchAccount",
    "RosterChange",
    "SameAccount",
]


class SameAccount(ValueError):
    """An account cannot be its own contact."""

    def __init__(self, username: str) -> None:
        self.username = username
        super().__init__(f"'{username}' cannot be a contact of themselves")


class InvalidContact(ValueError):
    pass


class InvalidPairs(ValueError):
    """Pairs that cannot become contacts, as (index, reason); nothing was changed."""

    def __init__(self, problems: Sequence[tuple[int, str]]) -> None:
        self.problems = list(problems)
        super().__init__(f"{len(self.problems)} bad pairs; nothing changed")


class ContactService:
    """Use cases over a ContactRepository; usernames are normalised on the way in."""

    def __init__(self, repo: ContactRepository, events: EventLog) -> None:
        self._repo = repo
        self._origin = events.origin

    async def add_mutual(self, a: str, b: str) -> None:
        """Make ``a`` and ``b`` contacts both ways (subscription 'both'); idempotent.

        Existing items keep their names and groups; pending requests are settled.
        """
        first, second = _pair(a, b)
        await self._repo.link(first, second, self._origin)

    async def add_many(self, pairs: Sequence[tuple[str, str]]) -> int:
        """``add_mutual`` for many pairs at once: all of them, or none if any is bad.
        Raises ``InvalidPairs`` listing every bad pair by its index."""
        checked: list[tuple[str, str]] = []
        problems: list[tuple[int, str]] = []
        for index, (a, b) in enumerate(pairs):
            try:
                checked.append(_pair(a, b))
            except ValueError as error:
                problems.append((index, str(error)))
        if problems:
            raise InvalidPairs(problems)
        try:
            return await self._repo.link_many(checked, self._origin)
        except NoSuchAccount as missing:
            unknown = missing.username
            raise InvalidPairs(
                [
                    (i, f"no such user '{unknown}'")
                    for i, pair in enumerate(checked)
                    if unknown in pair
                ]
            ) from None

    async def remove_mutual(self, a: str, b: str) -> bool:
        """Take each off the other's roster; False if neither had the other."""
        first, second = _pair(a, b)
        return await self._repo.unlink(first, second, self._origin)

    async def roster(self, owner: str) -> tuple[int, list[Contact]]:
        """The roster version and every item, sorted by username; raises NoSuchAccount."""
        username = normalize_username(owner)
        found = await self._repo.roster(username)
        if found is None:
            raise NoSuchAccount(username)
        return found

    async def item(self, owner: str, contact: str) -> Contact | None:
        try:
            return await self._repo.item(normalize_username(owner), normalize_username(contact))
        except InvalidUsername:
            return None

    async def save(self, changes: Sequence[RosterChange]) -> dict[str, int]:
        """Apply every change or none, in one transaction: upsert or delete each item.

        Each owner's version goes up once; returns the new version by owner, as the
        owner is spelled in ``changes``. Raises NoSuchAccount, InvalidUsername or
        InvalidContact, changing nothing.
        """
        checked = [_checked(change) for change in changes]
        versions = await self._repo.save(checked, self._origin)
        return {
            given.owner: versions[change.owner]
            for given, change in zip(changes, checked, strict=True)
        }

    async def account_exists(self, username: str) -> bool:
        try:
            return await self._repo.exists(normalize_username(username))
        except InvalidUsername:
            return False

    async def list_contacts(self, owner: str) -> list[Contact]:
        """The owner's contacts proper: items with a subscription in either direction."""
        _version, items = await self.roster(owner)
        return [item for item in items if item.subscription != "none"]


def _pair(a: str, b: str) -> tuple[str, str]:
    first, second = normalize_username(a), normalize_username(b)
    if first == second:
        raise SameAccount(first)
    return first, second


def _checked(change: RosterChange) -> RosterChange:
    owner, contact = normalize_username(change.owner), normalize_username(change.contact)
    item = change.item
    if item is None:
        return RosterChange(owner, contact, None)
    if normalize_username(item.username) != contact:
        raise InvalidContact(f"the item for '{contact}' is about '{item.username}'")
    if item.subscription not in SUBSCRIPTIONS:
        raise InvalidContact(f"unknown subscription {item.subscription!r}")
    if not all(isinstance(group, str) and group for group in item.groups):
        raise InvalidContact("group names are non-empty strings")
    groups = tuple(dict.fromkeys(item.groups))
    return RosterChange(owner, contact, replace(item, username=contact, groups=groups))
