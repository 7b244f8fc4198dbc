"""RFC 6121 §8.5 message routing for local accounts: highest-priority resources for a bare
JID, the exact resource for a full one, and per-type rules. Messages from strangers never
get here: the dispatcher keeps them out (``messages.from_strangers``). Once a message is
handed to an account's resources, ``deliver/message`` handlers learn which got it.

A message that several of an account's sessions got (a bare JID's resources of equal
priority, or carbon copies) is delivered once one of them has it (RFC 6121 §8.5.2.1.1).
So when a session with stream management ends with it unacknowledged (``deliver/failed``),
it is routed again only if none of the others still holds it: each such session keeps,
in ``HELD``, who else got the messages it was sent and may not have acknowledged.
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Sequence

from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import DELIVER_FAILED, DELIVER_MESSAGE, DELIVER_OFFLINE, DELIVER_SCREEN
from chinwag.server.routing import SessionRecord
from chinwag.server.session import Session, SessionKey, SessionState
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID, InvalidJID

SPEC = Spec(
    "RFC 6121 §5, §8.5",
    "Messages",
    "supported",
    "chat, normal, headline, groupchat and error handled as §8.5 says; with "
    "`messages.from_strangers = false` (the default) a message from a non-contact gets "
    "service-unavailable (an error message is dropped), as for an account that does not exist",
)


UNBOUND_PRIORITY = 0
"""Of the ``message/full`` handler for resources that are not bound: a module that acts
on such a message before RFC 6121's rules hooks above it and below 10."""

Holders = set[str]
"""The full JIDs of the sessions that got one message (or a carbon copy of it) and have not
ended without acknowledging it."""
HELD = SessionKey["OrderedDict[int, Holders]"]("message.held")
"""On a session with stream management: the holders of the messages it shares with other
sessions, by the message's fingerprint, oldest first."""
HELD_KEPT = 512
"""Shared messages a session remembers; past this the oldest is forgotten, and should the
session end with it unacknowledged it is routed again (a duplicate, never a loss)."""


def fingerprint(message: Element) -> int:
    """What tells a message from others, the same whether taken as routed or parsed again
    from the bytes written to a client: its sender, id, type and children."""
    attrs = message.attrs
    content = "".join(child.serialize() for child in message.elements())
    return hash((attrs.get("from"), attrs.get("id"), attrs.get("type"), content))


def share(message: Element, records: Sequence[SessionRecord]) -> None:
    """Every one of ``records``, of one account, got ``message`` or a copy of it; join them
    to those already noted as holding it. Only sessions with stream management, which may
    end with it unacknowledged, keep the note."""
    managed = [r for r in records if isinstance(r, Session) and r.stream_management is not None]
    if not managed:
        return
    key = fingerprint(message)
    holders: Holders | None = None
    for session in managed:
        kept = session.get(HELD)
        if kept is not None and (holders := kept.get(key)) is not None:
            break
    if holders is None:
        holders = set()
    holders.update(record.jid.text for record in records)
    for session in managed:
        kept = session.get(HELD)
        if kept is None or settled(session):
            kept = OrderedDict()
            session.put(HELD, kept)
        kept[key] = holders
        if len(kept) > HELD_KEPT:
            kept.popitem(last=False)


def settled(session: Session) -> bool:
    """Whether everything routed to ``session`` before the message just written to it is
    written and acknowledged: what it remembers of earlier shared messages is of no more
    use."""
    sm = session.stream_management
    return (
        sm is not None
        and len(sm.unacked) <= 1
        and not session.filters
        and session.state is SessionState.BOUND
    )


def held_elsewhere(session: Session, message: Element) -> bool:
    """``session`` ended with ``message`` (or its copy) unacknowledged: whether another
    session of the account still holds it, which makes it delivered."""
    kept = session.get(HELD)
    holders = kept.pop(fingerprint(message), None) if kept else None
    if holders is None:
        return False
    holders.discard(session.jid.text)
    return bool(holders)


def on_failed(session: Session, stanza: Element) -> bool:
    """``deliver/failed``: a message another session of the account holds is not routed
    again."""
    return stanza.tag == "message" and held_elsewhere(session, stanza)


class Messages:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.route = api.router.route
        self.record = api.router.record
        self.resources = api.router.resources
        self.deliver = api.router.deliver
        self.delivered = api.channel(DELIVER_MESSAGE)
        self.screen = api.channel(DELIVER_SCREEN)

    def refuse(self, routed: Routed) -> bool:
        self.api.bounce(routed.stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))
        return True

    def on_full(self, routed: Routed) -> bool:
        """A message to a bound resource; any other goes on to ``on_unbound``, after the
        modules that act on it first."""
        if not self.delivered.handlers:
            return self.route(routed.to, routed.stanza)  # the usual case: one call
        record = self.record(routed.to)
        if record is None:
            return False
        self.deliver(record, routed.stanza)
        for handler in self.delivered.handlers:
            handler(routed, (record,))
        return True

    def on_unbound(self, routed: Routed) -> bool:
        """RFC 6121 §8.5.3.2.1: a message to a resource that is not bound."""
        message_type = routed.stanza.attrs.get("type", "normal")
        if message_type in ("normal", "chat"):
            return self.to_account(Routed(routed.stanza, routed.to.bare, routed.origin))
        if message_type == "groupchat":
            return self.refuse(routed)
        return True  # headline and error: silently dropped (§8.5.3.2.1)

    def to_account(self, routed: Routed) -> bool:
        message_type = routed.stanza.attrs.get("type", "normal")
        if message_type == "groupchat":
            return self.refuse(routed)
        if message_type == "error":
            return True
        resources = self.resources(routed.to)
        if self.screen.handlers and resources:
            resources = self.unscreened(routed, resources)
        if message_type == "headline":
            candidates = [r for r in resources if r.available and r.priority >= 0]
        else:
            candidates = highest_priority(resources)
        for record in candidates:
            self.deliver(record, routed.stanza)
        if not candidates:
            self.api.fire(DELIVER_OFFLINE, routed)
        elif len(candidates) > 1:
            share(routed.stanza, candidates)
        handlers = self.delivered.handlers
        if handlers:  # tested first: a loop over none would still make an iterator
            for handler in handlers:
                handler(routed, candidates)
        return True

    def unscreened(
        self, routed: Routed, resources: Sequence[SessionRecord]
    ) -> Sequence[SessionRecord]:
        """The resources ``deliver/screen`` handlers let the message reach: a resource its
        sender blocks is, for this message, as if it were not there."""
        sender = routed.origin.jid if routed.origin is not None else sender_of(routed.stanza)
        if sender is None:
            return resources
        return [r for r in resources if not self.screen.vetoes(sender, r.jid)]


def sender_of(stanza: Element) -> JID | None:
    text = stanza.attrs.get("from")
    try:
        return JID.parse(text) if text else None
    except InvalidJID:
        return None


def highest_priority(records: Sequence[SessionRecord]) -> list[SessionRecord]:
    """The available resources with the highest non-negative priority (RFC 6121 8.5.2.1.1)."""
    if len(records) == 1:  # the usual case: an account signed in once
        only = records[0]
        return [only] if only.available and only.priority >= 0 else []
    chosen: list[SessionRecord] = []
    top = 0
    for record in records:
        if not record.available or record.priority < top:
            continue
        if record.priority > top:
            top = record.priority
            chosen = []
        chosen.append(record)
    return chosen


def setup(api: ModuleAPI) -> None:
    messages = Messages(api)
    api.hook("message/full", messages.on_full, 10)
    api.hook("message/full", messages.on_unbound, UNBOUND_PRIORITY)
    api.hook("message/bare", messages.to_account, 10)
    api.hook(DELIVER_FAILED, on_failed)
