"""The machine-speed calibration: a positive figure, and a drift warning only for a
real change (timings themselves are never asserted)."""

from __future__ import annotations

import math

from bench.calibration import drifted, parse_cost_us


def test_the_calibration_is_a_positive_figure() -> None:
    cost = parse_cost_us(rounds=3)
    assert math.isfinite(cost) and cost > 0


def test_only_a_change_of_more_than_fifteen_per_cent_is_drift() -> None:
    assert not drifted(2.0, 2.2)
    assert not drifted(2.2, 2.0)
    assert drifted(2.0, 2.4)
    assert drifted(2.4, 2.0)
