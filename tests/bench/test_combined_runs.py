"""``--repeat``: several runs of a scenario reported as the median of each figure."""

from __future__ import annotations

import pytest

from bench.loadgen import HIGHER, LOWER, Result
from bench.run import combined, parse_args


def run(sessions: float, rss: float, *, errors: int = 0, undelivered: int = 0) -> Result:
    result = Result("login", counts={"sessions": 2000}, errors=errors, undelivered=undelivered)
    result.add("sessions/s", sessions, "1/s", HIGHER)
    result.add("peak server RSS", rss, "MiB", LOWER)
    result.add("server CPU", 120.0, "% core")
    if errors:
        result.error_samples.append(f"u{errors}: sign-in failed")
    return result


def test_each_figure_is_the_median_of_the_runs_and_its_range_is_noted() -> None:
    result = combined([run(803, 150), run(1086, 148), run(837, 149)])

    assert [(f.name, f.value) for f in result.figures] == [
        ("sessions/s", 837),
        ("peak server RSS", 149),
        ("server CPU", 120.0),
    ]
    assert "sessions/s: median of 3 runs, 803 to 1,086" in result.notes
    assert result.counts == {"sessions": 2000}


def test_every_run_counts_towards_undelivered_messages_and_errors() -> None:
    result = combined([run(800, 150), run(900, 150, errors=2, undelivered=3)])

    assert (result.errors, result.undelivered) == (2, 3)
    assert result.error_samples == ["u2: sign-in failed"]
    assert not result.clean


def test_a_run_that_never_started_counts_as_an_error_and_lends_no_figures() -> None:
    failed = Result("login", errors=1, error_samples=["could not start: no port"])

    result = combined([failed, run(900, 150), run(1000, 150)])

    assert result.figures[0].name == "sessions/s"
    assert result.figures[0].value == 950
    assert result.errors == 1


def test_one_run_is_reported_as_it_came() -> None:
    single = run(945, 148)
    assert combined([single]) is single


def test_repeat_takes_a_positive_count() -> None:
    assert parse_args(["--repeat", "3"]).repeat == 3
    assert parse_args([]).repeat == 1
    with pytest.raises(SystemExit):
        parse_args(["--repeat", "0"])
