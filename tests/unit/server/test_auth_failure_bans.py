"""The operator's view of AuthFailureLimiter: the refused addresses, lifting a ban (an
IPv6 address's by its /64), and a reload's new limits."""

from __future__ import annotations

import asyncio

import pytest

from chinwag.config import LimitsSettings
from chinwag.server.auth_failures import AuthFailureLimiter, Ban, listed_key

BAN = 600.0


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def limiter(clock: Clock, limit: int = 2) -> AuthFailureLimiter:
    return AuthFailureLimiter(limit, BAN, clock=clock)


async def fail(failures: AuthFailureLimiter, address: str, times: int) -> None:
    for _ in range(times):
        await failures.failed(address)


async def test_bans_lists_refused_addresses_only_longest_remaining_first(clock: Clock) -> None:
    failures = limiter(clock)
    await fail(failures, "192.0.2.1", 2)
    clock.now += 100
    await fail(failures, "2001:db8:1:2::5", 3)
    await fail(failures, "192.0.2.9", 1)  # below the limit: not refused

    assert await failures.bans() == [
        Ban("2001:db8:1:2::/64", 3, BAN),
        Ban("192.0.2.1", 2, BAN - 100),
    ]
    clock.now += BAN - 100
    assert await failures.bans() == [Ban("2001:db8:1:2::/64", 3, 100)]


@pytest.mark.parametrize(
    "written",
    ["2001:db8:1:2::ffff", "2001:db8:1:2::/64", "2001:DB8:1:2:0::/64", " 2001:db8:1:2::/64 "],
)
async def test_lifting_an_ipv6_address_lifts_its_64(clock: Clock, written: str) -> None:
    failures = limiter(clock)
    await fail(failures, "2001:db8:1:2::5", 2)

    assert await failures.lift(written) == Ban("2001:db8:1:2::/64", 2, BAN)

    assert await failures.bans() == []
    assert await failures.refused_for("2001:db8:1:2::5") is None
    await failures.failed("2001:db8:1:2::5")  # counting starts again from nothing
    assert await failures.refused_for("2001:db8:1:2::5") is None


async def test_lifting_an_address_that_is_not_refused_forgets_its_failures(clock: Clock) -> None:
    failures = limiter(clock)
    await fail(failures, "::ffff:192.0.2.1", 1)

    assert await failures.lift("192.0.2.1") is None
    await failures.failed("192.0.2.1")
    assert await failures.refused_for("192.0.2.1") is None
    assert await failures.lift("192.0.2.77") is None
    assert await failures.lift("") is None


async def test_an_expired_ban_is_not_lifted(clock: Clock) -> None:
    failures = limiter(clock)
    await fail(failures, "192.0.2.1", 2)
    clock.now += BAN

    assert await failures.lift("192.0.2.1") is None


def test_listed_key_names_what_is_counted() -> None:
    assert listed_key("2001:db8::1") == "2001:db8::/64"
    assert listed_key("2001:0db8:0000::/64") == "2001:db8::/64"
    assert listed_key("192.0.2.1") == "192.0.2.1"
    assert listed_key("10.0.0.0/8") == "10.0.0.0/8"
    assert listed_key("not an address") == "not an address"


async def test_a_reload_changes_the_limit_and_keeps_the_counts(clock: Clock) -> None:
    failures = limiter(clock, limit=3)
    await fail(failures, "192.0.2.1", 2)
    assert await failures.bans() == []

    failures.configure(
        LimitsSettings(max_auth_failures_per_address=2, auth_failure_ban_seconds=60.0)
    )

    assert await failures.bans() == [Ban("192.0.2.1", 2, BAN)]  # kept until its next failure
    await failures.failed("192.0.2.1")
    assert await failures.refused_for("192.0.2.1") == 60.0


async def test_a_reload_that_turns_the_limit_off_lifts_every_ban(clock: Clock) -> None:
    failures = limiter(clock)
    await fail(failures, "192.0.2.1", 2)

    failures.configure(LimitsSettings(max_auth_failures_per_address=0))

    assert await failures.bans() == []
    assert await failures.refused_for("192.0.2.1") is None
    await fail(failures, "192.0.2.1", 5)
    assert await failures.refused_for("192.0.2.1") is None


def _ban_lines(caplog: pytest.LogCaptureFixture) -> list[tuple[str, dict[str, object]]]:
    return [
        (line.getMessage(), line.fields)  # type: ignore[attr-defined]
        for line in caplog.records
        if line.name == "chinwag.server.auth_failures"
    ]


async def test_a_ban_and_its_lifting_are_logged_once_each(
    clock: Clock, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="chinwag")
    failures = limiter(clock)
    await fail(failures, "2001:db8:1:2::5", 3)  # the third failure extends the ban: no new line
    await failures.lift("2001:db8:1:2::5")
    await failures.lift("2001:db8:1:2::5")

    assert _ban_lines(caplog) == [
        (
            "address banned after failed sign-ins",
            {"address": "2001:db8:1:2::/64", "failures": 2, "seconds": BAN},
        ),
        ("address ban ended", {"address": "2001:db8:1:2::/64", "reason": "lifted"}),
    ]


async def test_the_end_of_a_ban_is_logged_when_it_runs_out(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level("INFO", logger="chinwag")
    failures = AuthFailureLimiter(1, 0.05)
    await failures.failed("192.0.2.7")
    await asyncio.sleep(0.03)
    await failures.failed("192.0.2.7")  # the ban now ends 0.05 s after this one
    await asyncio.sleep(0.04)
    assert await failures.refused_for("192.0.2.7") is not None
    assert len(_ban_lines(caplog)) == 1

    await asyncio.sleep(0.1)

    assert await failures.refused_for("192.0.2.7") is None
    assert _ban_lines(caplog)[1:] == [
        ("address ban ended", {"address": "192.0.2.7", "reason": "expired"})
    ]
