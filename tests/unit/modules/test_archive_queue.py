"""The archive's queue of messages waiting for the writer (``modules/mam.py``)."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

from chinwag.config import ArchiveSettings
from chinwag.modules import mam


def test_queued_messages_leave_the_garbage_collectors_lists() -> None:
    """Tens of thousands of messages wait for the writer under load: queued as plain
    tuples, they stop being tracked at the collector's first look, where a tuple
    subclass's would be walked by every collection until stored."""
    spawned: list[Any] = []
    api = SimpleNamespace(
        services=SimpleNamespace(archive=None),
        domain=SimpleNamespace(domain="localhost"),
        settings=SimpleNamespace(archive=ArchiveSettings()),
        spawn=spawned.append,
    )
    archive = mam.Archive(api)  # type: ignore[arg-type]

    for n in range(3):
        stanza = f"<message type='chat'><body>{n}</body></message>"
        assert archive.archive("alice", "bob@localhost", "desk", n % 2 == 0, stanza, n)
    gc.collect()

    queued = archive.writer._queue.messages
    assert [row[1] for row in queued] == [0, 1, 2]
    assert not any(gc.is_tracked(row) for row in queued)
    for work in spawned:
        work.close()
