"""RFC 6121 rosters over the network's contact list: roster get with versioning, roster
pushes for changes made anywhere, and — only with ``roster.management = true`` —
roster set/remove and the presence subscription handshake (RFC 6121 §2-3).

By default the contact list belongs to the network (CLI, REST API, portal) and XMPP
can only read it: roster sets and subscription requests get ``<not-allowed/>``.

Presence this module hands to another user's resources is first put to the
``presence/screen`` handlers (a block list), when there are any.
"""

from __future__ import annotations

from collections.abc import Awaitable
from dataclasses import replace

from chinwag.network.contacts import Contact, RosterChange
from chinwag.network.events import NetworkEvent
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import PRESENCE_SCREEN
from chinwag.server.session import Session
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "RFC 6121 §2-3",
    "Roster and subscriptions",
    "read-only by default",
    "roster get lists the network's contacts with subscription='both' and versioning (§2.6); "
    "roster set and subscription requests get not-allowed unless `roster.management = true`, "
    "which turns on roster set/remove, pushes, the subscription handshake and pre-approval",
)

SUBSCRIPTION_TYPES = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")
PRE_APPROVAL = "urn:xmpp:features:pre-approval"
"""RFC 6121 3.4.1: the stream feature of a server that supports pre-approval."""
_ADDS = {"to": {"none": "to", "from": "both"}, "from": {"none": "from", "to": "both"}}
_REMOVES = {"to": {"to": "none", "both": "from"}, "from": {"from": "none", "both": "to"}}


def with_direction(item: Contact, direction: str) -> Contact:
    """``item`` with its subscription gaining 'to' or 'from'."""
    return replace(item, subscription=_ADDS[direction].get(item.subscription, item.subscription))


def without_direction(item: Contact, direction: str) -> Contact:
    return replace(item, subscription=_REMOVES[direction].get(item.subscription, item.subscription))


def has(item: Contact | None, direction: str) -> bool:
    return item is not None and item.subscription in (direction, "both")


def blank_item(username: str) -> Contact:
    """A row for someone not on the roster (yet)."""
    return Contact(username, None, "none", False, False, False, (), listed=False)


def visible(item: Contact | None) -> bool:
    """RFC 6121 3.1.3: a pending inbound request alone does not put anyone on the roster."""
    return item is not None and item.listed


def roster_view(item: Contact | None) -> Contact | None:
    """What a roster push says of ``item``: None when it is not on the roster."""
    return replace(item, pending_in=False) if item is not None and visible(item) else None


def cached(item: Contact | None) -> Contact | None:
    """What an online account's roster cache keeps of ``item``."""
    return item if item is not None and (visible(item) or item.pending_in) else None


class Rosters:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.contacts = api.services.contacts
        self.management = api.settings.roster.management
        self.screen = api.channel(PRESENCE_SCREEN)

    # --- roster get / set ---------------------------------------------------------

    def owner_of(self, iq: Element) -> JID:
        sender = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        if to is not None and JID.parse(to) != sender.bare:
            raise StanzaError(StanzaCondition.FORBIDDEN, "only your own roster")
        return sender

    def on_get(self, iq: Element) -> Element:
        owner = self.owner_of(iq)
        roster = self.api.rosters.get(owner.local or "")
        session = self.api.sessions.get(owner)
        if roster is None or session is None:
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        self.api.sessions.set_interested(session)
        query = iq.first_element()
        assert query is not None
        version = str(roster.version)
        reply = make_reply(iq)
        if query.attrs.get("ver") == version:
            return reply  # RFC 6121 2.6.3: nothing changed, pushes follow if anything does
        result = reply.add("query", ns.ROSTER, {"ver": version})
        for item in roster.items.values():
            if visible(item):
                result.append(self.item_element(item))
        return reply

    def item_element(self, item: Contact) -> Element:
        attrs = {"jid": str(self.api.jid(item.username)), "subscription": item.subscription}
        if item.name:
            attrs["name"] = item.name
        if item.ask:
            attrs["ask"] = "subscribe"
        if item.approved:
            attrs["approved"] = "true"
        element = Element("item", ns.ROSTER, attrs)
        for group in item.groups:
            element.add("group").children.append(group)
        return element

    def on_set(self, iq: Element) -> Awaitable[Element]:
        owner = self.owner_of(iq)
        if not self.management:
            raise StanzaError(
                StanzaCondition.NOT_ALLOWED, "the contact list is managed by the network"
            )
        query = iq.first_element()
        assert query is not None
        items = query.find_all("item", ns.ROSTER)
        if len(items) != 1:
            raise StanzaError(StanzaCondition.BAD_REQUEST, "a roster set carries exactly one item")
        try:
            contact = JID.parse(items[0].attrs.get("jid", ""))
        except InvalidJID as error:
            raise StanzaError(StanzaCondition.BAD_REQUEST, str(error)) from None
        if (
            contact.local is None
            or contact.resource is not None
            or contact.domain != self.api.domain.domain
        ):
            raise StanzaError(StanzaCondition.NOT_ALLOWED, "contacts are accounts of this server")
        return self.set_item(iq, owner.local or "", contact.local, items[0])

    async def set_item(self, iq: Element, owner: str, contact: str, request: Element) -> Element:
        if not await self.contacts.account_exists(contact):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, f"no account {contact}")
        roster = self.api.rosters.get(owner)
        current = roster.items.get(contact) if roster is not None else None
        if request.attrs.get("subscription") == "remove":
            if current is None:
                raise StanzaError(StanzaCondition.ITEM_NOT_FOUND)
            await self.remove_item(owner, contact, current)
            return make_reply(iq)
        groups = tuple(dict.fromkeys(group.text for group in request.find_all("group", ns.ROSTER)))
        if any(not group for group in groups):
            raise StanzaError(StanzaCondition.NOT_ACCEPTABLE, "empty group name")
        updated = replace(
            current or blank_item(contact),
            name=request.attrs.get("name") or None,
            groups=groups,
            listed=True,
        )
        await self.save([RosterChange(owner, contact, updated)], always_push=True)
        return make_reply(iq)

    async def remove_item(self, owner: str, contact: str, current: Contact) -> None:
        """RFC 6121 2.5.2: removing an item cancels subscriptions both ways."""
        theirs = await self.item_of(contact, owner)
        if has(current, "to") or current.ask:
            self.send_subscription(owner, contact, "unsubscribe")
            theirs = without_direction(replace(theirs, pending_in=False), "from")
        if has(current, "from") or current.pending_in:
            self.send_subscription(owner, contact, "unsubscribed")
            theirs = without_direction(replace(theirs, ask=False), "to")
        await self.save([RosterChange(owner, contact, None), RosterChange(contact, owner, theirs)])

    # --- subscriptions (RFC 6121 §3) ------------------------------------------------------

    def on_subscription(self, routed: Routed) -> bool:
        presence_type = routed.stanza.attrs.get("type")
        if presence_type not in SUBSCRIPTION_TYPES or routed.origin is None:
            return False
        if not self.management:
            self.api.bounce(
                routed.stanza,
                StanzaError(StanzaCondition.NOT_ALLOWED, "contacts are managed by the network"),
            )
            return True
        user, contact = routed.origin.username, routed.to.local or ""
        if contact != user:
            routed.origin.connection.hold(self.subscription(user, contact, presence_type))
        return True

    async def item_of(self, owner: str, contact: str) -> Contact:
        roster = self.api.rosters.get(owner)
        if roster is not None:
            return roster.items.get(contact) or blank_item(contact)
        return await self.contacts.item(owner, contact) or blank_item(contact)

    async def subscription(self, user: str, contact: str, presence_type: str) -> None:
        if not await self.contacts.account_exists(contact):
            if presence_type == "subscribe":
                self.send_subscription(contact, user, "unsubscribed")
            return
        mine, theirs = await self.item_of(user, contact), await self.item_of(contact, user)
        if presence_type == "subscribe":
            mine, theirs = self.request(user, contact, mine, theirs)
        elif presence_type == "subscribed":
            mine, theirs = self.approve(user, contact, mine, theirs)
        elif presence_type == "unsubscribe":
            self.send_subscription(user, contact, "unsubscribe")
            mine = without_direction(replace(mine, ask=False), "to")
            theirs = without_direction(replace(theirs, pending_in=False), "from")
        else:
            self.send_subscription(user, contact, "unsubscribed")
            mine = without_direction(replace(mine, pending_in=False, approved=False), "from")
            theirs = without_direction(replace(theirs, ask=False), "to")
        await self.save([RosterChange(user, contact, mine), RosterChange(contact, user, theirs)])

    def request(
        self, user: str, contact: str, mine: Contact, theirs: Contact
    ) -> tuple[Contact, Contact]:
        if has(mine, "to"):
            self.send_subscription(contact, user, "subscribed")
            return mine, theirs
        if theirs.approved:
            self.send_subscription(contact, user, "subscribed")
            return (
                with_direction(replace(mine, ask=False, listed=True), "to"),
                with_direction(replace(theirs, approved=False, pending_in=False), "from"),
            )
        self.send_subscription(user, contact, "subscribe")
        return replace(mine, ask=True, listed=True), replace(theirs, pending_in=True)

    def approve(
        self, user: str, contact: str, mine: Contact, theirs: Contact
    ) -> tuple[Contact, Contact]:
        if has(mine, "from"):
            return mine, theirs
        if not mine.pending_in:
            return replace(mine, approved=True, listed=True), theirs  # RFC 6121 3.4 pre-approval
        self.send_subscription(user, contact, "subscribed")
        return (
            with_direction(replace(mine, pending_in=False, listed=True), "from"),
            with_direction(replace(theirs, ask=False), "to"),
        )

    def send_subscription(self, sender: str, recipient: str, presence_type: str) -> None:
        """Deliver a subscription presence from one account's bare JID to another's resources."""
        to, source = self.api.jid(recipient), self.api.jid(sender)
        stanza = Element(
            "presence", attrs={"from": str(source), "to": str(to), "type": presence_type}
        )
        router = self.api.router
        for record in router.resources(to):
            if record.available and not self.screen.vetoes(source, record.jid):
                router.deliver(record, stanza)

    def deliver_pending_requests(self, session: Session) -> None:
        """Inbound requests that arrived while the account was offline (RFC 6121 3.1.3)."""
        roster = self.api.rosters.get(session.username)
        if roster is None:
            return
        for item in roster.items.values():
            if not item.pending_in:
                continue
            requester = self.api.jid(item.username)
            if not self.screen.vetoes(requester, session.jid):
                attrs = {"from": str(requester), "to": str(session.jid), "type": "subscribe"}
                self.api.router.deliver(session, Element("presence", attrs=attrs))

    # --- applying changes ------------------------------------------------------------------

    async def save(self, changes: list[RosterChange], *, always_push: bool = False) -> None:
        versions = await self.contacts.save(changes)
        for change in changes:
            self.apply(
                change.owner,
                change.contact,
                change.item,
                versions[change.owner],
                always_push=always_push,
            )

    def apply(
        self,
        owner: str,
        contact: str,
        item: Contact | None,
        version: int,
        *,
        always_push: bool = False,
    ) -> None:
        """Bring an online account up to date: cache, roster push (when what the roster
        shows changed, or always, as a roster set wants) and presence."""
        roster = self.api.rosters.get(owner)
        if roster is None:
            return
        before = roster.items.pop(contact, None)
        kept = cached(item)
        if kept is not None:
            roster.items[contact] = kept
        roster.version = version
        if always_push or roster_view(before) != roster_view(item):
            self.push(owner, contact, item, version)
        self.exchange_presence(owner, contact, before, item)

    def push(self, owner: str, contact: str, item: Contact | None, version: int) -> None:
        if item is not None and visible(item):
            element = self.item_element(item)
        else:
            element = Element(
                "item", ns.ROSTER, {"jid": str(self.api.jid(contact)), "subscription": "remove"}
            )
        # This node's sessions only: every node applies a change to its own, as it
        # reads the change's event (on_network_change), so none is pushed twice.
        router = self.api.router
        for record in self.api.sessions.of(owner):
            if record.interested:
                iq = Element(
                    "iq",
                    attrs={
                        "type": "set",
                        "id": f"push-{random_hex(4)}",
                        "to": str(record.jid),
                    },
                )
                iq.add("query", ns.ROSTER, {"ver": str(version)}).append(element)
                router.deliver(record, iq)

    def exchange_presence(
        self, owner: str, contact: str, before: Contact | None, after: Contact | None
    ) -> None:
        """When ``owner`` starts or stops receiving ``contact``'s presence, show it at once."""
        gained, lost = (
            has(after, "to") and not has(before, "to"),
            has(before, "to") and not has(after, "to"),
        )
        if not (gained or lost):
            return
        router = self.api.router
        watchers = [s for s in self.api.sessions.of(owner) if s.available]  # as push's
        for source in router.resources(self.api.jid(contact)):
            if not source.available or source.presence is None:
                continue
            shown = (
                source.presence if gained else Element("presence", attrs={"type": "unavailable"})
            )
            for watcher in watchers:
                if self.screen.vetoes(source.jid, watcher.jid):
                    continue
                attrs = {**shown.attrs, "from": str(source.jid), "to": str(watcher.jid)}
                router.deliver(watcher, Element("presence", attrs=attrs, children=shown.children))

    async def on_network_change(self, event: NetworkEvent) -> None:
        """A roster item changed: through the network (CLI, REST API, portal, another
        node), or by this module, which applied it as it made it."""
        owner, contact = event.subject, event.object or ""
        if self.api.rosters.get(owner) is None:
            return
        version, contacts = await self.contacts.roster(owner)
        item = next((c for c in contacts if c.username == contact), None)
        roster = self.api.rosters.get(owner)
        if roster is None or roster.items.get(contact) == cached(item):
            return  # offline meanwhile, or already applied
        self.apply(owner, contact, item, version)


def setup(api: ModuleAPI) -> None:
    rosters = Rosters(api)
    api.add_stream_feature(ns.ROSTER_VERSIONING, "ver")
    if rosters.management:
        api.add_stream_feature(PRE_APPROVAL, "sub")
    api.iq_handler("get", ns.ROSTER, "query", rosters.on_get, scope="account")
    api.iq_handler("set", ns.ROSTER, "query", rosters.on_set, scope="account")
    api.hook("presence/bare", rosters.on_subscription, 20)
    api.hook("presence/full", rosters.on_subscription, 20)
    api.hook("presence/initial", rosters.deliver_pending_requests)
    api.hook("network/roster.changed", lambda event: api.spawn(rosters.on_network_change(event)))
