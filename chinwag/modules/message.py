"""RFC 6121 §8.5 message routing for local accounts: highest-priority resources for a bare
JID, the exact resource for a full one, and per-type rules. Messages from strangers never
get here: the dispatcher keeps them out (``messages.from_strangers``)."""

from __future__ import annotations

from collections.abc import Sequence

from chinwag.server.api import ModuleAPI, Spec
from chinwag.server.dispatch import Routed
from chinwag.server.session import Session
from chinwag.xmpp.errors import StanzaCondition, StanzaError

SPEC = Spec(
    "RFC 6121 §5, §8.5",
    "Messages",
    "supported",
    "chat, normal, headline, groupchat and error handled as §8.5 says; with "
    "`messages.from_strangers = false` (the default) a message from a non-contact gets "
    "service-unavailable (an error message is dropped), as for an account that does not exist",
)


class Messages:
    def __init__(self, api: ModuleAPI) -> None:
        self.api = api
        self.router = api.router

    def refuse(self, routed: Routed) -> bool:
        self.api.bounce(routed.stanza, StanzaError(StanzaCondition.SERVICE_UNAVAILABLE))
        return True

    def on_full(self, routed: Routed) -> bool:
        session = self.router.session(routed.to)
        if session is not None:
            session.deliver(routed.stanza)
            return True
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
        resources = self.router.resources(routed.to)
        if message_type == "headline":
            candidates = [s for s in resources if s.available and s.priority >= 0]
        else:
            candidates = highest_priority(resources)
        for session in candidates:
            session.deliver(routed.stanza)
        if not candidates:
            self.api.fire("message/offline", routed)
        return True


def highest_priority(sessions: Sequence[Session]) -> list[Session]:
    """The available sessions with the highest non-negative priority (RFC 6121 8.5.2.1.1)."""
    if len(sessions) == 1:  # the usual case: an account signed in once
        only = sessions[0]
        return [only] if only.available and only.priority >= 0 else []
    chosen: list[Session] = []
    top = 0
    for session in sessions:
        if not session.available or session.priority < top:
            continue
        if session.priority > top:
            top = session.priority
            chosen = []
        chosen.append(session)
    return chosen


def setup(api: ModuleAPI) -> None:
    messages = Messages(api)
    api.hook("message/full", messages.on_full, 10)
    api.hook("message/bare", messages.to_account, 10)
