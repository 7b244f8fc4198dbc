"""XEP-0313 Message Archive Management, with XEP-0359 stanza ids and XEP-0059 paging.

This module owns what is archived, the ids stamped on archived messages, the queries
and the preferences. A message with a body, of type ``chat`` or ``normal``, between a
local user and anyone on this server is archived for each local party whose
preferences (``[archive] default_policy`` until they set their own) keep it, as it is
routed (``route/before``, after the block list's screen): the copy handed to the
recipient carries ``<stanza-id by='user@domain' id='…'/>``, the id its archive knows
it by. A stanza id a client sent in the name of this server's JIDs is taken out first,
so one found later was stamped here, and a message routed again (a session ended
with it unacknowledged) is not archived twice.

Writes never hold up delivery: the messages archived within a short window, or while
a transaction is in flight, are stored together in the next one (:class:`Writer`), a
group commit as the offline store's, in one statement; a message is queued as the
tuple the statement takes, once per archive that keeps it, and both archives know it by
the same id. The queue is bounded:
once more than ``MAX_QUEUED`` messages wait, the stream of a sender whose message
goes past the bound reads nothing more until the batch being stored is (or, with none
under way, the queue): its messages are still delivered and archived, none is dropped,
and the next batch is stored while the senders go on. Each wait is counted
(``Writer.held``) and logged at most once a minute. A query first waits for what was
queued before it, so a client finds the message it has just sent, and the server's
stop waits for the queue to be stored. What ``urn:xmpp:mam:2#extended`` promises is
here too: the ``before-id``, ``after-id`` and ``ids`` fields, flipped pages, and the
archive's metadata (its first and last messages).

Preferences of online users are kept in memory, read when their first resource binds
and read again when any process (another node of a cluster) changes them
(``archive.prefs_changed``); the writer reads those of other users itself. A recipient who is not online has a
stanza id stamped when the server's default policy would archive the message, and
the writer then applies their stored preferences: a message their preferences keep
out carries an id that no query finds.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable
from datetime import datetime
from typing import Any

from chinwag.network.events import NetworkEvent
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import ROUTE_BEFORE, SESSION_BOUND, SESSION_CLOSED
from chinwag.server.session import Session
from chinwag.store.archive import (
    ARCHIVE_PREFS_CHANGED,
    POLICIES,
    ArchivedItem,
    ArchiveEnd,
    ArchiveIds,
    ArchivePage,
    ArchiveQuery,
    ArchiveRow,
    NewArchivedMessage,
    Prefs,
    UnknownArchiveId,
    visible_id,
)
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element, escape_attr
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID, InvalidJID
from chinwag.xmpp.stanza import make_reply
from chinwag.xmpp.times import format_datetime, parse_datetime
from chinwag.xmpp.xml import parse_stanza

SPEC = Spec(
    "XEP-0313, XEP-0359, XEP-0059",
    "Message Archive Management, Unique and Stable Stanza IDs, Result Set Management",
    "supported",
    "chat and normal messages with a body, sent and received, each stamped with "
    "<stanza-id/>; queries by with, start, end, before-id, after-id and ids, paged with "
    "RSM max (capped at `archive.max_page`), after and before, pages flipped on request; "
    "archive metadata (`urn:xmpp:mam:2#extended`); preferences always, never and roster; "
    "`[archive]` retention",
)

log = logging.getLogger(__name__)

ARCHIVED_TYPES = frozenset({"chat", "normal"})
NO_STORE_HINTS = frozenset({"no-store", "no-permanent-store"})
"""XEP-0334 hints that keep a message out of the archive."""
ROUTE_PRIORITY = 50
"""After the block list's screen (100): a message it refuses is not archived."""
MAX_QUEUED = 50_000
"""Messages waiting for the writer (one per archive that keeps it, some 1 KB each in
memory) beyond which a sender's stream waits for them."""
HELD_LOG_EVERY_SECONDS = 60.0
BATCH_WINDOW_SECONDS = 0.2
"""How long a batch gathers messages before it is stored, at most: what a crash (not a
stop) can lose of the archive, never of delivery."""
BATCH_ROWS = 20_000
"""Messages that make a batch stored at once."""
QUERY_FIELDS = ("with", "start", "end", "before-id", "after-id", "ids")
MAX_STAMPS = 100_000
"""Users whose <stanza-id/> start is kept between messages, at most (some 200 bytes each)."""
MESSAGE_END = b"</message>"
MESSAGE_END_BYTES = len(MESSAGE_END)
STAMP_END = b'"/></message>'


def examine(message: Element) -> tuple[bool, bool]:
    """Whether the message is one to archive, and whether it carries any stanza id: one
    look at its children."""
    has_body = no_store = has_id = False
    for child in message.children:
        if isinstance(child, str):
            continue
        tag, child_ns = child.tag, child.ns
        if tag == "body" and child_ns == ns.CLIENT:
            has_body = True
        elif child_ns == ns.HINTS and tag in NO_STORE_HINTS:
            no_store = True
        elif tag == "stanza-id" and child_ns == ns.STANZA_ID:
            has_id = True
    archived = has_body and not no_store and message.attrs.get("type", "normal") in ARCHIVED_TYPES
    return archived, has_id


def strip_claimed_ids(message: Element, domain: str) -> None:
    """Take out the stanza ids a client claims this server's JIDs gave (XEP-0359 §5)."""
    claimed = [
        child
        for child in message.elements()
        if child.ns == ns.STANZA_ID
        and child.tag == "stanza-id"
        and (child.attrs.get("by") or "").rpartition("@")[2] == domain
    ]
    if claimed:
        message.children = [child for child in message.children if child not in claimed]
        message.wire = None


def stamped_for(message: Element, owner: str) -> bool:
    """Whether ``message`` already carries this server's id for ``owner``'s archive."""
    return any(
        child.ns == ns.STANZA_ID and child.tag == "stanza-id" and child.attrs.get("by") == owner
        for child in message.elements()
    )


def listed(prefs: Prefs, peer: str) -> bool | None:
    """XEP-0313 §6: whether ``prefs`` archive a message exchanged with ``peer``; None when
    that depends on whether the peer is a contact (the ``roster`` default)."""
    if peer in prefs.never:
        return False
    if peer in prefs.always or prefs.default == "always":
        return True
    return None if prefs.default == "roster" else False


def keeps(prefs: Prefs, peer: str, contact: bool) -> bool:
    decided = listed(prefs, peer)
    return contact if decided is None else decided


class Batch:
    """Messages queued for the writer, in order."""

    __slots__ = ("messages", "undecided")

    def __init__(self) -> None:
        self.messages: list[ArchiveRow] = []
        self.undecided: list[int] = []
        """Indexes of the messages whose owner's preferences were not in memory: the
        writer applies their stored ones."""


class Writer:
    """Archived messages, stored in batches (a group commit): a batch gathers for
    ``BATCH_WINDOW_SECONDS``, or until it holds ``BATCH_ROWS`` messages or someone waits
    for it (a query, a held sender, the stop), and what is queued while it is being
    stored makes the next one. A row's cost falls with the batch's size: each commit
    writes every b-tree page the batch touched, and a batch touches about one page per
    account and per conversation whatever its size."""

    def __init__(self, archive: Archive) -> None:
        self._archive = archive
        self._queue = Batch()
        self._next: asyncio.Future[None] | None = None
        """Resolved once the queued messages are stored."""
        self._current: asyncio.Future[None] | None = None
        """Resolved once the batch being stored is."""
        self._running = False
        self._wake = asyncio.Event()
        """Set when the batch should not wait for the rest of its window."""
        self.held = 0
        """Times a sender's stream waited for the queue, past ``MAX_QUEUED``."""
        self._held_logged = 0
        self._held_logged_at = -HELD_LOG_EVERY_SECONDS

    def add(self, message: ArchiveRow, decided: bool) -> int:
        """Queue ``message``; ``decided``: its owner's preferences kept it (else the
        writer applies their stored ones). How many messages are queued now."""
        queued = self._queue.messages
        if not decided:
            self._queue.undecided.append(len(queued))
        queued.append(message)
        count = len(queued)
        if count >= BATCH_ROWS:
            self._wake.set()
        if not self._running:
            self._running = True
            self._archive.api.spawn(self._run())
        return count

    def stored(self) -> Awaitable[None]:
        """Resolves once everything queued so far is stored (or failed)."""
        loop = asyncio.get_running_loop()
        if self._queue.messages:
            if self._next is None:
                self._next = loop.create_future()
            self._wake.set()
            return asyncio.shield(self._next)
        if self._current is not None:
            return asyncio.shield(self._current)
        done: asyncio.Future[None] = loop.create_future()
        done.set_result(None)
        return done

    def hold(self, origin: Session) -> None:
        """Have ``origin``'s stream wait until the batch being stored is stored (or, with
        none under way, what is queued now): the queue is then taken as the next batch,
        stored while the senders go on, rather than with every sender waiting for it."""
        self.held += 1
        origin.connection.hold(self._drained())
        now = time.monotonic()
        if now - self._held_logged_at >= HELD_LOG_EVERY_SECONDS:
            log.warning(
                "the archive's queue is past %d messages: senders' streams waited for it "
                "%d times since the last warning",
                MAX_QUEUED,
                self.held - self._held_logged,
            )
            self._held_logged, self._held_logged_at = self.held, now

    async def _drained(self) -> None:
        current = self._current
        await (self.stored() if current is None else asyncio.shield(current))

    async def flush(self) -> None:
        """Store everything queued (at the server's stop)."""
        while self._queue.messages or self._running:
            await self.stored()
            await asyncio.sleep(0)

    async def _run(self) -> None:
        try:
            while self._queue.messages:
                if len(self._queue.messages) < BATCH_ROWS and self._next is None:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._wake.wait(), BATCH_WINDOW_SECONDS)
                self._wake.clear()
                batch, self._queue = self._queue, Batch()
                current = self._next or asyncio.get_running_loop().create_future()
                self._current, self._next = current, None
                try:
                    await self._archive.store(batch)
                except Exception:
                    log.exception("archiving a batch of %d messages failed", len(batch.messages))
                finally:
                    self._current = None
                    current.set_result(None)
        finally:
            self._running = False


class Archive:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.repo = api.services.archive
        self.domain = api.domain.domain
        self.settings = api.settings.archive
        self.default = Prefs(self.settings.default_policy)
        self.prefs: dict[str, Prefs] = {}
        """Preferences of online users, by username (the default when they set none)."""
        self.reading: dict[str, object] = {}
        """The latest read of each user's stored preferences under way: an earlier one,
        which may have read them before a change, is not applied."""
        self.writer = Writer(self)
        self.new_id = ArchiveIds()
        self._stamps: dict[str, tuple[str, bytes]] = {}
        """By username: the bare JID of the user's archive and the start of its stamp."""

    # --- archiving --------------------------------------------------------------------------

    def on_route(self, routed: Routed) -> bool:
        message = routed.stanza
        if message.tag != "message":
            return False
        archived, has_id = examine(message)
        origin = routed.origin
        if has_id and origin is not None:
            strip_claimed_ids(message, self.domain)
        if not archived:
            return False
        to = routed.to
        recipient = to.local
        if recipient is None or to.domain != self.domain:
            return False  # no federation: it is bounced
        owner, stamp_head = self._stamps.get(recipient) or self._new_stamp(recipient)
        if has_id and origin is None and stamped_for(message, owner):
            return False  # archived when it was first routed
        wire = message.wire
        # Element.encoded(), inlined: the call alone costs 0.4 % of an archived message.
        text = (wire if wire is not None else message.serialize().encode()).decode()
        # The two archives are apart in the key (account, id): one id serves both.
        archive_id = self.new_id()
        queued = 0
        if origin is not None:
            sender = origin.jid
            peer, peer_resource = sender.bare.text, sender.resource
            if sender.local != recipient and sender.local is not None:
                queued = self.archive(sender.local, owner, to.resource, True, text, archive_id)
        elif (found := _bare_and_resource(message.attrs.get("from", ""))) is not None:
            peer, peer_resource = found
        else:
            return False
        if kept := self.archive(recipient, peer, peer_resource, False, text, archive_id):
            queued = kept
            stanza_id = visible_id(archive_id)
            message.children.append(
                Element("stanza-id", ns.STANZA_ID, {"by": owner, "id": stanza_id})
            )
            message.wire = (
                None
                if wire is None or not wire.endswith(MESSAGE_END)
                else b"".join(
                    (wire[:-MESSAGE_END_BYTES], stamp_head, stanza_id.encode(), STAMP_END)
                )
            )
        if queued > MAX_QUEUED and origin is not None:
            self.writer.hold(origin)
        return False

    def _new_stamp(self, username: str) -> tuple[str, bytes]:
        """The bare JID of ``username``'s archive, and the start of the <stanza-id/> that
        it stamps (kept for the next message, for as many users as ``MAX_STAMPS``)."""
        owner = f"{username}@{self.domain}"
        head = f'<stanza-id xmlns="{ns.STANZA_ID}" by="{escape_attr(owner)}" id="'.encode()
        if len(self._stamps) >= MAX_STAMPS:
            self._stamps.clear()
        stamp = self._stamps[username] = owner, head
        return stamp

    def archive(
        self,
        username: str,
        peer: str,
        resource: str | None,
        outgoing: bool,
        text: str,
        archive_id: int,
    ) -> int:
        """Queue a message for ``username``'s archive if their preferences (or, when they
        are not known here, the default) keep it: how many messages are queued then, 0 if
        this one was not."""
        prefs = self.prefs.get(username)
        if not (prefs or self.default).keeps_everything:
            kept = listed(prefs or self.default, peer)
            if not (self.is_contact(username, peer) if kept is None else kept):
                return 0
        return self.writer.add(
            (username, archive_id, peer, resource, outgoing, text), prefs is not None
        )

    def is_contact(self, username: str, peer: str) -> bool:
        local, _, domain = peer.rpartition("@")
        roster = self.api.rosters.get(username)
        return domain == self.domain and roster is not None and roster.is_contact(local)

    async def store(self, batch: Batch) -> None:
        messages = batch.messages
        if batch.undecided:
            undecided = [NewArchivedMessage._make(messages[index]) for index in batch.undecided]
            stored = await self.repo.prefs({message.username for message in undecided})
            if stored:
                dropped = set()
                for index, message in zip(batch.undecided, undecided, strict=True):
                    prefs = stored.get(message.username)
                    if prefs is not None and not keeps(
                        prefs, message.peer, await self._contact(message)
                    ):
                        dropped.add(index)
                if dropped:
                    messages = [m for i, m in enumerate(messages) if i not in dropped]
        await self.repo.append(messages)

    async def _contact(self, message: NewArchivedMessage) -> bool:
        local, _, domain = message.peer.rpartition("@")
        if domain != self.domain:
            return False
        return await self.api.services.contacts.item(message.username, local) is not None

    # --- preferences ------------------------------------------------------------------------

    def on_bound(self, session: Session) -> None:
        if session.username not in self.prefs:
            self.prefs[session.username] = self.default
            self.api.spawn(self._load_prefs(session.username))

    async def _load_prefs(self, username: str) -> None:
        read = self.reading[username] = object()
        try:
            stored = await self.repo.prefs([username])
        finally:
            latest = self.reading.get(username) is read
            if latest:
                del self.reading[username]
        if latest and username in stored and username in self.prefs:
            self.prefs[username] = stored[username]

    def on_prefs_changed(self, event: NetworkEvent) -> None:
        """``network/archive.prefs_changed``: preferences set through any process (this
        one's own included) are read again, for a user online here."""
        if event.subject in self.prefs:
            self.api.spawn(self._load_prefs(event.subject))

    def on_closed(self, session: Session) -> None:
        if not any(True for _ in self.api.sessions.of(session.username)):
            self.prefs.pop(session.username, None)

    def get_prefs(self, iq: Element) -> Element | Awaitable[Element]:
        username = self.owner(iq)
        prefs = self.prefs.get(username)
        if prefs is not None:
            return prefs_reply(iq, prefs)
        return self._stored_prefs_reply(iq, username)

    async def _stored_prefs_reply(self, iq: Element, username: str) -> Element:
        stored = await self.repo.prefs([username])
        return prefs_reply(iq, stored.get(username, self.default))

    async def set_prefs(self, iq: Element) -> Element:
        username = self.owner(iq)
        payload = iq.first_element()
        assert payload is not None
        prefs = parse_prefs(payload)
        if not await self.repo.set_prefs(username, prefs):
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, "no such account")
        if username in self.prefs:
            self.prefs[username] = prefs
            self.reading.pop(username, None)  # a read under way may be older
        return prefs_reply(iq, prefs)

    # --- queries ----------------------------------------------------------------------------

    def owner(self, iq: Element) -> str:
        """The username whose archive ``iq`` is about: only its own account may ask."""
        sender = JID.parse(iq.attrs["from"])
        to = iq.attrs.get("to")
        if to is not None and JID.parse(to).local != sender.local:
            raise StanzaError(StanzaCondition.FORBIDDEN, "only the account may read its archive")
        return sender.local or ""

    def fields(self, iq: Element) -> Element:
        self.owner(iq)
        reply = make_reply(iq)
        form = reply.add("query", ns.MAM).add("x", ns.DATA_FORMS, {"type": "form"})
        form.add("field", attrs={"var": "FORM_TYPE", "type": "hidden"}).add("value").append(ns.MAM)
        kinds = {"with": "jid-single", "ids": "list-multi"}
        for var in QUERY_FIELDS:
            field = form.add("field", attrs={"var": var, "type": kinds.get(var, "text-single")})
            if var == "ids":  # any ids, not a choice among options listed (§4.1.5)
                validate = field.add("validate", ns.DATA_VALIDATE, {"datatype": "xs:string"})
                validate.add("open")
        return reply

    async def metadata(self, iq: Element) -> Element:
        """XEP-0313 §7: the first and last messages of the account's archive."""
        username = self.owner(iq)
        await self.writer.stored()
        ends = await self.repo.ends(username)
        reply = make_reply(iq)
        metadata = reply.add("metadata", ns.MAM)
        if ends is not None:
            for name, end in zip(("start", "end"), ends, strict=True):
                metadata.add(name, attrs=end_attrs(end))
        return reply

    async def query(self, iq: Element) -> Element:
        username = self.owner(iq)
        payload = iq.first_element()
        assert payload is not None
        query = parse_query(payload, self.settings.max_page)
        await self.writer.stored()
        try:
            page = await self.repo.query(username, query)
        except UnknownArchiveId as error:
            raise StanzaError(StanzaCondition.ITEM_NOT_FOUND, str(error)) from None
        requester = JID.parse(iq.attrs["from"])
        query_id = payload.attrs.get("queryid")
        flipped = payload.find("flip-page", ns.MAM) is not None  # newest first, same page
        for item in reversed(page.items) if flipped else page.items:
            self.api.router.route(requester, result_message(item, requester, query_id))
        return fin_reply(iq, page)


def _bare_and_resource(address: str) -> tuple[str, str | None] | None:
    try:
        jid = JID.parse(address)
    except InvalidJID:
        return None
    return jid.bare.text, jid.resource


# --- the wire forms ---------------------------------------------------------------------


def parse_query(query: Element, max_page: int) -> ArchiveQuery:
    """The filters of the query's form and the page its RSM set asks for; bad-request for
    what cannot be read."""
    values = form_values(query.find("x", ns.DATA_FORMS))
    peer = resource = None
    if "with" in values:
        with_jid = parse_jid(single(values, "with"))
        peer, resource = with_jid.bare.text, with_jid.resource
    rsm = query.find("set", ns.RSM)
    page = parse_rsm(rsm, max_page)
    return ArchiveQuery(
        peer=peer,
        peer_resource=resource,
        start=parse_time(values, "start"),
        end=parse_time(values, "end"),
        after_id=optional(values, "after-id"),
        before_id=optional(values, "before-id"),
        ids=parse_ids(values, max_page),
        **page,
    )


def parse_ids(values: dict[str, list[str]], max_page: int) -> tuple[str, ...] | None:
    """The 'ids' field: at most a page of them, each of which the archive must hold."""
    if "ids" not in values:
        return None
    ids = tuple(values["ids"])
    if not ids or len(ids) > max_page or not all(ids):
        raise StanzaError(StanzaCondition.BAD_REQUEST, f"the field 'ids' takes 1 to {max_page} ids")
    return ids


def form_values(form: Element | None) -> dict[str, list[str]]:
    if form is None:
        return {}
    if form.attrs.get("type") != "submit":
        raise StanzaError(StanzaCondition.BAD_REQUEST, "the form must be of type 'submit'")
    values: dict[str, list[str]] = {}
    for field in form.find_all("field", ns.DATA_FORMS):
        var = field.attrs.get("var", "")
        values[var] = [value.text for value in field.find_all("value", ns.DATA_FORMS)]
    form_type = values.pop("FORM_TYPE", [ns.MAM])
    if form_type != [ns.MAM]:
        raise StanzaError(StanzaCondition.BAD_REQUEST, f"FORM_TYPE must be '{ns.MAM}'")
    unknown = sorted(set(values) - set(QUERY_FIELDS))
    if unknown:
        raise StanzaError(StanzaCondition.BAD_REQUEST, f"unknown field '{unknown[0]}'")
    return values


def single(values: dict[str, list[str]], var: str) -> str:
    found = values[var]
    if len(found) != 1 or not found[0]:
        raise StanzaError(StanzaCondition.BAD_REQUEST, f"the field '{var}' takes one value")
    return found[0]


def optional(values: dict[str, list[str]], var: str) -> str | None:
    return single(values, var) if var in values else None


def parse_jid(text: str) -> JID:
    try:
        return JID.parse(text)
    except InvalidJID:
        raise StanzaError(StanzaCondition.BAD_REQUEST, f"'{text}' is not a JID") from None


def parse_time(values: dict[str, list[str]], var: str) -> datetime | None:
    text = optional(values, var)
    if text is None:
        return None
    when = parse_datetime(text)
    if when is None:
        raise StanzaError(
            StanzaCondition.BAD_REQUEST, f"'{var}' must be a XEP-0082 date and time with a zone"
        )
    return when


def parse_rsm(rsm: Element | None, max_page: int) -> dict[str, Any]:
    """ArchiveQuery's paging fields from an RSM ``<set/>``: ``max`` above ``max_page`` is
    cut to it (XEP-0059 lets a responder return fewer)."""
    page: dict[str, Any] = {"max": max_page}
    if rsm is None:
        return page
    limit = rsm.find("max", ns.RSM)
    if limit is not None:
        try:
            wanted = int(limit.text.strip())
        except ValueError:
            wanted = -1
        if wanted < 0:
            raise StanzaError(StanzaCondition.BAD_REQUEST, "<max/> must be a whole number")
        page["max"] = min(wanted, max_page)
    after = rsm.find("after", ns.RSM)
    if after is not None:
        if not after.text:
            raise StanzaError(StanzaCondition.BAD_REQUEST, "<after/> must name an id")
        page["page_after"] = after.text
    before = rsm.find("before", ns.RSM)
    if before is not None:
        page["last_page"] = True
        if before.text:
            page["page_before"] = before.text
    if rsm.find("index", ns.RSM) is not None:
        raise StanzaError(StanzaCondition.FEATURE_NOT_IMPLEMENTED, "<index/> is not supported")
    return page


def result_message(item: ArchivedItem, to: JID, query_id: str | None) -> Element:
    message = Element("message", attrs={"to": to.text, "from": to.bare.text})
    attrs = {"id": item.archive_id}
    if query_id is not None:
        attrs["queryid"] = query_id
    forwarded = message.add("result", ns.MAM, attrs).add("forwarded", ns.FORWARD)
    forwarded.add("delay", ns.DELAY, {"stamp": format_datetime(item.archived_at)})
    forwarded.append(parse_stanza(item.stanza))
    return message


def end_attrs(end: ArchiveEnd) -> dict[str, str]:
    return {"id": end.archive_id, "timestamp": format_datetime(end.archived_at)}


def fin_reply(iq: Element, page: ArchivePage) -> Element:
    reply = make_reply(iq)
    fin = reply.add("fin", ns.MAM)
    if page.complete:
        fin.attrs["complete"] = "true"
    rsm = fin.add("set", ns.RSM)
    if page.items:
        rsm.add("first").append(page.items[0].archive_id)
        rsm.add("last").append(page.items[-1].archive_id)
    if page.count is not None:  # more than the store counts: none (it is optional)
        rsm.add("count").append(str(page.count))
    return reply


def parse_prefs(element: Element) -> Prefs:
    default = element.attrs.get("default", "")
    if default not in POLICIES:
        raise StanzaError(
            StanzaCondition.BAD_REQUEST, "default must be 'always', 'never' or 'roster'"
        )
    lists: dict[str, frozenset[str]] = {}
    for name in ("always", "never"):
        listed = element.find(name, ns.MAM)
        jids = listed.find_all("jid", ns.MAM) if listed is not None else []
        lists[name] = frozenset(parse_jid(jid.text.strip()).bare.text for jid in jids)
    return Prefs(default, lists["always"], lists["never"])


def prefs_reply(iq: Element, prefs: Prefs) -> Element:
    reply = make_reply(iq)
    element = reply.add("prefs", ns.MAM, {"default": prefs.default})
    for name, jids in (("always", prefs.always), ("never", prefs.never)):
        listed = element.add(name)
        for jid in sorted(jids):
            listed.add("jid").append(jid)
    return reply


def setup(api: ModuleAPI) -> None:
    if not api.settings.archive.enabled:
        return
    archive = Archive(api)
    api.add_account_feature(ns.MAM)
    api.add_account_feature(ns.MAM_EXTENDED)
    api.add_account_feature(ns.STANZA_ID)
    api.hook(ROUTE_BEFORE, archive.on_route, ROUTE_PRIORITY)
    api.at_stop(archive.writer.flush)
    api.hook(SESSION_BOUND, archive.on_bound)
    api.hook(SESSION_CLOSED, archive.on_closed)
    api.hook(f"network/{ARCHIVE_PREFS_CHANGED}", archive.on_prefs_changed)
    api.iq_handler("set", ns.MAM, "query", archive.query, scope="account")
    api.iq_handler("get", ns.MAM, "query", archive.fields, scope="account")
    api.iq_handler("get", ns.MAM, "metadata", archive.metadata, scope="account")
    api.iq_handler("get", ns.MAM, "prefs", archive.get_prefs, scope="account")
    api.iq_handler("set", ns.MAM, "prefs", archive.set_prefs, scope="account")
