"""The server process's heap: the garbage collector's settings, and giving memory that
the server has freed back to the operating system.

Start-up leaves hundreds of thousands of long-lived objects (modules, SQLAlchemy's and
Starlette's tables) that every full collection would walk again: on a burst of
sign-ins those collections paused the event loop for 60 to 270 ms each. Freezing them
after start-up takes them out of every later collection, and a larger young generation
makes the frequent collections rarer; what serving creates is still collected.

The C allocator keeps freed blocks for reuse, so memory freed in many small pieces
(the XML parsers of idle streams) does not lower the process's resident size by
itself. glibc's ``malloc_trim`` returns every whole free page; elsewhere this does
nothing.
"""

from __future__ import annotations

import ctypes
import gc
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()
YOUNG_GENERATION_THRESHOLD = 10_000
"""Allocations between young collections (CPython's default is 700)."""


def settle_after_start() -> None:
    """Collect once, freeze what start-up left alive, and collect the young less often."""
    gc.collect()
    gc.freeze()
    _young, *older = gc.get_threshold()
    gc.set_threshold(YOUNG_GENERATION_THRESHOLD, *older)


def return_free_memory() -> bool:
    """Hand free heap pages back to the system; whether the platform could."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
