"""``--sm``: every client with stream management, or each scenario without it and with
it in turn, reported side by side with what it changed."""

from __future__ import annotations

import io

import pytest
from rich.console import Console

from bench.loadgen import HIGHER, LOWER, Result
from bench.run import SM_MODES, MachineSpeed, ServerReport, parse_args, print_report, turns


def report(sm: bool, delivered: float, per_session: float) -> ServerReport:
    msg_sat = Result("msg-sat")
    msg_sat.add("delivered", delivered, "msg/s", HIGHER)
    msg_sat.add("server CPU", 99.0, "% core", LOWER)
    idle = Result("idle")
    idle.add("RSS per session", per_session, "KiB", LOWER)
    return ServerReport("chinwag", sm=sm, results={"msg-sat": msg_sat, "idle": idle})


def printed(reports: list[ServerReport]) -> str:
    out = Console(file=io.StringIO(), width=200)
    print_report(reports, ["msg-sat", "idle"], MachineSpeed(2.0, 2.0), out)
    return out.file.getvalue()  # type: ignore[attr-defined]


@pytest.mark.parametrize(
    ("argv", "mode"),
    [([], "off"), (["--sm"], "on"), (["--sm", "on"], "on"), (["--sm", "both"], "both")],
)
def test_sm_takes_on_or_both(argv: list[str], mode: str) -> None:
    assert parse_args(argv).sm == mode


def test_sm_takes_nothing_else() -> None:
    with pytest.raises(SystemExit):
        parse_args(["--sm", "sometimes"])


def test_both_runs_without_then_with_stream_management() -> None:
    assert SM_MODES["both"] == (False, True)
    assert SM_MODES["on"] == (True,) and SM_MODES["off"] == (False,)


def test_a_server_with_stream_management_is_its_own_column() -> None:
    text = printed([report(True, 95_000, 11.5)])

    assert "chinwag+sm" in text
    assert "what it changed" not in text  # nothing to compare with


def test_both_ways_print_the_change_of_each_figure() -> None:
    text = printed([report(False, 100_000, 10.5), report(True, 92_000, 11.75)])

    lines = {line.split("│")[3].strip(): line for line in text.splitlines() if "│" in line}
    assert "100,000" in lines["delivered (msg/s)"] and "-8.0 %" in lines["delivered (msg/s)"]
    assert "+1.25 KiB" in lines["RSS per session (KiB)"]
    assert "vs chinwag+sm" in text


def test_repeated_runs_print_the_change_of_each_pair_and_its_median() -> None:
    plain, managed = report(False, 100_000, 10.5), report(True, 80_000, 11.0)
    plain.runs = {"msg-sat": [report(False, v, 10.5).results["msg-sat"] for v in (100, 90, 120)]}
    managed.runs = {"msg-sat": [report(True, v, 11.0).results["msg-sat"] for v in (80, 81, 90)]}
    plain.runs["idle"] = [report(False, 1, v).results["idle"] for v in (10.5, 11.0)]
    managed.runs["idle"] = [report(True, 1, v).results["idle"] for v in (11.0, 11.25)]

    text = printed([plain, managed])

    lines = {line.split("│")[3].strip(): line for line in text.splitlines() if "│" in line}
    assert "pair by pair (median)" in text
    assert "-20.0, -10.0, -25.0 (-20.0 %)" in lines["delivered (msg/s)"]
    assert "+0.50, +0.25 (+0.38 KiB)" in lines["RSS per session (KiB)"]


def test_single_runs_print_no_pairs() -> None:
    plain, managed = report(False, 100_000, 10.5), report(True, 80_000, 11.0)
    plain.runs = {"msg-sat": [plain.results["msg-sat"]]}
    managed.runs = {"msg-sat": [managed.results["msg-sat"]]}

    assert "pair by pair" not in printed([plain, managed])


@pytest.mark.parametrize(
    ("variants", "repeat", "order"),
    [
        (2, 1, [0, 1]),
        (2, 4, [0, 1, 1, 0, 0, 1, 1, 0]),
        (1, 3, [0, 0, 0]),
        (3, 2, [0, 1, 2, 2, 1, 0]),
    ],
)
def test_every_other_repetition_runs_the_variants_in_reverse(
    variants: int, repeat: int, order: list[int]
) -> None:
    """Without, with, with, without: a machine that slows down over a run's minutes
    weighs on each side of the pairs in turn, not always on the one run second."""
    assert turns(variants, repeat) == order
