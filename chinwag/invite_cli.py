"""The ``chinwag invite`` commands: sign-up links for ``chinwag.cli`` to mount.

An invitation is a link to the web's sign-up page, ``{public_url}/invite/{token}``,
good for one account until it expires; the page is served only with ``[auth]
invitations = true``. The commands follow the others' conventions: ``--config FILE``,
``--json`` on stdout, and a problem as one line on stderr with exit status 2 for
configuration and 1 for everything else.
"""

from __future__ import annotations

import getpass
import re
from datetime import timedelta
from typing import TYPE_CHECKING, Annotated

import typer
from rich.text import Text

from chinwag.cli_common import (
    ConfigOption,
    JsonOption,
    err,
    fail,
    out,
    print_json,
    run_on_database,
    settings_or_exit,
)

if TYPE_CHECKING:
    from chinwag.config import Settings
    from chinwag.network.invitations import NewInvitation
    from chinwag.store.db import Database

invite_cli = typer.Typer(
    help="Invitations: links with which people sign themselves up.", no_args_is_help=True
)

_DURATION = re.compile(r"(\d+)([mhdw])")
_UNITS = {"m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


@invite_cli.command("create")
def invite_create(
    expires: Annotated[
        str,
        typer.Option(
            "--expires",
            metavar="DURATION",
            help="How long the link works: minutes, hours, days or weeks, such as 30m, 12h, "
            "7d, 2w.",
        ),
    ] = "7d",
    created_by: Annotated[
        str | None,
        typer.Option(
            "--by", metavar="NAME", help="Who the invitation is from (default: your login name)."
        ),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Make an invitation and print its link, good for one account until it expires."""
    lifetime = _duration(expires)
    settings = settings_or_exit(config)
    if not settings.auth.invitations:
        fail("invitations are off: set invitations = true in [auth] and restart the server")
    inviter = created_by or _login_name()
    made = run_on_database(settings, lambda db: _create(db, inviter, lifetime), (ValueError,))
    link = f"{_public_url(settings)}/invite/{made.token}"
    expires_at = made.record.expires_at.isoformat(timespec="seconds")
    if not settings.http.public_url:
        err.print(
            "note: [http] public_url is not set, so the link names the listener's own address; "
            "set it to the address people reach"
        )
    if json_output:
        print_json({"link": link, "expires_at": expires_at, "created_by": made.record.created_by})
        return
    out.print(
        Text.assemble(("✓ ", "green"), f"Invitation made, good for one account until {expires_at}:")
    )
    out.print(Text(link), soft_wrap=True)


def _duration(text: str) -> timedelta:
    matched = _DURATION.fullmatch(text.strip())
    if matched is None or int(matched.group(1)) == 0:
        fail(f"--expires {text!r} is not a duration such as 30m, 12h, 7d or 2w")
    return timedelta(**{_UNITS[matched.group(2)]: int(matched.group(1))})


def _login_name() -> str:
    try:
        return getpass.getuser()
    except OSError:  # neither the environment nor the password database names one
        return "operator"


def _public_url(settings: Settings) -> str:
    """``[http] public_url``, else the listener's own address, as the web pages name it."""
    http = settings.http
    if http.public_url:
        return http.public_url
    host = f"[{http.host}]" if ":" in http.host else http.host
    return f"http://{host}:{http.port}"


async def _create(db: Database, inviter: str, lifetime: timedelta) -> NewInvitation:
    from chinwag.network.invitations import InvitationService
    from chinwag.store.invitations import SqlInvitationRepository

    return await InvitationService(SqlInvitationRepository(db)).create(inviter, lifetime)
