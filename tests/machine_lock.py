"""One-at-a-time setup steps that change the machine or the repository (apt-get, npm
ci, builds), shared by every test process: pytest-xdist's workers, and other test
runs on the same machine, take turns instead of tripping over each other's half-done
work."""

from __future__ import annotations

import hashlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from filelock import FileLock

LOCK_TIMEOUT_S = 900.0
"""Longer than the slowest step it guards (an apt-get install or an npm ci)."""


@contextmanager
def machine_lock(name: str, where: Path | None = None) -> Iterator[None]:
    """Hold the lock of step ``name`` (for ``where``, a directory, if given) while the
    block runs; a step that another process has begun is waited for."""
    key = (
        name
        if where is None
        else f"{name}-{hashlib.sha256(bytes(where.resolve())).hexdigest()[:16]}"
    )
    lock = FileLock(
        Path(tempfile.gettempdir()) / f"chinwag-tests-{key}.lock", timeout=LOCK_TIMEOUT_S
    )
    with lock:
        yield
