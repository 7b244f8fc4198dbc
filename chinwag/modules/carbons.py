"""XEP-0280 Message Carbons: each resource that asks for it sees the chats its user's
other resources send and receive.

This module owns the ``<enable/>`` and ``<disable/>`` IQs, each session's state
(``carbons``, a field of its routing record, so that a cluster's other nodes see it),
the copies, and the ids it remembers to tell which errors answer a copied
message. It acts once the message module has handed a message to a local account
(``deliver/message``, which names every resource that got it): the sender's other
enabled resources get the message wrapped in ``<sent/>``, the recipient's enabled
resources that did not get it themselves in ``<received/>``, so that no resource gets a
message twice. A message that went to offline storage is still copied to its sender's
resources; its recipient gets it from storage. A resource that got a ``<received/>``
copy holds the message as much as the one it was for: should that one end with the
message unacknowledged, the message is not routed again (``modules/message.py``).

Eligible (§6.1, all of whose rules are kept, as ``urn:xmpp:carbons:rules:0`` says):
type ``chat``; ``normal`` with a ``<body/>``; any other but ``groupchat`` that carries
chat states, receipts, chat markers, a direct invitation or a mediated one (a
``muc#user`` ``<invite/>``); an ``error`` that answers an eligible message; but not a
private message from a MUC participant (one received with a ``muc#user`` ``<x/>`` and
no invitation from a full JID). Never one that holds carbons' own
``<private/>`` (left in the message as the XEP now says), the XEP-0334 ``<no-copy/>``
hint, or a copy itself. A copy is written to the resource it names or to nothing: if
that session ends before its client acknowledged the copy (a resumable session that
expired), or has ended before the copy reached it, the copy is dropped rather than
handed to another resource or to offline storage, where it would come back as a
message of its own.

On a cluster node, the node that routes a message makes the copies for every node:
for the account's resources there, from their records (the ids remembered for errors
are the routing node's own, so an error is copied only to resources it knows of).
"""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.modules.message import UNBOUND_PRIORITY, held_elsewhere, share
from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import DELIVER_FAILED, DELIVER_MESSAGE, SESSION_CLOSED
from chinwag.server.routing import SessionRecord
from chinwag.server.session import Session
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import make_reply

SPEC = Spec(
    "XEP-0280",
    "Message Carbons",
    "supported",
    "chat, normal with a body, chat states, receipts, markers, invitations, and errors "
    "answering them; every rule of §6.1 (rules:0); <private/> and <no-copy/> respected",
)

REMEMBERED_IDS = 64
"""Ids of eligible messages remembered per account with carbons on, so that an error
answering one of them is copied as well; past this the oldest is forgotten."""
IM_PAYLOADS = frozenset({ns.CHATSTATES, ns.RECEIPTS, ns.CHAT_MARKERS, ns.CONFERENCE})
"""Namespaces of the payloads that make any message (but groupchat) eligible."""
CARBONS_RULES = "urn:xmpp:carbons:rules:0"
"""Advertised: every rule of §6.1 is followed, as §6.2 asks of a server that says so."""


class Account:
    """A user with carbons enabled on at least one session."""

    __slots__ = ("enabled", "exchanged")

    def __init__(self) -> None:
        self.enabled = 0
        """Its sessions with carbons enabled."""
        self.exchanged: dict[tuple[str, str], None] = {}
        """(peer's bare JID, id) of the latest eligible messages it sent or received, oldest
        first."""

    def remember(self, peer: str, message_id: str) -> None:
        exchanged = self.exchanged
        exchanged[peer, message_id] = None
        if len(exchanged) > REMEMBERED_IDS:
            del exchanged[next(iter(exchanged))]

    def answers(self, error: Element, peer: str) -> bool:
        """Whether ``error`` answers an eligible message exchanged with ``peer``."""
        message_id = error.attrs.get("id")
        return message_id is not None and (peer, message_id) in self.exchanged


class Carbons:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.accounts: dict[str, Account] = {}
        """Users with carbons enabled on some session, by username."""
        self.watch = self.on_delivered
        """The ``deliver/message`` handler, hooked only while ``accounts`` is not empty
        (one bound method, which ``unhook`` finds by identity), or always on a cluster
        node, whose other nodes' sessions may have carbons enabled."""
        self.clustered = api.settings.cluster is not None
        if self.clustered:
            api.hook(DELIVER_MESSAGE, self.watch)

    # --- enabling and disabling ---------------------------------------------------------

    def enable(self, iq: Element) -> Element:
        session = self.requester(iq)
        if not session.carbons:
            self.api.sessions.set_carbons(session, True)
            if not self.accounts and not self.clustered:
                self.api.hook(DELIVER_MESSAGE, self.watch)
            account = self.accounts.get(session.username)
            if account is None:
                account = self.accounts[session.username] = Account()
            account.enabled += 1
        return make_reply(iq)

    def disable(self, iq: Element) -> Element:
        self.forget(self.requester(iq))
        return make_reply(iq)

    def requester(self, iq: Element) -> Session:
        """The session that sent ``iq``, which must be addressed to its own account or the
        server (XEP-0280 §4.1: <not-allowed/> otherwise)."""
        sender, to = iq.attrs.get("from"), iq.attrs.get("to")
        session = self.api.sessions.get(JID.parse(sender)) if sender is not None else None
        if session is None or to not in (None, session.jid.bare.text, self.api.domain.text):
            raise StanzaError(StanzaCondition.NOT_ALLOWED, "only for one's own session")
        return session

    def forget(self, session: Session) -> None:
        if not session.carbons:
            return
        self.api.sessions.set_carbons(session, False)
        account = self.accounts[session.username]
        account.enabled -= 1
        if not account.enabled:
            del self.accounts[session.username]
            if not self.accounts and not self.clustered:  # the message path calls nothing here
                self.api.unhook(DELIVER_MESSAGE, self.watch)

    # --- copies ------------------------------------------------------------------------

    def on_delivered(self, routed: Routed, records: Sequence[SessionRecord]) -> None:
        origin, username = routed.origin, routed.to.local or ""
        sender = self.accounts.get(origin.jid.local or "") if origin is not None else None
        recipient = self.accounts.get(username) if records else None
        if self.clustered:
            if sender is None and origin is not None and self.elsewhere(origin.jid.bare):
                sender = Account()
            if recipient is None and records and self.elsewhere(routed.to.bare):
                recipient = Account()
        if sender is None and recipient is None:
            return  # what nearly every message costs here: two lookups
        message, peer = routed.stanza, routed.to.bare.text
        if origin is not None and origin.username == username:
            # Within one account, one copy for each resource that neither sent nor got it.
            if sender is not None and eligible(message, sender, peer, received=False):
                self.forward("sent", message, username, (origin, *records))
            return
        if (
            origin is not None
            and sender is not None
            and eligible(message, sender, peer, received=False)
        ):
            self.forward("sent", message, origin.username, (origin,))
        if recipient is not None:
            peer = message.attrs.get("from", "").partition("/")[0]
            if eligible(message, recipient, peer, received=True):
                copied = self.forward("received", message, username, records)
                if copied:
                    share(message, [*records, *copied])

    def forward(
        self, wrapper: str, message: Element, username: str, skip: Sequence[SessionRecord]
    ) -> list[Session]:
        """Wrap ``message`` in ``<wrapper/>`` for each enabled session of ``username``
        that is not one of ``skip``; returns those sessions."""
        skipped = {record.jid for record in skip}
        router = self.api.router
        copied = []
        for session in self.api.sessions.of(username):
            if session.carbons and session.jid not in skipped:
                router.deliver(session, wrap(wrapper, message, session.jid))
                copied.append(session)
        if self.clustered:
            for record in router.resources(self.api.jid(username)):
                if type(record) is not Session and record.carbons and record.jid not in skipped:
                    router.deliver(record, wrap(wrapper, message, record.jid))
        return copied

    def elsewhere(self, bare: JID) -> bool:
        """Whether a session of the account ``bare`` on another node has carbons enabled."""
        for record in self.api.router.resources(bare):
            if record.carbons and type(record) is not Session:
                return True
        return False


def drop_failed_copy(session: Session, stanza: Element) -> bool:
    """``deliver/failed``: a copy that its session ended without acknowledging is dropped
    (a copy of a copy is never made, and it is not a message for anyone else); the
    message it carries is held by that session no more."""
    copied = carried(stanza) if stanza.attrs.get("from") == session.jid.bare.text else None
    if copied is None:
        return False
    held_elsewhere(session, copied)
    return True


def carried(stanza: Element) -> Element | None:
    """The message a carbon copy carries; None if ``stanza`` is not a copy."""
    if stanza.tag != "message":
        return None
    for child in stanza.elements():
        if child.ns == ns.CARBONS and child.tag in ("sent", "received"):
            forwarded = child.find("forwarded", ns.FORWARD)
            return forwarded.find("message", ns.CLIENT) if forwarded is not None else None
    return None


def drop_orphan(routed: Routed) -> bool:
    """Drop a copy for a resource that is no longer bound, which the server routes again
    because its session ended with the copy unsent or unacknowledged, rather than hand it
    to another resource or to offline storage. A client's own messages pass at once."""
    message = routed.stanza
    return (
        routed.origin is None
        and message.attrs.get("from") == routed.to.bare.text
        and any(
            child.ns == ns.CARBONS and child.tag in ("sent", "received")
            for child in message.elements()
        )
    )


def eligible(message: Element, account: Account, peer: str, *, received: bool) -> bool:
    """XEP-0280 §6.1 for a message ``account`` exchanged with ``peer`` (``received`` by
    it, or sent); an eligible one with an id is remembered, for the error that may
    answer it."""
    message_type = message.attrs.get("type", "normal")
    if message_type == "error":
        return not barred(message) and account.answers(message, peer)
    if message_type == "groupchat" or barred(message):
        return False
    muc = message.find("x", ns.MUC_USER)
    invited = muc is not None and muc.find("invite", ns.MUC_USER) is not None
    if muc is not None and not invited and received and "/" in message.attrs.get("from", ""):
        return False  # a MUC's private message: the MUC gives it to each joined client
    if (
        message_type != "chat"
        and not invited
        and not any(
            child.ns in IM_PAYLOADS
            or (child.tag == "body" and child.ns == ns.CLIENT and message_type == "normal")
            for child in message.elements()
        )
    ):
        return False
    message_id = message.attrs.get("id")
    if message_id is not None:
        account.remember(peer, message_id)
    return True


def barred(message: Element) -> bool:
    """Whether ``message`` asks not to be copied (<private/>, <no-copy/>) or is a copy."""
    return any(
        child.ns == ns.CARBONS or (child.ns == ns.HINTS and child.tag == "no-copy")
        for child in message.elements()
    )


def wrap(wrapper: str, message: Element, to: JID) -> Element:
    """``message`` unchanged, forwarded (XEP-0297) inside ``<wrapper/>`` to ``to`` from its
    bare JID, with the message's type (§7, §8)."""
    attrs = {"from": to.bare.text, "to": to.text}
    message_type = message.attrs.get("type")
    if message_type is not None:
        attrs["type"] = message_type
    copy = Element("message", attrs=attrs)
    copy.add(wrapper, ns.CARBONS).add("forwarded", ns.FORWARD).append(message)
    return copy


def setup(api: ModuleAPI) -> None:
    carbons = Carbons(api)
    api.add_feature(ns.CARBONS)
    api.add_feature(CARBONS_RULES)
    for scope in ("account", "host"):
        api.iq_handler("set", ns.CARBONS, "enable", carbons.enable, scope=scope)
        api.iq_handler("set", ns.CARBONS, "disable", carbons.disable, scope=scope)
    api.hook("message/full", drop_orphan, UNBOUND_PRIORITY + 1)
    api.hook(SESSION_CLOSED, carbons.forget)
    api.hook(DELIVER_FAILED, drop_failed_copy)
