"""XEP-0199 XMPP Ping: the server answers pings to itself, and to an account's bare JID
on the account's behalf (RFC 6121 §8.5.2.1.3: the server handles an IQ to a bare JID).

Its own pings to silent clients are the server's (``XMPPServer._ping_silent``), not
this module's.
"""

from __future__ import annotations

from collections.abc import Awaitable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0199",
    "XMPP Ping",
    "supported",
    "client-to-server, to an account on its behalf, and server-to-client after "
    "`limits.ping_after_seconds` of silence",
)


class Pong:
    """Answers pings to accounts: at once for oneself and contacts (the requester's cached
    roster tells). Anyone else gets what a stranger gets for any IQ, service-unavailable,
    asked before storage so that accounts cannot be told apart; with
    ``messages.from_strangers = true``, a result if the account exists."""

    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.strangers = api.settings.messages.from_strangers

    def to_account(self, iq: Element) -> Element | Awaitable[Element]:
        to = iq.attrs.get("to")
        if to is None:
            return make_reply(iq)
        requester, target = JID.parse(iq.attrs["from"]), JID.parse(to).local or ""
        if target == requester.local or self.is_contact(requester, target):
            return make_reply(iq)
        if not self.strangers:
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        return self.if_exists(iq, target)

    def is_contact(self, requester: JID, username: str) -> bool:
        roster = self.api.rosters.get(requester.local or "")
        return roster is not None and roster.is_contact(username)

    async def if_exists(self, iq: Element, username: str) -> Element:
        if not await self.api.services.contacts.account_exists(username):
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)  # RFC 6121 §8.5.1
        return make_reply(iq)


def setup(api: ModuleAPI) -> None:
    api.add_feature(ns.PING)
    pong = Pong(api)
    api.iq_handler("get", ns.PING, "ping", make_reply)
    api.iq_handler("get", ns.PING, "ping", pong.to_account, scope="account")
