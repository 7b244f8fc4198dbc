"""XEP-0160 offline messages with XEP-0203 delay stamps.

A chat or normal message for an account with no available resource is committed
to storage before the sender's stream moves on; it is delivered, stamped with
``<delay/>``, when the account next sends initial presence. What is delivered live
to that session meanwhile is held until the stored messages are out, so they arrive
in the order they were sent. A message from someone the account blocks (XEP-0191) is
refused by the store, in the transaction that would keep it, and bounced with
``<service-unavailable/>``; one that a block list keeps from the session it would be
written to (``deliver/screen``: blocked since it was stored, or sent by someone who
blocks that resource) is dropped.

Delivered messages are deleted only once the session has sent something after they
went out (a ping from the server follows them, which every live client answers): a
connection that was already dead gets nothing deleted, and the next login gets them
again, with their first stamps. A session silent for ``limits.ping_timeout_seconds``
after them is taken for dead, as after any unanswered ping: its stream is closed with
``<connection-timeout/>``, and the session waits for resumption if its client enabled
it (XEP-0198). A message that a session left unacknowledged already carries the delay
stamp of when it was first sent, and gets no second one.

Stores are group-committed (:class:`GroupCommit`): messages that arrive in the same
event-loop turn, or while a transaction is in flight, share the next transaction,
and each sender is held until the one holding its message has committed. A batch
that fails is stored again one message at a time, so only a message that cannot be
stored on its own is bounced. A message still being stored when its recipient sends
initial presence may commit after that presence's delivery read the storage: once the
last message being stored for an account has committed, each of its resources that
became available meanwhile, on this node or another, is told (``offline/stored``,
through ``Router.signal``) and gets what is stored. A mailbox found full is remembered
(:class:`FullMailboxes`), so a flood past the quota is refused without a transaction.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import Counter, OrderedDict
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from chinwag.network.blocking import match_forms
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import DELIVER_OFFLINE, DELIVER_SCREEN
from chinwag.server.session import Session, SessionKey
from chinwag.store.offline import NewOfflineMessage, OfflineRepository, StoreResult
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.ids import random_hex
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.stanza import delayed_by
from chinwag.xmpp.times import format_datetime
from chinwag.xmpp.xml import parse_stanza

STORED = "offline/stored"
"""Fired, on its own node, for a session that became available while messages for its
account were being stored: ``handler(session)``, answers ignored."""

SPEC = Spec(
    "XEP-0160, XEP-0203",
    "Offline messages, Delayed Delivery",
    "supported",
    "chat and normal messages with content are stored (quota `messages.offline_quota`, "
    "default 1000; beyond it service-unavailable) and delivered at the next initial presence "
    "with <delay from='DOMAIN' stamp='…'/>; headlines, errors and chat-state-only messages "
    "are not stored",
)

log = logging.getLogger(__name__)

STORABLE_TYPES = frozenset({"normal", "chat"})
MAILBOX_FULL = "mailbox full"
FULL_MAILBOXES_KEPT = 10_000
"""Full mailboxes remembered at once; past this the oldest is forgotten."""
FULL_MAILBOX_SECONDS = 10.0
"""How long a full mailbox is believed without asking the store again. Deliveries here
empty it at once; another server process on the same database would not tell us."""


class HeldOutput:
    """An output filter that keeps back what is routed to a session while its stored
    messages go out ahead of it."""

    __slots__ = ("stanzas",)

    def __init__(self) -> None:
        self.stanzas: list[Element] = []

    def __call__(self, stanza: Element) -> bool:
        self.stanzas.append(stanza)
        return True


HELD = SessionKey[HeldOutput]("offline.held")


def hold_output(session: Session) -> None:
    """Keep what is routed to ``session`` from now on until ``release_output``."""
    if session.get(HELD) is None:
        held = HeldOutput()
        session.put(HELD, held)
        session.add_filter(held)


def release_output(session: Session) -> None:
    """Write what was kept back, in order, and stop keeping."""
    held = session.pop(HELD)
    if held is not None:
        session.remove_filter(held)
        for stanza in held.stanzas:
            session.connection.send(stanza)


def storable(message: Element) -> bool:
    if message.attrs.get("type", "normal") not in STORABLE_TYPES:
        return False
    return any(child.ns != ns.CHATSTATES for child in message.elements())


def sender_forms(routed: Routed) -> tuple[str, ...]:
    """The forms of the sender's JID that the recipient's block list may name (XEP-0191),
    for the store to refuse what it blocks."""
    if routed.origin is not None:
        return match_forms(routed.origin.jid)
    sender = routed.stanza.attrs.get("from")
    try:
        return match_forms(JID.parse(sender)) if sender else ()
    except InvalidJID:
        return ()


Spawn = Callable[[Coroutine[Any, Any, None]], None]
Outcome = asyncio.Future[StoreResult | None]
"""A message's result once its transaction has ended; None when storing failed."""


class GroupCommit:
    """Offline stores that arrive close together, kept in one transaction.

    ``submit`` queues a message at once, so batches keep the order of arrival. One
    batch is stored at a time, and what queues meanwhile makes the next. Nothing
    waits on a timer: a lone message starts its own batch at the next event-loop turn.
    """

    def __init__(self, store: OfflineRepository, quota: int, spawn: Spawn) -> None:
        self._store = store
        self._quota = quota
        self._spawn = spawn
        self._queue: list[tuple[NewOfflineMessage, Outcome]] = []
        self._running = False

    def submit(self, message: NewOfflineMessage) -> Outcome:
        outcome: Outcome = asyncio.get_running_loop().create_future()
        self._queue.append((message, outcome))
        if not self._running:
            self._running = True
            self._spawn(self._run())
        return outcome

    async def _run(self) -> None:
        try:
            while self._queue:
                batch, self._queue = self._queue, []
                await self._commit(batch)
        finally:
            self._running = False

    async def _commit(self, batch: list[tuple[NewOfflineMessage, Outcome]]) -> None:
        messages = [message for message, _ in batch]
        results: Sequence[StoreResult | None]
        try:
            results = await self._store.store_many(messages, self._quota)
        except Exception:
            log.exception("storing a batch of %d offline messages failed", len(batch))
            # One message's fault, or a passing one (a deadlock, a dropped connection),
            # must not bounce the others: each gets a transaction of its own, as it would
            # have had without group commit.
            if len(batch) == 1:
                results = [None]
            else:
                results = [await self._store_alone(message) for message in messages]
        for (_, outcome), result in zip(batch, results, strict=True):
            if not outcome.done():  # cancelled if its waiter was
                outcome.set_result(result)

    async def _store_alone(self, message: NewOfflineMessage) -> StoreResult | None:
        try:
            (result,) = await self._store.store_many([message], self._quota)
        except Exception:
            log.exception("storing an offline message for %s failed", message.username)
            return None
        return result


class FullMailboxes:
    """Users whose mailbox a store found full, so that more messages to them are refused
    without a transaction. Bounded in number and age; the store still counts exactly, so
    a forgotten mailbox only costs one transaction."""

    def __init__(
        self,
        *,
        kept: int = FULL_MAILBOXES_KEPT,
        seconds: float = FULL_MAILBOX_SECONDS,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._kept = kept
        self._seconds = seconds
        self._clock = clock
        self._until: OrderedDict[str, float] = OrderedDict()
        """When each is to be asked about again, soonest first."""

    def add(self, username: str) -> None:
        self._until[username] = self._clock() + self._seconds
        self._until.move_to_end(username)
        if len(self._until) > self._kept:
            self._until.popitem(last=False)

    def discard(self, username: str) -> None:
        self._until.pop(username, None)

    def __contains__(self, username: str) -> bool:
        until = self._until.get(username)
        if until is None:
            return False
        if until > self._clock():
            return True
        del self._until[username]
        return False


class Offline:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.store = api.services.offline
        self.screen = api.channel(DELIVER_SCREEN)
        self.commits = GroupCommit(self.store, api.settings.messages.offline_quota, api.spawn)
        self.full = FullMailboxes()
        self.storing: Counter[str] = Counter()
        """Messages per user queued for storage and not yet committed (or refused)."""
        self.available_before: dict[str, set[JID]] = {}
        """Per user with messages being stored: its resources that were available when
        the first of them was queued."""
        self.delivering: dict[str, list[Session]] = {}
        """Users whose stored messages are being delivered, with the sessions that asked
        meanwhile, each still holding its live output until its turn."""

    def on_offline(self, routed: Routed) -> bool:
        if not storable(routed.stanza):
            work = self.drop_or_refuse(routed)
        elif (routed.to.local or "") in self.full:
            self.refuse_as_full(routed.stanza)  # without a transaction
            return True
        else:
            work = self.keep(routed)
        if routed.origin is not None:
            routed.origin.connection.hold(work)
        else:
            self.api.spawn(work)
        return True

    def keep(self, routed: Routed) -> Coroutine[Any, Any, None]:
        """Queue the message for storage now, in order of arrival; the work returned
        waits for its commit and bounces it if it was not stored."""
        username = routed.to.local or ""
        if not self.storing[username]:
            self.available_before[username] = self.available_resources(username)
        self.storing[username] += 1
        text = routed.stanza.encoded().decode()
        message = NewOfflineMessage(username, text, datetime.now(UTC), sender_forms(routed))
        return self.answer(routed, username, self.commits.submit(message))

    async def answer(self, routed: Routed, username: str, outcome: Outcome) -> None:
        try:
            result = await outcome
        finally:
            self.settled(username)
        if result is StoreResult.STORED:
            self.api.stats.offline_stored += 1
        elif result is None:
            self.api.bounce(routed.stanza, StanzaError(StanzaCondition.INTERNAL_SERVER_ERROR))
        elif result is StoreResult.QUOTA_EXCEEDED:
            self.full.add(username)
            self.refuse_as_full(routed.stanza)
        else:
            self.api.bounce(routed.stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))

    def refuse_as_full(self, message: Element) -> None:
        self.api.bounce(message, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE, MAILBOX_FULL))

    def settled(self, username: str) -> None:
        """One message for ``username`` is out of the queue; with the last one, tell each
        resource that became available meanwhile, whose initial presence may have read
        the storage before the commit."""
        self.storing[username] -= 1
        if self.storing[username]:
            return
        del self.storing[username]
        before = self.available_before.pop(username)
        for record in self.api.router.resources(self.api.jid(username)):
            if record.available and record.jid not in before:
                self.api.router.signal(record, STORED)

    def available_resources(self, username: str) -> set[JID]:
        return {r.jid for r in self.api.router.resources(self.api.jid(username)) if r.available}

    async def drop_or_refuse(self, routed: Routed) -> None:
        """Unstored messages vanish quietly, unless the account does not exist (§8.5.2)."""
        if not await self.api.services.contacts.account_exists(routed.to.local or ""):
            self.api.bounce(routed.stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))

    def on_initial_presence(self, session: Session) -> None:
        before = self.available_before.get(session.username)
        if before is not None:  # available again (unavailable since): told at the commit too
            before.discard(session.jid)
        hold_output(session)  # live messages wait until the stored ones are out
        self.start_delivery(session)

    def on_stored(self, session: Session) -> None:
        """Messages committed after ``session``'s initial presence may have read the
        storage: deliver them too (after that delivery, if it is still running)."""
        if self.reachable(session):
            hold_output(session)
            self.start_delivery(session)

    def start_delivery(self, session: Session) -> None:
        """Deliver the user's stored messages to ``session``; when a delivery to the
        user is running, to each session that asked meanwhile, in turn, when it ends."""
        waiting = self.delivering.get(session.username)
        if waiting is not None:
            waiting.append(session)
            return
        self.delivering[session.username] = []
        self.api.spawn(self.deliver(session))

    async def deliver(self, session: Session) -> None:
        username = session.username
        waiting = self.delivering[username]
        again: Session | None = session
        try:
            while again is not None:
                try:
                    written = await self.write_stored(again)
                finally:
                    release_output(again)
                if written is not None:
                    await self.delete_when_heard(again, *written)
                again = waiting.pop(0) if waiting else None
        finally:
            del self.delivering[username]
            for left in waiting:  # asked for while this one failed
                release_output(left)

    async def write_stored(self, session: Session) -> tuple[int, Awaitable[bool]] | None:
        """Every stored message to ``session``, if still bound and available, then a ping;
        the id of the last one, and whether the client is heard from after them."""
        stored = await self.store.fetch(session.username)
        if not stored or not self.reachable(session):
            return None
        domain = self.api.domain.domain
        for message in stored:
            stanza = parse_stanza(message.stanza)
            if self.screen.handlers and self.screened(stanza, session):
                continue  # deleted with the others: a block list keeps it from the session
            stanza.attrs["to"] = str(session.jid)
            if not delayed_by(stanza, domain):  # else stamped when it was first sent
                stanza.add(
                    "delay", ns.DELAY, {"from": domain, "stamp": format_datetime(message.stored_at)}
                )
            session.connection.send(stanza)  # ahead of what is held
        session.connection.send(self.ping(session))
        return stored[-1].id, session.connection.heard_after_output()

    def screened(self, stanza: Element, session: Session) -> bool:
        sender = stanza.attrs.get("from")
        try:
            return sender is not None and self.screen.vetoes(JID.parse(sender), session.jid)
        except InvalidJID:
            return False

    def ping(self, session: Session) -> Element:
        """XEP-0199, so that an idle client answers at once; its reply, to the server, is
        ignored like every result or error sent there."""
        domain = self.api.domain.domain
        iq = Element(
            "iq",
            attrs={
                "type": "get",
                "id": f"offline-{random_hex(4)}",
                "from": domain,
                "to": str(session.jid),
            },
        )
        iq.add("ping", ns.PING)
        return iq

    async def delete_when_heard(
        self, session: Session, last_id: int, heard: Awaitable[bool]
    ) -> None:
        """Delete the messages up to ``last_id`` once the client has sent anything after
        them; not if its stream ends first, nor if it stays silent (then it is closed)."""
        try:
            alive = await asyncio.wait_for(heard, self.api.settings.limits.ping_timeout_seconds)
        except TimeoutError:
            self.api.sessions.time_out(session)  # as any unanswered ping
            return
        if alive:
            self.full.discard(session.username)  # a message stored meanwhile is counted exactly
            self.api.stats.offline_delivered += await self.store.delete(session.username, last_id)

    def reachable(self, session: Session) -> bool:
        return session.available and self.api.sessions.get(session.jid) is session


def setup(api: ModuleAPI) -> None:
    offline = Offline(api)
    api.add_feature(ns.OFFLINE)
    api.hook(DELIVER_OFFLINE, offline.on_offline)
    api.hook("presence/initial", offline.on_initial_presence)
    api.hook(STORED, offline.on_stored)
