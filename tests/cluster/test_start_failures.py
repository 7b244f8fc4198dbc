"""``chinwag serve`` as a node that cannot reach its cluster's Redis stops at start,
saying why in one line, with a non-zero exit status, in bounded time: whether the
address refuses connections or accepts them and never answers."""

from __future__ import annotations

import contextlib
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from .nodes import HOST, NodeProcesses

pytestmark = pytest.mark.postgres

BOUND_SECONDS = 60.0
"""How long serve may take to give up: migrating a fresh database, then the Redis
client's timeouts (a few seconds each), on a loaded machine."""


@contextlib.contextmanager
def refusing() -> Iterator[int]:
    """A loopback port that nothing listens on: connections to it are refused."""
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port = int(probe.getsockname()[1])
    yield port


@contextlib.contextmanager
def silent() -> Iterator[int]:
    """A loopback port that accepts connections (the kernel's backlog) and never answers."""
    with socket.socket() as listener:
        listener.bind((HOST, 0))
        listener.listen(16)
        yield int(listener.getsockname()[1])


@pytest.mark.parametrize("redis", [refusing, silent])
def test_serve_stops_at_start_when_redis_cannot_be_reached(
    node_processes: NodeProcesses,
    tmp_path: Path,
    redis: contextlib.AbstractContextManager[int],
) -> None:
    with redis() as port:  # type: ignore[operator]
        nodes = NodeProcesses(
            tmp_path, node_processes.database_url, f"redis://{HOST}:{port}/0", "unused:"
        )
        node = nodes.config("lonely")
        result = subprocess.run(
            [sys.executable, "-m", "chinwag", "serve", "--config", str(node.config)],
            capture_output=True,
            text=True,
            timeout=BOUND_SECONDS,
            cwd=tmp_path,
            check=False,
        )

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output, output
    last_line = result.stderr.strip().splitlines()[-1]
    assert last_line.startswith("error: cannot join the cluster: "), output
    assert f"{port}" in last_line or "timeout" in last_line.lower(), output
