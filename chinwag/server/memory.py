"""Giving memory that the server has freed back to the operating system.

The C allocator keeps freed blocks for reuse, so memory freed in many small pieces
(the XML parsers of idle streams) does not lower the process's resident size by
itself. glibc's ``malloc_trim`` returns every whole free page; elsewhere this does
nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable


def _find_malloc_trim() -> Callable[[int], int] | None:
    try:
        return ctypes.CDLL(None).malloc_trim  # type: ignore[no-any-return]
    except (OSError, AttributeError):
        return None


_MALLOC_TRIM = _find_malloc_trim()


def return_free_memory() -> bool:
    """Hand free heap pages back to the system; whether the platform could."""
    if _MALLOC_TRIM is None:
        return False
    _MALLOC_TRIM(0)
    return True
