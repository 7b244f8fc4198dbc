"""XEP-0153 vCard-based avatars as XEP-0398 §4 asks of the server: the SHA-1 of the
account's photo in every available presence its clients send, and that presence sent
again when the photo changes, so that clients which read avatars from presence see a
new one, however it was set.

The photo is the profile's (``network/profiles.py``), which a published XEP-0084
avatar becomes (``modules/pep.py``), as do ``chinwag profile set --photo`` and a vCard
set. The hash of each account with a session on this node is kept in memory: read
when its first session binds (the session's stream waits at its first available
presence until it is in, so that presence goes out stamped, once) and again whenever
``profile.changed`` names it; when it differs from what a session's presence carries,
that presence is dispatched again, as if the client had sent it, and stamped on the
way.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging

from chinwag.network.events import PROFILE_CHANGED, NetworkEvent
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import SESSION_BOUND, SESSION_CLOSED
from chinwag.server.session import Session
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element

SPEC = Spec(
    "XEP-0153",
    "vCard-Based Avatars",
    "supported",
    "the server puts the photo's SHA-1 in every available presence, broadcast or directed "
    "(XEP-0398 §4), and sends the presence again when the photo changes; see "
    "[Avatars](#xep-0084-avatars-and-xep-0398-vcard-conversion)",
)


log = logging.getLogger(__name__)


def photo_hash(photo: bytes | None) -> str:
    """The XEP-0153 hash: the photo's SHA-1 in hex, or empty for no photo."""
    return hashlib.sha1(photo, usedforsecurity=False).hexdigest() if photo else ""


def carried_hash(presence: Element) -> str | None:
    """The hash a presence carries; None when it carries none (no ``<photo/>``)."""
    update = presence.find("x", ns.VCARD_UPDATE)
    photo = update.find("photo", ns.VCARD_UPDATE) if update is not None else None
    return photo.text.strip() if photo is not None else None


def stamp(presence: Element, digest: str) -> None:
    """Make ``presence`` carry ``digest``, but for a client's own empty ``<photo/>``,
    which says it is not ready to advertise an avatar and is kept (XEP-0398 §4)."""
    if carried_hash(presence) in ("", digest):
        return
    drop_hash(presence)
    presence.add("x", ns.VCARD_UPDATE).add("photo").append(digest)


def drop_hash(presence: Element) -> None:
    presence.children = [
        child
        for child in presence.children
        if not (isinstance(child, Element) and child.tag == "x" and child.ns == ns.VCARD_UPDATE)
    ]
    presence.wire = None


class Avatars:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.hashes: dict[str, str] = {}
        """The photo hash of each account with a session here, once read."""
        self.reading: dict[str, asyncio.Event] = {}
        """Accounts whose hash is being read for the first time, each set once read."""

    def on_bound(self, session: Session) -> None:
        user = session.username
        if user not in self.hashes and user not in self.reading:
            read = self.reading[user] = asyncio.Event()
            self.api.spawn(self.first_read(user, read))

    async def first_read(self, username: str, read: asyncio.Event) -> None:
        try:
            await self.refresh(username)
        except Exception:  # presence goes on unstamped
            log.exception("reading the photo of %s failed", username)
        finally:
            self.reading.pop(username, None)
            read.set()

    def on_closed(self, session: Session) -> None:
        if not self.api.sessions.of(session.username):
            self.hashes.pop(session.username, None)

    def on_profile_changed(self, event: NetworkEvent) -> None:
        if event.subject in self.hashes:
            self.api.spawn(self.refresh(event.subject))

    async def refresh(self, username: str) -> None:
        """Read the account's photo hash, and send again the presence of each of its
        available sessions that does not carry it."""
        profile = await self.api.services.profiles.get(username)
        sessions = self.api.sessions.of(username)
        if not sessions:
            return
        digest = self.hashes[username] = photo_hash(profile.photo if profile else None)
        for session in sessions:
            presence = session.presence
            if session.available and presence is not None and carried_hash(presence) != digest:
                again = presence.copy()
                drop_hash(again)  # a change is advertised, whatever the last presence said
                self.api.dispatch(again, None, session)

    def on_presence(self, routed: Routed) -> bool:
        """Available presence a client sends, broadcast or directed: stamp the hash,
        once it is read (the client's stream waits for it)."""
        session, stanza = routed.origin, routed.stanza
        if session is None or "type" in stanza.attrs:
            return False
        read = self.reading.get(session.username)
        if read is not None:
            session.connection.hold(self.stamp_later(routed, read))
            return True
        digest = self.hashes.get(session.username)
        if digest is not None:
            stamp(stanza, digest)
        return False

    async def stamp_later(self, routed: Routed, read: asyncio.Event) -> None:
        await read.wait()
        broadcast = "to" not in routed.stanza.attrs
        self.api.dispatch(routed.stanza, None if broadcast else routed.to, routed.origin)


def setup(api: ModuleAPI) -> None:
    avatars = Avatars(api)
    api.hook(SESSION_BOUND, avatars.on_bound)
    api.hook(SESSION_CLOSED, avatars.on_closed)
    api.hook(f"network/{PROFILE_CHANGED}", avatars.on_profile_changed)
    for scope in ("broadcast", "bare", "full"):
        api.hook(f"presence/{scope}", avatars.on_presence, 30)
