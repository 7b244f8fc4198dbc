"""The ``chinwag`` command run in the test's own process, as it runs in a process of its
own: typer's test runner gives it the arguments, standard input, working directory
and environment, catches standard output and error apart, and gives back the exit
status the process would have had. An exception that would end the process with a
traceback comes back as exit status 1 with the traceback on standard error.

It runs on a thread of its own, so that the command may start an event loop while the
calling test's loop is running; one command at a time, since it changes the process's
working directory and standard streams meanwhile. Behaviours of a process as such (the
installed console script, the environment it inherits, a closed standard output) are
for tests that start a real one.
"""

import subprocess
import threading
import traceback
from collections.abc import Mapping
from contextlib import chdir
from pathlib import Path

from typer.testing import CliRunner

from chinwag.cli import app

_ONE_AT_A_TIME = threading.Lock()


def run_command(
    args: list[str], *, cwd: Path, env: Mapping[str, str | None], stdin: str | None = None
) -> subprocess.CompletedProcess[str]:
    """``chinwag ARGS`` in ``cwd`` with ``env`` over this process's environment (None:
    unset), as a finished process."""
    outcome: list[subprocess.CompletedProcess[str]] = []
    worker = threading.Thread(target=lambda: outcome.append(_invoke(args, cwd, env, stdin)))
    worker.start()
    worker.join()
    return outcome[0]


def _invoke(
    args: list[str], cwd: Path, env: Mapping[str, str | None], stdin: str | None
) -> subprocess.CompletedProcess[str]:
    with _ONE_AT_A_TIME, chdir(cwd):
        result = CliRunner().invoke(app, args, input=stdin, env=env, prog_name="chinwag")
    stderr = result.stderr
    if result.exception is not None and not isinstance(result.exception, SystemExit):
        assert result.exc_info is not None
        stderr += "".join(traceback.format_exception(*result.exc_info))
    return subprocess.CompletedProcess(["chinwag", *args], result.exit_code, result.stdout, stderr)
