"""XEP-0054 vcard-temp, built from the network's profiles: fetch by default, update only
with ``vcard.updates = true``; contacts' cards only unless ``vcard.public = true``.

A card the requester may not see gets the answer of an account that does not exist
(``<service-unavailable/>``), so a vCard fetch tells a stranger nothing of who has an
account."""

from __future__ import annotations

import base64
import binascii
from collections.abc import Awaitable

from chinwag.network.profiles import InvalidProfile, ProfileUpdate, vcard_element
from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0054",
    "vcard-temp",
    "fetch only by default",
    "FN, NICKNAME, EMAIL and PHOTO (TYPE, BINVAL) from the user's profile; an empty <vCard/> "
    "when there is no profile data; service-unavailable for an unknown user and, unless "
    "`vcard.public = true`, for a non-contact alike; a set is not-allowed unless "
    "`vcard.updates = true`, which updates the profile",
)


def profile_update(card: Element) -> ProfileUpdate:
    """The profile fields a vCard set carries; absent ones are cleared, as a vCard set replaces."""

    def text(tag: str) -> str | None:
        child = card.find(tag, ns.VCARD)
        return child.text.strip() or None if child is not None else None

    email = card.find("EMAIL", ns.VCARD)
    userid = email.find("USERID", ns.VCARD) if email is not None else None
    photo_type, photo = None, None
    photo_element = card.find("PHOTO", ns.VCARD)
    if photo_element is not None:
        binval = photo_element.find("BINVAL", ns.VCARD)
        type_element = photo_element.find("TYPE", ns.VCARD)
        if binval is not None and binval.text.strip():
            try:
                photo = base64.b64decode("".join(binval.text.split()), validate=True)
            except binascii.Error:
                raise StanzaError(
                    StanzaCondition.BAD_REQUEST, "PHOTO BINVAL is not base64"
                ) from None
            photo_type = type_element.text.strip() if type_element is not None else "image/png"
    return ProfileUpdate(
        fn=text("FN"),
        nickname=text("NICKNAME"),
        email=userid.text.strip() or None if userid is not None else None,
        photo_type=photo_type,
        photo=photo,
    )


class VCards:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.profiles = api.services.profiles
        self.public = api.settings.vcard.public
        self.updates = api.settings.vcard.updates

    def on_get(self, iq: Element) -> Awaitable[Element]:
        requester = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        target = JID.parse(to).bare if to is not None else requester.bare
        return self.fetch(iq, requester, target)

    async def fetch(self, iq: Element, requester: JID, target: JID) -> Element:
        username = target.local or ""
        # Asked before storage, so a stranger cannot tell accounts apart, even by timing.
        if not (self.public or target == requester.bare or self.is_contact(requester, username)):
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        profile = await self.profiles.get(username)
        if profile is None:
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        reply = make_reply(iq)
        reply.append(vcard_element(profile))
        return reply

    def is_contact(self, requester: JID, username: str) -> bool:
        roster = self.api.rosters.get(requester.local or "")
        return roster is not None and roster.is_contact(username)

    def on_set(self, iq: Element) -> Awaitable[Element]:
        requester = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        if to is not None and JID.parse(to) != requester.bare:
            raise StanzaError(StanzaCondition.FORBIDDEN, "only your own card")
        if not self.updates:
            raise StanzaError(
                StanzaCondition.NOT_ALLOWED, "profiles are changed through the network"
            )
        card = iq.first_element()
        assert card is not None
        return self.update(iq, requester.local or "", profile_update(card))

    async def update(self, iq: Element, username: str, update: ProfileUpdate) -> Element:
        try:
            await self.profiles.replace(username, update)
        except InvalidProfile as error:  # say, a field too long for a profile
            raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, str(error)) from None
        return make_reply(iq)


def setup(api: ModuleAPI) -> None:
    vcards = VCards(api)
    api.add_feature(ns.VCARD)
    api.iq_handler("get", ns.VCARD, "vCard", vcards.on_get, scope="account")
    api.iq_handler("set", ns.VCARD, "vCard", vcards.on_set, scope="account")
