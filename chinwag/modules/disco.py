"""XEP-0030 Service Discovery on the server JID (identity server/im and every registered
feature) and on an account's bare JID (identity account/registered and the features
modules register for accounts, such as the archive's), which the server answers on the
account's behalf: to the account itself, and to others who may reach it."""

from __future__ import annotations

from collections.abc import Awaitable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0030",
    "Service Discovery",
    "supported",
    "disco#info and disco#items on the server JID; disco#info on an account's bare JID",
)


def setup(api: ModuleAPI) -> None:
    api.add_identity("server", "im", "chinwag")
    api.add_feature(ns.DISCO_INFO)
    api.add_feature(ns.DISCO_ITEMS)

    def info(iq: Element) -> Element:
        query = iq.first_element()
        assert query is not None
        if query.get("node"):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        reply = make_reply(iq)
        result = reply.add("query", ns.DISCO_INFO)
        for category, kind, name in sorted(api.identities()):
            attrs = {"category": category, "type": kind}
            if name:
                attrs["name"] = name
            result.add("identity", attrs=attrs)
        for var in sorted(api.features()):
            result.add("feature", attrs={"var": var})
        return reply

    def items(iq: Element) -> Element:
        query = iq.first_element()
        assert query is not None
        if query.get("node"):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        reply = make_reply(iq)
        reply.add("query", ns.DISCO_ITEMS)
        return reply

    def account_reply(iq: Element) -> Element:
        reply = make_reply(iq)
        result = reply.add("query", ns.DISCO_INFO)
        result.add("identity", attrs={"category": "account", "type": "registered"})
        for var in sorted(api.account_features()):
            result.add("feature", attrs={"var": var})
        return reply

    async def account_info_if_exists(iq: Element, username: str) -> Element:
        if not await api.services.contacts.account_exists(username):
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        return account_reply(iq)

    def account_info(iq: Element) -> Element | Awaitable[Element]:
        query = iq.first_element()
        assert query is not None
        if query.get("node"):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        sender = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        account = JID.parse(to) if to is not None else sender.bare
        if account.local == sender.local:
            return account_reply(iq)
        roster = api.rosters.get(sender.local or "")
        contact = roster is not None and roster.is_contact(account.local or "")
        if not (contact or api.settings.messages.from_strangers):
            # As for an account that does not exist (RFC 6121 §8.5.1): strangers learn nothing.
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        return account_info_if_exists(iq, account.local or "")

    api.iq_handler("get", ns.DISCO_INFO, "query", info)
    api.iq_handler("get", ns.DISCO_INFO, "query", account_info, scope="account")
    api.iq_handler("get", ns.DISCO_ITEMS, "query", items)
