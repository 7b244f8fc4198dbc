"""Failed sign-ins counted per client address, and the addresses refused for a while
after too many, as ejabberd's mod_fail2ban does: a password guesser that reconnects
after each stream's few attempts (``limits.max_auth_failures``) still runs out of
guesses. The web sign-in form shares the count. Only wrong passwords count: a
client retrying an expired token is no guesser, and must not lock out its address.

An address is refused once it has ``limit`` failures, each less than ``ban_seconds``
after the one before, until ``ban_seconds`` after the last. IPv6 clients are counted
per /64 network, the block one subscriber usually holds. Counts live in this process.
"""

from __future__ import annotations

import ipaddress
import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from chinwag.config import LimitsSettings

MAX_TRACKED_ADDRESSES = 100_000
"""Addresses remembered at once; past this the oldest record is forgotten first."""
IPV6_PREFIX = 64


@dataclass(slots=True)
class _Record:
    failures: int
    expires: float
    """When the failures are forgotten (and a ban ends): ``ban_seconds`` after the last."""


class AuthFailureLimiter:
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
        self._records: dict[str, _Record] = {}

    @classmethod
    def from_settings(cls, limits: LimitsSettings) -> AuthFailureLimiter:
        return cls(limits.max_auth_failures_per_address, limits.auth_failure_ban_seconds)

    def failed(self, address: str | None) -> None:
        """Count one failed authentication from ``address`` (None: unknown, not counted)."""
        key = client_key(address)
        if key is None or not self._limit:
            return
        now = self._clock()
        record = self._records.pop(key, None)  # re-inserted last: the newest record
        if record is None or record.expires <= now:
            record = _Record(0, now)
        record.failures += 1
        record.expires = now + self._ban_seconds
        self._make_room(now)
        self._records[key] = record

    def refused_for(self, address: str | None) -> float | None:
        """Seconds until ``address`` may authenticate again, or None when it may now."""
        key = client_key(address)
        record = None if key is None else self._records.get(key)
        if record is None or record.failures < self._limit:
            return None
        remaining = record.expires - self._clock()
        return remaining if remaining > 0 else None

    def _make_room(self, now: float) -> None:
        if len(self._records) < self._max_tracked:
            return
        for key in [key for key, record in self._records.items() if record.expires <= now]:
            del self._records[key]
        while len(self._records) >= self._max_tracked:
            del self._records[next(iter(self._records))]


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


def refusal(seconds: float) -> str:
    """The stream error's text for an address refused for ``seconds`` more."""
    minutes = math.ceil(seconds / 60)
    wait = f"{minutes} minute{'s' if minutes > 1 else ''}"
    return f"too many failed sign-ins from this address; try again in {wait}"
