"""The service's metrics in the OpenMetrics text format (``prometheus-client``), its
readiness, and the recent figures the operators' live page draws.

Each XMPP service gets a registry of its own, so that several can run in one process.
What the service counts anyway (sessions, streams, address bans) and the plain counts
of ``stats.py`` are read when metrics are scraped, by a collector, never pushed to
``prometheus-client`` per stanza. Only what has no count of its own is observed as it
happens: database calls (timed through :meth:`Database.time_calls`) and the event
loop's lag, which a probe measures every ``PROBE_SECONDS``: the delay between
scheduling a callback and the loop running it.
"""

from __future__ import annotations

import asyncio
import bisect
import logging
import time
from collections import Counter, deque
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from typing import Any

from prometheus_client import CollectorRegistry, ProcessCollector
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.openmetrics.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import Collector
from sqlalchemy import text

from chinwag.server.xmpp_server import XMPPServer
from chinwag.store.db import OPERATIONS, Database

log = logging.getLogger(__name__)

CONTENT_TYPE = CONTENT_TYPE_LATEST
"""The OpenMetrics text format's media type, with its version."""
PASSWORD_APP = "(password)"
"""The ``app`` label of sessions signed in with the account's own password."""
PROBE_SECONDS = 1.0
SAMPLE_EVERY_PROBES = 5
"""The live page's figures are kept every this many probes ..."""
SAMPLES_KEPT = 120
"""... this many of them: ten minutes."""
READY_TIMEOUT_SECONDS = 2.0
LAG_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)
DATABASE_BUCKETS = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
)


class Buckets:
    """Observations counted by the first bound they are within, for a histogram read at
    scrape time. prometheus-client's ``Histogram.observe`` costs ten times as much, and
    these are observed on the event loop: at each probe and each database call."""

    __slots__ = ("bounds", "counts", "sum")

    def __init__(self, bounds: tuple[float, ...]) -> None:
        self.bounds = bounds
        self.counts = [0] * (len(bounds) + 1)
        """By the first of ``bounds`` the value is within; the last, beyond them all."""
        self.sum = 0.0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.bounds, value)] += 1
        self.sum += value

    def add_to(self, family: HistogramMetricFamily, labels: list[str]) -> None:
        cumulative, buckets = 0, []
        for bound, count in zip((*map(repr, self.bounds), "+Inf"), self.counts, strict=True):
            cumulative += count
            buckets.append((bound, cumulative))
        family.add_metric(labels, buckets, self.sum)


@dataclass(frozen=True, slots=True)
class Sample:
    """The figures of one moment, for the live page."""

    time: float
    """Seconds since the epoch."""
    sessions: int
    stanzas_in: int
    stanzas_out: int
    sign_ins: int
    sign_in_failures: int
    lag_seconds: float


class ServerMetrics:
    """The metrics of one XMPP service and its database."""

    def __init__(self, xmpp: XMPPServer, database: Database) -> None:
        self.xmpp = xmpp
        self.database = database
        self.registry = CollectorRegistry()
        ProcessCollector(registry=self.registry)
        self.registry.register(_ServiceCollector(self))
        self.database_calls = {
            operation: Buckets(DATABASE_BUCKETS) for operation in (*sorted(OPERATIONS), "other")
        }
        database.time_calls(self._timed)
        self.latest_lag = 0.0
        self.bans_now = 0
        """Addresses refused, as of the last scrape (in a cluster, asked of Redis)."""
        self.lag = Buckets(LAG_BUCKETS)
        self.samples: deque[Sample] = deque(maxlen=SAMPLES_KEPT)
        self._probe: asyncio.Task[None] | None = None

    # --- scraping ---------------------------------------------------------------------

    async def exposition(self) -> bytes:
        """Every metric, in the OpenMetrics text format (``CONTENT_TYPE``)."""
        await self._count_bans()
        return generate_latest(self.registry)

    async def _count_bans(self) -> None:
        """The address bans in force, asked before each scrape: a cluster keeps them in
        Redis, which the collector (synchronous) cannot wait for."""
        try:
            self.bans_now = len(await self.xmpp.auth_failures.bans())
        except Exception as error:  # Redis away: the scrape gives the last figure
            log.warning("address bans not counted: %s", error)

    def live(self) -> dict[str, Any]:
        """The recent figures, oldest first, the last one of this moment."""
        samples = [*self.samples, self.sample()]
        return {"probe_seconds": PROBE_SECONDS, "samples": [asdict(s) for s in samples]}

    def sample(self) -> Sample:
        stats = self.xmpp.stats
        stats.settle()
        return Sample(
            time=time.time(),
            sessions=self.xmpp.sessions.count,
            stanzas_in=sum(stats.stanzas_in.values()),
            stanzas_out=sum(stats.stanzas_out.values()),
            sign_ins=sum(stats.sign_ins.values()),
            sign_in_failures=sum(stats.sign_in_failures.values()),
            lag_seconds=self.latest_lag,
        )

    async def unready(self) -> str | None:
        """Why the service cannot serve now, in a few words; None when it can: its XMPP
        listeners accept connections and its database answers."""
        if not self.xmpp.listening:
            return "the XMPP listeners are not accepting connections"
        try:
            async with asyncio.timeout(READY_TIMEOUT_SECONDS):
                async with self.database.engine.connect() as connection:
                    await connection.execute(text("SELECT 1"))
        except TimeoutError:
            return f"the database did not answer within {READY_TIMEOUT_SECONDS:g} s"
        except Exception as error:  # whatever the driver raises is the answer, not a crash
            problem = str(getattr(error, "orig", None) or error) or type(error).__name__
            return f"the database does not answer: {problem.splitlines()[0]}"
        return None

    # --- observing ----------------------------------------------------------------------

    def _timed(self, operation: str, seconds: float) -> None:
        self.database_calls[operation].observe(seconds)

    def start(self) -> None:
        """Start probing the event loop's lag (and keeping the live page's figures)."""
        self._probe = asyncio.create_task(self._probe_lag())

    async def stop(self) -> None:
        if self._probe is not None:
            self._probe.cancel()
            await asyncio.gather(self._probe, return_exceptions=True)
            self._probe = None

    async def _probe_lag(self) -> None:
        loop = asyncio.get_running_loop()
        probes = 0
        while True:
            await asyncio.sleep(PROBE_SECONDS)
            loop.call_soon(self._lag_measured, time.perf_counter())
            probes += 1
            if probes % SAMPLE_EVERY_PROBES == 0:
                self.samples.append(self.sample())

    def _lag_measured(self, scheduled: float) -> None:
        self.latest_lag = time.perf_counter() - scheduled
        self.lag.observe(self.latest_lag)


class _ServiceCollector(Collector):
    """What the service counts, read at each scrape."""

    def __init__(self, metrics: ServerMetrics) -> None:
        self._metrics = metrics

    def describe(self) -> list[Metric]:
        return []  # names known only at collection: never checked against others

    def collect(self) -> Iterator[Metric]:
        xmpp = self._metrics.xmpp
        stats = xmpp.stats
        stats.settle()
        yield self._sessions()
        yield _gauge(
            "chinwag_streams", "Open client streams (signed in or not).", len(xmpp.connections)
        )
        yield _counter(
            "chinwag_stanzas_received",
            "Stanzas read from clients, by kind.",
            "kind",
            stats.stanzas_in,
        )
        yield _counter(
            "chinwag_stanzas_sent",
            "Stanzas queued to clients, by kind.",
            "kind",
            stats.stanzas_out,
        )
        yield _counter(
            "chinwag_sign_ins",
            "Successful SASL authentications, by mechanism.",
            "mechanism",
            stats.sign_ins,
        )
        yield _counter(
            "chinwag_sign_in_failures",
            "Failed SASL authentications, by mechanism.",
            "mechanism",
            stats.sign_in_failures,
        )
        failures = xmpp.auth_failures
        yield _gauge(
            "chinwag_address_bans",
            "Client addresses refused now after failed sign-ins.",
            self._metrics.bans_now,
        )
        yield CounterMetricFamily(
            "chinwag_address_bans_started",
            "Client addresses refused after failed sign-ins, since start.",
            value=failures.bans_started,
        )
        yield CounterMetricFamily(
            "chinwag_offline_messages_stored",
            "Messages stored for users with no available resource.",
            value=stats.offline_stored,
        )
        yield CounterMetricFamily(
            "chinwag_offline_messages_delivered",
            "Stored messages delivered, acknowledged and deleted.",
            value=stats.offline_delivered,
        )
        yield self._database_calls()
        lag = HistogramMetricFamily(
            "chinwag_event_loop_lag_seconds",
            "Delay between scheduling a callback on the event loop and the loop running it, "
            f"probed every {PROBE_SECONDS:g} s.",
        )
        self._metrics.lag.add_to(lag, [])
        yield lag
        yield _gauge(
            "chinwag_event_loop_lag_last_seconds",
            f"The event loop's lag at the latest probe (every {PROBE_SECONDS:g} s).",
            self._metrics.latest_lag,
        )

    def _database_calls(self) -> Metric:
        calls = HistogramMetricFamily(
            "chinwag_database_call_seconds",
            "Time taken by calls to the database, by SQL operation.",
            labels=["operation"],
        )
        for operation, buckets in self._metrics.database_calls.items():
            buckets.add_to(calls, [operation])
        return calls

    def _sessions(self) -> Metric:
        counts = Counter(
            (session.transport_kind, session.app or PASSWORD_APP)
            for session in self._metrics.xmpp.sessions.all()
        )
        family = GaugeMetricFamily(
            "chinwag_sessions",
            "Bound sessions, by transport and by app (client ID; password sign-ins "
            f"as {PASSWORD_APP}).",
            labels=["transport", "app"],
        )
        for (transport, app), count in sorted(counts.items()):
            family.add_metric([transport, app], count)
        return family


def _gauge(name: str, documentation: str, value: float) -> Metric:
    return GaugeMetricFamily(name, documentation, value=value)


def _counter(name: str, documentation: str, label: str, counts: dict[str, int]) -> Metric:
    family = CounterMetricFamily(name, documentation, labels=[label])
    for value, count in sorted(counts.items()):
        family.add_metric([value], count)
    return family
