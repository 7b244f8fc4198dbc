"""XEP-0049 private XML storage (``jabber:iq:private``), which XEP-0048 bookmarks use.

Each account keeps one stored fragment per namespace (``store/pep.py``): a set
replaces the elements of each namespace it carries, a get returns those of the one
namespace it names, or the empty element when nothing is stored. Only the account's
own resources reach it; reserved namespaces are refused (§3). XEP-0048 bookmarks
stored here become the items of the XEP-0402 node (``#compat``), and the change is
announced (``BOOKMARKS_CONVERTED``) for the PEP module to notify.
"""

from __future__ import annotations

from collections.abc import Awaitable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.store.accounts import NoSuchAccount
from chinwag.store.models import MAX_PEP_NODE_BYTES
from chinwag.store.pep import NodeConfig, PepRepository, QuotaExceeded, Replaced, StoredItem
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

LEGACY_BOOKMARKS = "storage:bookmarks"
BOOKMARKS = "urn:xmpp:bookmarks:1"
"""XEP-0402 §5.3: the server keeps XEP-0048 bookmarks in private storage in step with
this PEP node, where the conferences are (``#compat``)."""
BOOKMARKS_CONVERTED = "bookmarks/converted"
"""Notified with (username, :class:`Replaced`) when XEP-0048 bookmarks stored in private
storage have replaced the items of the XEP-0402 node."""
RESERVED_PREFIXES = ("jabber:", "http://jabber.org/")
RESERVED = frozenset({ns.VCARD})


def checked_namespace(element: Element) -> str:
    """§3: the namespace of a stored element, unless it is reserved."""
    namespace = element.ns
    if not namespace or namespace in RESERVED or namespace.startswith(RESERVED_PREFIXES):
        raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, f"namespace {namespace!r} is reserved")
    if len(namespace) > MAX_PEP_NODE_BYTES:
        raise StanzaError(
            StanzaCondition.NOT_ACCEPTABLE,
            f"a namespace is at most {MAX_PEP_NODE_BYTES} characters here",
        )
    return namespace


class PrivateStorage:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.store = api.services.pep
        self.max_bytes = api.settings.pep.max_payload_bytes
        self.max_items = api.settings.pep.max_items

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
        elements = list(parse_stanza(stored).elements()) if stored is not None else []
        if namespace == LEGACY_BOOKMARKS:
            elements = await legacy_bookmarks(self.store, username, elements)
        if not elements:
            query.add(asked.tag, namespace)
        for element in elements:
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
            if LEGACY_BOOKMARKS in fragments:
                replaced = await store_legacy_bookmarks(
                    self.store, username, parse_stanza(fragments[LEGACY_BOOKMARKS]), self.max_items
                )
                self.api.notify(BOOKMARKS_CONVERTED, username, replaced)
        except NoSuchAccount:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND) from None
        except QuotaExceeded as error:
            raise over_quota(error) from None
        return make_reply(iq)


def over_quota(error: QuotaExceeded) -> StanzaError:
    """An account's storage is full (``[pep] max_nodes``, ``max_account_bytes``)."""
    return StanzaError(StanzaCondition.POLICY_VIOLATION, str(error))


async def legacy_bookmarks(
    store: PepRepository, username: str, stored: list[Element]
) -> list[Element]:
    """XEP-0402 §5.3: the XEP-0048 storage with the conferences of the XEP-0402 node,
    when there is one, and the URLs of the ``stored`` XEP-0048 storage (the elements
    last stored in private storage or in the ``storage:bookmarks`` PEP node)."""
    if await store.node(username, BOOKMARKS) is None:
        return stored
    storage = Element("storage", LEGACY_BOOKMARKS)
    for item in await store.items(username, BOOKMARKS, None, None):
        storage.append(legacy_conference(item.item_id, parse_stanza(item.payload)))
    for element in stored:
        for url in element.find_all("url", LEGACY_BOOKMARKS):
            storage.append(url)
    return [storage]


async def store_legacy_bookmarks(
    store: PepRepository, username: str, storage: Element, max_items: int
) -> Replaced:
    """XEP-0402 §5.3: XEP-0048 bookmarks stored anywhere become all the items of the
    XEP-0402 node (made ``whitelist`` if absent); its items before and after. Raises
    NoSuchAccount."""
    return await store.replace_items(
        username, BOOKMARKS, NodeConfig("whitelist", max_items), bookmark_items(storage)
    )


def bookmark_items(query: Element) -> list[StoredItem]:
    """XEP-0402 §5.3: the conferences of the XEP-0048 storage in ``query`` (or of
    ``query`` itself, a ``<storage/>``) as items of the PEP node, one per room (the
    last conference of a room named twice)."""
    items: dict[str, StoredItem] = {}
    storages = [query] if query.tag == "storage" else query.find_all("storage", LEGACY_BOOKMARKS)
    for storage in storages:
        for conference in storage.find_all("conference", LEGACY_BOOKMARKS):
            room = conference.get("jid")
            if not room:
                continue
            attrs = {"autojoin": "true" if conference.get("autojoin") in ("1", "true") else "false"}
            if conference.get("name"):
                attrs["name"] = conference.get("name") or ""
            converted = Element("conference", BOOKMARKS, attrs)
            _copy_nick_and_password(conference, converted)
            items[room] = StoredItem(room, converted.serialize())
    return list(items.values())


def legacy_conference(room: str, conference: Element) -> Element:
    """An item of the XEP-0402 node as an XEP-0048 conference."""
    attrs = {"jid": room, "autojoin": conference.get("autojoin") or "false"}
    if conference.get("name"):
        attrs["name"] = conference.get("name") or ""
    legacy = Element("conference", LEGACY_BOOKMARKS, attrs)
    _copy_nick_and_password(conference, legacy)
    return legacy


def _copy_nick_and_password(source: Element, target: Element) -> None:
    """``<nick/>`` and ``<password/>`` of one format's conference into the other's."""
    for tag in ("nick", "password"):
        child = source.find(tag, source.ns)
        if child is not None:
            target.add(tag).append(child.text)


def setup(api: ModuleAPI) -> None:
    storage = PrivateStorage(api)
    api.add_feature(ns.PRIVATE)
    api.add_account_feature(f"{BOOKMARKS}#compat")
    api.iq_handler("get", ns.PRIVATE, "query", storage.on_get, scope="account")
    api.iq_handler("set", ns.PRIVATE, "query", storage.on_set, scope="account")
