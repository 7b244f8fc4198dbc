"""What every ``chinwag`` command shares: options, output, errors and the database run.

A problem the operator can fix is one line on stderr: exit status 2 for
configuration, 1 for everything else. ``--json`` puts results on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.text import Text

# Imported where used, so that ``chinwag --help`` need not load pydantic, SQLAlchemy and Alembic.
if TYPE_CHECKING:
    from chinwag.config import Settings
    from chinwag.store.db import Database

T = TypeVar("T")

CONFIG_EXIT = 2
FAILURE_EXIT = 1
_WIDE = 120

out = Console(highlight=False)
err = Console(stderr=True, highlight=False, soft_wrap=True)

ConfigOption = Annotated[
    str | None,
    typer.Option(
        "--config",
        "-c",
        metavar="FILE",
        help="Settings file (default: $CHINWAG_CONFIG, else built-in defaults).",
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON on stdout.")]


def settings_or_exit(config: str | None) -> Settings:
    from chinwag.config import ConfigError, load_settings

    try:
        return load_settings(config)
    except ConfigError as error:
        fail(str(error), CONFIG_EXIT)


def run_on_database(
    settings: Settings,
    action: Callable[[Database], Awaitable[T]],
    expected: tuple[type[Exception], ...],
) -> T:
    """Run ``action`` on the store (created or migrated first); ``expected`` errors and
    database failures end the command with one line."""
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from chinwag.store.db import redacted

    url = settings.database_url
    try:
        return asyncio.run(_on_migrated(url, action))
    except expected as error:
        fail(str(error))
    except (OSError, DBAPIError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        fail(f"cannot use the database {redacted(url)}: {reason}")


async def _on_migrated(url: str, action: Callable[[Database], Awaitable[T]]) -> T:
    from chinwag.store.db import Database

    db = Database.open(url)
    try:
        await db.migrate()
        return await action(db)
    finally:
        await db.close()


def done(json_output: bool, data: dict[str, Any], message: str) -> None:
    """Report success: ``data`` as JSON, or ``message`` for people."""
    if json_output:
        print_json(data)
    else:
        out.print(Text.assemble(("✓ ", "green"), message))


def print_wide(renderable: RenderableType) -> None:
    """Print a table at least as wide as whole client IDs need, even when stdout is not a
    terminal (a cut ID cannot be pasted into another command); a narrower terminal
    wraps its lines."""
    Console(highlight=False, width=max(out.width, _WIDE)).print(renderable)


def print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def fail(message: str, status: int = FAILURE_EXIT) -> NoReturn:
    err.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(status)
