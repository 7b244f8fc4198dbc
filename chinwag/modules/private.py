"""XEP-0049 private XML storage (``jabber:iq:private``), which XEP-0048 bookmarks use.

Each account keeps one stored fragment per namespace (``store/pep.py``): a set
replaces the elements of each namespace it carries, a get returns those of the one
namespace it names, or the empty element when nothing is stored. Only the account's
own resources reach it; reserved namespaces are refused (§3).
"""

from __future__ import annotations

from collections.abc import Awaitable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.store.accounts import NoSuchAccount
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import make_reply
from chinwag.xmpp.xml import parse_stanza

SPEC = Spec(
    "XEP-0049, XEP-0048",
    "Private XML Storage (and Bookmarks kept there)",
    "supported",
    "one fragment per namespace, kept in SQL; not-acceptable for an empty query and for "
    "reserved namespaces (jabber:*, http://jabber.org/*, vcard-temp); forbidden for "
    "another user's storage; a fragment holds at most `[pep] max_payload_bytes`",
)

RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
RESERVED = frozenset({ns.VCARD})


def checked_namespace(element: Element) -> str:
    """§3: the namespace of a stored element, unless it is reserved."""
    namespace = element.ns
    if not namespace or namespace in RESERVED or namespace.startswith(RESERVED_PREFIXES):
        raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, f"namespace {namespace!r} is reserved")
    return namespace


class PrivateStorage:
    def __init__(self, api: ModuleAPI) -> None:
        self.store = api.services.pep
        self.max_bytes = api.settings.pep.max_payload_bytes

    def owner(self, iq: Element) -> tuple[str, list[Element]]:
        requester = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        if to is not None and JID.parse(to) != requester.bare:
            raise StanzaError(StanzaCondition.FORBIDDEN, "only your own private storage")
        query = iq.first_element()
        assert query is not None
        children = list(query.elements())
        if not children:
            raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, "name a namespace to store or get")
        return requester.local or "", children

    def on_get(self, iq: Element) -> Awaitable[Element]:
        username, children = self.owner(iq)
        if len(children) != 1:
            raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, "get one namespace at a time")
        return self.get(iq, username, children[0])

    async def get(self, iq: Element, username: str, asked: Element) -> Element:
        namespace = checked_namespace(asked)
        stored = await self.store.private(username, namespace)
        reply = make_reply(iq)
        query = reply.add("query", ns.PRIVATE)
        if stored is None:
            query.add(asked.tag, namespace)
        else:
            for element in parse_stanza(stored).elements():
                query.append(element)
        return reply

    def on_set(self, iq: Element) -> Awaitable[Element]:
        username, children = self.owner(iq)
        by_namespace: dict[str, Element] = {}
        for child in children:
            namespace = checked_namespace(child)
            by_namespace.setdefault(namespace, Element("query", ns.PRIVATE)).append(child)
        fragments = {namespace: query.serialize() for namespace, query in by_namespace.items()}
        if any(len(text.encode()) > self.max_bytes for text in fragments.values()):
            raise StanzaError(
                StanzaCondition.NOT_ACCEPTABLE, f"a fragment holds at most {self.max_bytes} bytes"
            )
        return self.set(iq, username, fragments)

    async def set(self, iq: Element, username: str, fragments: dict[str, str]) -> Element:
        try:
            for namespace, text in fragments.items():
                await self.store.set_private(username, namespace, text)
        except NoSuchAccount:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND) from None
        return make_reply(iq)


def setup(api: ModuleAPI) -> None:
    storage = PrivateStorage(api)
    api.add_feature(ns.PRIVATE)
    api.iq_handler("get", ns.PRIVATE, "query", storage.on_get, scope="account")
    api.iq_handler("set", ns.PRIVATE, "query", storage.on_set, scope="account")
