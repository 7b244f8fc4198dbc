"""Backup, restore and moving servers: ``chinwag export``, ``chinwag import`` and
``chinwag db copy``, for ``chinwag.cli`` to mount.

Export and import speak XEP-0227 (``network/portable.py``), which Prosody and ejabberd
read and write too; ``db copy`` moves the whole store to another database
(``store/copy.py``). An export holds password verifiers, so its files are made
readable by their owner only (mode 0600), written under a temporary name and renamed
when whole. They follow the other commands' conventions: ``--json`` on stdout, and
a problem as one line on stderr with exit status 2 for configuration and 1 for
everything else; an export to standard output reports on stderr.
"""

from __future__ import annotations

import json
import os
import sys
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, TYPE_CHECKING, Annotated

import typer
from rich.progress import Progress, TextColumn
from rich.text import Text

from chinwag.cli_common import (
    ConfigOption,
    JsonOption,
    T,
    done,
    err,
    fail,
    out,
    print_json,
    run_on_database,
    settings_or_exit,
)

# Imported where used, so that ``chinwag --help`` does not wait for SQLAlchemy.
if TYPE_CHECKING:
    from chinwag.config import Settings
    from chinwag.network.portable import ExportReport, ImportReport
    from chinwag.network.portable_files import ExportFiles
    from chinwag.store.db import Database
    from chinwag.xmpp.element import Element

_PRIVATE_FILE = 0o600
_PRIVATE_DIRECTORY = 0o700

db_cli = typer.Typer(help="Work on the whole database.", no_args_is_help=True)


def export(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="Where to write the XEP-0227 document; - is stdout. With --split, a directory.",
        ),
    ],
    split: Annotated[
        bool,
        typer.Option(
            "--split",
            help="Write one document per user, FILE/user@domain.xml, as Prosody keeps them.",
        ),
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Export every user (password verifiers, contacts, profile, offline messages) in the
    XEP-0227 format that Prosody and ejabberd import."""
    from chinwag.network.portable import each_user, export_users, user_document

    settings = settings_or_exit(config)
    host = settings.domain
    try:
        if split:
            directory = Path(file)
            _private_directory(directory)

            def write_one(username: str, user: Element) -> None:
                path = directory / f"{username}@{host}.xml"
                try:
                    with _private_file(path) as stream:
                        stream.write(user_document(host, user))
                except OSError as error:
                    raise _Unwritable(f"cannot write {path}: {error.strerror}") from None

            report = _exporting(settings, lambda db: each_user(db, host, write_one))
        elif file == "-":
            report = _exporting(settings, lambda db: export_users(db, host, _to_stdout))
        else:
            with _private_file(Path(file)) as stream:
                write = _writer(stream, file)
                report = _exporting(settings, lambda db: export_users(db, host, write))
    except OSError as error:  # closing or renaming the new file
        fail(f"cannot write {file}: {error.strerror}")
    _exported(report, file, json_output, to_stderr=file == "-")


def import_(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="An XEP-0227 document (- is stdin), or a directory of them (its *.xml files).",
        ),
    ],
    host: Annotated[
        str | None,
        typer.Option(
            "--host", metavar="DOMAIN", help="The host of the file to import (default: domain)."
        ),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Import users, contacts, profiles and offline messages from an XEP-0227 export (of
    Prosody, ejabberd or chinwag): all of them, or none if any user cannot be."""
    from chinwag.network.portable import ImportLimits, ImportRejected, import_users
    from chinwag.network.portable_files import ExportFiles, PortableFileError
    from chinwag.xmpp.jid import InvalidJID

    settings = settings_or_exit(config)
    limits = ImportLimits(
        settings.messages.offline_quota,
        settings.limits.max_stanza_bytes,
        settings.pep.max_items,
        settings.pep.max_payload_bytes,
    )
    imported_host = host or settings.domain
    try:
        source = ExportFiles(imported_host, _root_of(file))
    except InvalidJID as error:
        fail(f"--host {host!r} is not a domain: {error}")
    try:
        with _users_of(source, file) as users:
            report = run_on_database(
                settings,
                lambda db: import_users(db, users, imported_host, limits, settings.domain),
                (),
            )
    except ImportRejected as rejected:
        for problem in rejected.problems:
            err.print(Text(problem))
        shown = len(rejected.problems)
        more = f" ({rejected.total - shown} more not shown)" if rejected.total > shown else ""
        fail(f"nothing imported: {_count(rejected.total, 'problem')}{more}")
    except PortableFileError as error:
        fail(f"nothing imported: {error}")
    report.other_hosts = source.other_hosts
    _imported(report, source, json_output)


@db_cli.command("copy")
def db_copy(
    to: Annotated[
        str,
        typer.Option(
            "--to",
            metavar="URL",
            help="The database to fill, such as postgresql+asyncpg://user:password@host/db.",
        ),
    ],
    force: Annotated[
        bool, typer.Option("--force", help="Delete what the target holds before copying.")
    ] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Copy every row of the configured database into another one (migrated to the newest
    schema first), such as from SQLite to PostgreSQL. Stop the server first."""
    from chinwag.store.copy import CopiedTable, CopyRefused, copy_database
    from chinwag.store.db import Database, redacted

    settings = settings_or_exit(config)
    _check_target(to, settings)
    progress = Progress(
        TextColumn("{task.description}"),
        TextColumn("{task.completed} rows"),
        console=err,
        transient=True,
        disable=json_output or not err.is_terminal,
    )
    task = progress.add_task("copying")

    def copied_so_far(table: str, rows: int) -> None:
        progress.update(task, description=table, completed=rows)

    async def copy(source: Database) -> list[CopiedTable]:
        target = Database.open(to)
        try:
            await _migrated_target(target, to)
            return await copy_database(source, target, force=force, progress=copied_so_far)
        finally:
            await target.close()

    with progress:
        tables = run_on_database(settings, copy, (CopyRefused, _TargetUnusable))
    if json_output:
        print_json({"to": redacted(to), "tables": {table.name: table.rows for table in tables}})
        return
    for table in tables:
        out.print(f"{table.name:<26} {table.rows:>10}")
    rows = sum(table.rows for table in tables)
    out.print(
        Text.assemble(
            ("✓ ", "green"),
            f"Copied {_count(rows, 'row')} of {_count(len(tables), 'table')} to {redacted(to)}",
        )
    )


@db_cli.command("migrate")
def db_migrate(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Create the configured database, or bring its schema to this chinwag's newest
    revision, as chinwag serve does when it starts. Back it up before an upgrade."""
    from chinwag.store.db import redacted

    settings = settings_or_exit(config)

    async def revision(db: Database) -> str | None:
        return await db.revision()

    at = run_on_database(settings, revision, (), create=True)
    url = redacted(settings.database_url)
    done(json_output, {"database": url, "revision": at}, f"{url} is at revision {at}")


class _TargetUnusable(Exception):
    """The database ``--to`` names cannot be reached or migrated."""


def _check_target(to: str, settings: Settings) -> None:
    """Exit unless ``to`` is a database URL chinwag can use, other than the configured one."""
    from pydantic import ValidationError
    from sqlalchemy.exc import ArgumentError

    from chinwag.config import DatabaseSettings
    from chinwag.store.db import redacted

    try:
        DatabaseSettings(url=to)
        same = redacted(to) == redacted(settings.database_url)
    except ValidationError as error:
        fail(f"--to {error.errors()[0]['msg'].removeprefix('Value error, ')}")
    except ArgumentError as error:
        fail(f"--to is not a database URL: {error}")
    if same:
        fail("--to names the configured database itself")


async def _migrated_target(target: Database, to: str) -> None:
    from sqlalchemy.exc import DBAPIError

    from chinwag.store.db import redacted

    try:
        await target.migrate()
    except (OSError, DBAPIError) as error:
        reason = str(getattr(error, "orig", None) or error).splitlines()[0]
        raise _TargetUnusable(f"cannot use the database {redacted(to)}: {reason}") from None


class _Unwritable(Exception):
    """An export cannot be written where it goes; the message says why."""


def _exporting(settings: Settings, action: Callable[[Database], Awaitable[T]]) -> T:
    return run_on_database(settings, action, (_Unwritable,))


def _writer(stream: IO[str], name: str) -> Callable[[str], None]:
    def write(text: str) -> None:
        try:
            stream.write(text)
        except OSError as error:
            raise _Unwritable(f"cannot write {name}: {error.strerror}") from None

    return write


def _to_stdout(text: str) -> None:
    try:
        sys.stdout.write(text)
        sys.stdout.flush()
    except BrokenPipeError:
        # Python would complain again at exit, flushing what is left for the closed pipe.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        raise _Unwritable("standard output was closed before the export was whole") from None


def _private_directory(directory: Path) -> None:
    try:
        directory.mkdir(mode=_PRIVATE_DIRECTORY, parents=True, exist_ok=True)
    except OSError as error:
        fail(f"cannot make the directory {directory}: {error.strerror}")
    if not directory.is_dir():
        fail(f"{directory} is not a directory")


@contextmanager
def _private_file(path: Path) -> Iterator[IO[str]]:
    """A new file, mode 0600, that becomes ``path`` when the block ends without error;
    until then ``path`` is untouched."""
    temporary = path.with_name(f".{path.name}.{os.getpid()}.part")
    try:
        descriptor = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, _PRIVATE_FILE)
    except OSError as error:
        fail(f"cannot write {path}: {error.strerror}")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as stream:
            yield stream
        os.replace(temporary, path)
    finally:
        temporary.unlink(missing_ok=True)


def _root_of(file: str) -> Path:
    """The directory an export's includes must stay inside."""
    if file == "-":
        return Path.cwd()
    path = Path(file)
    return path if path.is_dir() else path.parent


@contextmanager
def _users_of(source: ExportFiles, file: str) -> Iterator[Iterator[Element]]:
    """The ``<user/>`` elements of ``file``: a document, stdin (-) or a directory."""
    if file == "-":
        yield source.users(sys.stdin.buffer, "standard input", Path.cwd())
        return
    path = Path(file)
    if path.is_dir():
        yield source.directory_users(path)
        return
    try:
        stream = path.open("rb")
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror}")
    with stream:
        yield source.users(stream, file, path.parent)


def _exported(report: ExportReport, file: str, json_output: bool, *, to_stderr: bool) -> None:
    data = {
        "file": file,
        "users": report.users,
        "contacts": report.contacts,
        "offline_messages": report.offline_messages,
    }
    if json_output:
        line = json.dumps(data, ensure_ascii=False)
        (sys.stderr if to_stderr else sys.stdout).write(line + "\n")
        return
    where = "standard output" if file == "-" else file
    message = (
        f"Exported {_count(report.users, 'user')}, {_count(report.contacts, 'contact')} and "
        f"{_count(report.offline_messages, 'offline message')} to {where}"
    )
    (err if to_stderr else out).print(Text.assemble(("✓ ", "green"), message))


def _imported(report: ImportReport, source: ExportFiles, json_output: bool) -> None:
    if json_output:
        print_json(
            {
                "users": report.users,
                "contacts": report.contacts,
                "profiles": report.profiles,
                "offline_messages": report.offline_messages,
                "without_credentials": report.without_credentials,
                "left_out": dict(report.left_out),
                "other_hosts": dict(report.other_hosts),
                "not_read": dict(source.skipped),
            }
        )
        return
    for what, number in sorted(report.left_out.items()):
        err.print(Text(f"warning: left out: {what}: {number}"))
    for element, number in sorted(source.skipped.items()):
        err.print(Text(f"warning: not read (chinwag keeps no such data): {element}: {number}"))
    for other, number in sorted(report.other_hosts.items()):
        err.print(Text(f"warning: {_count(number, 'user')} of {other} not imported (--host)"))
    if report.without_credentials:
        names = ", ".join(report.without_credentials[:10])
        err.print(
            Text(
                f"warning: {_count(len(report.without_credentials), 'user')} without a password "
                f"cannot sign in until given one (chinwag user passwd): {names}"
            )
        )
    out.print(
        Text.assemble(
            ("✓ ", "green"),
            f"Imported {_count(report.users, 'user')}, {_count(report.contacts, 'contact')}, "
            f"{_count(report.profiles, 'profile')} and "
            f"{_count(report.offline_messages, 'offline message')}",
        )
    )


def _count(number: int, thing: str) -> str:
    """``1 user``, ``2 users``."""
    return f"{number} {thing}{'' if number == 1 else 's'}"
