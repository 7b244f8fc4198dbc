"""XEP-0030 Service Discovery: disco#info and disco#items on the server JID (identity
server/im, every registered feature, and the XEP-0157 contact addresses of
``[server_info]`` as a ``serverinfo`` form), and disco#info on an account's bare JID,
answered by the server with what modules register for accounts
(``api.add_account_identity``, ``api.add_account_feature``: PEP's ``pubsub/pep``).

The server's disco#info is hashed once every module is loaded (XEP-0115) and that
``ver`` announced in the stream features."""

from __future__ import annotations

from collections.abc import Awaitable, Iterable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns
from chinwag.xmpp.caps import verification_string
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import make_reply
from chinwag.xmpp.stream import CAPS_NODE

SPEC = Spec(
    "XEP-0030, XEP-0115, XEP-0157",
    "Service Discovery, the server's Entity Capabilities, Contact Addresses",
    "supported",
    "disco#info and disco#items on the server JID, disco#info on an account's bare JID; "
    "the server's caps in the stream features; `[server_info]` contact addresses",
)


def known_to(api: ModuleAPI, requester: JID, username: str) -> bool:
    """Whether ``requester`` is the account ``username`` itself or one of its contacts: a
    dictionary lookup in the requester's cached roster."""
    if requester.local == username and requester.domain == api.domain.domain:
        return True
    roster = api.rosters.get(requester.local or "")
    return roster is not None and roster.is_contact(username)


def check_reach(api: ModuleAPI, requester: JID, username: str) -> None:
    """Refuse a stranger's IQ to an account while strangers are kept apart, with the
    answer an account that does not exist gets (``<service-unavailable/>``), before
    any storage is read, so that not even timing tells accounts apart."""
    if not api.settings.messages.from_strangers and not known_to(api, requester, username):
        raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)


def server_info_form(contacts: dict[str, tuple[str, ...]]) -> Element:
    """XEP-0157: the ``serverinfo`` form with an address list of each kind given."""
    form = Element("x", ns.DATA_FORMS, {"type": "result"})
    form_type = form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"})
    form_type.add("value").append(ns.SERVER_INFO)
    for kind, addresses in contacts.items():
        field = form.add("field", attrs={"var": f"{kind}-addresses", "type": "list-multi"})
        for address in addresses:
            field.add("value").append(address)
    return form


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

    def no_node(iq: Element, served: str = "") -> str:
        """The node asked for, which must be ``served`` (by default none)."""
        query = iq.first_element()
        assert query is not None
        node = query.get("node") or ""
        if node != served:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        return node

    contacts = api.settings.server_info.contacts()

    def server_query() -> Element:
        query = info_query(api.identities(), api.features())
        if contacts:
            query.append(server_info_form(contacts))
        return query

    def info(iq: Element) -> Element:
        query = iq.first_element()
        assert query is not None
        answer = server_query()
        node = query.get("node")
        if node:  # XEP-0115 §6.2: the caps node of the server's current ver
            answer.attrs["node"] = no_node(iq, f"{CAPS_NODE}#{verification_string(answer)}")
        reply = make_reply(iq)
        reply.append(answer)
        return reply

    def account_info(iq: Element) -> Element | Awaitable[Element]:
        no_node(iq)
        requester = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        username = (JID.parse(to) if to is not None else requester).local or ""
        check_reach(api, requester, username)
        if known_to(api, requester, username):
            return account_answer(iq)
        return account_answer_if_any(iq, username)

    def account_answer(iq: Element) -> Element:
        reply = make_reply(iq)
        identities = {("account", "registered", ""), *api.account_identities()}
        reply.append(info_query(identities, api.account_features()))
        return reply

    async def account_answer_if_any(iq: Element, username: str) -> Element:
        """A stranger's query, where strangers may reach each other: answered for an
        account that exists only."""
        if await api.services.profiles.get(username) is None:
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        return account_answer(iq)

    def items(iq: Element) -> Element:
        no_node(iq)
        reply = make_reply(iq)
        reply.add("query", ns.DISCO_ITEMS)
        return reply

    api.announce_caps(lambda: verification_string(server_query()))
    api.iq_handler("get", ns.DISCO_INFO, "query", info)
    api.iq_handler("get", ns.DISCO_ITEMS, "query", items)
    api.iq_handler("get", ns.DISCO_INFO, "query", account_info, scope="account")
