"""Nodes of a cluster that start at once migrate one PostgreSQL database together: each
process upgrades under the advisory lock, so all of them succeed and the schema is
migrated once, to head."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import asyncpg
import pytest
from alembic.config import Config
from alembic.script import ScriptDirectory

from chinwag.store.db import MIGRATIONS

pytestmark = pytest.mark.postgres

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"

PROCESSES = 4
TIMEOUT = 60

MIGRATE_WHEN_TOLD = """
import asyncio, os, sys, time
from chinwag.store.db import migrate
url, go = sys.argv[1], sys.argv[2]
print("ready", flush=True)
while not os.path.exists(go):
    time.sleep(0.005)
asyncio.run(migrate(url))
"""
"""Imports, says it is ready, then waits for the ``go`` file, so that every process's
upgrade starts within a few milliseconds of the others'."""


@pytest.fixture
async def fresh_database(postgres_problem: str | None) -> AsyncIterator[str]:
    """The URL of a database of this test's own, empty; dropped afterwards."""
    if postgres_problem is not None:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {postgres_problem}")
    name = f"test_migrations_{uuid.uuid4().hex}"
    admin = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=3)
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def _head() -> str:
    config = Config()
    config.set_main_option("script_location", MIGRATIONS)
    config.set_main_option("path_separator", "os")
    head = ScriptDirectory.from_config(config).get_current_head()
    assert head is not None
    return head


async def test_nodes_starting_together_all_migrate_and_the_schema_is_at_head(
    fresh_database: str, tmp_path: Path
) -> None:
    go = tmp_path / "go"
    nodes = [
        subprocess.Popen(
            [sys.executable, "-c", MIGRATE_WHEN_TOLD, fresh_database, str(go)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=tmp_path,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for node in nodes:
            assert node.stdout is not None
            assert await asyncio.to_thread(node.stdout.readline) == "ready\n"
        go.touch()
        outputs = [await asyncio.to_thread(node.communicate, timeout=TIMEOUT) for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    failed = [out for node, (out, _) in zip(nodes, outputs, strict=True) if node.returncode]
    assert failed == []

    connection = await asyncpg.connect(fresh_database.replace("+asyncpg", ""), timeout=3)
    try:
        versions = await connection.fetch("SELECT version_num FROM alembic_version")
    finally:
        await connection.close()
    assert [row["version_num"] for row in versions] == [_head()]
