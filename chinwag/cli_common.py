"""What every ``chinwag`` command shares: options, output, errors, the database run,
and the admin endpoints of the running server.

A problem the operator can fix is one line on stderr: exit status 2 for
configuration, 1 for everything else; ``--debug`` adds the traceback of its cause.
``--json`` puts results on stdout.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console, RenderableType
from rich.text import Text

# Imported where used, so that ``chinwag --help`` need not load pydantic, SQLAlchemy and Alembic.
if TYPE_CHECKING:
    from pathlib import Path

    import httpx

    from chinwag.config import Settings
    from chinwag.store.db import Database

T = TypeVar("T")

CONFIG_EXIT = 2
FAILURE_EXIT = 1
_WIDE = 120
ADMIN_TIMEOUT_SECONDS = 10.0

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


DEBUG_OPTION = "--debug"


@dataclass
class _GlobalOptions:
    config: str | None = None
    debug: bool = False
    """A failure also prints the traceback of what caused it."""


_global = _GlobalOptions()


def use_config(config: str | None) -> None:
    """The settings file of the commands not given one: ``chinwag --config FILE COMMAND``."""
    _global.config = config


def use_debug(debug: bool) -> None:
    _global.debug = debug


def debugging() -> bool:
    return _global.debug


def config_path(config: str | None) -> str | None:
    """The settings file a command given ``config`` reads (None: $CHINWAG_CONFIG, else the
    built-in defaults)."""
    return config or _global.config


def settings_or_exit(config: str | None) -> Settings:
    from chinwag.config import ConfigError, load_settings

    try:
        return load_settings(config_path(config))
    except ConfigError as error:
        fail(str(error), CONFIG_EXIT)


class ServerProblem(Exception):
    """The running server cannot be asked, or refused: the message says why, in one line."""

    def __init__(self, message: str, *, running: bool) -> None:
        super().__init__(message)
        self.running = running
        """False when no server answers at all (no admin token, nothing listening)."""


def ask_server(
    settings: Settings,
    method: str,
    path: str,
    *,
    params: Mapping[str, str] | None = None,
    timeout: float = ADMIN_TIMEOUT_SECONDS,
) -> Any:
    """The JSON answer of an admin endpoint (``web/admin_routes.py``) of the server that
    ``settings`` describe, asked with the admin token of its data directory; raises
    ServerProblem."""
    import httpx  # here, not at the top: the other commands start faster without it

    from chinwag.web.admin_token import ADMIN_TOKEN_FILE

    token_path = settings.data_path / ADMIN_TOKEN_FILE
    try:
        token = token_path.read_text().strip()
    except FileNotFoundError:
        raise ServerProblem(
            f"no admin token at {token_path}: is chinwag serve running with this configuration?",
            running=False,
        ) from None
    except OSError as error:
        raise ServerProblem(
            f"cannot read the admin token at {token_path}: {error.strerror}", running=False
        ) from None
    url = local_url(settings.http.host, settings.http.port) + path
    try:
        # trust_env=False: the admin token goes to the server only, never to a proxy.
        with httpx.Client(trust_env=False, timeout=timeout) as client:
            response = client.request(
                method, url, params=params, headers={"Authorization": f"Bearer {token}"}
            )
    except httpx.HTTPError as error:
        reason = (str(error) or type(error).__name__).splitlines()[0]
        raise ServerProblem(
            f"cannot reach the server at {url}: {reason} (is chinwag serve running?)",
            running=False,
        ) from None
    return _answer(response, url, token_path)


def _answer(response: httpx.Response, url: str, token_path: Path) -> Any:
    """The JSON of a successful admin ``response``; ServerProblem for any other."""
    if response.status_code == 401:
        raise ServerProblem(
            f"the server at {url} refused the admin token of {token_path}: "
            "is it the server of this configuration?",
            running=True,
        )
    try:
        answer = response.json()
    except ValueError:
        answer = None
    if response.is_success and answer is not None:
        return answer
    if isinstance(answer, dict) and isinstance(answer.get("message"), str):
        raise ServerProblem(answer["message"], running=True)
    raise ServerProblem(
        f"the server at {url} answered {response.status_code}, not what chinwag sends",
        running=True,
    )


def local_url(host: str, port: int) -> str:
    """Where this machine reaches a listener bound to ``host``: a wildcard means loopback."""
    host = {"": "127.0.0.1", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run_on_database(
    settings: Settings,
    action: Callable[[Database], Awaitable[T]],
    expected: tuple[type[Exception], ...],
    *,
    create: bool = False,
) -> T:
    """Run ``action`` on the store, migrated to the newest schema first; ``expected``
    errors and database failures end the command with one line. Unless ``create``, a
    database that ``chinwag serve`` has not made yet is such a failure too: a command
    run with the wrong settings must not make an empty one beside the real one."""
    import asyncio

    from sqlalchemy.exc import DBAPIError

    from chinwag.store.db import MigrationError, NoDatabase, redacted

    url = settings.database_url
    try:
        return asyncio.run(_on_migrated(url, action, create))
    except expected as error:
        fail(str(error))
    except MigrationError as error:
        fail(str(error))
    except NoDatabase as error:
        fail(
            f"{error}: chinwag serve creates it at its first start (or chinwag db migrate); "
            "is this the server's configuration?"
        )
    except (OSError, DBAPIError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        fail(f"cannot use the database {redacted(url)}: {reason}")


async def _on_migrated(url: str, action: Callable[[Database], Awaitable[T]], create: bool) -> T:
    from chinwag.store.db import Database

    db = Database.open(url) if create else await Database.open_existing(url)
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
    if _global.debug:
        print_cause()
    err.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(status)


def print_cause() -> None:
    """With ``--debug``: the traceback of the exception being handled, and of the one it
    was raised in place of (which ``raise ... from None`` hides from a plain traceback)."""
    import traceback

    error = sys.exc_info()[1]
    if error is None:
        return
    if error.__suppress_context__ and error.__context__ is not None:
        traceback.print_exception(error.__context__, file=sys.stderr)
    traceback.print_exception(error, file=sys.stderr)
