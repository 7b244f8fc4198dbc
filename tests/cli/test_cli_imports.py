"""The command line loads the database stack and the server only in the commands that use them.

Otherwise every ``chinwag --help`` would wait most of a second for SQLAlchemy and Alembic.
"""

import json
import subprocess
import sys

import pytest

HEAVY = ("sqlalchemy", "alembic", "uvicorn", "chinwag.store", "chinwag.server", "chinwag.app")

# Runs the CLI with the arguments given, then reports on stderr which modules it loaded.
PROBE = """
import json, sys
import chinwag.cli
try:
    chinwag.cli.main()
finally:
    sys.stderr.write(json.dumps(sorted(sys.modules)))
"""


def heavy_among(modules: list[str]) -> list[str]:
    return [name for name in modules if any(name == h or name.startswith(f"{h}.") for h in HEAVY)]


def test_importing_the_cli_loads_no_database_stack(tmp_path):
    result = subprocess.run(
        [
            sys.executable,
            "-c",
            "import chinwag.cli, json, sys; print(json.dumps(list(sys.modules)))",
        ],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert heavy_among(json.loads(result.stdout)) == []


@pytest.mark.parametrize(
    "group",
    [
        "",
        "serve",
        "user",
        "contacts",
        "profile",
        "app",
        "token",
        "app-password",
        "sessions",
        "bans",
        "check",
        "status",
        "reload",
    ],
)
def test_help_loads_no_database_stack(tmp_path, group):
    args = [group, "--help"] if group else ["--help"]
    result = subprocess.run(
        [sys.executable, "-c", PROBE, *args],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    assert "Usage:" in result.stdout
    assert heavy_among(json.loads(result.stderr)) == []
