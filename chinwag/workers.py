"""``chinwag serve --workers N``: N nodes of one cluster on one machine, so that it uses
every core. Each worker is a ``chinwag serve`` process of its own, a node named after
the configured one (``a-1`` to ``a-N`` for ``node = "a"``), and all of them listen on
the same ports (SO_REUSEPORT: the kernel spreads new connections among them). They
reach each other as any nodes of a cluster do, through Redis.

The supervisor starts them and watches them: a worker that crashes (any exit but a clean
one) is started again after a pause that grows while it keeps failing within seconds of
its start, and after ``MAX_QUICK_FAILURES`` such failures in a row the supervisor gives
up and stops them all. It passes SIGTERM, SIGINT, SIGHUP and SIGUSR1 on to every
worker: they stop (those still running ``STOP_TIMEOUT_SECONDS`` later are killed),
reload, or drain. A worker that stops cleanly (drained, say) is not started again, and
the supervisor exits once every worker has stopped. A worker also stops (SIGTERM) when
its supervisor dies however it dies, SIGKILL included, so that no worker outlives it
holding the ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import logging
import os
import signal
import sys
from collections.abc import Sequence

from chinwag.config import ClusterSettings, Settings

log = logging.getLogger("chinwag.workers")

QUICK_FAILURE_SECONDS = 10.0
"""A worker that fails sooner than this after its start failed quickly."""
MAX_QUICK_FAILURES = 5
"""Quick failures in a row of one worker after which the supervisor gives up."""
FIRST_RESTART_DELAY = 0.5
MAX_RESTART_DELAY = 30.0
STOP_TIMEOUT_SECONDS = 60.0
"""How long stopping workers have before they are killed."""
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGUSR1)
ENDING = frozenset((signal.SIGTERM, signal.SIGINT))
"""Signals that stop the workers."""
PR_SET_PDEATHSIG = 1
"""prctl(2): the signal a process gets when its parent dies."""


def worker_names(node: str, count: int) -> list[str]:
    """The node names of ``count`` workers of the configured ``node``."""
    return [f"{node}-{index}" for index in range(1, count + 1)]


def as_worker(settings: Settings, node: str | None) -> Settings:
    """``settings`` for the worker named ``node`` (None: as they are); ValueError if the
    name is not one a node may have."""
    if node is None or settings.cluster is None:
        return settings
    try:
        cluster = ClusterSettings.model_validate(settings.cluster.model_dump() | {"node": node})
    except ValueError as error:
        raise ValueError(f"bad worker node name {node!r}: {error}") from None
    return settings.model_copy(update={"cluster": cluster})


def serve_command(node: str, config: str | None) -> list[str]:
    """The command line of the worker named ``node`` (this process supervises it)."""
    command = [sys.executable, "-m", "chinwag", "serve", "--node", node, "--reuse-port"]
    command += ["--supervisor", str(os.getpid())]
    return command + (["--config", config] if config else [])


def die_with(supervisor: int) -> None:
    """Have this worker sent SIGTERM when ``supervisor``, its parent, dies (Linux); if it
    has died already, stop now."""
    if sys.platform.startswith("linux"):
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0) != 0:
            log.warning(
                "cannot ask to be stopped with the supervisor: errno %d", ctypes.get_errno()
            )
    if os.getppid() != supervisor:
        os.kill(os.getpid(), signal.SIGTERM)


class Supervisor:
    """Runs one process per command, as above; ``run`` returns the exit status."""

    def __init__(self, commands: dict[str, Sequence[str]]) -> None:
        """``commands``: each worker's command line, by the worker's name."""
        self._commands = commands
        self._processes: dict[str, asyncio.subprocess.Process] = {}
        self._stopping = asyncio.Event()
        self._gave_up = False

    async def run(self) -> int:
        loop = asyncio.get_running_loop()
        for signum in FORWARDED:
            loop.add_signal_handler(signum, self._forward, signum)
        try:
            await asyncio.gather(*(self._keep(name) for name in self._commands))
        finally:
            for signum in FORWARDED:
                loop.remove_signal_handler(signum)
        log.info("every worker has stopped")
        return 1 if self._gave_up else 0

    def _forward(self, signum: int) -> None:
        if signum in ENDING and not self._stopping.is_set():
            self._stopping.set()
            asyncio.get_running_loop().call_later(STOP_TIMEOUT_SECONDS, self._kill_left)
        for process in self._running():
            process.send_signal(signum)

    def _kill_left(self) -> None:
        for process in self._running():
            log.error(
                "worker pid %d did not stop within %g s: killed", process.pid, STOP_TIMEOUT_SECONDS
            )
            process.kill()

    def _running(self) -> list[asyncio.subprocess.Process]:
        return [process for process in self._processes.values() if process.returncode is None]

    async def _keep(self, name: str) -> None:
        """Run worker ``name`` until it stops cleanly or the supervisor stops."""
        loop = asyncio.get_running_loop()
        quick_failures = 0
        while not self._stopping.is_set():
            started = loop.time()
            status = await self._run_once(name)
            if status == 0 or self._stopping.is_set():
                log.info("worker %s stopped", name)
                return
            quick = loop.time() - started < QUICK_FAILURE_SECONDS
            quick_failures = quick_failures + 1 if quick else 0
            if quick_failures >= MAX_QUICK_FAILURES:
                log.error(
                    "worker %s failed %d times in a row within %g s of starting; stopping all",
                    name,
                    quick_failures,
                    QUICK_FAILURE_SECONDS,
                )
                self._gave_up = True
                self._forward(signal.SIGTERM)
                return
            delay = min(FIRST_RESTART_DELAY * 2**quick_failures, MAX_RESTART_DELAY)
            log.warning("worker %s exited with %s; starting it again in %g s", name, status, delay)
            with contextlib.suppress(TimeoutError):  # else stopped while it waited
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _run_once(self, name: str) -> int:
        process = await asyncio.create_subprocess_exec(*self._commands[name])
        self._processes[name] = process
        log.info("worker %s started (pid %d)", name, process.pid)
        return await process.wait()


def supervise(commands: dict[str, Sequence[str]]) -> int:
    """Run the workers until they have all stopped; the exit status for the supervisor."""
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    return asyncio.run(Supervisor(commands).run())
