"""The profiles domain: each account's public card (full name, nickname, email, photo).

Changed by operators (CLI, REST, portal) and, when vCard updates are allowed, by
XEP-0054 vCard sets; read by the vCard module and shown on contacts' rosters.
Every change is announced with ``profile.changed`` in the same transaction.
"""

from __future__ import annotations

import base64
import re

from chinwag.network.accounts import InvalidUsername, NoSuchAccount, normalize_username
from chinwag.network.events import EventLog
from chinwag.store.profiles import PROFILE_FIELDS, Profile, ProfileRepository, ProfileUpdate
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element

__all__ = [
    "MAX_PHOTO_BYTES",
    "MAX_TEXT_LENGTH",
    "InvalidProfile",
    "NoSuchAccount",
    "Profile",
    "ProfileService",
    "ProfileUpdate",
]

MAX_PHOTO_BYTES = 256 * 1024
MAX_TEXT_LENGTH = 1024
"""Characters in a text field, media type included."""


class InvalidProfile(ValueError):
    pass


# Characters outside XML 1.0's Char production: a vCard could not carry them.
_NOT_XML_CHAR = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class ProfileService:
    """Use cases over a ProfileRepository; usernames are normalised on the way in."""

    def __init__(self, repo: ProfileRepository, events: EventLog) -> None:
        self._repo = repo
        self._origin = events.origin

    async def get(self, username: str) -> Profile | None:
        """The profile; None when there is no such account (or the name is invalid).

        An account that never set anything has a profile of Nones.
        """
        try:
            return await self._repo.get(normalize_username(username))
        except InvalidUsername:
            return None

    async def replace(self, username: str, update: ProfileUpdate) -> Profile:
        """Replace every field, as a vCard set does; raises NoSuchAccount, InvalidProfile."""
        values = {name: getattr(update, name) for name in PROFILE_FIELDS}
        return await self._update(username, values)

    async def set_fields(self, username: str, **fields: object) -> Profile:
        """Change only the given fields (fn, nickname, email, photo_type, photo).

        An empty string clears a text field; raises NoSuchAccount, InvalidProfile.
        """
        unknown = sorted(set(fields) - set(PROFILE_FIELDS))
        if unknown:
            raise InvalidProfile(f"not profile fields: {', '.join(unknown)}")
        if "photo" in fields and not fields["photo"]:
            fields.setdefault("photo_type", None)  # no photo, no photo type
        return await self._update(username, fields)

    async def _update(self, username: str, fields: dict[str, object]) -> Profile:
        name = normalize_username(username)
        return await self._repo.update(name, _checked(fields), self._origin)


def _checked(fields: dict[str, object]) -> dict[str, str | bytes | None]:
    values: dict[str, str | bytes | None] = {}
    for name, value in fields.items():
        if name == "photo":
            values[name] = _checked_photo(value)
        elif value is None or isinstance(value, str):
            text = (value or "").strip()
            if len(text) > MAX_TEXT_LENGTH:
                raise InvalidProfile(f"{name} is longer than {MAX_TEXT_LENGTH} characters")
            bad = _NOT_XML_CHAR.search(text)
            if bad is not None:
                raise InvalidProfile(
                    f"{name} contains U+{ord(bad.group()):04X}, which XMPP cannot carry"
                )
            values[name] = text or None
        else:
            raise InvalidProfile(f"{name} must be text, not {type(value).__name__}")
    return values


def _checked_photo(photo: object) -> bytes | None:
    if photo is None or photo == b"":
        return None
    if not isinstance(photo, bytes | bytearray | memoryview):
        raise InvalidProfile(f"photo must be bytes, not {type(photo).__name__}")
    data = bytes(photo)
    if len(data) > MAX_PHOTO_BYTES:
        raise InvalidProfile(
            f"the photo is too large: {len(data):,} bytes, the limit is "
            f"{MAX_PHOTO_BYTES // 1024} KiB"
        )
    return data


def vcard_element(profile: Profile) -> Element:
    """The profile as a vcard-temp <vCard/> (XEP-0054): FN, NICKNAME, EMAIL, PHOTO."""
    card = Element("vCard", ns.VCARD)
    for tag, value in (("FN", profile.fn), ("NICKNAME", profile.nickname)):
        if value:
            card.add(tag).append(value)
    if profile.email:
        email = card.add("EMAIL")
        email.add("INTERNET")
        email.add("USERID").append(profile.email)
    if profile.photo:
        photo = card.add("PHOTO")
        photo.add("TYPE").append(profile.photo_type or "image/png")
        photo.add("BINVAL").append(base64.b64encode(profile.photo).decode())
    return card
