"""Random identifiers that must be unique and unpredictable but are not secrets: stream
ids (RFC 6120 4.7.3), generated resource names, ids of server-sent stanzas.

They are cut from one read of the system's CSPRNG per 4 KiB rather than one read each:
``os.urandom`` releases the GIL, and during a burst of sign-ins the event loop then
waits to take it back from the threads deriving password keys (the two stream ids of
a sign-in cost the loop ~40-60 µs of its ~750 that way). Secrets (tokens, SCRAM
nonces, passwords) keep using :mod:`secrets`.
"""

from __future__ import annotations

import os
import threading

_POOL_BYTES = 4096


class _RandomPool:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._bytes = b""
        self._taken = 0

    def take(self, count: int) -> bytes:
        with self._lock:
            if self._taken + count > len(self._bytes):
                self._bytes, self._taken = os.urandom(max(_POOL_BYTES, count)), 0
            start = self._taken
            self._taken += count
            return self._bytes[start : self._taken]

    def forget(self) -> None:
        """Drop what is left, so that a forked child never repeats its parent's ids."""
        self._lock = threading.Lock()
        self._bytes, self._taken = b"", 0


_pool = _RandomPool()
os.register_at_fork(after_in_child=_pool.forget)


def random_hex(count: int) -> str:
    """``count`` random bytes in hex, like ``secrets.token_hex(count)``."""
    return _pool.take(count).hex()
