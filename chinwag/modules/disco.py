"""XEP-0030 Service Discovery: disco#info and disco#items on the server JID (identity
server/im and every registered feature), and disco#info on an account's bare JID,
answered by the server with what modules register for accounts
(``api.add_account_identity``, ``api.add_account_feature``: PEP's ``pubsub/pep``)."""

from __future__ import annotations

from collections.abc import Iterable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0030",
    "Service Discovery",
    "supported",
    "disco#info and disco#items on the server JID; disco#info on an account's bare JID",
)


def info_query(identities: Iterable[tuple[str, str, str]], features: Iterable[str]) -> Element:
    """``<query xmlns='disco#info'>`` listing ``identities`` and ``features``, sorted."""
    result = Element("query", ns.DISCO_INFO)
    for category, kind, name in sorted(identities):
        attrs = {"category": category, "type": kind}
        if name:
            attrs["name"] = name
        result.add("identity", attrs=attrs)
    for var in sorted(features):
        result.add("feature", attrs={"var": var})
    return result


def setup(api: ModuleAPI) -> None:
    api.add_identity("server", "im", "chinwag")
    api.add_feature(ns.DISCO_INFO)
    api.add_feature(ns.DISCO_ITEMS)
    api.add_account_feature(ns.DISCO_INFO)

    def no_node(iq: Element) -> None:
        query = iq.first_element()
        assert query is not None
        if query.get("node"):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")

    def info(iq: Element) -> Element:
        no_node(iq)
        reply = make_reply(iq)
        reply.append(info_query(api.identities(), api.features()))
        return reply

    def account_info(iq: Element) -> Element:
        no_node(iq)
        reply = make_reply(iq)
        identities = {("account", "registered", ""), *api.account_identities()}
        reply.append(info_query(identities, api.account_features()))
        return reply

    def items(iq: Element) -> Element:
        no_node(iq)
        reply = make_reply(iq)
        reply.add("query", ns.DISCO_ITEMS)
        return reply

    api.iq_handler("get", ns.DISCO_INFO, "query", info)
    api.iq_handler("get", ns.DISCO_ITEMS, "query", items)
    api.iq_handler("get", ns.DISCO_INFO, "query", account_info, scope="account")
