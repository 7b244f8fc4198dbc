"""Failed sign-ins counted per client address, and the addresses refused for a while
after too many, as ejabberd's mod_fail2ban does: a password guesser that reconnects
after each stream's few attempts (``limits.max_auth_failures``) still runs out of
guesses. The web sign-in form shares the count. Wrong passwords count, by any
mechanism, and so do malformed requests; a refused token does not (a client retrying an
expired token is no guesser, and must not lock out its address), nor does an abort.

An address is refused once it has ``limit`` failures, each less than ``ban_seconds``
after the one before, until ``ban_seconds`` after the last. IPv6 clients are counted
per /64 network, the block one subscriber usually holds. The operator lists the
refused addresses and lifts a ban (``chinwag bans``), and a reload changes the limit
and the time (``configure``), keeping the counts.

Counts live in this process (``AuthFailureLimiter``), or, for a node of a cluster, in
Redis, where every node counts and sees them (``cluster_auth_failures.py``): both are
``AuthFailures``, whose checks are awaited.

A ban is logged when it begins and when it ends: lifted, or run out (in this process, a
timer on the running event loop looks when it should have; without a loop, only lifts
are logged; in Redis, only lifts).
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import math
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple, Protocol

from chinwag.config import LimitsSettings, Settings

log = logging.getLogger(__name__)

MAX_TRACKED_ADDRESSES = 100_000
"""Addresses remembered at once; past this the record with the oldest failure goes."""
IPV6_PREFIX = 64


@dataclass(slots=True)
class _Record:
    failures: int
    expires: float
    """When the failures are forgotten (and a ban ends): ``ban_seconds`` after the last."""


class Ban(NamedTuple):
    """An address refused for now: what is counted (an IPv4 address, an IPv6 /64)."""

    address: str
    failures: int
    remaining_seconds: float


class AuthFailures(Protocol):
    """Failed sign-ins counted per client address, and the addresses refused for them."""

    def configure(self, limits: LimitsSettings) -> None:
        """Take a reload's limit and ban time, keeping the failures counted so far."""
        ...

    async def failed(self, address: str | None) -> None:
        """Count one failed authentication from ``address`` (None: unknown, not counted)."""
        ...

    async def refused_for(self, address: str | None) -> float | None:
        """Seconds until ``address`` may authenticate again, or None when it may now."""
        ...

    async def bans(self) -> list[Ban]:
        """The addresses refused now, the one refused longest first."""
        ...

    async def lift(self, address: str) -> Ban | None:
        """Forget the failures of ``address`` (an address, or a network as ``bans`` names
        it); the ban this ends, or None if it was not refused."""
        ...

    async def close(self) -> None:
        """Let go of what the counts are kept in (the server is stopping)."""
        ...


def auth_failures_for(settings: Settings) -> AuthFailures:
    """The count this server keeps: in Redis for a node of a cluster, else in-process."""
    if settings.cluster is None:
        return AuthFailureLimiter.from_settings(settings.limits)
    from chinwag.server.cluster_auth_failures import RedisAuthFailures

    return RedisAuthFailures.from_settings(settings.cluster, settings.limits)


class AuthFailureLimiter:
    """``AuthFailures`` counted in this process."""

    def __init__(
        self,
        limit: int,
        ban_seconds: float,
        *,
        clock: Callable[[], float] = time.monotonic,
        max_tracked: int = MAX_TRACKED_ADDRESSES,
    ) -> None:
        """``limit`` 0 turns the limiter off."""
        self._limit = limit
        self._ban_seconds = ban_seconds
        self._clock = clock
        self._max_tracked = max_tracked
        self._records: OrderedDict[str, _Record] = OrderedDict()
        """Oldest last failure first, which is also the order in which they expire."""
        self._banned: set[str] = set()
        """The keys whose ban was logged as begun and not yet as ended."""

    @classmethod
    def from_settings(cls, limits: LimitsSettings) -> AuthFailureLimiter:
        return cls(limits.max_auth_failures_per_address, limits.auth_failure_ban_seconds)

    def configure(self, limits: LimitsSettings) -> None:
        """Take a reload's limits; the failures counted so far stay, as do the times they
        are kept for (a new ``ban_seconds`` counts from each address's next failure)."""
        self._limit = limits.max_auth_failures_per_address
        self._ban_seconds = limits.auth_failure_ban_seconds
        if not self._limit:
            self._records.clear()

    async def failed(self, address: str | None) -> None:
        """Count one failed authentication from ``address`` (None: unknown, not counted)."""
        key = client_key(address)
        if key is None or not self._limit:
            return
        now = self._clock()
        record = self._records.get(key)
        if record is None or record.expires <= now:
            record = self._records[key] = _Record(0, now)
        record.failures += 1
        record.expires = now + self._ban_seconds
        self._records.move_to_end(key)
        self._forget_old(now)
        if record.failures >= self._limit and key not in self._banned:
            self._ban_began(key, record.failures)

    def _ban_began(self, key: str, failures: int) -> None:
        self._banned.add(key)
        fields = {"address": key, "failures": failures, "seconds": self._ban_seconds}
        log.info("address banned after failed sign-ins", extra={"fields": fields})
        self._look_again(key, self._ban_seconds)

    def _look_again(self, key: str, seconds: float) -> None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            return  # no loop, no timer: the ban's end is logged only if it is lifted
        loop.call_later(seconds, self._check_ban, key)

    def _check_ban(self, key: str) -> None:
        """The ban of ``key`` should be over: log its end, or look again when it is."""
        if key not in self._banned:
            return  # lifted meanwhile
        record = self._records.get(key)
        remaining = 0.0 if record is None else record.expires - self._clock()
        if remaining > 0 and record is not None and record.failures >= self._limit:
            self._look_again(key, remaining)
            return
        self._banned.discard(key)
        log.info("address ban ended", extra={"fields": {"address": key, "reason": "expired"}})

    async def refused_for(self, address: str | None) -> float | None:
        """Seconds until ``address`` may authenticate again, or None when it may now."""
        if not self._records:  # the usual case, without parsing the address
            return None
        key = client_key(address)
        record = None if key is None else self._records.get(key)
        if record is None or record.failures < self._limit:
            return None
        remaining = record.expires - self._clock()
        return remaining if remaining > 0 else None

    async def bans(self) -> list[Ban]:
        """The addresses refused now, the one refused longest first."""
        now = self._clock()
        return sorted(
            (
                Ban(key, record.failures, record.expires - now)
                for key, record in self._records.items()
                if record.failures >= self._limit and record.expires > now
            ),
            key=lambda ban: -ban.remaining_seconds,
        )

    async def lift(self, address: str) -> Ban | None:
        """Forget the failures of ``address`` (an address, or a network as ``bans`` names
        it); the ban this ends, or None if it was not refused."""
        key = listed_key(address)
        record = None if key is None else self._records.pop(key, None)
        if key is not None and key in self._banned:
            self._banned.discard(key)
            fields = {"address": key, "reason": "lifted"}
            log.info("address ban ended", extra={"fields": fields})
        if key is None or record is None:
            return None
        remaining = record.expires - self._clock()
        if record.failures < self._limit or remaining <= 0:
            return None
        return Ban(key, record.failures, remaining)

    async def close(self) -> None:
        pass

    def _forget_old(self, now: float) -> None:
        """Drop expired records, and the oldest live ones past the capacity: both sit at
        the front, so each failure does a little of this work, never a sweep."""
        records = self._records
        while records and (
            len(records) > self._max_tracked or next(iter(records.values())).expires <= now
        ):
            records.popitem(last=False)


def client_key(address: str | None) -> str | None:
    """What failures are counted against: the IPv4 address (also when written as an
    IPv4-mapped IPv6 one), the /64 network of an IPv6 one, or any other text as it is."""
    if not address:
        return None
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return address  # not an IP address (a Unix socket's path, say): counted as given
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, IPV6_PREFIX), strict=False))
    return str(ip)


def listed_key(text: str) -> str | None:
    """What failures of ``text`` are counted against: :func:`client_key` of an address,
    or an IPv6 network written another way than ``bans`` lists it (``2001:DB8:0:0::/64``)."""
    text = text.strip()
    if "/" not in text:
        return client_key(text)
    try:
        network = ipaddress.ip_network(text, strict=False)
    except ValueError:
        return text
    if isinstance(network, ipaddress.IPv6Network) and network.prefixlen == IPV6_PREFIX:
        return str(network)
    return text


def refusal(seconds: float) -> str:
    """The stream error's text for an address refused for ``seconds`` more."""
    minutes = math.ceil(seconds / 60)
    wait = f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"too many failed sign-ins from this address; try again in {wait}"
