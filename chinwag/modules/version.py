"""XEP-0092 Software Version; hidden with ``server_info.show_version = false``."""

from __future__ import annotations

import platform

from chinwag import __version__
from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0092",
    "Software Version",
    "supported",
    "`server_info.show_version = false` hides it (service-unavailable); `show_os` adds the OS",
)


def setup(api: ModuleAPI) -> None:
    info = api.settings.server_info
    if not info.show_version:
        return
    api.add_feature(ns.VERSION)

    def version(iq: Element) -> Element:
        reply = make_reply(iq)
        query = reply.add("query", ns.VERSION)
        query.add("name").children.append("chinwag")
        query.add("version").children.append(__version__)
        if info.show_os:
            query.add("os").children.append(platform.system())
        return reply

    api.iq_handler("get", ns.VERSION, "query", version)
