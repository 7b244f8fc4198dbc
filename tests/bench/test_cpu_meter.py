"""The machine's CPU time from /proc/stat: busy time and the hypervisor's steal time
kept apart, so that a stolen core is never taken for other work on the machine."""

from __future__ import annotations

import pytest

from bench.loadgen import CLOCK_TICKS, MachineTime, machine_time


def test_busy_time_leaves_out_idle_iowait_and_steal() -> None:
    line = b"cpu  1000 10 300 5000 40 5 15 200 150 0\n"

    time = machine_time(line)

    assert time.busy == pytest.approx((1000 + 10 + 300 + 5 + 15) / CLOCK_TICKS)
    assert time.stolen == pytest.approx(200 / CLOCK_TICKS)


def test_a_kernel_without_a_steal_column_has_none_stolen() -> None:
    assert machine_time(b"cpu  100 0 50 900 4\n").stolen == 0.0


def test_an_unreadable_line_gives_zeros() -> None:
    assert machine_time(b"cpu  not numbers\n") == MachineTime()


def test_this_machine_reads() -> None:
    time = machine_time()

    assert time.busy >= 0 and time.stolen >= 0
