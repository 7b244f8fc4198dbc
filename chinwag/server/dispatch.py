"""Stanza dispatch: classify by address, fire ``<kind>/<scope>`` hooks, answer the unhandled.

The first step of the delivery pipeline: every stanza, a client's or the server's
own, is classified here, screened (strangers, then ``route/before`` handlers), and
handed to the handlers of its ``<kind>/<scope>`` event; modules route it on from
there through the router. The dispatcher's own handlers, each registered below,
route IQs and presence to full JIDs and refuse other domains; messages are the
message module's alone.

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

from chinwag.server.hooks import DELIVER_BOUNCED, ROUTE_BEFORE, Handler, Hooks
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
Dispatch = Callable[[Element, JID | None, Session | None], None]
"""What takes a stanza a client sent: its target (None: the sender's account) and sender."""


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
DEFAULT_PRIORITY = -1000
"""The dispatcher's own handlers run after every module's."""


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
        self._before = hooks.channel(ROUTE_BEFORE)
        self._events = {
            tag: {scope: hooks.channel(f"{tag}/{scope}") for scope in _SCOPES}
            for tag in ("message", "presence", "iq")
        }
        """The handlers of each ``<kind>/<scope>`` event, by kind and scope: walked here
        rather than through ``Hooks.fire``, which saves a call and a key per stanza."""
        defaults: dict[str, Handler] = {
            "iq/host": self._iq_to_host,
            "iq/account": self._iq_to_account,
            "iq/full": self._iq_to_resource,
            "presence/full": self._presence_to_resource,
            "presence/bare": self._presence_to_account,
            "presence/host": _answered,  # presence to the server itself needs no answer
            "presence/broadcast": _answered,  # the presence module's, when it is loaded
            "message/remote": self._to_remote,
            "presence/remote": self._to_remote,
            "iq/remote": self._to_remote,
        }
        for event, handler in defaults.items():
            hooks.add(event, handler, DEFAULT_PRIORITY)

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
        routed = Routed(stanza, to, origin)
        if self._before.handlers and _taken(self._before.handlers, routed):
            return
        for handler in self._events[stanza.tag][scope].handlers:
            if handler(routed):
                return
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
        self.hooks.notify(DELIVER_BOUNCED, stanza, error)
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
            # Which request, not its content: a request may carry a password (XEP-0077).
            payload = iq.first_element()
            asked = f"{{{payload.ns}}}{payload.tag}" if payload is not None else "?"
            log.exception("IQ handler failed on a %s of %s", iq.attrs.get("type"), asked)
            self.bounce(iq, StanzaError(StanzaCondition.INTERNAL_SERVER_ERROR))

    def _reply(self, routed: Routed, reply: Element | None) -> None:
        if reply is None:
            return
        # A session's stanzas carry its own JID as 'from': no need to parse and prepare it again.
        origin = routed.origin
        self.deliver(
            reply, origin.jid if origin is not None else JID.parse(routed.stanza.attrs["from"])
        )

    def _iq_to_host(self, routed: Routed) -> bool:
        return self._handle_iq(routed, "host")

    def _iq_to_account(self, routed: Routed) -> bool:
        return self._handle_iq(routed, "account")

    def _iq_to_resource(self, routed: Routed) -> bool:
        if self.router.route(routed.to, routed.stanza):
            return True
        # RFC 6120 10.5.3.1: no such resource; results and errors are dropped.
        return routed.stanza.attrs.get("type") in ("result", "error")

    # --- presence and remote domains ------------------------------------------------------

    def _presence_to_resource(self, routed: Routed) -> bool:
        self.router.route(routed.to, routed.stanza)
        return True

    def _presence_to_account(self, routed: Routed) -> bool:
        router, stanza = self.router, routed.stanza
        for record in router.resources(routed.to):
            router.deliver(record, stanza)
        return True

    def _to_remote(self, routed: Routed) -> bool:
        self.bounce(
            routed.stanza, StanzaError(StanzaCondition.REMOTE_SERVER_NOT_FOUND, "no federation")
        )
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


def _answered(_routed: Routed) -> bool:
    return True


def _taken(handlers: tuple[Handler, ...], routed: Routed) -> bool:
    for handler in handlers:  # noqa: SIM110 (a generator costs more)
        if handler(routed):
            return True
    return False
