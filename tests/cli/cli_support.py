"""Running the ``chinwag`` console command as an operator would, for tests.

``Chinwag`` runs a command in this process, through typer's test runner, as the
command's own code does in a process of its own: arguments, standard input, the
working directory and the environment are the operator's, standard output and error
are caught apart, and the exit status is the process's would-be one. An exception
that would end the process with a traceback comes back as exit status 1 with the
traceback on standard error. The behaviours of a process as such (the console script
itself, a closed standard output, the environment it inherits) are checked on a real
one, started with ``CHINWAG``.
"""

import subprocess
import sys
import threading
import traceback
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, chdir
from pathlib import Path

from typer.testing import CliRunner

from chinwag.cli import Network, app
from chinwag.config import CONFIG_ENV_VAR
from chinwag.network.accounts import AccountService
from chinwag.store.db import Database

CHINWAG = Path(sys.executable).with_name("chinwag")
_ONE_AT_A_TIME = threading.Lock()
"""A command changes the process's working directory and standard streams meanwhile."""


class Chinwag:
    """Runs ``chinwag ARGS --config <a temporary config>`` in a temporary directory."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.config = directory / "chinwag.toml"
        self.config.write_text(f"domain = 'chat.example'\ndata_dir = '{self.data_dir}'\n")

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([*args, "--config", str(self.config)], stdin)

    def run(self, args: list[str], stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        """The command's outcome; it runs on a thread of its own, so that it may start an
        event loop while the calling test's loop is running."""
        outcome: list[subprocess.CompletedProcess[str]] = []
        worker = threading.Thread(target=lambda: outcome.append(self._invoke(args, stdin)))
        worker.start()
        worker.join()
        return outcome[0]

    def _invoke(self, args: list[str], stdin: str | None) -> subprocess.CompletedProcess[str]:
        with _ONE_AT_A_TIME, chdir(self.directory):
            result = CliRunner().invoke(
                app, args, input=stdin, env={CONFIG_ENV_VAR: None}, prog_name="chinwag"
            )
        stderr = result.stderr
        if result.exception is not None and not isinstance(result.exception, SystemExit):
            assert result.exc_info is not None
            stderr += "".join(traceback.format_exception(*result.exc_info))
        return subprocess.CompletedProcess(
            ["chinwag", *args], result.exit_code, result.stdout, stderr
        )

    @asynccontextmanager
    async def accounts(self) -> AsyncIterator[AccountService]:
        """The service on the same store, to check what the command did."""
        async with self.network() as network:
            yield network.accounts

    @asynccontextmanager
    async def network(self) -> AsyncIterator[Network]:
        """Every service on the same store, wired as the command wires them."""
        db = Database.open(f"sqlite+aiosqlite:///{self.data_dir / 'chinwag.db'}")
        await db.migrate()
        try:
            yield Network.over(db)
        finally:
            await db.close()


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
