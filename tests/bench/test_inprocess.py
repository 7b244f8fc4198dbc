"""``python -m bench.inprocess`` routes every message it feeds, or signs every user in,
and reports a figure; ``python -m bench.instructions`` counts what a routed message and
a sign-in cost under valgrind.

Each run is a subprocess (its own event loop and provisioning); timings and counts are
never asserted, only that the run completed and said what it measured. Arguments that
are refused are refused before anything runs: those cases call the commands' ``main``
in this process. The valgrind count, the longest test of the suite, is marked ``slow``
so that it starts first.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from bench import inprocess, instructions

ROOT = Path(__file__).resolve().parents[2]


def _harness(*args: str, module: str = "bench.inprocess") -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", module, *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )


def _assert_reports(done: subprocess.CompletedProcess[str], figure: str) -> None:
    """The run succeeded and printed one line matching the regular expression ``figure``."""
    assert done.returncode == 0, done.stderr
    assert re.fullmatch(figure + r"\n", done.stdout), done.stdout


def test_the_in_process_harness_routes_every_message_and_reports_the_cost() -> None:
    done = _harness("--reads", "100", "--rounds", "2")

    _assert_reports(
        done,
        r"700 messages per round, 2 rounds: \d+\.\d\d µs per routed message \(median\), "
        r"\d+\.\d\d µs fastest",
    )


def test_the_in_process_harness_signs_users_in_and_reports_the_event_loops_share() -> None:
    done = _harness("--sign-ins", "20")

    _assert_reports(
        done,
        r"20 sign-ins, at most 100 at a time: \d+ µs of the event loop's CPU per sign-in, "
        r"\d+ µs of wall time",
    )


@pytest.mark.parametrize(
    ("args", "figure"),
    [
        (("--reads", "100", "--rounds", "2"), r"700 messages per round, 2 rounds: .* fastest"),
        (("--sign-ins", "20"), r"20 sign-ins, at most 100 at a time: .* of wall time"),
    ],
)
def test_with_stream_management_the_harness_routes_and_signs_in_as_well(
    args: tuple[str, ...], figure: str
) -> None:
    _assert_reports(_harness(*args, "--sm"), figure)


def _refusal(
    main: Callable[[list[str]], int], capsys: pytest.CaptureFixture[str], *args: str
) -> str:
    """What ``main(args)`` said on standard error as it exited with status 2."""
    with pytest.raises(SystemExit) as exited:
        main(list(args))
    assert exited.value.code == 2
    return capsys.readouterr().err


def test_the_in_process_harness_refuses_rounds_too_small_to_flush(
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert "--reads must be at least 100" in _refusal(inprocess.main, capsys, "--reads", "10")


def test_with_a_turn_after_every_read_the_harness_routes_every_message() -> None:
    done = _harness("--reads", "100", "--rounds", "1", "--reads-per-turn", "1", "--sm")

    _assert_reports(done, r"700 messages per round, 1 rounds: .* fastest")


@pytest.mark.parametrize("turns", ["0", "101"])
def test_a_turn_comes_after_one_to_a_hundred_reads(turns: str) -> None:
    done = _harness("--reads-per-turn", turns)

    assert done.returncode == 2 and "--reads-per-turn must be 1 to 100" in done.stderr


def test_sign_ins_without_the_key_derivation_still_sign_every_user_in() -> None:
    done = _harness("--sign-ins", "20", "--without-pbkdf2")

    _assert_reports(done, r"20 sign-ins, at most 100 at a time: \d+ µs of the event loop's .*")


def test_skipping_the_key_derivation_is_only_for_sign_ins(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refusal = _refusal(inprocess.main, capsys, "--without-pbkdf2")

    assert "--without-pbkdf2 goes with --sign-ins" in refusal


@pytest.mark.slow
@pytest.mark.skipif(shutil.which("valgrind") is None, reason="valgrind is not installed")
def test_instructions_per_routed_message_and_per_sign_in_are_counted() -> None:
    done = _harness("--messages", "700", "--sign-ins", "20", module="bench.instructions")

    _assert_reports(
        done,
        r"[\d,]+ instructions per routed message \(700 counted\); [\d,]+ in all threads .*\n"
        r"[\d,]+ instructions per sign-in \(20 counted\)",
    )


def test_instruction_counts_take_whole_rounds_of_messages(
    capsys: pytest.CaptureFixture[str],
) -> None:
    refusal = _refusal(instructions.main, capsys, "--messages", "1000")

    assert "--messages must be a multiple of 700" in refusal
