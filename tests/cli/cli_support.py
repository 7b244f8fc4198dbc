"""Running the ``chinwag`` console command as an operator would, for tests: in this
process (``tests/command_line.py``), or as a process of its own (``CHINWAG``)."""

import asyncio
import subprocess
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from chinwag.cli import Network
from chinwag.config import CONFIG_ENV_VAR
from chinwag.network.accounts import AccountService
from chinwag.store.db import Database, migrate
from tests.command_line import run_command

CHINWAG = Path(sys.executable).with_name("chinwag")


class Chinwag:
    """Runs ``chinwag ARGS --config <a temporary config>`` in a temporary directory, on a
    database made as ``chinwag serve`` makes it at its first start (unless ``database``
    is false: the commands then find none)."""

    def __init__(self, directory: Path, *, database: bool = True) -> None:
        self.directory = directory
        self.data_dir = directory / "data"
        self.config = directory / "chinwag.toml"
        self.config.write_text(f"domain = 'chat.example'\ndata_dir = '{self.data_dir}'\n")
        if database:
            asyncio.run(migrate(self.database_url))

    @property
    def database_url(self) -> str:
        return f"sqlite+aiosqlite:///{self.data_dir / 'chinwag.db'}"

    def __call__(self, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess[str]:
        return self.run([*args, "--config", str(self.config)], stdin)

    def run(
        self, args: list[str], stdin: str | None = None, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        return run_command(args, cwd=cwd or self.directory, env={CONFIG_ENV_VAR: None}, stdin=stdin)

    @asynccontextmanager
    async def accounts(self) -> AsyncIterator[AccountService]:
        """The service on the same store, to check what the command did."""
        async with self.network() as network:
            yield network.accounts

    @asynccontextmanager
    async def network(self) -> AsyncIterator[Network]:
        """Every service on the same store, wired as the command wires them."""
        db = Database.open(self.database_url)
        await db.migrate()
        try:
            yield Network.over(db)
        finally:
            await db.close()


def error_line(result: subprocess.CompletedProcess[str]) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]
