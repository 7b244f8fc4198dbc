"""Rosters of online accounts, kept in memory so routing never waits on storage.

An account's roster is loaded when its first resource binds and dropped when the
last one leaves; changes made through the network domain are applied by the
roster module as they are announced.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from chinwag.network.contacts import Contact, ContactService


@dataclass(slots=True)
class Roster:
    version: int
    items: dict[str, Contact] = field(default_factory=dict)
    """By the contact's username."""

    def subscribed_from(self) -> list[str]:
        """Contacts who receive this account's presence (subscription from or both)."""
        return [name for name, item in self.items.items() if item.subscription in ("from", "both")]

    def subscribed_to(self) -> list[str]:
        """Contacts whose presence this account receives (subscription to or both)."""
        return [name for name, item in self.items.items() if item.subscription in ("to", "both")]

    def is_contact(self, username: str) -> bool:
        item = self.items.get(username)
        return item is not None and item.subscription != "none"


class RosterCache:
    def __init__(self, contacts: ContactService) -> None:
        self._contacts = contacts
        self._rosters: dict[str, Roster] = {}
        self._holders: dict[str, int] = {}

    async def acquire(self, username: str) -> Roster:
        """Load (once) and pin the roster of ``username`` for one more session."""
        self._holders[username] = self._holders.get(username, 0) + 1
        roster = self._rosters.get(username)
        if roster is None:
            try:
                roster = await self._load(username)
            except BaseException:
                self.release(username)
                raise
            if self._holders.get(username):
                roster = self._rosters.setdefault(username, roster)
        return roster

    def release(self, username: str) -> None:
        remaining = self._holders.get(username, 0) - 1
        if remaining > 0:
            self._holders[username] = remaining
        else:
            self._holders.pop(username, None)
            self._rosters.pop(username, None)

    def get(self, username: str) -> Roster | None:
        return self._rosters.get(username)

    async def refresh(self, username: str) -> Roster | None:
        """Reload a cached roster from storage; None if the account is not online."""
        if username not in self._rosters:
            return None
        roster = await self._load(username)
        if username in self._holders:
            self._rosters[username] = roster
        return roster

    async def _load(self, username: str) -> Roster:
        version, contacts = await self._contacts.roster(username)
        return Roster(version, {contact.username: contact for contact in contacts})
