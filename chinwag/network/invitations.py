"""Invitations: links an operator hands out, with which people sign themselves up.

``chinwag invite create`` makes one; the web's sign-up page (``[auth] invitations``)
spends it on one new account. A token is 32 random bytes, URL-safe; only its SHA-256
digest is stored, so the database gives nobody a working link. An invitation
expires, and is good for one account: the account and the invitation's use are
written in one transaction, so two people racing with one link make one account.
"""

from __future__ import annotations

import asyncio
import enum
import hashlib
import secrets
from dataclasses import dataclass
from datetime import datetime, timedelta

from chinwag.network.accounts import (
    AccountExists,
    check_chosen_password,
    derive_credentials,
    normalize_username,
)
from chinwag.store.accounts import NewAccount
from chinwag.store.invitations import InvitationRecord, InvitationSpent, SqlInvitationRepository
from chinwag.store.models import MAX_INVITER_LENGTH, utc_now

__all__ = [
    "InvitationService",
    "InvitationState",
    "InvitationUnusable",
    "NewInvitation",
]

TOKEN_BYTES = 32
MAX_TOKEN_LENGTH = 64
"""Longer than any token made (43 characters): such a link names no invitation."""
MAX_LIFETIME = timedelta(days=366)


class InvitationState(enum.Enum):
    OPEN = "open"
    USED = "used"
    EXPIRED = "expired"
    UNKNOWN = "unknown"


class InvitationUnusable(Exception):
    def __init__(self, state: InvitationState, record: InvitationRecord | None) -> None:
        self.state = state
        self.record = record
        super().__init__(f"the invitation is {state.value}")


@dataclass(frozen=True)
class NewInvitation:
    token: str
    """Shown once, in the link; never stored."""
    record: InvitationRecord


class InvitationService:
    def __init__(self, repo: SqlInvitationRepository) -> None:
        self._repo = repo

    async def create(self, created_by: str, lifetime: timedelta) -> NewInvitation:
        """A new invitation, good for one account until ``lifetime`` from now."""
        if not timedelta(0) < lifetime <= MAX_LIFETIME:
            raise ValueError(
                f"an invitation lasts more than 0 and at most {MAX_LIFETIME.days} days"
            )
        token = secrets.token_urlsafe(TOKEN_BYTES)
        now = utc_now()
        record = await self._repo.add(
            _digest(token), created_by[:MAX_INVITER_LENGTH], now, now + lifetime
        )
        return NewInvitation(token, record)

    async def check(self, token: str) -> InvitationRecord:
        """The open invitation ``token`` names; raises InvitationUnusable saying why not."""
        record = await self._find(token)
        state = _state(record, utc_now())
        if state is not InvitationState.OPEN:
            raise InvitationUnusable(state, record)
        assert record is not None
        return record

    async def sign_up(self, token: str, name: str, password: str) -> str:
        """Create the account ``name`` with ``password`` on the invitation, and return its
        username. Raises InvalidUsername, InvalidPassword, AccountExists, or
        InvitationUnusable; nothing is changed then."""
        username = normalize_username(name)
        check_chosen_password(password)
        await self.check(token)
        if await self._repo.username_taken(username):  # before the costly derivation
            raise AccountExists([username])
        credentials = await asyncio.to_thread(derive_credentials, password)
        try:
            await self._repo.spend(_digest(token), NewAccount(username, credentials), utc_now())
        except InvitationSpent:  # used or expired while the credentials were derived
            record = await self._find(token)
            raise InvitationUnusable(_state(record, utc_now()), record) from None
        return username

    async def _find(self, token: str) -> InvitationRecord | None:
        if len(token) > MAX_TOKEN_LENGTH:
            return None
        return await self._repo.find(_digest(token))


def _digest(token: str) -> bytes:
    return hashlib.sha256(token.encode()).digest()


def _state(record: InvitationRecord | None, now: datetime) -> InvitationState:
    if record is None:
        return InvitationState.UNKNOWN
    if record.used_at is not None:
        return InvitationState.USED
    if record.expires_at <= now:
        return InvitationState.EXPIRED
    return InvitationState.OPEN
