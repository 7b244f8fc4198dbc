"""The event bus: named events, handlers by priority, first handler to claim an event wins."""

from __future__ import annotations

import bisect
import logging
from collections.abc import Callable
from typing import Any

log = logging.getLogger(__name__)

Handler = Callable[..., Any]


class Hooks:
    def __init__(self) -> None:
        self._entries: dict[str, list[tuple[int, int, Handler]]] = {}
        self._handlers: dict[str, tuple[Handler, ...]] = {}
        """The handlers of each event in the order they run (what ``fire`` walks)."""
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

    def _index(self, event: str) -> None:
        self._handlers[event] = tuple(handler for _p, _o, handler in self._entries[event])

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
