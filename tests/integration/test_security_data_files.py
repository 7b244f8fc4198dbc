"""The data directory and the database are the server's user's alone: a fresh one is created
so, and an existing database that others could read is made so when opened."""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from chinwag.app import running
from chinwag.config import settings_from_mapping
from chinwag.server.tls import ensure_certificate
from chinwag.store.db import Database, migrate
from chinwag.store.secret_files import secret_file

from .support import HOST, TIMEOUT

pytestmark = pytest.mark.security

DATABASE_FILES = ("chinwag.db", "chinwag.db-wal", "chinwag.db-shm")


@pytest.fixture(autouse=True)
def usual_umask() -> Iterator[None]:
    """The umask most systems give (022): what the files would be left with otherwise."""
    previous = os.umask(0o022)
    try:
        yield
    finally:
        os.umask(previous)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_fresh_data_directory_and_its_database_are_private(tmp_path: Path) -> None:
    data = tmp_path / "chinwag-data"
    settings = settings_from_mapping(
        {
            "data_dir": str(data),
            "c2s": {"host": HOST, "port": 0, "direct_tls_port": 0},
            "http": {"host": HOST, "port": 0},
        }
    )

    async with running(settings) as app:
        await asyncio.wait_for(app.accounts.add_user("alice", "wonderland"), TIMEOUT)
        modes = {name: mode(data / name) for name in DATABASE_FILES}

    assert mode(data) == 0o700
    assert modes == dict.fromkeys(DATABASE_FILES, 0o600)


async def test_an_existing_database_that_others_can_read_is_made_private(tmp_path: Path) -> None:
    url = f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}"
    await migrate(url)
    for name in DATABASE_FILES:
        (tmp_path / name).touch()
        (tmp_path / name).chmod(0o644)

    database = Database.open(url)
    await database.close()

    assert {name: mode(tmp_path / name) for name in DATABASE_FILES} == dict.fromkeys(
        DATABASE_FILES, 0o600
    )


def test_directories_made_for_secrets_and_certificates_are_private(tmp_path: Path) -> None:
    """A command run before the first ``chinwag serve`` (which makes the data directory
    itself 0700) may be the one to create them: they are private all the same."""
    secret_file(tmp_path / "secrets" / "admin-token", "be a test secret")
    ensure_certificate(
        tmp_path / "tls" / "localhost.crt", tmp_path / "tls" / "localhost.key", "localhost"
    )

    assert mode(tmp_path / "secrets") == 0o700
    assert mode(tmp_path / "tls") == 0o700
