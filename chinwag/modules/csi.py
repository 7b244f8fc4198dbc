"""XEP-0352 Client State Indication: while a client says it is inactive, what is not
urgent waits, collapsed, until something urgent comes for it or it is active again.

A session that sends ``<inactive/>`` gets an output filter (:class:`InactiveOutput`);
an active one has none, so CSI costs nothing on its path. The filter keeps back
presence updates (available and unavailable), standalone chat states (XEP-0085) and
other messages with nothing a person reads. Of presence it keeps only the latest from
each full JID, and of chat states the latest from each full JID (a conversation);
a message from that JID that carries a chat state of its own supersedes the held one.

Everything else is urgent: IQs of every type (an IQ held would time out at its
sender), subscription requests and other presence with a ``type``, errors, and messages
with a body, a subject, an encrypted payload (XEP-0380, OMEMO, OpenPGP), a call
(XEP-0353), an invitation, an archive result or a ``<store/>`` hint (XEP-0334); a carbon
copy is as urgent as the message it carries. An urgent stanza first releases what was
held, so the client gets everything in the order it was routed, less what collapsing
dropped. ``<active/>``, and the ``messages.csi_queue_size``-th stanza held, release it
too.

What is released goes through the session's later output filters, as the urgent
stanza itself does: a session whose stored messages are still being written
(``modules/offline.py``) keeps it behind them. The state belongs to the stream that
sent ``<inactive/>``, and a resumed stream starts active (XEP-0352 §5.2): a session
resumed (XEP-0198) has what was held written at once, after what its client had not
acknowledged and before what waited for it, and the filter goes; a detached session
releases everything, to wait with the rest, at the first stanza routed to it. When the
session ends, held messages are routed again, as what waited for a detached session
is (``deliver/failed`` handlers first); held presence, chat states and carbon copies
are dropped.

While inactive, a session with stream management (XEP-0198) is asked for an
acknowledgement with every write, not once per ``request_ack_after`` stanzas: what an
inactive client is sent is seldom, and a request written alone later, for what a burst
left, could wake a phone's radio again.
"""

from __future__ import annotations

from functools import partial

from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.hooks import (
    DELIVER_FAILED,
    SESSION_CLOSED,
    SESSION_MANAGED,
    SESSION_RESUMED,
)
from chinwag.server.session import Connection, Session, SessionKey
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import JID

SPEC = Spec(
    "XEP-0352",
    "Client State Indication",
    "supported",
    "while inactive, presence updates and standalone chat states wait (the latest per "
    "full JID) with other messages that carry nothing to read, up to "
    "`messages.csi_queue_size` (default 256); anything urgent, or <active/>, releases "
    "them first, in order",
)

CSI = "urn:xmpp:csi:0"
HINTS = "urn:xmpp:hints"
CARBONS = "urn:xmpp:carbons:2"
FORWARD = "urn:xmpp:forward:0"

URGENT_PAYLOADS = frozenset(
    {
        "urn:xmpp:eme:0",  # XEP-0380: explicitly encrypted
        "eu.siacs.conversations.axolotl",  # OMEMO (XEP-0384), as deployed
        "urn:xmpp:omemo:2",  # OMEMO (XEP-0384)
        "urn:xmpp:openpgp:0",  # XEP-0373
        "jabber:x:encrypted",  # XEP-0027
        "urn:xmpp:jingle-message:0",  # XEP-0353: a call rings, or stops ringing
        "jabber:x:conference",  # XEP-0249 invitations
        "http://jabber.org/protocol/muc#user",  # XEP-0045 invitations
        "urn:xmpp:mam:2",  # XEP-0313 results, which the client asked for
    }
)
"""Namespaces of message payloads that make a message urgent."""

CHAT_STATE_COMPANIONS = frozenset({HINTS, "urn:xmpp:sid:0"})
"""What may come with a chat state in a standalone notification besides a <thread>:
hints such as <no-store/> and stanza ids."""

PRESENCE = "presence"
CHAT_STATE = "chat state"

Key = tuple[str, str] | int
"""What a held stanza is kept under: (PRESENCE or CHAT_STATE, sender), so that a later
one replaces it, or a serial number for what is never collapsed."""


class InactiveOutput:
    """The output filter of an inactive session: keeps back what is not urgent."""

    __slots__ = ("_connection", "_held", "_limit", "_serial", "_session")

    def __init__(self, session: Session, limit: int) -> None:
        self._session = session
        self._connection: Connection = session.connection
        """The stream that said it is inactive."""
        self._limit = limit
        self._held: dict[Key, Element] = {}
        """In the order they are to be written: a replacement goes to the end."""
        self._serial = 0

    def __call__(self, stanza: Element) -> bool:
        if self._session.connection is not self._connection:
            stop(self._session)  # a new stream starts active
            return False
        key = self._key(stanza)
        if key is None:
            if self._held:
                self._drop_superseded(stanza)
                self.release()
            return False
        held = self._held
        held.pop(key, None)
        held[key] = stanza
        if len(held) >= self._limit:
            self.release()
        return True

    def _key(self, stanza: Element) -> Key | None:
        """Where ``stanza`` is held, or None when it is urgent."""
        tag = stanza.tag
        if tag == "presence":
            if stanza.attrs.get("type") not in (None, "unavailable"):
                return None  # subscription requests and answers, errors
            return PRESENCE, stanza.attrs.get("from", "")
        if tag != "message" or urgent_message(stanza):
            return None
        if standalone_chat_state(stanza):
            return CHAT_STATE, stanza.attrs.get("from", "")
        self._serial += 1
        return self._serial

    def _drop_superseded(self, stanza: Element) -> None:
        """An urgent message that carries a chat state makes the held one from its
        sender stale."""
        if stanza.tag == "message" and any(c.ns == ns.CHATSTATES for c in stanza.elements()):
            self._held.pop((CHAT_STATE, stanza.attrs.get("from", "")), None)

    def release(self) -> None:
        """Write what is held, in order, through the filters after this one."""
        held, self._held = self._held, {}
        if not held:
            return
        session = self._session
        filters = session.filters
        later = filters[filters.index(self) + 1 :]
        for stanza in held.values():
            if not any(keep(stanza) for keep in later):
                session.connection.send(stanza)

    def messages(self) -> list[Element]:
        """The held messages that are not chat states nor carbon copies (a copy is for
        the one resource it names)."""
        return [
            stanza
            for key, stanza in self._held.items()
            if isinstance(key, int)
            and stanza.find("received", CARBONS) is None
            and stanza.find("sent", CARBONS) is None
        ]


INACTIVE = SessionKey[InactiveOutput]("csi.inactive")


def urgent_message(message: Element) -> bool:
    if message.attrs.get("type") == "error":
        return True
    for child in message.elements():
        child_ns = child.ns
        if child_ns == ns.CLIENT:
            if child.tag in ("body", "subject"):
                return True
        elif child_ns in URGENT_PAYLOADS:
            return True
        elif child_ns == HINTS:
            if child.tag == "store":
                return True
        elif child_ns == CARBONS and carbon_urgent(child):
            return True
    return False


def carbon_urgent(carbon: Element) -> bool:
    """A carbon copy (XEP-0280) is as urgent as the message it carries."""
    forwarded = carbon.find("forwarded", FORWARD)
    copied = forwarded.find("message", ns.CLIENT) if forwarded is not None else None
    return copied is not None and urgent_message(copied)


def standalone_chat_state(message: Element) -> bool:
    """One chat state, and besides it at most a thread, hints and ids (XEP-0085 §5.5)."""
    states = 0
    for child in message.elements():
        if child.ns == ns.CHATSTATES:
            states += 1
        elif child.ns not in CHAT_STATE_COMPANIONS and not (
            child.ns == ns.CLIENT and child.tag == "thread"
        ):
            return False
    return states == 1


def go_inactive(limit: int, session: Session, _element: Element) -> None:
    if limit and session.get(INACTIVE) is None:
        inactive = InactiveOutput(session, limit)
        session.put(INACTIVE, inactive)
        session.add_filter(inactive)
        ask_with_every_write_while_inactive(session)


def stop(session: Session) -> None:
    """Release what is held and take the filter away."""
    inactive = session.get(INACTIVE)
    if inactive is not None:
        inactive.release()
        session.remove_filter(inactive)
        session.pop(INACTIVE)
        if session.stream_management is not None:
            session.stream_management.ask_with_every_write(False)


def ask_with_every_write_while_inactive(session: Session) -> None:
    """With stream management (XEP-0198), whenever the client went inactive first or
    enabled it first: each write asks, so that no request alone wakes its radio later."""
    if session.get(INACTIVE) is not None and session.stream_management is not None:
        session.stream_management.ask_with_every_write(True)


def go_active(session: Session, _element: Element) -> None:
    stop(session)


def setup(api: ModuleAPI) -> None:
    failed = api.channel(DELIVER_FAILED)

    def route_held_messages(session: Session) -> None:
        inactive = session.pop(INACTIVE)
        if inactive is None:
            return
        for message in inactive.messages():
            to = message.attrs.get("to")
            if to is not None and not failed.vetoes(session, message):
                api.deliver(message, JID.parse(to))

    api.add_stream_feature(CSI, "csi")
    api.stream_element(CSI, "inactive", partial(go_inactive, api.settings.messages.csi_queue_size))
    api.stream_element(CSI, "active", go_active)
    api.hook(SESSION_CLOSED, route_held_messages)
    api.hook(SESSION_RESUMED, stop)
    api.hook(SESSION_MANAGED, ask_with_every_write_while_inactive)
