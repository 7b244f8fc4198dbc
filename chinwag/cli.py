"""The ``chinwag`` command: run the server and manage users.

Commands work through the network domain and the store, never the XMPP core. A
problem the operator can fix is one line on stderr: exit status 2 for
configuration, 1 for everything else. ``--json`` puts machine-readable results on
stdout.
"""

from __future__ import annotations

import asyncio
import csv
import io
import json
import sys
from collections.abc import Awaitable, Callable, Sequence
from pathlib import Path
from typing import Annotated, Any, NoReturn, TypeVar

import typer
from rich.console import Console
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table
from rich.text import Text
from sqlalchemy.exc import DBAPIError

from chinwag.config import ConfigError, Settings, load_settings
from chinwag.network.accounts import (
    AccountExists,
    AccountRecord,
    AccountService,
    ImportRejected,
    InvalidPassword,
    InvalidUsername,
    NoSuchAccount,
    UserRow,
)
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.db import Database, redacted

T = TypeVar("T")

CONFIG_EXIT = 2
FAILURE_EXIT = 1

app = typer.Typer(
    help="chinwag: an XMPP messaging server.", no_args_is_help=True, add_completion=False
)
user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")

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
NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Username: the part of the JID before '@'.")
]


def _password_option(prompt: str) -> Any:
    return typer.Option(
        "--password",
        "-p",
        prompt=prompt,
        hide_input=True,
        confirmation_prompt=True,
        help="Asked for twice, hidden, when omitted.",
    )


def main() -> None:
    app()


@app.command()
def serve(config: ConfigOption = None) -> None:
    """Run the server."""
    settings = _settings(config)
    from chinwag.app import serve as serve_forever

    serve_forever(settings)


@user_app.command("add")
def user_add(
    name: NameArgument,
    password: Annotated[str, _password_option("Password")],
    full_name: Annotated[
        str | None, typer.Option("--name", metavar="FULL_NAME", help="Shown in the profile.")
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a user."""
    settings = _settings(config)
    username = _run(settings, lambda accounts: accounts.add_user(name, password, full_name))
    jid = _jid(username, settings)
    _done(json_output, {"username": username, "jid": jid}, f"Added {jid}")


@user_app.command("passwd")
def user_passwd(
    name: NameArgument,
    password: Annotated[str, _password_option("New password")],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change a user's password."""
    settings = _settings(config)
    username = _run(settings, lambda accounts: accounts.change_password(name, password))
    jid = _jid(username, settings)
    _done(json_output, {"username": username, "jid": jid}, f"Changed the password of {jid}")


@user_app.command("delete")
def user_delete(
    name: NameArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Delete a user and everything the account owns."""
    settings = _settings(config)
    if not _run(settings, lambda accounts: accounts.delete_user(name)):
        _fail(str(NoSuchAccount(name)))
    _done(json_output, {"username": name, "deleted": True}, f"Deleted {name}")


@user_app.command("list")
def user_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List every user."""
    settings = _settings(config)
    records = _run(settings, lambda accounts: accounts.list_users())
    if json_output:
        _print_json([_record_json(record, settings) for record in records])
    elif records:
        out.print(_user_table(records, settings))
    else:
        out.print("No users yet.")


@user_app.command("import")
def user_import(
    file: Annotated[
        str, typer.Argument(metavar="FILE", help="CSV lines name,password[,full name]; - is stdin.")
    ],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create many users at once: all of them, or none if any line is bad."""
    settings = _settings(config)
    line_numbers, rows = _parse_import(_read_text(file))
    progress = Progress(
        *Progress.get_default_columns(),
        MofNCompleteColumn(),
        console=err,
        transient=True,
        disable=json_output,
    )
    task = progress.add_task("Deriving credentials", total=len(rows))
    try:
        with progress:
            imported = _run(
                settings,
                lambda accounts: accounts.import_users(rows, lambda: progress.advance(task)),
            )
    except ImportRejected as rejected:
        _reject([(line_numbers[p.index], p.message) for p in rejected.problems])
    _done(json_output, {"imported": len(imported)}, f"Imported {len(imported)} users")


def _settings(config: str | None) -> Settings:
    try:
        return load_settings(config)
    except ConfigError as error:
        _fail(str(error), CONFIG_EXIT)


def _run(settings: Settings, action: Callable[[AccountService], Awaitable[T]]) -> T:
    """Run ``action`` on the accounts service, creating or migrating the store first."""
    url = settings.database_url
    try:
        return asyncio.run(_with_accounts(url, action))
    except (InvalidUsername, InvalidPassword, AccountExists, NoSuchAccount) as error:
        _fail(str(error))
    except (OSError, DBAPIError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        _fail(f"cannot use the database {redacted(url)}: {reason}")


async def _with_accounts(url: str, action: Callable[[AccountService], Awaitable[T]]) -> T:
    db = Database.open(url)
    try:
        await db.migrate()
        return await action(AccountService(SqlAccountRepository(db)))
    finally:
        await db.close()


def _read_text(file: str) -> str:
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        _fail(f"cannot read {file}: {error.strerror}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        _fail(f"{file} is not UTF-8 text (byte {error.start})")


def _parse_import(text: str) -> tuple[list[int], list[UserRow]]:
    """The rows of an import file, with the line each one came from."""
    line_numbers: list[int] = []
    rows: list[UserRow] = []
    problems: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for record in reader:
            if not record:
                continue
            if len(record) not in (2, 3):
                problems.append((reader.line_num, "expected name,password[,full name]"))
                continue
            name, password, *full_name = record
            line_numbers.append(reader.line_num)
            rows.append(UserRow(name, password, "".join(full_name) or None))
    except csv.Error as error:
        problems.append((reader.line_num, f"not valid CSV: {error}"))
    if problems:
        _reject(problems)
    return line_numbers, rows


def _reject(problems: Sequence[tuple[int, str]]) -> NoReturn:
    for line, message in problems:
        err.print(Text(f"line {line}: {message}"))
    count = len(problems)
    _fail(f"nothing imported: {count} bad line{'' if count == 1 else 's'}")


def _user_table(records: Sequence[AccountRecord], settings: Settings) -> Table:
    table = Table("User", "Full name", "Created (UTC)", box=None, header_style="bold")
    for record in records:
        table.add_row(
            Text(_jid(record.username, settings)),
            Text(record.full_name or ""),
            record.created_at.strftime("%Y-%m-%d %H:%M"),
        )
    return table


def _record_json(record: AccountRecord, settings: Settings) -> dict[str, Any]:
    return {
        "username": record.username,
        "jid": _jid(record.username, settings),
        "full_name": record.full_name,
        "created_at": record.created_at.isoformat(),
    }


def _jid(username: str, settings: Settings) -> str:
    return f"{username}@{settings.domain}"


def _done(json_output: bool, data: dict[str, Any], message: str) -> None:
    """Report success: ``data`` as JSON, or ``message`` for people."""
    if json_output:
        _print_json(data)
    else:
        out.print(Text.assemble(("✓ ", "green"), message))


def _print_json(data: object) -> None:
    sys.stdout.write(json.dumps(data, ensure_ascii=False) + "\n")


def _fail(message: str, status: int = FAILURE_EXIT) -> NoReturn:
    err.print(Text.assemble(("error: ", "bold red"), message))
    raise typer.Exit(status)
