"""How fast this machine runs code like chinwag's hot path, as one figure.

Machines of one kind differ, and one machine's speed drifts from hour to hour: the
benchmark's figures move with it. The figure here is the time to parse one chat message
with pyexpat and small Python callbacks, the kind of work chinwag does most: taken
before and after a benchmark run, it says how fast the machine was, and whether its
speed held while the servers were measured. Lower is faster.

It runs in a process of its own (``python -m bench.calibration`` prints it), so that
what the load generator's process holds after a run does not weigh on it.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path
from pyexpat import ParserCreate

from bench.loadgen import CHAT, DOMAIN, STREAM_HEADER

MESSAGES_PER_ROUND = 7_000
MESSAGES_PER_READ = 7
ROUNDS = 31
DRIFT_WARNING = 0.15
"""A change in speed between the two calibrations worth a warning (15 %)."""
CALIBRATION_TIMEOUT_S = 60

_HEADER = STREAM_HEADER.format(domain=DOMAIN).encode()


def _reads() -> list[bytes]:
    to = f"u1@{DOMAIN}".encode()
    messages = [CHAT % (to, n, n) for n in range(MESSAGES_PER_ROUND)]
    return [
        b"".join(messages[start : start + MESSAGES_PER_READ])
        for start in range(0, len(messages), MESSAGES_PER_READ)
    ]


def _round(reads: list[bytes]) -> float:
    """Seconds to parse ``reads`` into (name, attributes, children) lists."""
    stack: list[list[object]] = []
    done: list[list[object]] = []

    def start(name: str, attrs: dict[str, str]) -> None:
        element: list[object] = [name, attrs]
        if stack:
            stack[-1].append(element)
        stack.append(element)

    def end(_name: str) -> None:
        element = stack.pop()
        if len(stack) == 1:
            done.append(element)

    def text(data: str) -> None:
        if len(stack) > 1:
            stack[-1].append(data)

    parser = ParserCreate("UTF-8", " ")
    parser.buffer_text = True
    parser.StartElementHandler = start
    parser.EndElementHandler = end
    parser.CharacterDataHandler = text
    parser.Parse(_HEADER, False)
    began = time.perf_counter()
    for data in reads:
        parser.Parse(data, False)
    return time.perf_counter() - began


def parse_cost_us(rounds: int = ROUNDS) -> float:
    """Microseconds to parse one chat message, in the fastest of ``rounds`` rounds: the
    machine's speed when least disturbed, which moves far less from one calibration to
    the next than a median does on a shared host."""
    reads = _reads()
    _round(reads)  # warms up
    return min(_round(reads) for _ in range(rounds)) / MESSAGES_PER_ROUND * 1e6


def measure() -> float:
    """``parse_cost_us`` taken in a new process."""
    done = subprocess.run(
        [sys.executable, "-m", "bench.calibration"],
        cwd=Path(__file__).resolve().parents[1],
        capture_output=True,
        text=True,
        check=True,
        timeout=CALIBRATION_TIMEOUT_S,
    )
    return float(done.stdout)


def drifted(before: float, after: float) -> bool:
    """Whether the machine's speed changed enough between two calibrations to matter."""
    return abs(after - before) > DRIFT_WARNING * min(before, after)


if __name__ == "__main__":
    print(f"{parse_cost_us():.3f}")
