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
        self._handlers: dict[str, list[tuple[int, int, Handler]]] = {}
        self._order = 0

    def add(self, event: str, handler: Handler, priority: int = 0) -> None:
        """Higher priority runs first; equal priorities run in the order added."""
        self._order += 1
        bisect.insort(self._handlers.setdefault(event, []), (-priority, self._order, handler))

    def remove(self, event: str, handler: Handler) -> None:
        self._handlers[event] = [
            entry for entry in self._handlers.get(event, []) if entry[2] is not handler
        ]

    def fire(self, event: str, *args: Any) -> bool:
        """Call handlers until one returns a true value; returns whether any did."""
        for _priority, _order, handler in self._handlers.get(event, ()):  # noqa: SIM110 (hot path: a generator costs more)
            if handler(*args):
                return True
        return False

    def notify(self, event: str, *args: Any) -> None:
        """Call every handler; a failing handler is logged and does not stop the others."""
        for _priority, _order, handler in self._handlers.get(event, ()):
            try:
                handler(*args)
            except Exception:
                log.exception("handler %r for %s failed", handler, event)
