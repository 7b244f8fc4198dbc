"""The archive's retention (``[archive] retention_days``): messages older than that are
deleted once an hour, and once at start-up."""

from __future__ import annotations

import asyncio
import logging
from datetime import UTC, datetime, timedelta

from chinwag.store.archive import ArchiveRepository

log = logging.getLogger(__name__)

PURGE_EVERY_SECONDS = 3600.0


class ArchiveRetention:
    def __init__(
        self, archive: ArchiveRepository, days: int, every: float = PURGE_EVERY_SECONDS
    ) -> None:
        self._archive = archive
        self._days = days
        self._every = every
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Purge periodically; with ``days`` 0 messages are kept forever and nothing runs."""
        if self._days > 0:
            self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def purge(self) -> int:
        """Delete what is past the retention period; how many messages went."""
        return await self._archive.purge(datetime.now(UTC) - timedelta(days=self._days))

    async def _run(self) -> None:
        while True:
            try:
                purged = await self.purge()
                if purged:
                    log.info("archive retention: deleted %d messages", purged)
            except Exception:
                log.exception("purging the archive failed; trying again later")
            await asyncio.sleep(self._every)
