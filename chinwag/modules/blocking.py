"""XEP-0191 Blocking Command: each user's block list, and what it keeps apart.

The lists are the network's (``network/blocking.py``); apps change them through the
REST API too. An online user's list is kept in memory, read when the first resource
binds and dropped when the last one leaves, so screening a stanza costs two dictionary
lookups, and a few set lookups more for a user who blocks anyone; while nobody online
blocks anyone, the screens are not hooked at all. Changes made elsewhere arrive as
``blocklist.changed`` and are applied like the user's own.

What a list does (XEP-0191 §3.3):

- nothing from a blocked JID reaches the user: messages and IQ get/set are answered
  ``<service-unavailable/>``, as for an account that does not exist, and presence and
  the rest are dropped; offline storage refuses such messages (``modules/offline.py``);
- nothing the user sends reaches a blocked JID: it is answered ``<not-acceptable/>``
  with ``<blocked xmlns='urn:xmpp:blocking:errors'/>``;
- presence stops both ways: broadcasts and probe answers pass them by (this module's
  ``presence/screen`` handler), a block sends unavailable presence each way between
  the user's available resources and the blocked ones, and an unblock their current
  presence each way.

Stanzas to or from the server itself, and between one user's resources, are never
blocked. Pushes go to the resources that asked for the list (§3.3, §3.4).

Until a user's list is read (just after a bind) what the user sends, and what is sent
to them, waits for it. An IQ get or set to the bare JID of a user who is not online,
which the server answers on the account's behalf, waits for a read of their list, so
that a blocked JID cannot tell whether they are online.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Coroutine, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from chinwag.network.blocking import (
    BLOCKLIST_CHANGED,
    MAX_BLOCKED,
    InvalidBlockedJID,
    NoSuchAccount,
    TooManyBlocked,
    blocks,
    prepare_jid,
)
from chinwag.network.events import NetworkEvent
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import (
    DELIVER_SCREEN,
    PRESENCE_SCREEN,
    ROUTE_BEFORE,
    SESSION_BOUND,
    SESSION_CLOSED,
    Handler,
)
from chinwag.server.routing import SessionRecord
from chinwag.server.session import Session, SessionKey
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError, StreamCondition, StreamError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.stanza import make_reply
from chinwag.xmpp.stream import NEW_JID_CHARS_BURST, NEW_JID_CHARS_PER_SECOND

SPEC = Spec(
    "XEP-0191",
    "Blocking Command",
    "supported",
    "full JIDs, bare JIDs, domains and domain/resource; messages and IQs from a blocked "
    "JID get service-unavailable, presence is dropped, stanzas to it get not-acceptable "
    f"with <blocked/>; presence stops both ways; at most {MAX_BLOCKED} JIDs per user",
)

log = logging.getLogger(__name__)

EMPTY: frozenset[str] = frozenset()
SCREEN_PRIORITY = 100
"""Before every other handler of ``route/before`` and ``iq/account``, which a stanza held
back here and sent on again would otherwise meet twice."""
_REQUESTS = ("get", "set")

REQUESTED = SessionKey[bool]("blocking.requested")
"""The session asked for the block list, so it gets pushes (§3.3)."""
ALLOWANCE = SessionKey[list[float]]("blocking.allowance")
"""What is left of the session's allowance of new non-ASCII JIDs, and as of when."""


@dataclass(eq=False)
class Pin:
    """An online user's hold on their list: how many sessions, the lock every reading
    and change of the list takes, and whether it has been read."""

    sessions: int = 0
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    ready: asyncio.Event = field(default_factory=asyncio.Event)


def blocked_error() -> StanzaError:
    """§3.3: the answer to a stanza the user sends to a JID they block."""
    return StanzaError(
        StanzaCondition.NOT_ACCEPTABLE, application=Element("blocked", ns.BLOCKING_ERRORS)
    )


class Blocking:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.service = api.services.blocking
        self.domain = api.domain.domain
        self.lists: dict[str, frozenset[str]] = {}
        """The lists of online users that have been read, by username."""
        self.pinned: dict[str, Pin] = {}
        """Every online user's pin, read or not."""
        self.loading: set[str] = set()
        """Online users whose list is still being read."""
        self.blockers: set[str] = set()
        """Online users who block anyone."""
        self.screens: list[tuple[str, Handler, int]] = [
            (ROUTE_BEFORE, self.screen, SCREEN_PRIORITY),
            (PRESENCE_SCREEN, self.hidden, 0),
            (DELIVER_SCREEN, self.hidden, 0),
        ]
        """The screens of routing and presence, as bound methods made once (``unhook``
        finds a handler by identity). They are hooked only while someone online blocks
        anyone or has a list still being read, so that they cost nothing otherwise."""
        self.hooked = False
        self.passing: Element | None = None
        """A stanza that waited for a list, was screened since, and is being sent on."""
        self.passing_account: Element | None = None
        """The same, for an IQ that waited for the stored list of a user not online."""

    # --- screening --------------------------------------------------------------------------

    def screen(self, routed: Routed) -> bool:
        """``route/before``, while hooked: on the message path, where neither side blocks
        anyone, two dictionary lookups and no call."""
        stanza = routed.stanza
        if stanza is self.passing:
            self.passing = None
            return False
        origin = routed.origin
        if origin is None:
            sender = self.user_sender(stanza)
            if sender is None:
                return False
        else:
            sender = origin.jid
        to = routed.to
        lists = self.lists
        if to.domain != self.domain:
            theirs: frozenset[str] | None = EMPTY
        elif to.local is None or to.local == sender.local:
            return False  # to the server, or between one's own resources
        else:
            theirs = lists.get(to.local)
        mine = lists.get(sender.local or "")
        if mine is None or theirs is None:
            return self.unknown(routed, sender, mine, theirs)
        if mine or theirs:
            return self.refused(routed, sender, mine, theirs)
        return False

    def user_sender(self, stanza: Element) -> JID | None:
        """The local user a server-generated stanza speaks for, if any. Errors are the
        server's answers (this module's own among them) and always pass."""
        text = stanza.attrs.get("from")
        if text is None or stanza.attrs.get("type") == "error":
            return None
        try:
            sender = JID.parse(text)
        except InvalidJID:
            return None
        return sender if sender.local is not None and sender.domain == self.domain else None

    def refused(
        self, routed: Routed, sender: JID, mine: frozenset[str], theirs: frozenset[str]
    ) -> bool:
        """Refuse ``routed`` if the sender's list blocks its target or the target's list
        blocks its sender; whether it did."""
        stanza = routed.stanza
        if mine and blocks(mine, routed.to):
            if routed.origin is not None:  # else the server spoke for the user: dropped
                self.api.bounce(stanza, blocked_error())
            return True
        if theirs and blocks(theirs, sender):
            if stanza.tag != "presence":  # bounce() drops results and errors
                self.api.bounce(stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))
            return True
        return False

    def unknown(
        self,
        routed: Routed,
        sender: JID,
        mine: frozenset[str] | None,
        theirs: frozenset[str] | None,
    ) -> bool:
        """A list not in memory. One still being read is waited for. A user who is not
        online has none here: a message for them meets their stored list in offline
        storage, an IQ to their bare JID in ``screen_for_account``, and nothing else
        reaches them."""
        waits: list[asyncio.Event] = []
        for user in (sender.local, routed.to.local):
            pin = self.pinned.get(user or "")
            if pin is not None and not pin.ready.is_set():
                waits.append(pin.ready)
        if waits:
            self.hold(routed, self.screen_later(routed, sender, waits))
            return True
        return self.refused(routed, sender, mine or EMPTY, theirs or EMPTY)

    async def screen_later(
        self, routed: Routed, sender: JID, waits: Sequence[asyncio.Event]
    ) -> None:
        for ready in waits:
            await ready.wait()
        lists = self.lists
        mine = lists.get(sender.local or "", EMPTY)
        theirs = lists.get(routed.to.local or "", EMPTY)
        if not self.refused(routed, sender, mine, theirs):
            self.passing = routed.stanza
            try:
                self.api.dispatch(routed.stanza, routed.to, routed.origin)
            finally:
                self.passing = None

    def screen_for_account(self, routed: Routed) -> bool:
        """``iq/account``: an IQ get or set to the bare JID of a user who is not online,
        which the server answers on their behalf (a vCard, a ping), waits for their
        stored list, so that a JID they block cannot tell whether they are online."""
        if routed.stanza.attrs.get("type") not in _REQUESTS:
            return self.passed(routed.stanza)
        return self.screen_offline(routed)

    def screen_probe(self, routed: Routed) -> bool:
        """``presence/bare`` and ``presence/full``: a probe of a user who is not online,
        which the server answers with unavailable presence on their behalf, waits for
        their stored list: a JID they block gets no answer (§3.3), as when they are
        online, and cannot tell the difference."""
        if routed.stanza.attrs.get("type") != "probe":
            return self.passed(routed.stanza)
        return self.screen_offline(routed)

    def passed(self, stanza: Element) -> bool:
        """False; a stanza sent on after the stored list was read is not screened again."""
        if stanza is self.passing_account:
            self.passing_account = None
        return False

    def screen_offline(self, routed: Routed) -> bool:
        """Hold ``routed`` until the stored list of its target, a user who is not online,
        is read; whether it did."""
        stanza = routed.stanza
        if stanza is self.passing_account:
            self.passing_account = None
            return False
        target = routed.to.local
        if target is None or target in self.pinned:
            return False
        origin = routed.origin
        sender = origin.jid if origin is not None else self.user_sender(stanza)
        if sender is None or sender.local == target:
            return False
        self.hold(routed, self.screen_stored(routed, sender, target))
        return True

    async def screen_stored(self, routed: Routed, sender: JID, target: str) -> None:
        try:
            theirs = frozenset(await self.read(target))
        except Exception:
            log.exception("reading the block list of %s failed", target)
            self.api.bounce(routed.stanza, StanzaError(StanzaCondition.INTERNAL_SERVER_ERROR))
            return
        if theirs and blocks(theirs, sender):
            if routed.stanza.tag != "presence":  # presence gets no answer at all (§3.3)
                self.api.bounce(routed.stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))
            return
        self.passing_account = routed.stanza
        try:
            self.api.dispatch(routed.stanza, routed.to, routed.origin)
        finally:
            self.passing_account = None

    def hold(self, routed: Routed, work: Coroutine[Any, Any, None]) -> None:
        """Run ``work`` for a stanza held back; its sender's stream reads on after it."""
        if routed.origin is not None:
            routed.origin.connection.hold(work)
        else:
            self.api.spawn(work)

    def hidden(self, sender: JID, recipient: JID) -> bool:
        """``presence/screen`` and ``deliver/screen``, while hooked: whether either user's
        list blocks the other (one resource of the other, for a list that names it)."""
        if sender.local == recipient.local:
            return False
        lists = self.lists
        mine = lists.get(sender.local or "")
        if mine and blocks(mine, recipient):
            return True
        theirs = lists.get(recipient.local or "")
        return theirs is not None and blocks(theirs, sender)

    def rehook(self) -> None:
        """Hook the screens while someone online blocks anyone or has a list still being
        read; take them off when nobody does."""
        wanted = bool(self.blockers or self.loading)
        if wanted == self.hooked:
            return
        self.hooked = wanted
        for event, handler, priority in self.screens:
            if wanted:
                self.api.hook(event, handler, priority)
            else:
                self.api.unhook(event, handler)

    # --- the lists of online users -----------------------------------------------------------

    def keep(self, user: str, blocked: frozenset[str]) -> None:
        """Hold ``blocked`` as an online user's list."""
        self.lists[user] = blocked
        if blocked:
            self.blockers.add(user)
        else:
            self.blockers.discard(user)
        self.rehook()

    def on_bound(self, session: Session) -> None:
        user = session.username
        pin = self.pinned.get(user)
        if pin is None:
            pin = self.pinned[user] = Pin()
            self.loading.add(user)
            self.rehook()
            self.api.spawn(self.load(user, pin))
        pin.sessions += 1

    def on_closed(self, session: Session) -> None:
        user = session.username
        pin = self.pinned.get(user)
        if pin is None:
            return
        pin.sessions -= 1
        if pin.sessions <= 0:
            del self.pinned[user]
            self.lists.pop(user, None)
            self.blockers.discard(user)
            self.loading.discard(user)
            self.rehook()

    async def load(self, user: str, pin: Pin) -> None:
        """Read the list of a user who has just come online; what waits for it goes on
        once it is in, or once reading it failed and the user's sessions were ended."""
        try:
            async with pin.lock:
                await self.loaded(user, pin)
        except Exception:
            log.exception("reading the block list of %s failed", user)
            failed = StreamError(StreamCondition.INTERNAL_SERVER_ERROR, "no block list")
            for session in list(self.api.sessions.of(user)):
                self.api.sessions.end(session, failed)
        finally:
            pin.ready.set()
            if self.pinned.get(user) is pin:
                self.loading.discard(user)
                self.rehook()

    async def loaded(self, user: str, pin: Pin) -> frozenset[str]:
        """The user's list, read now if it is not in memory yet; call it holding the lock."""
        found = self.lists.get(user)
        if found is None:
            found = frozenset(await self.read(user))
            if self.pinned.get(user) is pin:
                self.keep(user, found)
        return found

    async def read(self, user: str) -> list[str]:
        try:
            return await self.service.blocked(user)
        except NoSuchAccount:
            return []  # deleted: its sessions are ending

    def on_network_change(self, event: NetworkEvent) -> None:
        if event.subject in self.pinned:
            self.api.spawn(self.refresh(event.subject))

    async def refresh(self, user: str) -> None:
        """Bring an online user's list up to date with storage: a change made elsewhere
        (the REST API, another process) takes effect as the user's own would. The
        module's own changes are found applied already."""
        pin = self.pinned.get(user)
        if pin is None:
            return
        async with pin.lock:
            before = self.lists.get(user)
            if before is None or self.pinned.get(user) is not pin:
                return  # still to be read (or gone): the read to come sees the change
            after = frozenset(await self.read(user))
            added, removed = sorted(after - before), sorted(before - after)
            if added or removed:
                self.apply(user, added, removed)
                if added:
                    self.push(user, "block", added)
                if removed:
                    self.push(user, "unblock", removed)

    # --- the protocol ------------------------------------------------------------------------

    def requester(self, iq: Element) -> tuple[Session, Pin]:
        sender = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        if to is not None and JID.parse(to) != sender.bare:
            raise StanzaError(StanzaCondition.FORBIDDEN, "only your own block list")
        session = self.api.sessions.get(sender)
        pin = self.pinned.get(sender.local or "")
        if session is None or pin is None:
            raise StanzaError(StanzaCondition.SERVICE_UNAVAILABLE)
        return session, pin

    def on_get(self, iq: Element) -> Awaitable[Element]:
        session, pin = self.requester(iq)
        session.put(REQUESTED, True)
        return self.blocklist(iq, session.username, pin)

    async def blocklist(self, iq: Element, user: str, pin: Pin) -> Element:
        async with pin.lock:
            blocked = await self.loaded(user, pin)
        reply = make_reply(iq)
        listed = reply.add("blocklist", ns.BLOCKING)
        for jid in sorted(blocked):
            listed.add("item", attrs={"jid": jid})
        return reply

    def on_set(self, iq: Element) -> None:
        """A block or unblock: checked here, then applied while the client's stream
        waits, so that what it sends next meets the new list."""
        session, pin = self.requester(iq)
        command = iq.first_element()
        assert command is not None
        jids = self.requested(session, command)
        session.connection.hold(self.change(iq, session, pin, command.tag, jids))

    def requested(self, session: Session, command: Element) -> list[str] | None:
        """The prepared JIDs of a command's items; None for an <unblock/> of everything."""
        items = command.find_all("item", ns.BLOCKING)
        if not items:
            if command.tag == "block":
                raise StanzaError(StanzaCondition.BAD_REQUEST, "block at least one JID")
            return None
        if len(items) > MAX_BLOCKED:
            raise StanzaError(
                StanzaCondition.POLICY_VIOLATION, f"at most {MAX_BLOCKED} JIDs at once"
            )
        texts = [item.attrs.get("jid") for item in items]
        if any(not text for text in texts):
            raise StanzaError(StanzaCondition.BAD_REQUEST, "an item without a jid")
        self.spend_allowance(session, [text for text in texts if text])
        try:
            return list(dict.fromkeys(prepare_jid(text) for text in texts if text))
        except InvalidBlockedJID as error:
            raise StanzaError(StanzaCondition.JID_MALFORMED, str(error)) from None

    def spend_allowance(self, session: Session, texts: Iterable[str]) -> None:
        """Preparing a new non-ASCII JID costs microseconds a character: a session may ask
        for as many characters' worth as its stream may for addresses (<resource-constraint/>
        beyond, as there)."""
        cost = sum(len(t) for t in texts if not t.isascii() and JID.cached(t) is None)
        if not cost:
            return
        now = asyncio.get_running_loop().time()
        allowance = session.get(ALLOWANCE)
        if allowance is None:
            allowance = [float(NEW_JID_CHARS_BURST), now]
            session.put(ALLOWANCE, allowance)
        left = min(
            float(NEW_JID_CHARS_BURST),
            allowance[0] + (now - allowance[1]) * NEW_JID_CHARS_PER_SECOND,
        )
        allowance[1] = now
        if cost > left:
            allowance[0] = left
            raise StanzaError(
                StanzaCondition.RESOURCE_CONSTRAINT,
                "too many new non-ASCII JIDs at once: send this again in a few seconds",
            )
        allowance[0] = left - cost

    async def change(
        self, iq: Element, session: Session, pin: Pin, command: str, jids: list[str] | None
    ) -> None:
        user = session.username
        try:
            async with pin.lock:
                await self.loaded(user, pin)
                if command == "block":
                    assert jids is not None
                    added, removed = await self.service.block(user, jids), []
                else:
                    added, removed = [], await self.service.unblock(user, jids)
                if self.pinned.get(user) is pin:
                    self.apply(user, added, removed)
        except TooManyBlocked as error:
            self.api.bounce(iq, StanzaError(StanzaCondition.POLICY_VIOLATION, str(error)))
            return
        except NoSuchAccount:
            self.api.bounce(iq, StanzaError(StanzaCondition.ITEM_NOT_FOUND))
            return
        except Exception:
            log.exception("changing the block list of %s failed", user)
            self.api.bounce(iq, StanzaError(StanzaCondition.INTERNAL_SERVER_ERROR))
            return
        self.api.deliver(make_reply(iq), session.jid)
        self.push(user, command, jids)

    def push(self, user: str, command: str, jids: Iterable[str] | None) -> None:
        """§3.3, §3.4: the change to every resource of ``user`` that asked for the list
        (no items: everything was unblocked)."""
        items = list(jids or ())
        for session in self.api.sessions.of(user):
            if not session.get(REQUESTED):
                continue
            attrs = {"type": "set", "id": f"push-{random_hex(4)}", "to": str(session.jid)}
            iq = Element("iq", attrs=attrs)
            pushed = iq.add(command, ns.BLOCKING)
            for jid in items:
                pushed.add("item", attrs={"jid": jid})
            self.api.router.deliver(session, iq)

    # --- applying a change ---------------------------------------------------------------------

    def apply(self, user: str, added: Sequence[str], removed: Sequence[str]) -> None:
        """Take the change into the user's list in memory, and show it in presence."""
        before = self.lists.get(user, EMPTY)
        after = before.union(added).difference(removed)
        self.keep(user, after)
        if added:
            self.hide(user, frozenset(added))
        if removed:
            self.reveal(user, before, after)

    def hide(self, user: str, added: frozenset[str]) -> None:
        """§3.3: unavailable presence from each of the user's available resources to each
        newly blocked one that had their presence (a contact's, or directed presence's),
        and from each newly blocked one whose presence they had."""
        router = self.api.router
        mine = self.available(user)
        for records, hears, heard in self.neighbours(user):
            for record in records:
                if not blocks(added, record.jid):
                    continue
                for own in mine:
                    if hears:
                        router.deliver(record, unavailable(own.jid, record.jid))
                    if heard:
                        router.deliver(own, unavailable(record.jid, own.jid))
        for session in self.api.sessions.of(user):
            for target in session.directed:
                for record in self.reached(target):
                    if blocks(added, record.jid):
                        router.deliver(record, unavailable(session.jid, record.jid))

    def reveal(self, user: str, before: frozenset[str], after: frozenset[str]) -> None:
        """§3.4: the current presence of each of the user's available resources to each
        unblocked contact's that is subscribed to it, and the other way round (as a probe
        would be answered), unless a list still keeps them apart; and to each unblocked
        resource that a session had sent directed presence to (RFC 6121 §4.6), which
        ``hide`` told it was unavailable."""
        router = self.api.router
        mine = self.available(user)
        for records, hears, heard in self.neighbours(user):
            for record in records:
                if not blocks(before, record.jid) or blocks(after, record.jid):
                    continue
                for own in mine:
                    if self.hidden(own.jid, record.jid):
                        continue
                    if hears and own.presence is not None:
                        router.deliver(record, addressed(own.presence, own.jid, record.jid))
                    if heard and record.presence is not None:
                        router.deliver(own, addressed(record.presence, record.jid, own.jid))
        for session in self.api.sessions.of(user):
            presence = session.presence
            if presence is None:
                continue
            for target in session.directed:
                for record in self.reached(target):
                    if (
                        blocks(before, record.jid)
                        and not blocks(after, record.jid)
                        and not self.hidden(session.jid, record.jid)
                    ):
                        router.deliver(record, addressed(presence, session.jid, record.jid))

    def available(self, user: str) -> list[SessionRecord]:
        return [r for r in self.api.router.resources(self.api.jid(user)) if r.available]

    def neighbours(self, user: str) -> list[tuple[list[SessionRecord], bool, bool]]:
        """The user's contacts that are online: the available resources of each, whether
        they hear the user's presence, and whether the user hears theirs."""
        roster = self.api.rosters.get(user)
        if roster is None:
            return []
        found = []
        for contact, item in roster.items.items():
            hears = item.subscription in ("from", "both")
            heard = item.subscription in ("to", "both")
            if hears or heard:
                records = self.available(contact)
                if records:
                    found.append((records, hears, heard))
        return found

    def reached(self, target: JID) -> list[SessionRecord]:
        """The available local resources that presence directed to ``target`` reached."""
        if target.domain != self.domain or target.local is None:
            return []
        if target.resource is None:
            return self.available(target.local)
        record = self.api.router.record(target)
        return [record] if record is not None and record.available else []


def unavailable(sender: JID, recipient: JID) -> Element:
    return Element(
        "presence", attrs={"from": str(sender), "to": str(recipient), "type": "unavailable"}
    )


def addressed(presence: Element, sender: JID, recipient: JID) -> Element:
    attrs = {**presence.attrs, "from": str(sender), "to": str(recipient)}
    return Element("presence", attrs=attrs, children=presence.children)


def setup(api: ModuleAPI) -> None:
    blocking = Blocking(api)
    api.add_feature(ns.BLOCKING)
    api.iq_handler("get", ns.BLOCKING, "blocklist", blocking.on_get, scope="account")
    api.iq_handler("set", ns.BLOCKING, "block", blocking.on_set, scope="account")
    api.iq_handler("set", ns.BLOCKING, "unblock", blocking.on_set, scope="account")
    api.hook("iq/account", blocking.screen_for_account, SCREEN_PRIORITY)
    api.hook("presence/bare", blocking.screen_probe, SCREEN_PRIORITY)
    api.hook("presence/full", blocking.screen_probe, SCREEN_PRIORITY)
    api.hook(SESSION_BOUND, blocking.on_bound)
    # After every other handler: presence leaving must still meet the list.
    api.hook(SESSION_CLOSED, blocking.on_closed, -100)
    api.hook(f"network/{BLOCKLIST_CHANGED}", blocking.on_network_change)
