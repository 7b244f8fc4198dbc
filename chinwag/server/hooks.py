"""The event bus: named events, handlers by priority, first handler to claim an event wins;
and the names of the events the core itself fires.

A hot path that fires an event on every stanza holds the event's :class:`Channel` and
tests ``channel.handlers`` first, so that an event no module hooks costs one attribute
read, not a call.
"""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., Any]

# The core's events: where each fires, what handlers get, and what their answer means.
ROUTE_BEFORE = "route/before"
"""``Dispatcher.dispatch``, for every stanza past the strangers check, before its
``<kind>/<scope>`` event: ``handler(routed) -> bool``; true takes the stanza out of
routing (a blocking list drops or answers it)."""
DELIVER_SESSION = "deliver/session"
"""``LocalRouter.deliver``, for every stanza handed to a session of this process:
``handler(session, stanza)``, answers ignored (an archive of each session's stanzas)."""
DELIVER_MESSAGE = "deliver/message"
"""``modules/message.py``, once a message to a local account has been handed to the
resources RFC 6121 §8.5 chose (none when it went to offline storage or was dropped):
``handler(routed, records)``, answers ignored (carbons copy it to the other resources).
Unlike ``deliver/session`` it fires once per message, with every resource that got it."""
DELIVER_OFFLINE = "deliver/offline"
"""``modules/message.py``, for a message no resource can take (RFC 6121 8.5.2):
``handler(routed) -> bool``; true when the handler has it (offline storage)."""
DELIVER_BOUNCED = "deliver/bounced"
"""``Dispatcher.bounce``, for a stanza returned to its sender with an error:
``handler(stanza, error)``, answers ignored."""
PRESENCE_SCREEN = "presence/screen"
"""``modules/presence.py`` and ``modules/roster.py``, for each resource that presence is
handed to without dispatch (broadcasts, probe answers, a contact's presence shown when
a subscription starts, pending subscription requests, presence directed to a bare JID):
``handler(sender, recipient)`` with both JIDs; true keeps it from that recipient (a
block list hides two users' presence from each other). Callers test the channel first:
with no handler it costs nothing."""
DELIVER_SCREEN = "deliver/screen"
"""``modules/message.py``, for each resource of an account that a message to its bare JID
may be handed to, ``modules/offline.py``, for the session a stored message is about
to be written to, and ``modules/pep.py``, for each JID a notification is about to go
to: ``handler(sender, recipient)`` with both JIDs; true keeps the message from that
resource (a block list that names one resource). Callers test the channel first: with
no handler it costs nothing."""
SESSION_BOUND = "session/bound"
"""``SessionManager.bind``, once a resource is bound: ``handler(session)``."""
SESSION_CLOSED = "session/closed"
"""``SessionManager.end``, once a session has ended and left the registry:
``handler(session)`` (presence broadcasts unavailable)."""
SESSION_RESUMED = "session/resumed"
"""``SessionManager.reattach``, once a detached session is carried on a new stream and
what its client had not acknowledged is written again, before what waited for it:
``handler(session)`` (client state indication starts the new stream active)."""
SESSION_MANAGED = "session/managed"
"""``SessionManager.enable``, once a session has stream management (XEP-0198), before
``<enabled/>`` is written: ``handler(session)`` (client state indication tells it how
often to ask an inactive client for acknowledgements)."""
DELIVER_FAILED = "deliver/failed"
"""``SessionManager.end`` (and ``modules/csi.py``, for the messages it held), for each
stanza an ended session leaves behind: written to its client and not acknowledged, or
waiting for it while it was detached:
``handler(session, stanza) -> bool``; true when the handler has it (a carbon copy
dropped, a message another of the account's resources got), else the stanza is routed
again as the server's own."""
PRESENCE_CROSSED = "presence/crossed"
"""``server/clustering.py``, when another node's session became available, changed its
presence or went away, unseen by this node's ``sessions`` that became available at
the same time (so neither node's broadcast nor probe answer reached the other):
``handler(before, after, sessions)``, the other session's records (None: absent)."""
SESSION_GONE = "session/gone"
"""``server/clustering.py``, for each session of another node that ended without it
(the node died, and this node cleaned up after it): ``handler(record)``, the session's
routing record as it last was (presence tells its contacts it is unavailable)."""


class Channel:
    """The handlers of one event in the order they run, kept current as they change."""

    __slots__ = ("handlers",)

    def __init__(self) -> None:
        self.handlers: tuple[Handler, ...] = ()

    def vetoes(self, *args: Any) -> bool:
        """Whether a handler answers true to ``args`` (they run in order until one does),
        as a screen such as ``presence/screen`` asks its handlers."""
        for handler in self.handlers:  # noqa: SIM110 (a generator costs more)
            if handler(*args):
                return True
        return False


class Hooks:
    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[int, int, Handler]]] = {}
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        """The handlers of each event in the order they run (what ``fire`` walks)."""
        self._channels: dict[str, Channel] = {}
        self._order = 0

    def add(self, event: str, handler: Handler, priority: int = 0) -> None:
        """Higher priority runs first; equal priorities run in the order added."""
        self._order += 1
        bisect.insort(self._entries.setdefault(event, []), (-priority, self._order, handler))
        self._index(event)

    def remove(self, event: str, handler: Handler) -> None:
        self._entries[event] = [
            entry for entry in self._entries.get(event, []) if entry[2] is not handler
        ]
        self._index(event)

    def channel(self, event: str) -> Channel:
        """The live handler list of ``event``, for a hot path to test before it fires."""
        channel = self._channels.get(event)
        if channel is None:
            channel = self._channels[event] = Channel()
            channel.handlers = self._handlers.get(event, ())
        return channel

    def _index(self, event: str) -> None:
        handlers = tuple(handler for _p, _o, handler in self._entries[event])
        self._handlers[event] = handlers
        channel = self._channels.get(event)
        if channel is not None:
            channel.handlers = handlers

    def fire(self, event: str, subject: Any) -> bool:
        """Call handlers with ``subject`` until one returns a true value; returns whether any
        did. One argument, not ``*args``: every routed stanza passes through here."""
        for handler in self._handlers.get(event, ()):  # noqa: SIM110 (hot path: a generator costs more)
            if handler(subject):
                return True
        return False

    def notify(self, event: str, *args: Any) -> None:
        """Call every handler; a failing handler is logged and does not stop the others."""
        for handler in self._handlers.get(event, ()):
            try:
                handler(*args)
            except Exception:
                log.exception("handler %r for %s failed", handler, event)
