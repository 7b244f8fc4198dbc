"""XEP-0199 XMPP Ping: the server answers pings to itself and on behalf of accounts."""

from __future__ import annotations

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.stanza import make_reply

SPEC = Spec("XEP-0199", "XMPP Ping", "supported", "client-to-server pings")


def setup(api: ModuleAPI) -> None:
    api.add_feature(ns.PING)

    def pong(iq: Element) -> Element:
        return make_reply(iq)

    api.iq_handler("get", ns.PING, "ping", pong)
