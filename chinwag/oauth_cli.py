"""The ``chinwag app``, ``chinwag token`` and ``chinwag app-password`` commands.

Typer sub-applications for ``chinwag.cli`` to mount. They follow its conventions:
``--config FILE`` (or ``$CHINWAG_CONFIG``), ``--json`` for machine-readable
results on stdout, and a problem the operator can fix as one line on stderr with
exit status 2 for configuration and 1 for everything else.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from chinwag.cli_common import (
    ConfigOption,
    JsonOption,
    T,
    done,
    fail,
    out,
    print_json,
    print_wide,
    run_on_database,
    settings_or_exit,
)

# Imported where used, so that ``chinwag --help`` does not wait for SQLAlchemy and Alembic.
if TYPE_CHECKING:
    from chinwag.config import Settings
    from chinwag.oauth.service import AppInfo, AppPasswordRecord, OAuthService
    from chinwag.store.db import Database

app_cli = typer.Typer(help="Register and manage third-party apps.", no_args_is_help=True)
token_cli = typer.Typer(help="Issue and revoke access tokens.", no_args_is_help=True)
app_password_cli = typer.Typer(
    help="Passwords that let one app sign in for a user with SCRAM or PLAIN.",
    no_args_is_help=True,
)

ClientIdArgument = Annotated[str, typer.Argument(metavar="CLIENT_ID", help="The app's client_id.")]
AppOption = Annotated[str, typer.Option("--app", metavar="CLIENT_ID", help="The app's client_id.")]
UserOption = Annotated[
    str, typer.Option("--user", metavar="NAME", help="Username: the part of the JID before '@'.")
]


# -- chinwag app


@app_cli.command("register")
def app_register(
    name: Annotated[
        str, typer.Argument(metavar="NAME", help="Shown to users on the consent page.")
    ],
    redirect_uris: Annotated[
        list[str],
        typer.Option(
            "--redirect-uri",
            metavar="URI",
            help="Where users come back with a code or token; repeat for several.",
        ),
    ],
    public: Annotated[
        bool, typer.Option("--public", help="An app that cannot keep a secret (mobile, browser).")
    ] = False,
    allow_implicit: Annotated[
        bool,
        typer.Option(
            "--allow-implicit",
            help="Allow the implicit grant (response_type=token), if the server's "
            "[oauth] allow_implicit does too; needs --public.",
        ),
    ] = False,
    pkce_optional: Annotated[
        bool,
        typer.Option(
            "--pkce-optional",
            help="Let a confidential app skip PKCE (not recommended: RFC 9700 asks every "
            "app to use it).",
        ),
    ] = False,
    owner: Annotated[
        str | None, typer.Option("--owner", metavar="NAME", help="The developer's username.")
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Register an app and print its client_id (and, if confidential, its secret)."""
    registered = _run(
        settings_or_exit(config),
        lambda oauth: oauth.register_app(
            name,
            redirect_uris,
            public=public,
            allow_implicit=allow_implicit,
            owner=owner,
            require_pkce=not pkce_optional,
        ),
        existing_user=owner,
    )
    secret = registered.client_secret
    if json_output:
        print_json({**_app_json(registered.app), "client_secret": secret})
        return
    out.print(Text.assemble(("✓ ", "green"), f"Registered {registered.app.name}"))
    out.print(Text(f"client_id:     {registered.app.client_id}"))
    if secret is not None:
        out.print(Text(f"client_secret: {secret}"))
        out.print("Keep the secret safe: it is shown only now.")


@app_cli.command("edit")
def app_edit(
    client_id: ClientIdArgument,
    name: Annotated[
        str | None,
        typer.Option("--name", metavar="NAME", help="A new name, shown on the consent page."),
    ] = None,
    redirect_uris: Annotated[
        list[str] | None,
        typer.Option(
            "--redirect-uri",
            metavar="URI",
            help="The app's redirect URIs, replacing all of them; repeat for several.",
        ),
    ] = None,
    require_pkce: Annotated[
        bool | None,
        typer.Option(
            "--require-pkce/--pkce-optional",
            help="Whether a confidential app must use PKCE (a public app always does).",
        ),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Change an app's name, redirect URIs or PKCE rule; the rest stays as it is."""
    if name is None and not redirect_uris and require_pkce is None:
        fail("nothing to change: give --name, --redirect-uri, --require-pkce or --pkce-optional")
    updated = _run(
        settings_or_exit(config),
        lambda oauth: oauth.update_app(
            client_id, name=name, redirect_uris=redirect_uris or None, require_pkce=require_pkce
        ),
    )
    if json_output:
        print_json(_app_json(updated))
        return
    out.print(Text.assemble(("✓ ", "green"), f"Updated {updated.name} ({updated.client_id})"))
    _print_app(updated)


@app_cli.command("list")
def app_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List every registered app."""
    apps = _run(settings_or_exit(config), lambda oauth: oauth.list_apps())
    if json_output:
        print_json([_app_json(app) for app in apps])
    elif apps:
        print_wide(_app_table(apps))
    else:
        out.print("No apps yet.")


@app_cli.command("show")
def app_show(
    client_id: ClientIdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Show one app."""
    from chinwag.oauth.service import NoSuchApp

    found = _run(settings_or_exit(config), lambda oauth: oauth.get_app(client_id))
    if found is None:
        fail(str(NoSuchApp(client_id)))
    if json_output:
        print_json(_app_json(found))
    else:
        _print_app(found)


@app_cli.command("suspend")
def app_suspend(
    client_id: ClientIdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Suspend an app: its tokens are revoked and its users' sessions of it end."""
    _run(settings_or_exit(config), lambda oauth: oauth.suspend_app(client_id))
    done(json_output, {"client_id": client_id, "status": "suspended"}, f"Suspended {client_id}")


@app_cli.command("resume")
def app_resume(
    client_id: ClientIdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Let a suspended app in again (users must authorize it anew)."""
    _run(settings_or_exit(config), lambda oauth: oauth.resume_app(client_id))
    done(json_output, {"client_id": client_id, "status": "active"}, f"Resumed {client_id}")


@app_cli.command("delete")
def app_delete(
    client_id: ClientIdArgument, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """Delete an app with every token, consent and app password for it."""
    _run(settings_or_exit(config), lambda oauth: oauth.delete_app(client_id))
    done(json_output, {"client_id": client_id, "deleted": True}, f"Deleted {client_id}")


# -- chinwag token


@token_cli.command("issue")
def token_issue(
    client_id: AppOption,
    user: UserOption,
    scope: Annotated[
        str,
        typer.Option(
            "--scope",
            metavar="SCOPES",
            help='Space-separated, e.g. "wl.messenger wl.offline_access".',
        ),
    ],
    ttl: Annotated[
        int | None,
        typer.Option(
            "--ttl", metavar="SECONDS", min=1, help="Lifetime (default: from the config)."
        ),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Issue a token for an app and a user, without the browser."""
    issued = _run(
        settings_or_exit(config), lambda oauth: oauth.issue_token(client_id, user, scope, ttl)
    )
    if json_output:
        print_json(issued.response())
        return
    out.print(Text(f"access_token:  {issued.access_token}"))
    if issued.refresh_token is not None:
        out.print(Text(f"refresh_token: {issued.refresh_token}"))
    out.print(Text(f"scope:         {issued.scope}"))
    out.print(f"expires:       {issued.expires_at:%Y-%m-%d %H:%M:%S} UTC")


@token_cli.command("revoke")
def token_revoke(
    token: Annotated[str, typer.Argument(metavar="TOKEN", help="An access or refresh token.")],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Revoke a token with every token of its grant; the sessions it opened end."""
    if not _run(settings_or_exit(config), lambda oauth: oauth.revoke_token(token)):
        fail("no such token")
    done(json_output, {"revoked": True}, "Revoked the token")


# -- chinwag app-password


@app_password_cli.command("create")
def app_password_create(
    user: UserOption,
    client_id: AppOption,
    label: Annotated[
        str, typer.Option("--label", help="A reminder of where it is used.")
    ] = "command line",
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make an app password: the user types it in the app instead of their own password."""
    password_id, password = _run(
        settings_or_exit(config), lambda oauth: oauth.create_app_password(user, client_id, label)
    )
    if json_output:
        print_json({"id": password_id, "password": password, "client_id": client_id})
        return
    out.print(Text.assemble(("✓ ", "green"), f"App password {password_id} for {client_id}:"))
    out.print(Text(password))
    out.print("It is shown only now.")


@app_password_cli.command("list")
def app_password_list(
    user: UserOption, config: ConfigOption = None, json_output: JsonOption = False
) -> None:
    """List a user's app passwords (never the passwords themselves)."""
    records = _run(
        settings_or_exit(config), lambda oauth: oauth.list_app_passwords(user), existing_user=user
    )
    if json_output:
        print_json([_app_password_json(record) for record in records])
    elif records:
        out.print(_app_password_table(records))
    else:
        out.print("No app passwords.")


@app_password_cli.command("revoke")
def app_password_revoke(
    password_id: Annotated[int, typer.Argument(metavar="ID", help="As listed.")],
    user: UserOption,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Delete an app password; the sessions that signed in with it end."""
    if not _run(
        settings_or_exit(config), lambda oauth: oauth.revoke_app_password(user, password_id)
    ):
        fail(f"no app password {password_id} for {user}")
    done(json_output, {"id": password_id, "revoked": True}, f"Revoked app password {password_id}")


# -- helpers


def _run(
    settings: Settings,
    action: Callable[[OAuthService], Awaitable[T]],
    *,
    existing_user: str | None = None,
) -> T:
    """Run ``action`` on the OAuth service, creating or migrating the store first.

    With ``existing_user``, only once that account is known to exist (else NoSuchAccount):
    for the commands that would otherwise take a misspelt name for a user with nothing.
    """
    from chinwag.network.accounts import AccountService, InvalidUsername, normalize_username
    from chinwag.oauth.service import (
        AppSuspended,
        InvalidRequest,
        NoSuchAccount,
        NoSuchApp,
        OAuthService,
        UnknownScope,
    )
    from chinwag.store.accounts import SqlAccountRepository
    from chinwag.store.oauth import SqlOAuthRepository

    async def on(db: Database) -> T:
        account_repo = SqlAccountRepository(db)
        if existing_user is not None:
            username = normalize_username(existing_user)
            if not await account_repo.exists(username):
                raise NoSuchAccount(username)
        accounts = AccountService(account_repo)
        return await action(OAuthService(SqlOAuthRepository(db), accounts, settings.oauth))

    expected = (
        NoSuchApp,
        NoSuchAccount,
        AppSuspended,
        InvalidRequest,
        InvalidUsername,
        UnknownScope,
    )
    return run_on_database(settings, on, expected)


def _app_json(app: AppInfo) -> dict[str, Any]:
    return {
        "client_id": app.client_id,
        "name": app.name,
        "redirect_uris": list(app.redirect_uris),
        "public": app.public,
        "allow_implicit": app.allow_implicit,
        "require_pkce": app.require_pkce,
        "owner": app.owner,
        "status": app.status,
        "created_at": app.created_at.isoformat(),
    }


def _print_app(app: AppInfo) -> None:
    for key, value in _app_json(app).items():
        shown = ", ".join(value) if isinstance(value, list) else value
        out.print(Text(f"{key + ':':16}{'' if shown is None else shown}"))


def _app_table(apps: Sequence[AppInfo]) -> Table:
    # Client IDs are shown whole: a cut one cannot be pasted into 'chinwag app show'.
    # The other columns fold their long words rather than cut them.
    id_width = max(len(app.client_id) for app in apps)
    table = Table(
        Column("client_id", no_wrap=True, min_width=id_width),
        Column("Name", overflow="fold"),
        Column("Type", overflow="fold"),
        Column("Status", no_wrap=True),
        Column("Redirect URIs", overflow="fold"),
        box=None,
        header_style="bold",
    )
    for app in apps:
        kind = ("public" if app.public else "confidential") + (
            ", implicit" if app.allow_implicit else ""
        )
        if not app.require_pkce:
            kind += ", PKCE optional"
        table.add_row(
            Text(app.client_id),
            Text(app.name),
            kind,
            app.status,
            Text("\n".join(app.redirect_uris)),
        )
    return table


def _app_password_json(record: AppPasswordRecord) -> dict[str, Any]:
    return {
        "id": record.id,
        "client_id": record.client_id,
        "app": record.app_name,
        "label": record.label,
        "created_at": record.created_at.isoformat(),
        "last_used_at": None if record.last_used_at is None else record.last_used_at.isoformat(),
    }


def _app_password_table(records: Sequence[AppPasswordRecord]) -> Table:
    table = Table(
        "ID", "App", "Label", "Created (UTC)", "Last used (UTC)", box=None, header_style="bold"
    )
    for record in records:
        used = record.last_used_at
        table.add_row(
            str(record.id),
            Text(record.app_name),
            Text(record.label),
            f"{record.created_at:%Y-%m-%d %H:%M}",
            "never" if used is None else f"{used:%Y-%m-%d %H:%M}",
        )
    return table
