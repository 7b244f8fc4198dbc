"""The ``chinwag`` command: run the server and manage users, contacts and profiles.

Commands work through the network domain and the store, never the XMPP core; the
operator's commands on the running server (``status``, ``reload``, ``sessions``,
``bans``) and ``check`` are in ``operator_cli.py``. Global options (``--config``,
``--version``) go before the command, and ``--config`` after it as well. A problem
the operator can fix is one line on stderr: exit status 2 for configuration, 1 for
everything else. ``--json`` puts machine-readable results on stdout.
"""

from __future__ import annotations

import base64
import csv
import io
import mimetypes
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from rich.progress import MofNCompleteColumn, Progress
from rich.table import Table
from rich.text import Text

from chinwag.cli_common import (
    CONFIG_EXIT,
    DEBUG_OPTION,
    FAILURE_EXIT,
    ConfigOption,
    JsonOption,
    T,
    config_path,
    done,
    err,
    fail,
    out,
    print_json,
    run_on_database,
    settings_or_exit,
    use_config,
    use_debug,
)
from chinwag.invite_cli import invite_cli
from chinwag.oauth_cli import app_cli, app_password_cli, token_cli
from chinwag.operator_cli import bans_cli, check, drain, reload, sessions_cli, status
from chinwag.portability_cli import db_cli, export, import_

# Imported where used, so that ``chinwag --help`` does not wait for SQLAlchemy and Alembic.
if TYPE_CHECKING:
    from chinwag.config import Settings
    from chinwag.network.accounts import AccountRecord, AccountService, UserRow
    from chinwag.network.contacts import Contact, ContactService
    from chinwag.network.events import EventLog
    from chinwag.network.profiles import Profile, ProfileService
    from chinwag.store.db import Database

_HEADER = ["name", "password", "full name"]
"""The header line a user import file may start with (any case)."""

app = typer.Typer(
    help="chinwag: an XMPP messaging server.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,  # main() says what failed in one line; --debug: Python's
)
user_app = typer.Typer(help="Manage user accounts.", no_args_is_help=True)
app.add_typer(user_app, name="user")
contacts_app = typer.Typer(help="Manage who is on whose contact list.", no_args_is_help=True)
app.add_typer(contacts_app, name="contacts")
profile_app = typer.Typer(help="Manage users' public profiles (vCards).", no_args_is_help=True)
app.add_typer(profile_app, name="profile")
app.add_typer(app_cli, name="app")
app.add_typer(token_cli, name="token")
app.add_typer(app_password_cli, name="app-password")
app.add_typer(sessions_cli, name="sessions")
app.add_typer(bans_cli, name="bans")
app.add_typer(invite_cli, name="invite")
app.add_typer(db_cli, name="db")

NameArgument = Annotated[
    str, typer.Argument(metavar="NAME", help="Username: the part of the JID before '@'.")
]
FirstArgument = Annotated[str, typer.Argument(metavar="A", help="One username.")]
SecondArgument = Annotated[str, typer.Argument(metavar="B", help="The other username.")]


def _password_option(prompt: str) -> Any:
    # Optional on the command line (the default None), so that --help does not call it
    # required; click prompts for it whenever it is left out, so it is never None here.
    return typer.Option(
        "--password",
        "-p",
        prompt=prompt,
        hide_input=True,
        confirmation_prompt=True,
        help="Asked for twice, hidden, when omitted.",
    )


def _prompted(password: str | None) -> str:
    assert password is not None, "typer prompts for a --password left out"
    return password


def main() -> None:
    """The console script: any failure that no command foresaw is one line too, and its
    traceback comes with ``--debug`` only."""
    args = _global_options_first(sys.argv[1:])
    try:
        app(args=args, prog_name="chinwag")
    except Exception as error:
        if DEBUG_OPTION in args:
            raise
        reason = str(error).splitlines()[0] if str(error) else ""
        err.print(
            Text.assemble(
                ("error: ", "bold red"),
                f"{type(error).__name__}{': ' if reason else ''}{reason} "
                f"(chinwag {DEBUG_OPTION} ... shows where)",
            )
        )
        sys.exit(FAILURE_EXIT)


def _global_options_first(args: list[str]) -> list[str]:
    """``args`` with ``--debug`` moved before the command, so that it goes anywhere, as
    ``--config`` does (which every command takes too)."""
    end = args.index("--") if "--" in args else len(args)
    if DEBUG_OPTION not in args[:end]:
        return args
    return [DEBUG_OPTION, *(arg for arg in args[:end] if arg != DEBUG_OPTION), *args[end:]]


def _print_version(asked: bool) -> None:
    if asked:
        from chinwag import __version__

        out.print(f"chinwag {__version__}")
        raise typer.Exit()


@app.callback()
def global_options(
    config: ConfigOption = None,
    version: Annotated[
        bool,
        typer.Option(
            "--version", callback=_print_version, is_eager=True, help="Print the version and exit."
        ),
    ] = False,
    debug: Annotated[
        bool,
        typer.Option(
            DEBUG_OPTION,
            help="On a failure, print the traceback of its cause too (before or after the command).",
        ),
    ] = False,
) -> None:
    """chinwag: an XMPP messaging server."""
    use_config(config)
    use_debug(debug)


@app.command()
def serve(
    config: ConfigOption = None,
    workers: Annotated[
        int | None,
        typer.Option(
            "--workers",
            min=1,
            max=256,
            metavar="N",
            help="Run N nodes of the cluster on this machine, sharing the listening ports "
            "(one per core); needs the cluster section (a Redis) and PostgreSQL.",
        ),
    ] = None,
    node: Annotated[str | None, typer.Option("--node", hidden=True)] = None,
    reuse_port: Annotated[bool, typer.Option("--reuse-port", hidden=True)] = False,
    supervisor: Annotated[int | None, typer.Option("--supervisor", hidden=True)] = None,
) -> None:
    """Run the server; SIGHUP (or 'chinwag reload') makes it read its settings file again,
    SIGUSR1 (or 'chinwag drain') sends its clients to another node and stops it."""
    settings = settings_or_exit(config)
    if workers is not None and settings.cluster is None:
        fail(
            "--workers runs several nodes of a cluster on this machine: it needs a [cluster] "
            "section (a Redis) and a PostgreSQL [database] url (docs/cluster.md)",
            CONFIG_EXIT,
        )
    from chinwag.app import StartupError
    from chinwag.app import serve as serve_forever
    from chinwag.config import load_settings
    from chinwag.workers import as_worker, die_with

    chosen = config_path(config)
    if workers is not None:
        _supervise(settings, workers, chosen)
    if supervisor is not None:
        die_with(supervisor)
    try:
        settings = as_worker(settings, node)
    except ValueError as error:
        fail(str(error), CONFIG_EXIT)
    try:
        serve_forever(
            settings,
            reread=lambda: as_worker(load_settings(chosen), node),
            reuse_port=reuse_port,
        )
    except StartupError as error:
        fail(str(error))


def _supervise(settings: Settings, workers: int, config: str | None) -> NoReturn:
    """``serve --workers``: make the files the workers share, then run and watch them."""
    from chinwag.app import prepare_shared_files
    from chinwag.workers import serve_command, supervise, worker_names

    assert settings.cluster is not None
    prepare_shared_files(settings)
    names = worker_names(settings.cluster.node, workers)
    raise typer.Exit(supervise({name: serve_command(name, config) for name in names}))


app.command()(status)
app.command()(reload)
app.command()(drain)
app.command()(check)
app.command()(export)
app.command("import")(import_)


@user_app.command("add")
def user_add(
    name: NameArgument,
    password: Annotated[str | None, _password_option("Password")] = None,
    full_name: Annotated[
        str | None, typer.Option("--name", metavar="FULL_NAME", help="Shown in the profile.")
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create a user."""
    settings = settings_or_exit(config)
    chosen = _prompted(password)
    username = _run(settings, lambda network: network.accounts.add_user(name, chosen, full_name))
    jid = _jid(username, settings)
    done(json_output, {"username": username, "jid": jid}, f"Added {jid}")


@user_app.command("passwd")
def user_passwd(
    name: NameArgument,
    password: Annotated[str | None, _password_option("New password")] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change a user's password."""
    settings = settings_or_exit(config)
    chosen = _prompted(password)
    username = _run(settings, lambda network: network.accounts.change_password(name, chosen))
    jid = _jid(username, settings)
    done(json_output, {"username": username, "jid": jid}, f"Changed the password of {jid}")


@user_app.command("delete")
def user_delete(
    name: NameArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Delete a user and everything the account owns."""
    from chinwag.network.accounts import NoSuchAccount

    settings = settings_or_exit(config)
    if not _run(settings, lambda network: network.accounts.delete_user(name)):
        fail(str(NoSuchAccount(name)))
    done(json_output, {"username": name, "deleted": True}, f"Deleted {name}")


@user_app.command("list")
def user_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List every user."""
    settings = settings_or_exit(config)
    records = _run(settings, lambda network: network.accounts.list_users())
    if json_output:
        print_json([_record_json(record, settings) for record in records])
    elif records:
        out.print(_user_table(records, settings))
    else:
        out.print("No users yet.")


@user_app.command("import")
def user_import(
    file: Annotated[
        str,
        typer.Argument(
            metavar="FILE",
            help="CSV lines name,password[,full name], after an optional header line of "
            "those words; - is stdin.",
        ),
    ],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Create many users at once: all of them, or none if any line is bad."""
    from chinwag.network.accounts import ImportRejected

    settings = settings_or_exit(config)
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
                lambda network: network.accounts.import_users(rows, lambda: progress.advance(task)),
            )
    except ImportRejected as rejected:
        _reject([(line_numbers[p.index], p.message) for p in rejected.problems])
    done(json_output, {"imported": len(imported)}, f"Imported {_count(len(imported), 'user')}")


@contacts_app.command("add")
def contacts_add(
    a: FirstArgument,
    b: SecondArgument,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make two users contacts of each other (both see each other's presence)."""
    from chinwag.network.accounts import normalize_username

    settings = settings_or_exit(config)

    async def add(network: Network) -> tuple[str, str]:
        await network.contacts.add_mutual(a, b)
        return normalize_username(a), normalize_username(b)

    first, second = _run(settings, add)
    done(
        json_output,
        {"users": [first, second], "contacts": True},
        f"{_jid(first, settings)} and {_jid(second, settings)} are contacts",
    )


@contacts_app.command("import")
def contacts_import(
    file: Annotated[str, typer.Argument(metavar="FILE", help="CSV lines a,b; - is stdin.")],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make many pairs of users contacts at once: all of them, or none if any line is bad."""
    from chinwag.network.contacts import InvalidPairs

    settings = settings_or_exit(config)
    line_numbers, pairs = _parse_pairs(_read_text(file))
    try:
        changed = _run(settings, lambda network: network.contacts.add_many(pairs))
    except InvalidPairs as invalid:
        _reject([(line_numbers[index], message) for index, message in invalid.problems])
    done(
        json_output,
        {"pairs": len(pairs), "changed_items": changed},
        f"Made {_count(len(pairs), 'pair')} of contacts ({_count(changed, 'roster item')} changed)",
    )


@contacts_app.command("remove")
def contacts_remove(
    a: FirstArgument,
    b: SecondArgument,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Take two users off each other's contact lists."""
    from chinwag.network.accounts import normalize_username

    settings = settings_or_exit(config)

    async def remove(network: Network) -> tuple[str, str, bool]:
        removed = await network.contacts.remove_mutual(a, b)
        return normalize_username(a), normalize_username(b), removed

    first, second, removed = _run(settings, remove)
    if not removed:
        fail(f"'{first}' and '{second}' are not contacts")
    done(
        json_output,
        {"users": [first, second], "contacts": False},
        f"{_jid(first, settings)} and {_jid(second, settings)} are no longer contacts",
    )


@contacts_app.command("list")
def contacts_list(
    name: NameArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """List a user's contacts."""
    settings = settings_or_exit(config)
    contacts = _run(settings, lambda network: network.contacts.list_contacts(name))
    if json_output:
        print_json([_contact_json(contact, settings) for contact in contacts])
    elif contacts:
        out.print(_contact_table(contacts, settings))
    else:
        out.print(Text(f"{name} has no contacts yet."))


@profile_app.command("set")
def profile_set(
    name: NameArgument,
    fn: Annotated[
        str | None, typer.Option("--fn", metavar="TEXT", help="Full name; '' clears it.")
    ] = None,
    nickname: Annotated[
        str | None, typer.Option("--nickname", metavar="TEXT", help="Nickname; '' clears it.")
    ] = None,
    email: Annotated[
        str | None, typer.Option("--email", metavar="ADDRESS", help="Email; '' clears it.")
    ] = None,
    photo: Annotated[
        str | None,
        typer.Option(
            "--photo", metavar="FILE", help="An image; its type comes from its extension."
        ),
    ] = None,
    no_photo: Annotated[bool, typer.Option("--no-photo", help="Remove the photo.")] = False,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change the given fields of a user's profile, leaving the others as they are."""
    from chinwag.network.accounts import normalize_username

    settings = settings_or_exit(config)
    fields: dict[str, object] = {
        key: value
        for key, value in (("fn", fn), ("nickname", nickname), ("email", email))
        if value is not None
    }
    if photo is not None and no_photo:
        fail("give --photo or --no-photo, not both")
    if photo is not None:
        fields["photo_type"], fields["photo"] = _read_image(photo)
    elif no_photo:
        fields["photo"] = None
    if not fields:
        fail("nothing to set: give --fn, --nickname, --email, --photo or --no-photo")

    async def update(network: Network) -> tuple[str, Profile]:
        username = normalize_username(name)
        return username, await network.profiles.set_fields(username, **fields)

    username, profile = _run(settings, update)
    done(
        json_output,
        _profile_json(username, profile, settings),
        f"Updated the profile of {_jid(username, settings)}",
    )


@profile_app.command("show")
def profile_show(
    name: NameArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Show a user's profile."""
    from chinwag.network.accounts import NoSuchAccount, normalize_username

    settings = settings_or_exit(config)

    async def show(network: Network) -> tuple[str, Profile]:
        username = normalize_username(name)
        profile = await network.profiles.get(username)
        if profile is None:
            raise NoSuchAccount(username)
        return username, profile

    username, profile = _run(settings, show)
    if json_output:
        print_json(_profile_json(username, profile, settings))
    else:
        out.print(_profile_table(username, profile, settings))


@dataclass(frozen=True)
class Network:
    """The network domain's services over one store, as every command uses them."""

    accounts: AccountService
    contacts: ContactService
    profiles: ProfileService
    events: EventLog

    @classmethod
    def over(cls, db: Database) -> Network:
        from chinwag.network.accounts import AccountService
        from chinwag.network.contacts import ContactService
        from chinwag.network.events import EventLog
        from chinwag.network.profiles import ProfileService
        from chinwag.store.accounts import SqlAccountRepository
        from chinwag.store.contacts import SqlContactRepository
        from chinwag.store.profiles import SqlProfileRepository

        events = EventLog(db)  # a fresh origin: every server process applies our changes
        return cls(
            AccountService(SqlAccountRepository(db), events),
            ContactService(SqlContactRepository(db), events),
            ProfileService(SqlProfileRepository(db), events),
            events,
        )


def _run(settings: Settings, action: Callable[[Network], Awaitable[T]]) -> T:
    """Run ``action`` on the network's services, creating or migrating the store first."""
    from chinwag.network.accounts import (
        AccountExists,
        InvalidPassword,
        InvalidUsername,
        NoSuchAccount,
    )
    from chinwag.network.contacts import SameAccount
    from chinwag.network.profiles import InvalidProfile

    expected = (
        InvalidUsername,
        InvalidPassword,
        AccountExists,
        NoSuchAccount,
        SameAccount,
        InvalidProfile,
    )
    return run_on_database(settings, lambda db: action(Network.over(db)), expected)


def _read_text(file: str) -> str:
    try:
        data = sys.stdin.buffer.read() if file == "-" else Path(file).read_bytes()
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror}")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        fail(f"{file} is not UTF-8 text (byte {error.start})")


def _parse_import(text: str) -> tuple[list[int], list[UserRow]]:
    """The rows of an import file, with the line each one came from."""
    from chinwag.network.accounts import UserRow

    line_numbers: list[int] = []
    rows: list[UserRow] = []
    problems: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    first = True
    try:
        for record in reader:
            if not record:
                continue
            is_header = first and _is_import_header(record)
            first = False
            if is_header:
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


def _is_import_header(record: Sequence[str]) -> bool:
    """Whether a CSV record is the header line ``name,password[,full name]``."""
    return [field.strip().casefold() for field in record] in (_HEADER[:2], _HEADER)


def _parse_pairs(text: str) -> tuple[list[int], list[tuple[str, str]]]:
    """The pairs of a contacts import file, with the line each one came from."""
    line_numbers: list[int] = []
    pairs: list[tuple[str, str]] = []
    problems: list[tuple[int, str]] = []
    reader = csv.reader(io.StringIO(text), strict=True)
    try:
        for record in reader:
            if not record:
                continue
            if len(record) != 2:
                problems.append((reader.line_num, "expected a,b"))
                continue
            line_numbers.append(reader.line_num)
            pairs.append((record[0], record[1]))
    except csv.Error as error:
        problems.append((reader.line_num, f"not valid CSV: {error}"))
    if problems:
        _reject(problems)
    return line_numbers, pairs


def _reject(problems: Sequence[tuple[int, str]]) -> NoReturn:
    for line, message in problems:
        err.print(Text(f"line {line}: {message}"))
    fail(f"nothing imported: {_count(len(problems), 'bad line')}")


def _count(number: int, thing: str) -> str:
    """``1 user``, ``2 users``."""
    return f"{number} {thing}{'' if number == 1 else 's'}"


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


def _read_image(file: str) -> tuple[str, bytes]:
    """The media type (by extension) and content of an image file."""
    media_type, _encoding = mimetypes.guess_type(file, strict=False)
    if media_type is None or not media_type.startswith("image/"):
        shown = f"it is {media_type}" if media_type else "its extension is not known"
        fail(f"{file} is not an image: {shown} (use .png, .jpg, .gif, .webp, ...)")
    try:
        return media_type, Path(file).read_bytes()
    except OSError as error:
        fail(f"cannot read {file}: {error.strerror}")


def _contact_table(contacts: Sequence[Contact], settings: Settings) -> Table:
    table = Table("Contact", "Name", "Subscription", box=None, header_style="bold")
    for contact in contacts:
        table.add_row(
            Text(_jid(contact.username, settings)), Text(contact.name or ""), contact.subscription
        )
    return table


def _contact_json(contact: Contact, settings: Settings) -> dict[str, Any]:
    return {
        "username": contact.username,
        "jid": _jid(contact.username, settings),
        "name": contact.name,
        "subscription": contact.subscription,
    }


def _profile_table(username: str, profile: Profile, settings: Settings) -> Table:
    table = Table.grid(padding=(0, 2))
    photo = (
        f"{profile.photo_type or 'unknown type'}, {len(profile.photo):,} bytes"
        if profile.photo
        else None
    )
    for label, value in (
        ("User", _jid(username, settings)),
        ("Full name", profile.fn),
        ("Nickname", profile.nickname),
        ("Email", profile.email),
        ("Photo", photo),
    ):
        table.add_row(Text(label, style="bold"), Text(value or "-", style="" if value else "dim"))
    return table


def _profile_json(username: str, profile: Profile, settings: Settings) -> dict[str, Any]:
    return {
        "username": username,
        "jid": _jid(username, settings),
        "fn": profile.fn,
        "nickname": profile.nickname,
        "email": profile.email,
        "photo_type": profile.photo_type,
        "photo": base64.b64encode(profile.photo).decode() if profile.photo else None,
    }


def _jid(username: str, settings: Settings) -> str:
    return f"{username}@{settings.domain}"
