"""Stanza dispatch: classify by address, fire ``<kind>/<scope>`` hooks, answer the unhandled.

Scopes: ``host`` (the server's own JID), ``account`` (an IQ with no ``to`` or to
a bare JID, answered by the server on the account's behalf), ``bare`` and
``full`` (a local user), ``remote`` (another domain). IQ handlers are looked up
by ``(scope, type, namespace, tag)`` in one dictionary. What no handler claims
gets ``<service-unavailable/>``, once, and never in reply to an error or result.

Strangers (``messages.from_strangers = false``): a stanza from a session to another
local user's bare or full JID passes only between contacts. Any other is answered
here, before any hook, as RFC 6121 §8.5.1 answers for an account that does not
exist, so a stranger learns neither whether the user exists nor whether they are
online. Subscription requests pass, as the way two strangers become contacts.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any

from chinwag.server.hooks import Hooks
from chinwag.server.rosters import RosterCache
from chinwag.server.routing import Router
from chinwag.server.session import Session
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stanza import is_error, make_error

log = logging.getLogger(__name__)

IQResult = Element | None | Awaitable[Element | None]
IQHandler = Callable[[Element], IQResult]
"""Takes the IQ (``from`` stamped); returns the reply, or raises StanzaError."""


@dataclass(slots=True)
class Routed:
    """A stanza on its way: who sent it (None: the server itself), and its parsed target."""

    stanza: Element
    to: JID
    origin: Session | None


SUBSCRIPTION_TYPES = frozenset({"subscribe", "subscribed", "unsubscribe", "unsubscribed"})

_SCOPES = ("host", "account", "bare", "full", "remote", "broadcast")
_USER_SCOPES = frozenset({"bare", "full"})
"""Stanzas to a local user's own address, which the strangers rule screens."""
_EVENTS = {
    (tag, scope): f"{tag}/{scope}" for tag in ("message", "presence", "iq") for scope in _SCOPES
}


class Dispatcher:
    def __init__(
        self,
        domain: JID,
        hooks: Hooks,
        router: Router,
        spawn: Callable[[Coroutine[Any, Any, None]], object],
        *,
        contacts_only: RosterCache | None = None,
    ) -> None:
        """``contacts_only``: the rosters by which users reach only their contacts; None
        lets anyone reach anyone (``messages.from_strangers = true``)."""
        self.domain = domain
        self._domain_name = domain.domain
        self.hooks = hooks
        self.router = router
        self._spawn = spawn
        self._contacts_only = contacts_only
        self._iq_handlers: dict[tuple[str, str, str, str], IQHandler] = {}
        for tag in ("message", "presence", "iq"):
            for scope in _SCOPES:
                self.hooks.add(
                    f"{tag}/{scope}", getattr(self, f"_default_{tag}_{scope}", _unclaimed), -1000
                )

    def add_iq_handler(
        self, scope: str, iq_type: str, xmlns: str, tag: str, handler: IQHandler
    ) -> None:
        key = (scope, iq_type, xmlns, tag)
        if key in self._iq_handlers:
            raise ValueError(f"an IQ handler for {key} is already registered")
        self._iq_handlers[key] = handler

    def dispatch(self, stanza: Element, to: JID | None, origin: Session | None) -> None:
        """Route ``stanza`` (its ``from`` already stamped) to where ``to`` points."""
        if to is None:
            if origin is None:
                return
            to = origin.jid.bare
            scope = "account" if stanza.tag == "iq" else "bare"
            if stanza.tag == "presence":
                scope = "broadcast"
        elif to.domain != self._domain_name:
            scope = "remote"
        elif to.local is None:
            scope = "host"
        elif to.resource is None:
            scope = "account" if stanza.tag == "iq" else "bare"
        else:
            scope = "full"
        rosters = self._contacts_only
        if (
            rosters is not None
            and origin is not None
            and scope in _USER_SCOPES
            and not reaches(rosters, origin, stanza, to)
        ):
            self.keep_out(stanza)
            return
        if not self.hooks.fire(_EVENTS[stanza.tag, scope], Routed(stanza, to, origin)):
            self.bounce(stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))

    def keep_out(self, stanza: Element) -> None:
        """Answer a stranger as RFC 6121 §8.5.1 answers for an account that does not exist:
        presence is ignored; IQ get/set and messages get ``<service-unavailable/>``, with
        no text, whatever the user's resources; results and errors are dropped."""
        if stanza.tag != "presence":
            self.bounce(stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))

    def bounce(self, stanza: Element, error: StanzaError) -> None:
        """Return ``stanza`` to its sender with ``error``, unless it is an error itself."""
        if is_error(stanza) or stanza.attrs.get("type") == "result":
            return
        reply = make_error(stanza, error)
        to = reply.attrs.get("to")
        if to is not None:
            self.deliver(reply, JID.parse(to))

    def deliver(self, stanza: Element, to: JID) -> None:
        """Send a server-generated stanza to a local JID."""
        self.dispatch(stanza, to, None)

    # --- IQs --------------------------------------------------------------

    def _handle_iq(self, routed: Routed, scope: str) -> bool:
        iq = routed.stanza
        iq_type = iq.attrs.get("type")
        if iq_type not in ("get", "set"):
            return True  # results and errors to the server are never answered
        payload = iq.first_element()
        handler = None
        if payload is not None:
            handler = self._iq_handlers.get((scope, iq_type, payload.ns, payload.tag))
        if handler is None:
            return False
        try:
            result = handler(iq)
        except StanzaError as error:
            self.bounce(iq, error)
            return True
        if isinstance(result, Awaitable):
            self._spawn(self._finish_iq(routed, result))
        else:
            self._reply(routed, result)
        return True

    async def _finish_iq(self, routed: Routed, pending: Awaitable[Element | None]) -> None:
        iq = routed.stanza
        try:
            self._reply(routed, await pending)
        except StanzaError as error:
            self.bounce(iq, error)
        except Exception:
            log.exception("IQ handler failed on %s", iq)
            self.bounce(iq, StanzaError(StanzaCondition.INTERNAL_SERVER_ERROR))

    def _reply(self, routed: Routed, reply: Element | None) -> None:
        if reply is None:
            return
        # A session's stanzas carry its own JID as 'from': no need to parse and prepare it again.
        origin = routed.origin
        self.deliver(
            reply, origin.jid if origin is not None else JID.parse(routed.stanza.attrs["from"])
        )

    def _default_iq_host(self, routed: Routed) -> bool:
        return self._handle_iq(routed, "host")

    def _default_iq_account(self, routed: Routed) -> bool:
        return self._handle_iq(routed, "account")

    def _default_iq_full(self, routed: Routed) -> bool:
        if self.router.send(routed.to, routed.stanza):
            return True
        # RFC 6120 10.5.3.1: no such resource; results and errors are dropped.
        return routed.stanza.attrs.get("type") in ("result", "error")

    # --- messages -----------------------------------------------------------

    def _default_message_full(self, routed: Routed) -> bool:
        if self.router.send(routed.to, routed.stanza):
            return True
        # RFC 6121 8.5.3.2.1: a message for an unknown resource is handled as if to the bare JID.
        return self.hooks.fire("message/bare", Routed(routed.stanza, routed.to.bare, routed.origin))

    def _default_message_bare(self, routed: Routed) -> bool:
        sessions = self.router.resources(routed.to)
        for session in sessions:
            session.deliver(routed.stanza)
        return bool(sessions) or is_error(routed.stanza)

    def _default_message_remote(self, routed: Routed) -> bool:
        self.bounce(
            routed.stanza, StanzaError(StanzaCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
        )
        return True

    def _default_iq_remote(self, routed: Routed) -> bool:
        return self._default_message_remote(routed)

    def _default_presence_remote(self, routed: Routed) -> bool:
        return self._default_message_remote(routed)

    # --- presence -------------------------------------------------------------

    def _default_presence_host(self, routed: Routed) -> bool:
        return True  # presence to the server itself needs no answer

    def _default_presence_full(self, routed: Routed) -> bool:
        self.router.send(routed.to, routed.stanza)
        return True

    def _default_presence_bare(self, routed: Routed) -> bool:
        for session in self.router.resources(routed.to):
            session.deliver(routed.stanza)
        return True

    def _default_presence_broadcast(self, routed: Routed) -> bool:
        """Presence with no 'to': remember the sender's availability and priority."""
        session = routed.origin
        if session is not None:
            session.update_presence(routed.stanza)
        return True


def reaches(rosters: RosterCache, sender: Session, stanza: Element, to: JID) -> bool:
    """Whether ``sender`` may reach the local user ``to`` when strangers may not: oneself, a
    contact (a subscription either way: contacts are kept in pairs, so the sender's own
    roster tells), and anyone with a subscription request. A dictionary lookup in the
    sender's cached roster, never storage."""
    if to.local == sender.jid.local:
        return True
    if stanza.tag == "presence" and stanza.attrs.get("type") in SUBSCRIPTION_TYPES:
        return True
    roster = rosters.get(sender.jid.local or "")
    return roster is not None and roster.is_contact(to.local or "")


def _unclaimed(_routed: Routed) -> bool:
    return False
