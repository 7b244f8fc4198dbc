"""XEP-0163 Personal Eventing Protocol on the XEP-0060 subset it needs, with XEP-0115
interest, XEP-0084 avatars bridged to the vCard photo (XEP-0398), and what XEP-0223
and XEP-0402 ask of it.

Each account's nodes live in storage (``store/pep.py``): publish (auto-create, with
publish-options checked as preconditions), retract, items (all, by id, newest n),
create, configure, delete, purge, affiliations and subscriptions. Who may read a node
is its access model: ``presence`` (the default: the owner and contacts subscribed to
the owner's presence), ``open``, ``roster`` (contacts in the owner's roster groups the
node names) or ``whitelist`` (the owner alone), and its affiliations: members read it
whatever the model, outcasts never.

Who hears of an item is who wants it: a resource whose XEP-0115 capabilities list
``NODE+notify`` and that is the owner's, a member's or a subscribed contact's (for
``presence``, ``roster`` and ``open`` nodes), never an outcast's; and whoever
subscribed to the node explicitly (XEP-0060 §6.1) and may still read it: a full JID
once, a bare JID at each of its resources that want the node, or at each of its
available resources when none does (XEP-0163 §4.3); no resource twice. A subscription
ends when its JID can no longer read the node (a new configuration or affiliation, a
roster change), as XEP-0163 §7.3 asks, and with the subscriber's account.
Capabilities are read from a
resource's broadcast presence; an unknown ``ver`` is asked of that client once
(disco#info), its hash checked, and the answer cached by ``ver`` for every later
presence of any client of this process (a ``ver`` that does not match its answer, as
asking for nothing). The nodes a resource wants become part of its routing record
(``SessionRecord.notify``), so that in a cluster the node where an item is published
knows who wants it wherever they are connected. Nothing here runs on the message
path: a publish walks the owner's online contacts, and a presence that brings new
interest (the first available one, or new caps) reads the last items of the contacts
it is subscribed to.

The XEP-0048 bookmarks of the ``storage:bookmarks`` node stand for the XEP-0402 node
while there is one (``#compat-pep``): a publish there replaces the XEP-0402 items, a
read is made from them, and a change to them is notified as XEP-0048 storage. A
replacement of the XEP-0402 items, by a publish there or by XEP-0048 bookmarks stored
in private storage (``#compat``), is notified on the XEP-0402 node as the publication
of each bookmark added or changed and the retraction of each one removed.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import logging
from collections.abc import Awaitable, Iterable

from chinwag.modules.disco import check_reach
from chinwag.modules.private import (
    BOOKMARKS,
    BOOKMARKS_CONVERTED,
    LEGACY_BOOKMARKS,
    legacy_bookmarks,
    over_quota,
    store_legacy_bookmarks,
)
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import DELIVER_SCREEN
from chinwag.server.rosters import Roster
from chinwag.server.routing import SessionRecord
from chinwag.server.session import Session
from chinwag.store.accounts import NoSuchAccount
from chinwag.store.models import MAX_PEP_NODE_BYTES as MAX_PEP_NAME
from chinwag.store.pep import (
    ACCESS_MODELS,
    MAX_AFFILIATIONS,
    MAX_ROSTER_GROUPS,
    MAX_ROSTER_GROUPS_BYTES,
    MAX_SUBSCRIPTIONS,
    NodeConfig,
    QuotaExceeded,
    Replaced,
    StoredItem,
    TooManySubscriptions,
    fitting_roster_groups,
)
from chinwag.xmpp import ns
from chinwag.xmpp.caps import verification_string
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.stanza import make_reply
from chinwag.xmpp.xml import parse_stanza

SPEC = Spec(
    "XEP-0163, XEP-0060, XEP-0084, XEP-0398, XEP-0223, XEP-0402",
    "Personal Eventing Protocol, on a Publish-Subscribe subset",
    "supported",
    "publish (auto-create, publish-options as preconditions), retract with notify, items "
    "(all, by id, max_items), create, configure, default, delete, purge, affiliations "
    "(member, outcast), subscribe and unsubscribe (bare or full JID), subscriptions "
    "(own, and the owner's view and changes); access models presence, open, roster, "
    "whitelist; +notify from XEP-0115 caps; last item on available presence, on new "
    "+notify and on subscription; no subscription options; items kept in SQL, "
    "`[pep] max_items` per node and `max_payload_bytes` per item",
)

log = logging.getLogger(__name__)

ROSTER_GROUPS = "pubsub#roster_groups_allowed"
NOTIFY_SUFFIX = "+notify"
CAPS_QUERY_SECONDS = 10.0
MAX_CACHED_VERS = 10_000
"""Distinct capabilities remembered at once; a full cache starts over."""
NODE_FEATURES = (
    "access-open",
    "access-presence",
    "access-roster",
    "access-whitelist",
    "auto-create",
    "auto-subscribe",
    "config-node",
    "create-and-configure",
    "create-nodes",
    "delete-nodes",
    "filtered-notifications",
    "item-ids",
    "last-published",
    "manage-subscriptions",
    "member-affiliation",
    "modify-affiliations",
    "multi-items",
    "outcast-affiliation",
    "persistent-items",
    "publish",
    "publish-options",
    "purge-nodes",
    "retract-items",
    "retrieve-affiliations",
    "retrieve-default",
    "retrieve-items",
    "retrieve-subscriptions",
    "subscribe",
)
PEP_FEATURES = (ns.PUBSUB, *(f"{ns.PUBSUB}#{name}" for name in NODE_FEATURES))
UNSUPPORTED = {
    (ns.PUBSUB, "options"): "subscription-options",
    (ns.PUBSUB, "default"): "retrieve-default-sub",
}
"""Requests of XEP-0060 that PEP answers with ``<feature-not-implemented/>`` and the
feature they would need: a subscription has no options."""
SUBSCRIBED = "subscribed"
AFFILIATIONS = ("member", "outcast", "none")
"""What an owner may make a JID (``none`` removes it); the account is the only owner."""
LEGACY_ITEM = "current"
"""The id of the one item of XEP-0048 bookmarks in PEP (XEP-0223 §3)."""
OWNER_ONLY = NodeConfig("whitelist", 1)
"""How XEP-0048 bookmarks in PEP are read and heard of: the owner's conferences."""


def pubsub_error(condition: StanzaCondition, specific: str, text: str = "") -> StanzaError:
    return StanzaError(condition, text, application=Element(specific, ns.PUBSUB_ERRORS))


def unsupported(feature: str) -> StanzaError:
    """XEP-0060's answer to a request the service does not implement."""
    application = Element("unsupported", ns.PUBSUB_ERRORS, {"feature": feature})
    return StanzaError(StanzaCondition.FEATURE_NOT_IMPLEMENTED, application=application)


def request_of(iq: Element) -> Element:
    """The request a ``<pubsub/>`` carries (its first child), refused when unsupported."""
    pubsub = iq.first_element()
    request = pubsub.first_element() if pubsub is not None else None
    if request is None:
        raise StanzaError(StanzaCondition.BAD_REQUEST, "an empty pubsub request")
    feature = UNSUPPORTED.get((request.ns, request.tag))
    if feature is not None:
        raise unsupported(feature)
    return request


Form = dict[str, tuple[str, ...]]
"""A submitted data form's values by field name."""


def form_values(form: Element | None) -> Form:
    if form is None:
        return {}
    return {
        field.get("var") or "": tuple(
            value.text.strip() for value in field.find_all("value", ns.DATA_FORMS)
        )
        for field in form.find_all("field", ns.DATA_FORMS)
    }


def single(options: Form, var: str) -> str | None:
    """A single-valued field's value: its first, or "" when it has none."""
    values = options.get(var)
    if values is None:
        return None
    return values[0] if values else ""


class Pep:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.store = api.services.pep
        self.settings = api.settings.pep
        self.domain = api.domain.domain
        self.strangers_apart = not api.settings.messages.from_strangers
        self.screen = api.channel(DELIVER_SCREEN)
        """Block lists (XEP-0191), while anyone online has one: notifications pass them."""
        self.caps: dict[str, frozenset[str]] = {}
        """Nodes a ``ver`` asks notifications of, by ``ver``: checked answers only."""
        self.asking: dict[str, asyncio.Future[Element]] = {}
        """Our disco#info queries to clients that wait for an answer, by IQ id."""
        self.learning: dict[str, asyncio.Event] = {}
        """The ``ver`` values being asked of a client right now, each set once learnt."""

    # --- interest (XEP-0115) -----------------------------------------------------------------

    def on_presence(self, routed: Routed) -> bool:
        """``presence/broadcast``, before the presence module: take the nodes the client
        wants notifications of from its caps (learning an unknown ``ver`` first), and
        send the last items of the nodes it newly wants (XEP-0163 §4.3.1, §6.2): all it
        wants at its first available presence, and those a later presence with other
        caps adds ``+notify`` for."""
        session, stanza = routed.origin, routed.stanza
        if session is None or "type" in stanza.attrs:
            return False
        c = stanza.find("c", ns.CAPS)
        ver = c.get("ver") if c is not None else None
        before = session.notify if session.available else frozenset()
        known = self.caps.get(ver) if ver else frozenset()
        if known is not None:
            self.api.sessions.set_notify(session, known)
            if known - before:
                self.api.spawn(self.send_last_items(session, before))
            return False
        assert c is not None and ver is not None
        learnt = self.learning.get(ver)
        if learnt is None:
            learnt = self.learning[ver] = asyncio.Event()
            self.api.spawn(self.learn(session, c, ver, learnt))
        self.api.spawn(self.take_learnt(session, ver, learnt, before))
        return False

    async def take_learnt(
        self, session: Session, ver: str, learnt: asyncio.Event, before: frozenset[str]
    ) -> None:
        """Once ``ver`` is learnt: the nodes it asks for, if the session still shows it,
        and the last items of those it did not want ``before``."""
        await learnt.wait()
        c = session.presence.find("c", ns.CAPS) if session.presence is not None else None
        if c is not None and c.get("ver") == ver:
            self.api.sessions.set_notify(session, self.caps.get(ver, frozenset()))
        await self.send_last_items(session, before)

    async def learn(self, session: Session, c: Element, ver: str, learnt: asyncio.Event) -> None:
        """Ask the client what ``ver`` stands for; a SHA-1 ``ver`` that does not match
        the answer is remembered as asking for nothing."""
        try:
            query = await self.ask_info(session.jid, f"{c.get('node', '')}#{ver}")
            if query is not None:
                checked = c.get("hash") != "sha-1" or verification_string(query) == ver
                if len(self.caps) >= MAX_CACHED_VERS:
                    self.caps.clear()
                self.caps[ver] = notify_nodes(query) if checked else frozenset()
        finally:
            self.learning.pop(ver, None)
            learnt.set()

    async def ask_info(self, jid: JID, node: str) -> Element | None:
        iq_id = f"caps-{random_hex(6)}"
        iq = Element("iq", attrs={"type": "get", "id": iq_id, "from": self.domain, "to": str(jid)})
        iq.add("query", ns.DISCO_INFO, {"node": node})
        answer = self.asking[iq_id] = asyncio.get_running_loop().create_future()
        try:
            self.api.router.route(jid, iq)
            reply = await asyncio.wait_for(answer, CAPS_QUERY_SECONDS)
        except TimeoutError:
            return None
        finally:
            self.asking.pop(iq_id, None)
        if reply.attrs.get("type") != "result":
            return None
        return reply.find("query", ns.DISCO_INFO)

    def on_host_iq(self, routed: Routed) -> bool:
        """``iq/host``: take the answers to our caps queries."""
        stanza = routed.stanza
        if stanza.attrs.get("type") not in ("result", "error"):
            return False
        answer = self.asking.get(stanza.attrs.get("id", ""))
        if answer is None or answer.done():
            return False
        answer.set_result(stanza)
        return True

    # --- who may read, who hears -------------------------------------------------------------

    async def may_read(
        self,
        requester: JID,
        owner: str,
        config: NodeConfig,
        affiliation: str | None = None,
        owner_roster: Roster | None = None,
    ) -> bool:
        """The owner, members and, unless they are outcasts, those the access model lets
        in. ``presence`` is read from the requester's roster (cached: it is online) unless
        the owner's is given; ``roster`` from the owner's, cached or stored."""
        if requester.local == owner and requester.domain == self.domain:
            return True
        if affiliation == "outcast":
            return False
        if affiliation == "member" or config.access_model == "open":
            return True
        if requester.domain != self.domain or not requester.local:
            return False
        if config.access_model == "presence":
            if owner_roster is not None:
                item = owner_roster.items.get(requester.local)
                return item is not None and item.subscription in ("from", "both")
            roster = self.api.rosters.get(requester.local)
            item = roster.items.get(owner) if roster is not None else None
            return item is not None and item.subscription in ("to", "both")
        if config.access_model == "roster":
            if owner_roster is None:
                owner_roster = self.api.rosters.get(owner)
            if owner_roster is not None:
                item = owner_roster.items.get(requester.local)
            else:
                item = await self.api.services.contacts.item(owner, requester.local)
            return (
                item is not None
                and item.listed
                and not set(item.groups).isdisjoint(config.roster_groups)
            )
        return False

    async def check_read(
        self, requester: JID, owner: str, config: NodeConfig, affiliation: str | None
    ) -> None:
        if await self.may_read(requester, owner, config, affiliation):
            return
        if affiliation == "outcast":
            raise StanzaError(StanzaCondition.FORBIDDEN, "an outcast of this node")
        if config.access_model == "presence":
            raise pubsub_error(StanzaCondition.NOT_AUTHORIZED, "presence-subscription-required")
        if config.access_model == "roster":
            raise pubsub_error(StanzaCondition.NOT_AUTHORIZED, "not-in-roster-group")
        raise pubsub_error(StanzaCondition.NOT_ALLOWED, "closed-node")

    async def affiliations_of(
        self, requester: JID, owners: list[str]
    ) -> dict[tuple[str, str], str]:
        """The requester's affiliations with the nodes of ``owners`` (none with its own)."""
        others = [owner for owner in owners if JID(owner, self.domain) != requester.bare]
        return await self.store.affiliations_of(str(requester.bare), others)

    async def roster_of(self, owner: str) -> Roster:
        """The owner's roster: cached while the account is online, else read."""
        roster = self.api.rosters.get(owner)
        if roster is not None:
            return roster
        try:
            version, contacts = await self.api.services.contacts.roster(owner)
        except NoSuchAccount:
            return Roster(0)
        return Roster(version, {contact.username: contact for contact in contacts})

    async def audience(
        self, owner: str, node: str, config: NodeConfig, affiliations: dict[str, str]
    ) -> list[SessionRecord]:
        """The available resources that want ``node`` and may read it: the owner's,
        contacts' (unless whitelisted; for ``roster``, those in its groups) and members'
        (contacts only while strangers are kept apart), outcasts' never."""
        router = self.api.router
        users = [owner]
        if config.access_model != "whitelist":
            roster = self.api.rosters.get(owner)
            if roster is not None:
                users.extend(roster.subscribed_from())
        members = [JID.parse(jid) for jid, granted in affiliations.items() if granted == "member"]
        owner_roster = None
        if config.access_model == "roster" or (members and self.strangers_apart):
            owner_roster = await self.roster_of(owner)
        users.extend(
            member.local
            for member in members
            if member.local and self.reachable(owner, member, owner_roster)
        )
        found = []
        for user in dict.fromkeys(users):
            user_jid = self.api.jid(user)
            affiliation = affiliations.get(str(user_jid))
            if affiliation == "outcast":
                continue
            wanting = [
                record
                for record in router.resources(user_jid)
                if record.available and node in record.notify
            ]
            if wanting and (
                config.access_model != "roster"
                or await self.may_read(user_jid, owner, config, affiliation, owner_roster)
            ):
                found.extend(wanting)
        return found

    async def subscribers(
        self,
        owner: str,
        node: str,
        config: NodeConfig,
        affiliations: dict[str, str],
        subscriptions: list[str],
    ) -> list[SessionRecord | JID]:
        """Where the explicit subscribers that may still read ``node`` hear of it
        (``targets_of`` each)."""
        if not subscriptions:
            return []
        owner_roster = await self.roster_of(owner)
        targets: list[SessionRecord | JID] = []
        for text in subscriptions:
            jid = JID.parse(text)
            affiliation = affiliations.get(str(jid.bare))
            if self.reachable(owner, jid, owner_roster) and await self.may_read(
                jid, owner, config, affiliation, owner_roster
            ):
                targets.extend(self.targets_of(jid, node))
        return targets

    def reachable(self, owner: str, jid: JID, owner_roster: Roster | None) -> bool:
        """Whether ``owner``'s notifications may reach ``jid``: anyone of this server's
        while strangers may reach each other, else the owner and its contacts
        (``owner_roster`` is given then)."""
        if jid.domain != self.domain:
            return False
        if not self.strangers_apart or jid.local == owner:
            return True
        return owner_roster is not None and owner_roster.is_contact(jid.local or "")

    def targets_of(self, subscriber: JID, node: str) -> list[SessionRecord | JID]:
        """Where one subscriber hears of ``node``: a full JID as itself; a bare JID at
        each available resource that wants the node, or, when none does, where RFC 6121
        §8.5.2.1.1 routes a headline to the bare JID (each available resource of
        non-negative priority), one by one so that none hears twice."""
        if subscriber.resource is not None:
            return [subscriber]
        available = [record for record in self.api.router.resources(subscriber) if record.available]
        wanting = [record for record in available if node in record.notify]
        return list(wanting or [record for record in available if record.priority >= 0])

    def send_event(
        self, owner: str, targets: Iterable[SessionRecord | JID], event: Element, told: set[JID]
    ) -> None:
        """``event`` from ``owner`` to each target not ``told`` yet that no block list
        keeps it from (XEP-0163 §4.3, XEP-0191)."""
        sender = self.api.jid(owner)
        screen = self.screen
        for target in targets:
            to = target if isinstance(target, JID) else target.jid
            if to in told:
                continue
            told.add(to)
            if screen.handlers and screen.vetoes(sender, to):
                continue
            message = event_message(sender, to, event.copy())
            if isinstance(target, JID):
                self.api.deliver(message, to)
            else:
                self.api.router.deliver(target, message)

    async def notify(
        self,
        owner: str,
        node: str,
        config: NodeConfig,
        event: Element,
        affiliations: dict[str, str] | None,
        subscriptions: list[str] | None = None,
    ) -> None:
        """Send ``event`` to those who hear of ``node``, once each; ``subscriptions`` read
        from storage when not given (a deleted node's are given, read before)."""
        affiliations = affiliations or {}
        if subscriptions is None:
            subscriptions = await self.store.subscriptions(owner, node) or []
        told: set[JID] = set()
        self.send_event(owner, await self.audience(owner, node, config, affiliations), event, told)
        subscribers = await self.subscribers(owner, node, config, affiliations, subscriptions)
        self.send_event(owner, subscribers, event, told)

    async def send_last_items(self, session: Session, before: frozenset[str]) -> None:
        """The newest item of each node the session wants and did not want ``before``,
        of its own account and of the contacts it is subscribed to, readable by it."""
        wanted = session.notify - before
        if not wanted or not session.available:
            return
        roster = self.api.rosters.get(session.username)
        owners = [session.username, *(roster.subscribed_to() if roster is not None else ())]
        affiliations = await self.affiliations_of(session.jid, owners)
        for last in await self.store.last_items(owners):
            affiliation = affiliations.get((last.owner, last.node))
            if last.node in wanted and await self.may_read(
                session.jid, last.owner, last.config, affiliation
            ):
                self.send_event(last.owner, [session], items_element(last.node, [last.item]), set())

    async def prune_subscriptions(self, owner: str, node: str, config: NodeConfig) -> None:
        """End the subscriptions to ``node`` of JIDs that may no longer read it."""
        subscriptions = await self.store.subscriptions(owner, node)
        if not subscriptions:
            return
        affiliations = await self.store.affiliations(owner, node) or {}
        owner_roster = await self.roster_of(owner)
        lost = []
        for text in subscriptions:
            jid = JID.parse(text)
            affiliation = affiliations.get(str(jid.bare))
            if not await self.may_read(jid, owner, config, affiliation, owner_roster):
                lost.append(text)
        await self.store.unsubscribe(owner, node, lost)

    async def on_roster_changed(self, owner: str, contact: str) -> None:
        """``contact`` may have lost access to ``owner``'s nodes it subscribed to."""
        subscribed = await self.store.subscriptions_of(owner, str(self.api.jid(contact)))
        for node in dict.fromkeys(node for node, _ in subscribed):
            config = await self.store.node(owner, node)
            if config is not None:
                await self.prune_subscriptions(owner, node, config)

    # --- requests --------------------------------------------------------------------------

    def target(self, iq: Element) -> tuple[JID, str]:
        """The requester and the owner of the service asked; a stranger is refused as
        for an account that does not exist, while strangers are kept apart."""
        requester = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        owner = (JID.parse(to).bare if to is not None else requester.bare).local or ""
        check_reach(self.api, requester, owner)
        return requester, owner

    def on_get(self, iq: Element) -> Awaitable[Element]:
        requester, owner = self.target(iq)
        request = request_of(iq)
        if request.tag == "affiliations":
            return self.own_affiliations(iq, requester, owner, request.get("node"))
        if request.tag == "subscriptions":
            return self.own_subscriptions(iq, requester, owner, request.get("node"))
        if request.tag != "items" or not request.get("node"):
            raise StanzaError(StanzaCondition.FEATURE_NOT_IMPLEMENTED, "only items are served")
        return self.get_items(iq, requester, owner, request)

    async def get_items(self, iq: Element, requester: JID, owner: str, items: Element) -> Element:
        node = items.get("node") or ""
        config = await self.node_config(owner, node)
        if config is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        affiliations = await self.affiliations_of(requester, [owner])
        await self.check_read(requester, owner, config, affiliations.get((owner, node)))
        ids = [i.get("id") or "" for i in items.find_all("item", ns.PUBSUB)] or None
        newest = None
        if items.get("max_items"):
            try:
                newest = max(0, int(items.get("max_items") or ""))
            except ValueError:
                raise StanzaError(
                    StanzaCondition.BAD_REQUEST, "max_items is not a number"
                ) from None
        found = await self.stored_items(owner, node, ids, newest)
        reply = make_reply(iq)
        reply.add("pubsub", ns.PUBSUB).append(items_element(node, found, ns.PUBSUB))
        return reply

    async def own_affiliations(
        self, iq: Element, requester: JID, owner: str, node: str | None
    ) -> Element:
        """XEP-0060 §5.7: the requester's affiliations with the account's nodes."""
        if requester.local == owner:
            found = {name: "owner" for name in await self.store.node_names(owner)}
        else:
            mine = await self.affiliations_of(requester, [owner])
            found = {name: affiliation for (_, name), affiliation in mine.items()}
        reply = make_reply(iq)
        listed = reply.add("pubsub", ns.PUBSUB).add("affiliations")
        for name, affiliation in sorted(found.items()):
            if node is None or name == node:
                listed.add("affiliation", attrs={"node": name, "affiliation": affiliation})
        return reply

    async def own_subscriptions(
        self, iq: Element, requester: JID, owner: str, node: str | None
    ) -> Element:
        """XEP-0060 §5.6: the requester's subscriptions to the account's nodes, by any
        of its JIDs."""
        found = await self.store.subscriptions_of(owner, str(requester.bare))
        reply = make_reply(iq)
        listed = reply.add("pubsub", ns.PUBSUB).add("subscriptions")
        for name, jid in found:
            if node is None or name == node:
                listed.add(
                    "subscription", attrs={"node": name, "jid": jid, "subscription": SUBSCRIBED}
                )
        return reply

    async def subscribe(
        self, iq: Element, requester: JID, owner: str, request: Element
    ) -> Element | None:
        """XEP-0060 §6.1: subscribe one of the requester's own JIDs, if it may read the
        node; the node's last item follows the result (§6.1.7)."""
        node, jid = own_subscriber(request, requester)
        config = await self.store.node(owner, node)
        if config is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        affiliations = await self.affiliations_of(requester, [owner])
        await self.check_read(jid, owner, config, affiliations.get((owner, node)))
        try:
            subscribed = await self.store.subscribe(owner, node, [str(jid)])
        except TooManySubscriptions:
            raise pubsub_error(
                StanzaCondition.POLICY_VIOLATION,
                "too-many-subscriptions",
                f"a node has at most {MAX_SUBSCRIPTIONS} subscribers",
            ) from None
        if not subscribed:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        reply = make_reply(iq)
        reply.add("pubsub", ns.PUBSUB).add(
            "subscription", attrs={"node": node, "jid": str(jid), "subscription": SUBSCRIBED}
        )
        last = await self.store.items(owner, node, None, 1)
        self.api.deliver(reply, requester)
        if last:
            self.send_event(owner, self.targets_of(jid, node), items_element(node, last), set())
        return None

    async def unsubscribe(
        self, iq: Element, requester: JID, owner: str, request: Element
    ) -> Element:
        """XEP-0060 §6.2: end a subscription of one of the requester's own JIDs."""
        node, jid = own_subscriber(request, requester, mismatch=StanzaCondition.FORBIDDEN)
        if await self.store.node(owner, node) is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        if not await self.store.unsubscribe(owner, node, [str(jid)]):
            raise pubsub_error(StanzaCondition.UNEXPECTED_REQUEST, "not-subscribed")
        return make_reply(iq)

    def owned(self, iq: Element) -> tuple[str, Element]:
        """The owner and the ``<pubsub/>`` of a request only the owner may make."""
        requester, owner = self.target(iq)
        request_of(iq)
        if requester.local != owner:
            raise StanzaError(StanzaCondition.FORBIDDEN, "only the owner changes their nodes")
        pubsub = iq.first_element()
        assert pubsub is not None
        return owner, pubsub

    def on_set(self, iq: Element) -> Awaitable[Element | None]:
        requester, owner = self.target(iq)
        request = request_of(iq)
        if request.ns == ns.PUBSUB and request.tag == "subscribe":
            return self.subscribe(iq, requester, owner, request)
        if request.ns == ns.PUBSUB and request.tag == "unsubscribe":
            return self.unsubscribe(iq, requester, owner, request)
        owner, pubsub = self.owned(iq)
        publish = pubsub.find("publish", ns.PUBSUB)
        if publish is not None:
            options = form_values(_form(pubsub.find("publish-options", ns.PUBSUB)))
            return self.publish(iq, owner, publish, options)
        retract = pubsub.find("retract", ns.PUBSUB)
        if retract is not None:
            return self.retract(iq, owner, retract)
        create = pubsub.find("create", ns.PUBSUB)
        if create is not None and create.get("node"):
            options = form_values(_form(pubsub.find("configure", ns.PUBSUB)))
            node = checked_name(create.get("node") or "", "a node name")
            return self.create(iq, owner, node, options)
        raise StanzaError(StanzaCondition.FEATURE_NOT_IMPLEMENTED, "not served on PEP")

    def config_from(self, options: Form, base: NodeConfig | None = None) -> NodeConfig:
        access = single(options, "pubsub#access_model")
        if access is None:
            access = base.access_model if base else "presence"
        if access not in ACCESS_MODELS:
            raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, f"access model {access} unsupported")
        limit = self.settings.max_items
        wanted = single(options, "pubsub#max_items")
        if wanted is None:
            max_items = base.max_items if base else limit
        elif wanted == "max":
            max_items = limit
        else:
            try:
                max_items = min(limit, max(1, int(wanted)))
            except ValueError:
                raise StanzaError(
                    StanzaCondition.NOT_ACCEPTABLE, "max_items not a number"
                ) from None
        groups = options.get(ROSTER_GROUPS)
        if groups is None:
            groups = base.roster_groups if base else ()
        groups = tuple(dict.fromkeys(group for group in groups if group))
        if fitting_roster_groups(groups) != groups:
            raise StanzaError(
                StanzaCondition.NOT_ACCEPTABLE,
                f"at most {MAX_ROSTER_GROUPS} roster groups, "
                f"of {MAX_ROSTER_GROUPS_BYTES} bytes in all",
            )
        return NodeConfig(access, max_items, groups)

    async def publish(self, iq: Element, owner: str, publish: Element, options: Form) -> Element:
        node = checked_name(publish.get("node") or "", "a node name")
        if not node:
            raise pubsub_error(StanzaCondition.BAD_REQUEST, "nodeid-required")
        item = publish.find("item", ns.PUBSUB)
        payload = item.first_element() if item is not None else None
        if payload is None:
            raise pubsub_error(StanzaCondition.BAD_REQUEST, "item-required")
        text = payload.serialize()
        if len(text.encode()) > self.settings.max_payload_bytes:
            raise pubsub_error(
                StanzaCondition.NOT_ACCEPTABLE,
                "payload-too-big",
                f"an item holds at most {self.settings.max_payload_bytes} bytes",
            )
        item_id = checked_name(
            (item.get("id") if item is not None else None) or random_hex(8), "an item id"
        )
        existing = await self.store.node(owner, node)
        if existing is not None:
            self.check_preconditions(existing, options)
        config = existing or self.config_from(options)
        try:
            config = await self.store.publish(owner, node, config, StoredItem(item_id, text))
        except NoSuchAccount:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND) from None
        except QuotaExceeded as error:
            raise over_quota(error) from None
        stored = Element("item", ns.PUBSUB_EVENT, {"id": item_id}, [payload])
        affiliations = await self.store.affiliations(owner, node)
        # XEP-0048 bookmarks in PEP hold the XEP-0402 node's conferences: the owner's alone.
        heard = OWNER_ONLY if node == LEGACY_BOOKMARKS else config
        await self.notify(owner, node, heard, _items(node, [stored]), affiliations)
        if node == ns.AVATAR_METADATA:
            await self.avatar_to_vcard(owner, payload)
        elif node == LEGACY_BOOKMARKS and payload.tag == "storage":
            try:
                replaced = await store_legacy_bookmarks(
                    self.store, owner, payload, self.settings.max_items
                )
            except QuotaExceeded as error:
                raise over_quota(error) from None
            await self.notify_bookmarks(owner, replaced)
        elif node == BOOKMARKS:
            await self.notify_legacy_bookmarks(owner)
        reply = make_reply(iq)
        published = reply.add("pubsub", ns.PUBSUB).add("publish", attrs={"node": node})
        published.add("item", attrs={"id": item_id})
        return reply

    def check_preconditions(self, config: NodeConfig, options: Form) -> None:
        """XEP-0060 §7.1.5: each option given must match the node's configuration."""
        wanted = self.config_from(options, config)
        if wanted != config:
            raise pubsub_error(
                StanzaCondition.CONFLICT,
                "precondition-not-met",
                "the node's configuration differs from the publish-options",
            )

    async def retract(self, iq: Element, owner: str, retract: Element) -> Element:
        node = retract.get("node") or ""
        item = retract.find("item", ns.PUBSUB)
        item_id = item.get("id") if item is not None else None
        if not node:
            raise pubsub_error(StanzaCondition.BAD_REQUEST, "nodeid-required")
        if not item_id:
            raise pubsub_error(StanzaCondition.BAD_REQUEST, "item-required")
        config = await self.store.node(owner, node)
        if config is None or not await self.store.retract(owner, node, item_id):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such item")
        if retract.get("notify") in ("1", "true"):
            event = Element("items", ns.PUBSUB_EVENT, {"node": node})
            event.add("retract", attrs={"id": item_id})
            affiliations = await self.store.affiliations(owner, node)
            await self.notify(owner, node, config, event, affiliations)
        if node == BOOKMARKS:
            await self.notify_legacy_bookmarks(owner)
        return make_reply(iq)

    async def create(self, iq: Element, owner: str, node: str, options: Form) -> Element:
        try:
            created = await self.store.create(owner, node, self.config_from(options))
        except NoSuchAccount:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND) from None
        except QuotaExceeded as error:
            raise over_quota(error) from None
        if not created:
            raise StanzaError(StanzaCondition.CONFLICT, "the node exists")
        return make_reply(iq)

    # --- owner requests (configure, default, delete, purge, affiliations) --------------------

    def on_owner(self, iq: Element) -> Awaitable[Element]:
        owner, pubsub = self.owned(iq)
        is_set = iq.attrs.get("type") == "set"
        request = pubsub.first_element()
        assert request is not None
        if request.ns != ns.PUBSUB_OWNER:
            raise StanzaError(StanzaCondition.BAD_REQUEST, "not an owner request")
        node = request.get("node") or ""
        if request.tag == "default" and not is_set:
            return self.default_config(iq)
        if not node:
            raise pubsub_error(StanzaCondition.BAD_REQUEST, "nodeid-required")
        if request.tag == "configure":
            return self.configure(iq, owner, request)
        if request.tag == "affiliations":
            return (
                self.affiliations(iq, owner, request)
                if not is_set
                else self.affiliate(iq, owner, request)
            )
        if request.tag == "subscriptions":
            return (
                self.node_subscriptions(iq, owner, node)
                if not is_set
                else self.manage_subscriptions(iq, owner, request)
            )
        if request.tag == "delete" and is_set:
            return self.delete(iq, owner, node)
        if request.tag == "purge" and is_set:
            return self.purge(iq, owner, node)
        raise StanzaError(StanzaCondition.FEATURE_NOT_IMPLEMENTED, "not served on PEP")

    async def configure(self, iq: Element, owner: str, configure: Element) -> Element:
        node = configure.get("node") or ""
        config = await self.store.node(owner, node)
        if config is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        if iq.attrs.get("type") == "set":
            changed = self.config_from(form_values(_form(configure)), config)
            await self.store.configure(owner, node, changed)
            await self.prune_subscriptions(owner, node, changed)
            return make_reply(iq)
        reply = make_reply(iq)
        shown = reply.add("pubsub", ns.PUBSUB_OWNER).add("configure", attrs={"node": node})
        shown.append(config_form(config))
        return reply

    async def default_config(self, iq: Element) -> Element:
        """XEP-0060 §8.3: the configuration a node is made with."""
        reply = make_reply(iq)
        shown = reply.add("pubsub", ns.PUBSUB_OWNER).add("default")
        shown.append(config_form(self.config_from({})))
        return reply

    async def delete(self, iq: Element, owner: str, node: str) -> Element:
        config = await self.store.node(owner, node)
        affiliations = await self.store.affiliations(owner, node)
        subscriptions = await self.store.subscriptions(owner, node)
        if config is None or not await self.store.delete_node(owner, node):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        event = Element("delete", ns.PUBSUB_EVENT, {"node": node})
        await self.notify(owner, node, config, event, affiliations, subscriptions or [])
        return make_reply(iq)

    async def purge(self, iq: Element, owner: str, node: str) -> Element:
        """XEP-0060 §8.5: every item goes; those who hear of the node get ``<purge/>``."""
        config = await self.store.node(owner, node)
        if config is None or not await self.store.purge(owner, node):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        affiliations = await self.store.affiliations(owner, node)
        event = Element("purge", ns.PUBSUB_EVENT, {"node": node})
        await self.notify(owner, node, config, event, affiliations)
        if node == BOOKMARKS:
            await self.notify_legacy_bookmarks(owner)
        return make_reply(iq)

    async def affiliations(self, iq: Element, owner: str, request: Element) -> Element:
        """XEP-0060 §8.9.1: the node's affiliations, the owner's first."""
        node = request.get("node") or ""
        found = await self.store.affiliations(owner, node)
        if found is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        reply = make_reply(iq)
        listed = reply.add("pubsub", ns.PUBSUB_OWNER).add("affiliations", attrs={"node": node})
        for jid, affiliation in {str(self.api.jid(owner)): "owner", **found}.items():
            listed.add("affiliation", attrs={"jid": jid, "affiliation": affiliation})
        return reply

    async def affiliate(self, iq: Element, owner: str, request: Element) -> Element:
        """XEP-0060 §8.9.2: make bare JIDs members or outcasts, or neither (``none``)."""
        node = request.get("node") or ""
        changes = affiliation_changes(request, self.api.jid(owner))
        found = await self.store.affiliations(owner, node)
        if found is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        kept = {jid for jid, affiliation in {**found, **changes}.items() if affiliation != "none"}
        if len(kept) > MAX_AFFILIATIONS:
            raise StanzaError(
                StanzaCondition.NOT_ACCEPTABLE,
                f"a node has at most {MAX_AFFILIATIONS} affiliated JIDs",
            )
        if not await self.store.set_affiliations(owner, node, changes):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        config = await self.store.node(owner, node)
        if config is not None:
            await self.prune_subscriptions(owner, node, config)
        return make_reply(iq)

    async def node_subscriptions(self, iq: Element, owner: str, node: str) -> Element:
        """XEP-0060 §8.8.1: every subscription to the node."""
        found = await self.store.subscriptions(owner, node)
        if found is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        reply = make_reply(iq)
        listed = reply.add("pubsub", ns.PUBSUB_OWNER).add("subscriptions", attrs={"node": node})
        for jid in found:
            listed.add("subscription", attrs={"jid": jid, "subscription": SUBSCRIBED})
        return reply

    async def manage_subscriptions(self, iq: Element, owner: str, request: Element) -> Element:
        """XEP-0060 §8.8.2: subscribe JIDs that may read the node (contacts only while
        strangers are kept apart), or end subscriptions (``none``); nothing changes when
        one of the JIDs may not be subscribed."""
        node = request.get("node") or ""
        config = await self.store.node(owner, node)
        if config is None:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        changes = subscription_changes(request)
        affiliations = await self.store.affiliations(owner, node) or {}
        owner_roster = await self.roster_of(owner)
        for jid, subscription in changes.items():
            if subscription != SUBSCRIBED:
                continue
            if not self.reachable(owner, jid, owner_roster):
                raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, f"{jid} is not a contact")
            affiliation = affiliations.get(str(jid.bare))
            if not await self.may_read(jid, owner, config, affiliation, owner_roster):
                raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, f"{jid} may not read {node}")
        added = [str(jid) for jid, subscription in changes.items() if subscription == SUBSCRIBED]
        try:
            await self.store.subscribe(owner, node, added)
        except TooManySubscriptions:
            raise pubsub_error(StanzaCondition.POLICY_VIOLATION, "too-many-subscriptions") from None
        ended = [str(jid) for jid, subscription in changes.items() if subscription != SUBSCRIBED]
        await self.store.unsubscribe(owner, node, ended)
        return make_reply(iq)

    # --- disco#items on the account ---------------------------------------------------------

    def on_items(self, iq: Element) -> Awaitable[Element]:
        requester, owner = self.target(iq)
        query = iq.first_element()
        assert query is not None
        if query.get("node"):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such node")
        return self.list_nodes(iq, requester, owner)

    async def list_nodes(self, iq: Element, requester: JID, owner: str) -> Element:
        reply = make_reply(iq)
        listed = reply.add("query", ns.DISCO_ITEMS)
        bare = str(self.api.jid(owner))
        affiliations = await self.affiliations_of(requester, [owner])
        nodes = await self.store.nodes(owner)
        if LEGACY_BOOKMARKS in nodes and BOOKMARKS in nodes:
            nodes[LEGACY_BOOKMARKS] = OWNER_ONLY  # as node_config says, in one read
        roster_model = any(config.access_model == "roster" for config in nodes.values())
        owner_roster = await self.roster_of(owner) if roster_model else None
        for node, config in nodes.items():
            affiliation = affiliations.get((owner, node))
            if await self.may_read(requester, owner, config, affiliation, owner_roster):
                listed.add("item", attrs={"jid": bare, "node": node})
        return reply

    # --- XEP-0398: the vCard photo as an avatar, and an avatar as the vCard photo ----------

    async def node_config(self, owner: str, node: str) -> NodeConfig | None:
        if node == LEGACY_BOOKMARKS and await self.store.node(owner, BOOKMARKS) is not None:
            return OWNER_ONLY  # the owner's conferences: theirs alone
        config = await self.store.node(owner, node)
        if (
            config is None
            and node in (ns.AVATAR_DATA, ns.AVATAR_METADATA)
            and await self.vcard_avatar(owner) is not None
        ):
            return NodeConfig("presence", 1)
        return config

    async def stored_items(
        self, owner: str, node: str, ids: list[str] | None, newest: int | None
    ) -> list[StoredItem]:
        if node == LEGACY_BOOKMARKS:
            storage = await self.legacy_bookmarks(owner)
            if storage is not None:
                found = [StoredItem(LEGACY_ITEM, storage.serialize())]
                return [item for item in found if ids is None or item.item_id in ids]
        config = await self.store.node(owner, node)
        if config is not None or node not in (ns.AVATAR_DATA, ns.AVATAR_METADATA):
            return await self.store.items(owner, node, ids, newest)
        avatar = await self.vcard_avatar(owner)
        if avatar is None or (ids is not None and avatar[node].item_id not in ids):
            return []
        return [avatar[node]]

    # --- XEP-0402 §5.3 #compat-pep: XEP-0048 bookmarks in PEP, in step with XEP-0402's ---------

    async def legacy_bookmarks(self, owner: str) -> Element | None:
        """The XEP-0048 storage that stands for the XEP-0402 node, when there is one:
        its conferences, and the URLs last published to ``storage:bookmarks``."""
        if await self.store.node(owner, BOOKMARKS) is None:
            return None
        published = await self.store.items(owner, LEGACY_BOOKMARKS, None, 1)
        stored = [parse_stanza(item.payload) for item in published]
        [storage] = await legacy_bookmarks(self.store, owner, stored)
        return storage

    async def notify_legacy_bookmarks(self, owner: str) -> None:
        """The XEP-0402 node changed: the owner's resources that want
        ``storage:bookmarks`` hear of it as XEP-0048 storage (a whitelisted node)."""
        storage = await self.legacy_bookmarks(owner)
        if storage is not None:
            item = Element("item", ns.PUBSUB_EVENT, {"id": LEGACY_ITEM}, [storage])
            await self.notify(
                owner, LEGACY_BOOKMARKS, OWNER_ONLY, _items(LEGACY_BOOKMARKS, [item]), None
            )

    async def notify_bookmarks(self, owner: str, replaced: Replaced) -> None:
        """XEP-0048 bookmarks replaced the XEP-0402 node's items: those who hear of the
        node get each bookmark added or changed, and the retraction of each removed, as
        if published and retracted one by one there."""
        config = await self.store.node(owner, BOOKMARKS)
        if config is None:
            return
        affiliations = await self.store.affiliations(owner, BOOKMARKS)
        before = {item.item_id: item.payload for item in replaced.before}
        kept = {item.item_id for item in replaced.after}
        for item in replaced.after:
            if before.get(item.item_id) != item.payload:
                published = Element("item", ns.PUBSUB_EVENT, {"id": item.item_id})
                published.append(parse_stanza(item.payload))
                event = _items(BOOKMARKS, [published])
                await self.notify(owner, BOOKMARKS, config, event, affiliations)
        for item_id in before:
            if item_id not in kept:
                event = _items(BOOKMARKS, [Element("retract", ns.PUBSUB_EVENT, {"id": item_id})])
                await self.notify(owner, BOOKMARKS, config, event, affiliations)

    def on_bookmarks_converted(self, owner: str, replaced: Replaced) -> None:
        """XEP-0048 bookmarks stored in private storage: notified on both PEP nodes."""

        async def notify_both() -> None:
            await self.notify_bookmarks(owner, replaced)
            await self.notify_legacy_bookmarks(owner)

        self.api.spawn(notify_both())

    async def vcard_avatar(self, owner: str) -> dict[str, StoredItem] | None:
        """The profile's photo as the items of the two avatar nodes."""
        profile = await self.api.services.profiles.get(owner)
        if profile is None or not profile.photo:
            return None
        item_id = hashlib.sha1(profile.photo, usedforsecurity=False).hexdigest()
        data = Element("data", ns.AVATAR_DATA, children=[base64.b64encode(profile.photo).decode()])
        metadata = Element("metadata", ns.AVATAR_METADATA)
        metadata.add(
            "info",
            attrs={
                "id": item_id,
                "bytes": str(len(profile.photo)),
                "type": profile.photo_type or "image/png",
            },
        )
        return {
            ns.AVATAR_DATA: StoredItem(item_id, data.serialize()),
            ns.AVATAR_METADATA: StoredItem(item_id, metadata.serialize()),
        }

    async def avatar_to_vcard(self, owner: str, metadata: Element) -> None:
        """XEP-0398 §4: a published avatar becomes the vCard photo (an empty metadata
        element, no avatar, clears it). The avatar is the first ``<info/>`` kept here (not
        at a URL), copied only if its data hashes to its id (§4 SHOULD) and the data node
        shows it to as many as the vCard does (§7)."""
        infos = metadata.find_all("info", ns.AVATAR_METADATA)
        profiles = self.api.services.profiles
        if not infos:
            await profiles.set_fields(owner, photo=None)
            return
        info = next((info for info in infos if not info.get("url")), None)
        config = await self.store.node(owner, ns.AVATAR_DATA)
        if info is None or config is None or not self.vcard_may_show(config):
            return
        avatar_id = info.get("id") or ""
        found = await self.store.items(owner, ns.AVATAR_DATA, [avatar_id], None)
        if not found:
            return
        data = parse_stanza(found[0].payload)
        try:
            photo = base64.b64decode("".join(data.text.split()), validate=True)
        except ValueError:
            return
        if hashlib.sha1(photo, usedforsecurity=False).hexdigest() != avatar_id.lower():
            log.info(
                "avatar of %s not copied to the vCard: its data does not hash to its id", owner
            )
            return
        try:
            await profiles.set_fields(
                owner, photo=photo, photo_type=info.get("type") or "image/png"
            )
        except ValueError as error:  # a photo the profile does not take (too large)
            log.info("avatar of %s not copied to the vCard: %s", owner, error)

    def vcard_may_show(self, data_node: NodeConfig) -> bool:
        """Whether the avatar data node lets read it whoever may read the vCard: anyone
        who may reach the account, so its contacts while strangers are kept apart."""
        return data_node.access_model == "open" or (
            data_node.access_model == "presence" and self.strangers_apart
        )


def event_message(sender: JID, to: JID, event: Element) -> Element:
    """A notification: ``<message type='headline'>`` with ``event`` in ``<event/>``."""
    attrs = {"from": str(sender), "to": str(to), "type": "headline", "id": random_hex(6)}
    message = Element("message", attrs=attrs)
    message.add("event", ns.PUBSUB_EVENT).append(event)
    return message


def affiliation_changes(request: Element, owner: JID) -> dict[str, str]:
    """The affiliations an owner's request sets, by bare JID (§8.9.2.4's errors)."""
    changes = {}
    for entry in request.find_all("affiliation", ns.PUBSUB_OWNER):
        affiliation = entry.get("affiliation") or ""
        try:
            jid = JID.parse(entry.get("jid") or "").bare
        except InvalidJID:
            raise StanzaError(StanzaCondition.JID_MALFORMED, "not a JID") from None
        if affiliation in ("publisher", "publish-only"):
            raise unsupported(f"{affiliation}-affiliation")
        if jid == owner or affiliation == "owner":
            raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, "the account is the only owner")
        if affiliation not in AFFILIATIONS:
            raise StanzaError(StanzaCondition.BAD_REQUEST, f"no affiliation {affiliation!r}")
        changes[str(jid)] = affiliation
    return changes


def checked_name(name: str, what: str) -> str:
    """A node name or item id that storage keeps whole (``MAX_PEP_NAME``)."""
    if len(name) > MAX_PEP_NAME:
        raise StanzaError(
            StanzaCondition.NOT_ACCEPTABLE, f"{what} is at most {MAX_PEP_NAME} characters"
        )
    return name


def own_subscriber(
    request: Element, requester: JID, mismatch: StanzaCondition = StanzaCondition.BAD_REQUEST
) -> tuple[str, JID]:
    """The node and JID of a ``<subscribe/>`` or ``<unsubscribe/>``: a JID of the
    requester's own (XEP-0060 §6.1.3.1, §6.2.3.3)."""
    node = request.get("node") or ""
    if not node:
        raise pubsub_error(StanzaCondition.BAD_REQUEST, "nodeid-required")
    try:
        jid = JID.parse(request.get("jid") or "")
    except InvalidJID:
        raise pubsub_error(StanzaCondition.BAD_REQUEST, "invalid-jid") from None
    if jid.bare != requester.bare:
        if mismatch is StanzaCondition.FORBIDDEN:
            raise StanzaError(mismatch, "not a JID of yours")
        raise pubsub_error(mismatch, "invalid-jid", "not a JID of yours")
    return node, jid


def subscription_changes(request: Element) -> dict[JID, str]:
    """The subscriptions an owner's request sets (``subscribed`` or ``none``), by JID."""
    changes = {}
    for entry in request.find_all("subscription", ns.PUBSUB_OWNER):
        subscription = entry.get("subscription") or ""
        try:
            jid = JID.parse(entry.get("jid") or "")
        except InvalidJID:
            raise StanzaError(StanzaCondition.JID_MALFORMED, "not a JID") from None
        if subscription not in (SUBSCRIBED, "none"):
            raise StanzaError(
                StanzaCondition.NOT_ACCEPTABLE, f"subscriptions are {SUBSCRIBED} or none"
            )
        changes[jid] = subscription
    return changes


def notify_nodes(query: Element) -> frozenset[str]:
    """The nodes a disco#info answer asks notifications of (``NODE+notify`` features)."""
    return frozenset(
        var[: -len(NOTIFY_SUFFIX)]
        for feature in query.find_all("feature", ns.DISCO_INFO)
        if (var := feature.get("var") or "").endswith(NOTIFY_SUFFIX)
    )


def _form(parent: Element | None) -> Element | None:
    return parent.find("x", ns.DATA_FORMS) if parent is not None else None


def _items(node: str, items: Iterable[Element]) -> Element:
    element = Element("items", ns.PUBSUB_EVENT, {"node": node})
    for item in items:
        element.append(item)
    return element


def items_element(
    node: str, stored: Iterable[StoredItem], parent_ns: str = ns.PUBSUB_EVENT
) -> Element:
    """``<items node>`` with each stored item parsed back, in ``parent_ns``."""
    element = Element("items", parent_ns, {"node": node})
    for item in stored:
        element.add("item", parent_ns, {"id": item.item_id}).append(parse_stanza(item.payload))
    return element


def config_form(config: NodeConfig) -> Element:
    form = Element("x", ns.DATA_FORMS, {"type": "form"})
    fields = (
        ("FORM_TYPE", "hidden", ns.PUBSUB_NODE_CONFIG),
        ("pubsub#access_model", "list-single", config.access_model),
        ("pubsub#max_items", "text-single", str(config.max_items)),
        ("pubsub#persist_items", "boolean", "1"),
    )
    for var, kind, value in fields:
        form.add("field", ns.DATA_FORMS, {"var": var, "type": kind}).add(
            "value", ns.DATA_FORMS
        ).append(value)
    groups = form.add("field", ns.DATA_FORMS, {"var": ROSTER_GROUPS, "type": "list-multi"})
    for group in config.roster_groups:
        groups.add("value", ns.DATA_FORMS).append(group)
    return form


def setup(api: ModuleAPI) -> None:
    pep = Pep(api)
    api.add_account_identity("pubsub", "pep")
    for feature in (*PEP_FEATURES, ns.PEP_VCARD_CONVERSION):
        api.add_account_feature(feature)
    api.add_account_feature(f"{BOOKMARKS}#compat-pep")
    api.add_feature(ns.PEP_VCARD_CONVERSION)
    api.iq_handler("get", ns.PUBSUB, "pubsub", pep.on_get, scope="account")
    api.iq_handler("set", ns.PUBSUB, "pubsub", pep.on_set, scope="account")
    api.iq_handler("get", ns.PUBSUB_OWNER, "pubsub", pep.on_owner, scope="account")
    api.iq_handler("set", ns.PUBSUB_OWNER, "pubsub", pep.on_owner, scope="account")
    api.iq_handler("get", ns.DISCO_ITEMS, "query", pep.on_items, scope="account")
    api.hook("presence/broadcast", pep.on_presence, 20)
    api.hook("iq/host", pep.on_host_iq, 10)
    api.hook(BOOKMARKS_CONVERTED, pep.on_bookmarks_converted)
    api.hook(
        "network/roster.changed",
        lambda event: api.spawn(pep.on_roster_changed(event.subject, event.object or "")),
    )
