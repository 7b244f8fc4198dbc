"""RFC 6121 §8.5 message routing for local accounts: highest-priority resources for a bare
JID, the exact resource for a full one, and per-type rules. Messages from strangers never
get here: the dispatcher keeps them out (``messages.from_strangers``). Once a message is
handed to an account's resources, ``deliver/message`` handlers learn which got it."""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import DELIVER_MESSAGE, DELIVER_OFFLINE
from chinwag.server.routing import SessionRecord
from chinwag.xmpp.errors import StanzaCondition, StanzaError

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


class Messages:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.route = api.router.route
        self.record = api.router.record
        self.resources = api.router.resources
        self.deliver = api.router.deliver
        self.delivered = api.channel(DELIVER_MESSAGE)

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
        if message_type == "headline":
            candidates = [r for r in resources if r.available and r.priority >= 0]
        else:
            candidates = highest_priority(resources)
        for record in candidates:
            self.deliver(record, routed.stanza)
        if not candidates:
            self.api.fire(DELIVER_OFFLINE, routed)
        handlers = self.delivered.handlers
        if handlers:  # tested first: a loop over none would still make an iterator
            for handler in handlers:
                handler(routed, candidates)
        return True


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
