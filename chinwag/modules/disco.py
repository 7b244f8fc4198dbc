"""XEP-0030 Service Discovery on the server JID: identity server/im and every registered feature."""

from __future__ import annotations

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0030", "Service Discovery", "supported", "disco#info and disco#items on the server JID"
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

    api.iq_handler("get", ns.DISCO_INFO, "query", info)
    api.iq_handler("get", ns.DISCO_ITEMS, "query", items)
