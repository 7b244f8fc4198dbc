"""RFC 6121 presence: broadcast to contacts and to one's own resources, answers to probes
on the contacts' behalf, directed presence, and unavailable when a session ends.

Presence that goes from one user to another's resources here, without dispatch (also
presence directed to a bare JID, per resource), is first put to the ``presence/screen``
handlers (a block list), when there are any."""

from __future__ import annotations

from collections.abc import Iterable

from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import SUBSCRIPTION_TYPES, Routed
from chinwag.server.hooks import PRESENCE_CROSSED, PRESENCE_SCREEN, SESSION_CLOSED, SESSION_GONE
from chinwag.server.routing import SessionRecord
from chinwag.server.session import Session
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID

SPEC = Spec(
    "RFC 6121 §4",
    "Presence",
    "supported",
    "broadcast to contacts, probes answered by the server, directed presence, priority; "
    "unavailable is broadcast on logout and on a dropped connection; directed presence "
    "from a non-contact is ignored unless `messages.from_strangers = true`",
)


def addressed(stanza: Element, to: JID) -> Element:
    """The same stanza with another 'to' (children are shared, not copied)."""
    return Element(stanza.tag, stanza.ns, {**stanza.attrs, "to": str(to)}, stanza.children)


SUBSCRIBED = ("from", "both")
"""The subscriptions of contacts who receive an account's presence."""


def unavailable_from(jid: JID) -> Element:
    return Element("presence", attrs={"from": str(jid), "type": "unavailable"})


class Presence:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.router = api.router
        self.sessions = api.sessions
        self.screen = api.channel(PRESENCE_SCREEN)

    def available_resources(self, username: str) -> list[SessionRecord]:
        return [r for r in self.router.resources(self.api.jid(username)) if r.available]

    def send_to_resources(self, stanza: Element, records: list[SessionRecord]) -> None:
        for record in records:
            self.router.deliver(record, addressed(stanza, record.jid))

    def audience(self, session: Session) -> list[SessionRecord]:
        """Who hears this session's broadcast presence: its own available resources and
        the available resources of contacts subscribed to it."""
        roster = self.api.rosters.get(session.username)
        return self.audience_of(session.jid, roster.subscribed_from() if roster else ())

    def audience_of(self, jid: JID, subscribers: Iterable[str]) -> list[SessionRecord]:
        records = self.available_resources(jid.local or "")
        contacts: list[SessionRecord] = []
        for contact in subscribers:
            contacts.extend(self.available_resources(contact))
        if self.screen.handlers:
            contacts = [r for r in contacts if not self.screen.vetoes(jid, r.jid)]
        records.extend(contacts)
        return records

    def on_broadcast(self, routed: Routed) -> bool:
        session, stanza = routed.origin, routed.stanza
        if session is None:
            return True
        presence_type = stanza.attrs.get("type")
        if presence_type is None:
            initial = not session.available
            self.sessions.set_presence(session, stanza)
            self.send_to_resources(stanza, self.audience(session))
            if initial:
                self.answer_probes(session)
                self.api.notify("presence/initial", session)
        elif presence_type == "unavailable":
            self.leave(session, stanza)
        elif presence_type not in ("probe", "error", *SUBSCRIPTION_TYPES):
            self.api.bounce(
                stanza, StanzaError(StanzaCondition.BAD_REQUEST, "unknown presence type")
            )
        return True

    def answer_probes(self, session: Session) -> None:
        """RFC 6121 4.2.2/4.3: the current presence of contacts and of one's other resources."""
        roster = self.api.rosters.get(session.username)
        sources = [r for r in self.available_resources(session.username) if r is not session]
        if roster is not None:
            contacts: list[SessionRecord] = []
            for contact in roster.subscribed_to():
                contacts.extend(self.available_resources(contact))
            if self.screen.handlers:
                contacts = [r for r in contacts if not self.screen.vetoes(r.jid, session.jid)]
            sources.extend(contacts)
        for source in sources:
            if source.presence is not None:
                self.router.deliver(session, addressed(source.presence, session.jid))

    def leave(self, session: Session, stanza: Element) -> None:
        if not session.available:
            return
        audience = self.audience(session)
        directed = session.directed
        self.sessions.set_presence(session, stanza)
        self.sessions.set_directed(session, frozenset())
        self.send_to_resources(stanza, audience)
        for target in directed:
            self.api.deliver(addressed(stanza, target), target)

    def on_session_closed(self, session: Session) -> None:
        self.leave(session, unavailable_from(session.jid))

    def on_session_gone(self, record: SessionRecord) -> None:
        """A session of a node that died: its contacts, and those it had sent directed
        presence to, hear that it is unavailable, from the node that cleaned up after it
        (once: one node cleans up)."""
        if record.available:
            self.api.spawn(self.announce_gone(record.jid, record.directed))

    async def announce_gone(self, jid: JID, directed: frozenset[JID]) -> None:
        username = jid.local or ""
        roster = self.api.rosters.get(username)
        if roster is not None:
            subscribers = roster.subscribed_from()
        else:  # no session of the account here: its roster is not in memory
            _version, items = await self.api.services.contacts.roster(username)
            subscribers = [item.username for item in items if item.subscription in SUBSCRIBED]
        gone = unavailable_from(jid)
        self.send_to_resources(gone, self.audience_of(jid, subscribers))
        for target in directed:
            self.api.deliver(addressed(gone, target), target)

    def on_crossed(
        self, before: SessionRecord | None, after: SessionRecord | None, sessions: list[Session]
    ) -> None:
        """Another node's session ``after`` (or ``before``, gone) and these local sessions
        changed presence unseen by each other's node: each side learns the other's."""
        other = after or before
        assert other is not None
        source, became = other.jid, after is not None and after.available
        shown = after.presence if after is not None and after.available else None
        joined = became and (before is None or not before.available)
        for session in sessions:
            roster = self.api.rosters.get(session.username)
            same = session.username == source.local
            if (same or (roster and source.local in roster.subscribed_to())) and not (
                self.screen.handlers and self.screen.vetoes(source, session.jid)
            ):
                told = shown if shown is not None else unavailable_from(source)
                self.router.deliver(session, addressed(told, session.jid))
            if (
                joined
                and after is not None
                and session.presence is not None
                and (same or (roster and source.local in roster.subscribed_from()))
                and not (self.screen.handlers and self.screen.vetoes(session.jid, source))
            ):
                self.router.deliver(after, addressed(session.presence, source))

    def on_directed(self, routed: Routed) -> bool:
        stanza, origin = routed.stanza, routed.origin
        presence_type = stanza.attrs.get("type")
        if presence_type in SUBSCRIPTION_TYPES:
            return False  # the roster module's
        if presence_type == "probe":
            self.answer_probe(routed)  # never forwarded: the server answers for the contact
            return True
        if origin is not None and presence_type in (None, "unavailable"):
            self.track_directed(origin, routed.to, presence_type is None)
        if routed.to.resource is None:
            records = self.available_resources(routed.to.local or "")
            if origin is not None and self.screen.handlers:
                # A list that blocks one resource keeps presence to the bare JID from it.
                records = [r for r in records if not self.screen.vetoes(origin.jid, r.jid)]
            self.send_to_resources(stanza, records)
        else:
            self.router.route(routed.to, stanza)
        return True

    def answer_probe(self, routed: Routed) -> None:
        """RFC 6121 4.3: a client's probe is processed as the contact's server would
        process one (4.3.2); only those subscribed to the contact's presence learn anything."""
        prober, contact = routed.origin, routed.to.local or ""
        if prober is None:
            return
        roster = self.api.rosters.get(prober.username)
        if contact != prober.username and (roster is None or contact not in roster.subscribed_to()):
            return
        sources = [
            s
            for s in self.available_resources(contact)
            if routed.to.resource is None or s.jid == routed.to
        ]
        for source in sources:
            if source.presence is not None:
                self.router.deliver(prober, addressed(source.presence, prober.jid))
        if not sources:
            attrs = {"from": str(routed.to), "to": str(prober.jid), "type": "unavailable"}
            self.router.deliver(prober, Element("presence", attrs=attrs))

    def track_directed(self, session: Session, target: JID, available: bool) -> None:
        """RFC 6121 4.6: remember who must hear that this session went away."""
        if not session.available:
            return
        directed = session.directed
        if available:
            roster = self.api.rosters.get(session.username)
            if target not in directed and (
                roster is None or target.local not in roster.subscribed_from()
            ):
                self.sessions.set_directed(session, directed | {target})
        elif target in directed:
            self.sessions.set_directed(session, directed - {target})


def setup(api: ModuleAPI) -> None:
    presence = Presence(api)
    api.hook("presence/broadcast", presence.on_broadcast, 10)
    api.hook("presence/bare", presence.on_directed, 10)
    api.hook("presence/full", presence.on_directed, 10)
    api.hook(SESSION_CLOSED, presence.on_session_closed)
    api.hook(SESSION_GONE, presence.on_session_gone)
    api.hook(PRESENCE_CROSSED, presence.on_crossed)
