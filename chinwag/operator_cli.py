"""The operator's commands: ``chinwag check``, ``status``, ``reload``, ``drain``,
``sessions`` and ``bans``, for ``chinwag.cli`` to mount.

All but ``check`` ask the running server, over its HTTP listener, with the admin
token it keeps in its data directory (``web/admin_routes.py``), so they run as the
server's user with the server's configuration. They follow the other commands'
conventions: ``--json`` on stdout, and a problem as one line on stderr with exit
status 2 for configuration and 1 for everything else; ``status`` exits with 3 when
no server runs (the LSB's "not running").
"""

from __future__ import annotations

import os
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer
from rich.table import Column, Table
from rich.text import Text

from chinwag.cli_common import (
    CONFIG_EXIT,
    FAILURE_EXIT,
    ConfigOption,
    JsonOption,
    ServerProblem,
    ask_server,
    config_path,
    done,
    fail,
    out,
    print_json,
    print_wide,
    settings_or_exit,
)

if TYPE_CHECKING:
    from chinwag.check import Finding
    from chinwag.config import Settings

NOT_RUNNING_EXIT = 3
DRAIN_POLL_SECONDS = 0.2
DRAIN_GRACE_SECONDS = 15.0
"""How long after the drain's timeout ``chinwag drain`` still waits for the server to stop."""
_STYLES = {"ok": "green", "warning": "yellow", "error": "bold red"}

sessions_cli = typer.Typer(
    help="See who is connected to the running server, and end sessions.", no_args_is_help=True
)
bans_cli = typer.Typer(
    help="Addresses the running server refuses after failed sign-ins.", no_args_is_help=True
)


def _ask(
    settings: Settings, method: str, path: str, params: Mapping[str, str] | None = None
) -> Any:
    try:
        return ask_server(settings, method, path, params=params)
    except ServerProblem as problem:
        fail(str(problem))


# -- chinwag check


def check(
    config: ConfigOption = None,
    json_output: JsonOption = False,
    dns_server: Annotated[
        str | None,
        typer.Option(
            "--dns-server",
            metavar="ADDRESS[:PORT]",
            help="Ask this DNS server for the SRV records, not the system's resolver.",
        ),
    ] = None,
) -> None:
    """Check the settings, certificate, DNS records, database and ports.

    One line per finding: ok, warning or error. Exit status 1 if any is an error, 2 if
    the settings do not load.
    """
    from datetime import UTC, datetime

    import dns.resolver

    from chinwag.check import Finding, resolver, run_checks
    from chinwag.config import CONFIG_ENV_VAR, ConfigError, load_settings

    chosen = config_path(config) or os.environ.get(CONFIG_ENV_VAR) or None
    try:
        settings = load_settings(chosen)
    except ConfigError as problem:
        _print_findings([Finding("error", "config", str(problem))], json_output)
        raise typer.Exit(CONFIG_EXIT) from None
    try:
        dns_resolver: dns.resolver.Resolver | None = resolver(dns_server)
    except ValueError as problem:
        fail(str(problem))
    except dns.resolver.NoResolverConfiguration:
        dns_resolver = None
    findings = run_checks(settings, chosen, dns_resolver, datetime.now(UTC))
    _print_findings(findings, json_output)
    if any(finding.level == "error" for finding in findings):
        raise typer.Exit(FAILURE_EXIT)


def _print_findings(findings: Sequence[Finding], json_output: bool) -> None:
    if json_output:
        print_json(
            [
                {"level": finding.level, "area": finding.area, "message": finding.message}
                for finding in findings
            ]
        )
        return
    for finding in findings:
        out.print(
            Text.assemble(
                (f"{finding.level:<8}", _STYLES[finding.level]),
                f"{finding.area}: {finding.message}",
            ),
            soft_wrap=True,
        )


# -- chinwag status


def status(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Show whether the server runs, since when, its sessions, listeners and database.

    Exit status 0 when it runs, 3 when no server answers, 1 when it runs but cannot
    reach its database.
    """
    from chinwag.web.admin_routes import STATUS_PATH

    settings = settings_or_exit(config)
    try:
        answer = ask_server(settings, "GET", STATUS_PATH)
    except ServerProblem as problem:
        fail(str(problem), FAILURE_EXIT if problem.running else NOT_RUNNING_EXIT)
    if json_output:
        print_json(answer)
    else:
        _print_status(answer)
    if not answer["database"]["reachable"]:
        raise typer.Exit(FAILURE_EXIT)


def _print_status(status: Mapping[str, Any]) -> None:
    by_transport = ", ".join(f"{kind} {n}" for kind, n in status["sessions_by_transport"].items())
    database = status["database"]
    reached = "reachable" if database["reachable"] else f"unreachable: {database['error']}"
    for label, value in (
        ("Running", f"chinwag {status['version']} for {status['domain']}, pid {status['pid']}"),
        ("Up", f"{duration(status['uptime_seconds'])}, since {status['started_at']}"),
        ("Sessions", f"{status['sessions']}" + (f" ({by_transport})" if by_transport else "")),
        ("Streams", str(status["streams"])),
        (
            "Listening",
            ", ".join(
                f"{listener['name']} {listener['host'] or '*'}:{listener['port']}"
                for listener in status["listeners"]
            ),
        ),
        ("Database", f"{database['url']}, {reached}"),
    ):
        out.print(Text.assemble((f"{label:<11}", "bold"), value), soft_wrap=True)


def duration(seconds: float) -> str:
    """``42 s``, ``5 min 3 s``, ``2 h 5 min``, ``3 d 4 h``: the two largest units."""
    total = int(seconds)
    parts = [(total // 86400, "d"), (total // 3600 % 24, "h"), (total // 60 % 60, "min")]
    parts.append((total % 60, "s"))
    while len(parts) > 1 and parts[0][0] == 0:
        parts.pop(0)
    return " ".join(f"{amount} {unit}" for amount, unit in parts[:2])


# -- chinwag reload


def reload(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """Make the running server read its settings file again; connections stay open.

    It applies the TLS certificate and key, the limits and the log level; a file or
    certificate that does not load changes nothing. SIGHUP to its process does the same.
    """
    from chinwag.web.admin_routes import RELOAD_PATH

    answer = _ask(settings_or_exit(config), "POST", RELOAD_PATH)
    if json_output:
        print_json(answer)
        return
    out.print(Text.assemble(("✓ ", "green"), "Reloaded the running server's settings"))
    certificate = answer.get("certificate")
    if certificate is not None:
        names = ", ".join(certificate["names"]) or "no name"
        out.print(
            Text(f"certificate: {certificate['file']} ({names}; until {certificate['not_after']})"),
            soft_wrap=True,
        )
    out.print(Text(f"changed: {', '.join(answer['changed']) or 'nothing'}"), soft_wrap=True)
    if answer["restart_needed"]:
        out.print(
            Text.assemble(
                ("changed, for a restart to apply: ", "yellow"), ", ".join(answer["restart_needed"])
            ),
            soft_wrap=True,
        )


# -- chinwag drain


def drain(
    config: ConfigOption = None,
    to: Annotated[
        str | None,
        typer.Option(
            "--to",
            metavar="HOST:PORT",
            help="Where to send the clients; by default, another live node of the cluster "
            "that advertises its address (advertise, in the cluster section).",
        ),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option(
            min=0,
            max=3600,
            metavar="SECONDS",
            help="How long to wait for the clients to leave before the server stops anyway.",
        ),
    ] = 30.0,
    json_output: JsonOption = False,
) -> None:
    """Send the running server's clients to another node, then stop it.

    The server stops accepting client streams, ends each with <see-other-host/> naming
    the other node, and stops once they have gone; this command returns then. SIGUSR1 to
    the server's process drains it to another live node of its cluster.
    """
    from chinwag.web.admin_routes import DRAIN_PATH

    settings = settings_or_exit(config)
    params = {"timeout": f"{timeout:g}"} | ({"to": to} if to is not None else {})
    answer = _ask(settings, "POST", DRAIN_PATH, params)
    if not json_output:
        out.print(
            Text.assemble(
                ("✓ ", "green"),
                f"Draining: sent {answer['sent']} client streams to {answer['to']}; "
                "waiting for the server to stop",
            ),
            soft_wrap=True,
        )
    stopped = _wait_until_gone(answer["pid"], timeout + DRAIN_GRACE_SECONDS)
    if json_output:
        print_json(answer | {"stopped": stopped})
    elif stopped:
        out.print(Text.assemble(("✓ ", "green"), "The server has stopped"))
    if not stopped:
        fail(
            f"the server (pid {answer['pid']}) still runs {timeout + DRAIN_GRACE_SECONDS:g} s later"
        )


def _wait_until_gone(pid: int, seconds: float) -> bool:
    """Whether the process ``pid`` (the drained server, on this machine: the admin
    endpoints listen here) ends within ``seconds``. Its process, not its HTTP port, which
    the other workers of ``serve --workers`` answer on too."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not _running(pid):
            return True
        time.sleep(DRAIN_POLL_SECONDS)
    return False


def _running(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # it runs as another user: it is there
    try:  # Linux: one that has ended but that its parent has not collected yet is a zombie
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


# -- chinwag sessions


@sessions_cli.command("list")
def sessions_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List the running server's live sessions: user, resource, app and transport."""
    from chinwag.web.admin_routes import SESSIONS_PATH

    sessions = _ask(settings_or_exit(config), "GET", SESSIONS_PATH)
    if not isinstance(sessions, list):
        fail("the server did not answer with a list of sessions")
    if json_output:
        print_json(sessions)
    elif sessions:
        print_wide(_session_table(sessions))
    else:
        out.print("No live sessions.")


def _session_table(sessions: Sequence[dict[str, Any]]) -> Table:
    # Client IDs are shown whole: a cut one cannot be pasted into 'chinwag app show'.
    app_width = max((len(session["app"] or "-") for session in sessions), default=3)
    table = Table(
        "User",
        "Resource",
        Column("App", no_wrap=True, min_width=app_width),
        "Transport",
        "Available",
        "Priority",
        box=None,
        header_style="bold",
    )
    for session in sessions:
        table.add_row(
            Text(f"{session['user']}"),
            Text(f"{session['resource']}"),
            Text(session["app"] or "-", style="" if session["app"] else "dim"),
            Text(f"{session['transport']}"),
            "yes" if session["available"] else "no",
            str(session["priority"]),
        )
    return table


@sessions_cli.command("kick")
def sessions_kick(
    jid: Annotated[
        str,
        typer.Argument(
            metavar="JID",
            help="A full JID (user@domain/resource) ends that session; a bare one, all of "
            "the user's.",
        ),
    ],
    reason: Annotated[
        str | None,
        typer.Option(
            "--reason",
            metavar="TEXT",
            help="The text of the stream error (default: ended by the server's operator).",
        ),
    ] = None,
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """End sessions of the running server.

    Each client gets a policy-violation stream error; it may sign in again.
    """
    from chinwag.web.admin_routes import SESSIONS_PATH

    params = {"jid": jid} if reason is None else {"jid": jid, "reason": reason}
    ended: list[str] = _ask(settings_or_exit(config), "DELETE", SESSIONS_PATH, params)["ended"]
    count = f"{len(ended)} session{'' if len(ended) == 1 else 's'}"
    done(json_output, {"ended": ended}, f"Ended {count}: {', '.join(ended)}")


# -- chinwag bans


@bans_cli.command("list")
def bans_list(config: ConfigOption = None, json_output: JsonOption = False) -> None:
    """List the addresses refused for failed sign-ins, with the time each has left.

    An IPv6 address is counted, and refused, with its /64.
    """
    from chinwag.web.admin_routes import BANS_PATH

    bans = _ask(settings_or_exit(config), "GET", BANS_PATH)
    if json_output:
        print_json(bans)
    elif bans:
        table = Table("Address", "Failures", "Refused for", box=None, header_style="bold")
        for ban in bans:
            table.add_row(
                Text(ban["address"]), str(ban["failures"]), duration(ban["remaining_seconds"])
            )
        out.print(table)
    else:
        out.print("No address is refused.")


@bans_cli.command("lift")
def bans_lift(
    address: Annotated[
        str,
        typer.Argument(
            metavar="ADDRESS",
            help="An IP address, or an IPv6 /64 network as 'bans list' shows it.",
        ),
    ],
    config: ConfigOption = None,
    json_output: JsonOption = False,
) -> None:
    """Let a refused address sign in again: its failed sign-ins are forgotten."""
    from chinwag.web.admin_routes import BANS_PATH

    lifted = _ask(settings_or_exit(config), "DELETE", BANS_PATH, {"address": address})
    done(json_output, lifted, f"Lifted the ban of {lifted['address']}")
