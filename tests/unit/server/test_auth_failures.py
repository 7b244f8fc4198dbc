"""AuthFailureLimiter: failed sign-ins per address, the ban, and what it remembers."""

from __future__ import annotations

import pytest

from chinwag.server.auth_failures import AuthFailureLimiter, client_key, refusal

BAN = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, limit: int = 3, max_tracked: int = 100) -> AuthFailureLimiter:
    return AuthFailureLimiter(limit, BAN, clock=clock, max_tracked=max_tracked)


async def test_an_address_is_refused_from_its_limit_th_failure_on(clock: Clock) -> None:
    failures = limiter(clock)
    for _ in range(2):
        await failures.failed("192.0.2.1")
    assert await failures.refused_for("192.0.2.1") is None

    await failures.failed("192.0.2.1")

    assert await failures.refused_for("192.0.2.1") == BAN
    assert await failures.refused_for("192.0.2.2") is None


async def test_the_ban_runs_from_the_last_failure_then_all_is_forgotten(clock: Clock) -> None:
    failures = limiter(clock)
    for _ in range(3):
        await failures.failed("192.0.2.1")
        clock.now += 100

    assert await failures.refused_for("192.0.2.1") == BAN - 100
    clock.now += BAN - 100
    assert await failures.refused_for("192.0.2.1") is None

    await failures.failed("192.0.2.1")  # counting starts again
    assert await failures.refused_for("192.0.2.1") is None


async def test_failures_further_apart_than_the_ban_never_add_up(clock: Clock) -> None:
    failures = limiter(clock)
    for _ in range(5):
        await failures.failed("192.0.2.1")
        clock.now += BAN

    assert await failures.refused_for("192.0.2.1") is None


async def test_ipv6_clients_are_counted_per_64_network(clock: Clock) -> None:
    failures = limiter(clock)
    for host in ("2001:db8:1:2::1", "2001:db8:1:2::2", "2001:db8:1:2:ffff::3"):
        await failures.failed(host)

    assert await failures.refused_for("2001:db8:1:2::99") == BAN
    assert await failures.refused_for("2001:db8:1:3::1") is None


async def test_ipv4_mapped_addresses_count_as_the_ipv4_address(clock: Clock) -> None:
    failures = limiter(clock)
    for _ in range(3):
        await failures.failed("::ffff:192.0.2.1")

    assert await failures.refused_for("192.0.2.1") == BAN


@pytest.mark.parametrize("address", [None, ""])
async def test_an_unknown_address_is_never_counted_nor_refused(
    clock: Clock, address: str | None
) -> None:
    failures = limiter(clock)
    for _ in range(5):
        await failures.failed(address)

    assert await failures.refused_for(address) is None


async def test_a_limit_of_zero_turns_it_off(clock: Clock) -> None:
    failures = limiter(clock, limit=0)
    for _ in range(50):
        await failures.failed("192.0.2.1")

    assert await failures.refused_for("192.0.2.1") is None


async def test_past_its_capacity_it_forgets_expired_records_then_the_oldest(clock: Clock) -> None:
    failures = limiter(clock, limit=1, max_tracked=3)
    await failures.failed("192.0.2.1")
    clock.now += BAN  # 192.0.2.1's record has expired
    for host in ("192.0.2.2", "192.0.2.3", "192.0.2.4"):
        await failures.failed(host)
    assert [await failures.refused_for(h) for h in ("192.0.2.2", "192.0.2.3", "192.0.2.4")] == [
        BAN
    ] * 3

    await failures.failed("192.0.2.3")  # refreshed: now the newest record
    await failures.failed("192.0.2.5")  # full of live records: the oldest, 192.0.2.2, goes

    assert await failures.refused_for("192.0.2.2") is None
    assert all([await failures.refused_for(h) for h in ("192.0.2.3", "192.0.2.4", "192.0.2.5")])


def test_keys() -> None:
    assert client_key("192.0.2.1") == "192.0.2.1"
    assert client_key("2001:db8::1") == "2001:db8::/64"
    assert client_key("::ffff:192.0.2.1") == "192.0.2.1"
    assert client_key("not an address") == "not an address"
    assert client_key(None) is None


@pytest.mark.parametrize(
    ("seconds", "wait"),
    [(1, "1 minute"), (60, "1 minute"), (61, "2 minutes"), (3600, "60 minutes")],
)
def test_the_refusal_says_how_long_to_wait(seconds: float, wait: str) -> None:
    assert refusal(seconds) == f"too many failed sign-ins from this address; try again in {wait}"
