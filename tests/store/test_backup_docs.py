"""The backup commands of docs/operations.md, run as written (with this test's paths
and databases in place of the examples'): what they save is a database chinwag uses."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import subprocess
from pathlib import Path

import pytest
from test_copy import chinwag, new_postgres_database

ROOT = Path(__file__).resolve().parents[2]
OPERATIONS = ROOT / "docs" / "operations.md"


def documented(program: str) -> list[str]:
    """The arguments of the command line of docs/operations.md that runs ``program``."""
    blocks = re.findall(r"```sh\n(.*?)```", OPERATIONS.read_text(), re.S)
    [line] = [
        line.strip()
        for block in blocks
        for line in block.splitlines()
        if line.strip().startswith(program + " ")
    ]
    return shlex.split(line.split("  #")[0])


def substituted(command: list[str], replacements: dict[str, str]) -> list[str]:
    for old, new in replacements.items():
        assert any(old in argument for argument in command), (old, command)
        command = [argument.replace(old, new) for argument in command]
    return command


def run(command: list[str]) -> None:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


def users(directory: Path) -> list[str]:
    listed = chinwag(directory, "user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    return [user["username"] for user in json.loads(listed.stdout)]


def installation(directory: Path, url: str | None = None) -> Path:
    directory.mkdir(exist_ok=True)
    database = f"[database]\nurl = '{url}'\n" if url else ""
    (directory / "chinwag.toml").write_text(f"data_dir = 'data'\n{database}")
    return directory


@pytest.mark.skipif(shutil.which("sqlite3") is None, reason="no sqlite3 shell")
def test_the_sqlite_online_backup_is_a_database_chinwag_uses(tmp_path):
    server = installation(tmp_path / "server")
    assert chinwag(server, "db", "migrate").returncode == 0
    assert chinwag(server, "user", "add", "alice", "--password", "wonderland").returncode == 0
    restored = installation(tmp_path / "restored")
    (restored / "data").mkdir()

    run(
        substituted(
            documented("sqlite3"),
            {
                "/var/lib/chinwag/chinwag.db": str(server / "data" / "chinwag.db"),
                "/var/backups/chinwag.db": str(restored / "data" / "chinwag.db"),
            },
        )
    )

    assert users(restored) == ["alice"]


@pytest.mark.postgres
async def test_the_pg_dump_and_pg_restore_commands_move_every_user(tmp_path, postgres_problem):
    async with (
        new_postgres_database(postgres_problem) as source,
        new_postgres_database(postgres_problem) as target,
    ):
        server = installation(tmp_path / "server", source)
        assert chinwag(server, "db", "migrate").returncode == 0
        assert chinwag(server, "user", "add", "alice", "--password", "wonderland").returncode == 0
        dump = str(tmp_path / "chinwag.dump")
        libpq = {url: url.replace("+asyncpg", "") for url in (source, target)}

        run(
            substituted(
                documented("pg_dump"),
                {"postgresql://chinwag@db.internal/chinwag": libpq[source], "chinwag.dump": dump},
            )
        )
        run(
            substituted(
                documented("pg_restore"),
                {
                    "postgresql://chinwag@db.internal/chinwag_restored": libpq[target],
                    "chinwag.dump": dump,
                },
            )
        )

        assert users(installation(tmp_path / "restored", target)) == ["alice"]
