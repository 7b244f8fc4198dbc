"""``chinwag serve --workers N``: refused without a cluster; the supervisor restarts a
crashed worker, passes signals on, leaves a cleanly stopped worker stopped, gives up on
one that keeps failing; and the listeners of several workers share their ports."""

from __future__ import annotations

import asyncio
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from chinwag import workers
from chinwag.server import tcp
from chinwag.server.c2s import C2SConnection, Transport
from chinwag.web.server import _bind
from chinwag.workers import Supervisor, serve_command, worker_names

from .support import HOST, TIMEOUT, free_port
from .test_serve import run_chinwag, write_config

WORKER = """
import os, signal, sys, time
name, log, crashes = sys.argv[1], sys.argv[2], int(sys.argv[3])
def note(what):
    with open(log, "a") as file:
        file.write(f"{name} {what}\\n")
started = sum(1 for line in open(log) if line.startswith(f"{name} start")) if os.path.exists(log) else 0
note("start")
if started < crashes:
    sys.exit(3)
signal.signal(signal.SIGHUP, lambda *_: note("hup"))
signal.signal(signal.SIGTERM, lambda *_: (note("term"), sys.exit(0)))
while True:
    time.sleep(0.05)
"""
"""A stand-in for ``chinwag serve``: crashes (exit 3) its first ``crashes`` starts, then
runs until SIGTERM, noting each start and signal in the log."""


def stand_in(name: str, log: Path, crashes: int = 0) -> list[str]:
    return [sys.executable, "-c", WORKER, name, str(log), str(crashes)]


def noted(log: Path) -> list[str]:
    return log.read_text().splitlines() if log.exists() else []


async def until(check: Callable[[], bool], timeout: float = TIMEOUT) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < deadline, "not within the timeout"
        await asyncio.sleep(0.05)


@pytest.fixture
def quick_restarts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(workers, "FIRST_RESTART_DELAY", 0.05)


def test_workers_need_a_cluster(tmp_path: Path) -> None:
    config = write_config(tmp_path / "chinwag.toml", {"data_dir": str(tmp_path / "data")})

    result = run_chinwag("serve", "--workers", "2", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2, result
    assert "--workers runs several nodes of a cluster on this machine: it needs a [cluster]" in (
        " ".join(result.stderr.split())
    )
    assert not (tmp_path / "data").exists()


def test_workers_are_nodes_named_after_the_configured_one() -> None:
    assert worker_names("a", 3) == ["a-1", "a-2", "a-3"]
    command = serve_command("a-2", "/etc/chinwag.toml")
    assert command[1:] == [
        "-m",
        "chinwag",
        "serve",
        "--node",
        "a-2",
        "--reuse-port",
        "--supervisor",
        str(os.getpid()),
        "--config",
        "/etc/chinwag.toml",
    ]


async def test_a_crashed_worker_is_restarted_and_signals_reach_every_worker(
    tmp_path: Path, quick_restarts: None
) -> None:
    log = tmp_path / "log"
    supervisor = Supervisor({"a-1": stand_in("a-1", log, crashes=2), "a-2": stand_in("a-2", log)})
    running = asyncio.ensure_future(supervisor.run())

    await until(lambda: noted(log).count("a-1 start") == 3 and "a-2 start" in noted(log))
    os.kill(os.getpid(), signal.SIGHUP)
    await until(lambda: {"a-1 hup", "a-2 hup"} <= set(noted(log)))
    os.kill(os.getpid(), signal.SIGTERM)

    assert await asyncio.wait_for(running, TIMEOUT) == 0
    assert {"a-1 term", "a-2 term"} <= set(noted(log))
    assert noted(log).count("a-2 start") == 1


async def test_a_worker_that_stops_cleanly_stays_stopped(tmp_path: Path) -> None:
    done = [sys.executable, "-c", "pass"]

    status = await asyncio.wait_for(Supervisor({"a-1": done, "a-2": done}).run(), TIMEOUT)

    assert status == 0


async def test_the_supervisor_gives_up_on_a_worker_that_keeps_failing(
    tmp_path: Path, quick_restarts: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(workers, "MAX_QUICK_FAILURES", 3)
    log = tmp_path / "log"
    supervisor = Supervisor(
        {"a-1": stand_in("a-1", log, crashes=1000), "a-2": stand_in("a-2", log)}
    )

    status = await asyncio.wait_for(supervisor.run(), TIMEOUT)

    assert status == 1
    assert noted(log).count("a-1 start") == 3
    assert "a-2 term" in noted(log)  # stopped with the rest


def _no_streams(_transport: Transport) -> C2SConnection:
    raise AssertionError("no stream is opened in this test")


async def test_workers_listen_on_the_same_ports() -> None:
    c2s, http = free_port(), free_port()
    listeners = [
        await tcp.listen(_no_streams, HOST, c2s, None, direct_tls=False, reuse_port=True)
        for _ in range(2)
    ]
    sockets = [_bind(HOST, http, True) for _ in range(2)]
    try:  # a listener that does not share its port is refused it
        with pytest.raises(OSError):
            await tcp.listen(_no_streams, HOST, c2s, None, direct_tls=False)
        with pytest.raises(OSError):
            _bind(HOST, http, False)
    finally:
        for listener in listeners:
            listener.close()
        for sock in sockets:
            sock.close()
