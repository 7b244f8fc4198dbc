"""Brings changes made through the network domain, by any process, to the XMPP side.

Every change to contacts, profiles or accounts is written with an event in the
same transaction (a transactional outbox). The pump polls for new events and
fires ``network/<kind>`` hooks for every one of them, this process's own
included: the network services in this process (the REST API, the portal) change
storage without touching sessions, so their changes reach the XMPP side the same
way as those of the CLI or another node. Handlers are therefore idempotent: the
roster module, for one, finds the changes it made itself already applied.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta

from chinwag.network.events import EventLog, NetworkEvent
from chinwag.server.hooks import Hooks

log = logging.getLogger(__name__)

POLL_SECONDS = 0.2
RETENTION = timedelta(days=1)
"""How long events are kept: far longer than any process lags behind the outbox."""
PRUNE_EVERY_POLLS = 18000  # an hour of polls


class EventPump:
    def __init__(self, events: EventLog, hooks: Hooks) -> None:
        self._events = events
        self._hooks = hooks
        self._last_id = 0
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        self._last_id = await self._events.latest_id()
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
            self._task = None

    async def _run(self) -> None:
        polls = 0
        while True:
            await asyncio.sleep(POLL_SECONDS)
            polls += 1
            try:
                await self.poll()
                if polls % PRUNE_EVERY_POLLS == 0:
                    await self.prune()
            except Exception:
                log.exception("reading network events failed; retrying")

    async def prune(self) -> int:
        """Forget events older than RETENTION; the outbox would otherwise grow forever."""
        return await self._events.prune(RETENTION)

    async def poll(self) -> None:
        for event in await self._events.since(self._last_id):
            self._last_id = event.id
            self._deliver(event)

    def _deliver(self, event: NetworkEvent) -> None:
        self._hooks.notify(f"network/{event.kind}", event)
