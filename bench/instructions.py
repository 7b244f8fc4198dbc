"""What routing one message, or signing one user in, costs chinwag's event loop in
instructions executed, counted by valgrind rather than timed.

    python -m bench.instructions [--messages N] [--sign-ins N] [--sm] [--reads-per-turn T]
                                 [--archive [--archive-window S]]

On a virtual machine whose hypervisor lends its cores to other guests, timings move by
a third from one hour to the next; the number of instructions the same work executes
does not. This runs ``python -m bench.inprocess`` under valgrind's callgrind tool twice
at once, with a small and a larger count of messages (or of sign-ins), and divides the
difference between the two runs' instructions on the event loop's thread by the
difference in messages routed (or users signed in): start-up, provisioning and warm-up
cancel out. The figure repeats within about 0.5 % from run to run, so two versions of
the hot path can be compared on any machine, however busy. It is not a time: an
instruction of the interpreter's loop counts as much as one of a memory copy, cache
misses are not seen, and the kernel's work (system calls) is not counted at all.
Confirm what it shows with the fastest rounds of ``bench.inprocess``, old and new
version in turn: the two agree for changes to interpreted code, but compiled code has
been seen to execute a fifth fewer instructions and run no faster.

Sign-ins are counted with ``--without-pbkdf2``: valgrind runs one thread at a time,
some fifty times slower, and with the real derivations on the worker threads the
count moved by a factor of three from one pair of runs to the next. Each sign-in's
figure includes its sign-out when the server stops.

With ``--sm`` the counted runs enable XEP-0198 stream management
(``bench.inprocess --sm``): the cost of a routed message or of a sign-in with it.
``--reads-per-turn 1`` counts messages with an event-loop turn after every read, and with
``--sm`` an acknowledgement asked of the recipient and given each time (see
``bench.inprocess``).
With ``--archive`` chinwag archives every message (``bench.inprocess --archive``). The
figure per message is the event loop's thread's; the count of all threads is printed
beside it, which adds the database driver's threads (those that commit the archive's
batches, stored at the latest when the server stops, within the counted run).
``--archive-window S`` has each batch gather for S seconds (``bench.inprocess
--archive-window``): with a window longer than the runs, each run stores its messages in
one batch at its stop, and the difference is the archive's cost per message without any
batch's fixed cost, which at full speed is spread over thousands of messages.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

from bench.inprocess import MESSAGES_PER_READ, READS_PER_TURN

BASE_READS = 100
"""Reads of seven messages per round, in both runs."""
BASE_SIGN_INS = 20
"""Sign-ins of the smaller run (after the harness's own warm-up)."""
RUN_TIMEOUT_S = 900
_SUMMARY = re.compile(rb"^summary: (\d+)$", re.MULTILINE)


class CountFailed(RuntimeError):
    """A counted run did not complete."""


def _inprocess(*args: str) -> list[str]:
    return [sys.executable, "-m", "bench.inprocess", *args]


def _start_counted(args: list[str], output: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [
            "valgrind",
            "--tool=callgrind",
            "--separate-threads=yes",
            f"--callgrind-out-file={output}.%p",
            *args,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        # The same string hashes in every run, so that dictionaries probe alike.
        env={**os.environ, "PYTHONHASHSEED": "0"},
    )


def _instructions(output: Path, *, all_threads: bool = False) -> int:
    """The instructions of the process's first thread (the event loop's), or of all."""
    threads = sorted(output.parent.glob(f"{output.name}.*-*"))
    total = 0
    for thread in threads if all_threads else threads[:1]:
        found = _SUMMARY.search(thread.read_bytes())
        if found is None:
            raise CountFailed(f"no instruction count in {thread.name}")
        total += int(found.group(1))
    return total


def count(small: list[str], large: list[str], workdir: Path) -> tuple[int, int]:
    """Instructions of the loop's thread, and of every thread, in run ``large`` minus
    those in run ``small``."""
    # Byte-compile everything first: a module compiled in one run only would count.
    subprocess.run(small, check=True, capture_output=True, timeout=RUN_TIMEOUT_S)
    workdir.mkdir()
    outputs = [workdir / "small", workdir / "large"]
    runs = [
        _start_counted(args, output) for args, output in zip((small, large), outputs, strict=True)
    ]
    try:
        errors = [run.communicate(timeout=RUN_TIMEOUT_S)[1] for run in runs]
    finally:
        for run in runs:
            run.kill()
    for run, error in zip(runs, errors, strict=True):
        if run.returncode != 0:
            raise CountFailed(error.decode(errors="replace")[-2000:])
    small_run, large_run = outputs
    return (
        _instructions(large_run) - _instructions(small_run),
        _instructions(large_run, all_threads=True) - _instructions(small_run, all_threads=True),
    )


def per_message(messages: int, workdir: Path, *options: str) -> tuple[float, float]:
    """Instructions per routed message: the event loop's thread's, and all threads'."""
    reads = ("--reads", str(BASE_READS), *options)
    rounds = messages // (BASE_READS * MESSAGES_PER_READ)
    loop, every = count(
        _inprocess(*reads, "--rounds", "1"),
        _inprocess(*reads, "--rounds", str(1 + rounds)),
        workdir,
    )
    counted = rounds * BASE_READS * MESSAGES_PER_READ
    return loop / counted, every / counted


def per_sign_in(sign_ins: int, workdir: Path, *options: str) -> float:
    difference, _ = count(
        _inprocess("--sign-ins", str(BASE_SIGN_INS), "--without-pbkdf2", *options),
        _inprocess("--sign-ins", str(BASE_SIGN_INS + sign_ins), "--without-pbkdf2", *options),
        workdir,
    )
    return difference / sign_ins


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.instructions", description=__doc__)
    parser.add_argument(
        "--messages",
        type=int,
        default=5_600,
        help="messages counted (the difference between the two runs; 0: none)",
    )
    parser.add_argument("--sign-ins", type=int, default=400, help="sign-ins counted (0: none)")
    parser.add_argument(
        "--sm", action="store_true", help="with stream management (XEP-0198) enabled"
    )
    parser.add_argument(
        "--reads-per-turn",
        type=int,
        default=READS_PER_TURN,
        help=f"messages: reads between two event-loop turns (1 to {READS_PER_TURN})",
    )
    parser.add_argument("--archive", action="store_true", help="with archiving (XEP-0313) on")
    parser.add_argument(
        "--archive-window", type=float, help="with --archive: seconds each batch gathers"
    )
    args = parser.parse_args(argv)
    options: tuple[str, ...] = (
        *(("--sm",) if args.sm else ()),
        *(("--archive",) if args.archive else ()),
        *(("--archive-window", str(args.archive_window)) if args.archive_window else ()),
    )
    turns = ("--reads-per-turn", str(args.reads_per_turn))
    batch = BASE_READS * MESSAGES_PER_READ
    if args.messages < 0 or args.messages % batch or args.sign_ins < 0:
        parser.error(f"--messages must be a multiple of {batch}, --sign-ins not negative")
    if not 1 <= args.reads_per_turn <= READS_PER_TURN:
        parser.error(f"--reads-per-turn must be 1 to {READS_PER_TURN}")
    if args.archive_window is not None and (not args.archive or args.archive_window <= 0):
        parser.error("--archive-window goes with --archive and is a positive number")
    if shutil.which("valgrind") is None:
        print("valgrind is not installed (Debian: apt-get install valgrind)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="chinwag-instructions-") as directory:
        workdir = Path(directory)
        try:
            if args.messages:
                loop, every = per_message(args.messages, workdir / "messages", *options, *turns)
                print(
                    f"{loop:,.0f} instructions per routed message ({args.messages:,} counted); "
                    f"{every:,.0f} in all threads (the database driver's too)"
                )
            if args.sign_ins:
                figure = per_sign_in(args.sign_ins, workdir / "sign-ins", *options)
                print(f"{figure:,.0f} instructions per sign-in ({args.sign_ins:,} counted)")
        except (CountFailed, subprocess.SubprocessError) as error:
            print(f"a counted run failed: {error}", file=sys.stderr)
            return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
