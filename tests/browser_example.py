"""Building the browser example (``examples/browser/dist``) with npm, as
docs/getting-started.md says, one test process at a time: the browser tests drive it and
the guide's test checks that the server serves it."""

from __future__ import annotations

import shlex
import shutil
import subprocess
from pathlib import Path

from examples.support import DOC_BUILD

from tests.machine_lock import machine_lock

REPO = Path(__file__).resolve().parents[1]
BROWSER_EXAMPLE = REPO / "examples" / "browser"
NPM_TIMEOUT = 300.0
QUIET = ["--no-audit", "--no-fund", "--loglevel=error"]
BUILD_COMMANDS = [[*shlex.split(part), *QUIET] for part in DOC_BUILD.split(" && ")]
"""The build commands of docs/getting-started.md, run from the repository's root."""


class NotBuilt(Exception):
    """The example could not be built here; the message says why."""


class BuildFailed(Exception):
    """A build command failed; the message gives its error output."""


def build_browser_example() -> Path:
    """``examples/browser/dist``, built (or found built). NotBuilt without node and npm or
    when npm does not finish in time; BuildFailed when a command fails."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        raise NotBuilt("node and npm are not installed: cannot build examples/browser")
    with machine_lock("npm", BROWSER_EXAMPLE):
        for command in BUILD_COMMANDS:
            _build_step(command)
    built = BROWSER_EXAMPLE / "dist"
    assert (built / "index.html").is_file() and (built / "xmpp.min.js").is_file()
    return built


def _build_step(command: list[str]) -> None:
    if command[1] == "ci" and (BROWSER_EXAMPLE / "node_modules" / "@xmpp" / "client").is_dir():
        return  # already installed: npm ci would only reinstall the same
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=NPM_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise NotBuilt(f"{' '.join(command)} did not finish within {NPM_TIMEOUT:.0f}s") from None
    if result.returncode != 0:
        raise BuildFailed(f"{' '.join(command)} failed: {result.stderr.strip()[-800:]}")
