"""The benchmark command: ``python -m bench.run``.

Runs the scenarios against chinwag, Prosody and ejabberd in turn, one server at a
time: each server is provisioned once (the same users and contacts everywhere),
then started fresh for every scenario and stopped right after it. Prints one table
with every figure per server and chinwag's ratio to each peer; ``--json FILE``
also writes everything measured. Servers that are not installed are skipped.

    python -m bench.run [--scenarios login,msg-sat] [--servers chinwag,prosody,ejabberd]
                        [--repeat N] [--sm [on|both]] [--archive [on|both]] [--smoke]
                        [--json FILE]
    python -m bench.run --cluster [--repeat N] [--redis URL] [--postgres URL] [--smoke]

``--repeat N`` runs each scenario N times, each on a freshly started server, and
reports each figure's median, noting its range: single runs on a shared machine move
by 10 % or more.

Under the table it prints the machine's speed (``bench/calibration.py``), taken before
the first server starts and after the last one stops, and warns when it drifted.

``--sm`` has every client enable XEP-0198 stream management (the servers offer it
then); ``--sm both`` runs each scenario without it and with it in turn, each on a fresh
server, reports both (a server's column with stream management is named
``<server>+sm``) and prints what it changed; with ``--repeat``, also the change of each
pair of runs (with it against the run without it of the same repetition) and their
median. Every other repetition runs the two in the reverse order (without, with, with,
without, ...): a machine that slows down during a run then weighs on each side in turn.

``--archive`` has chinwag archive every message (XEP-0313, ``[archive] enabled``; off
otherwise, as the other servers are configured); ``--archive both`` runs each scenario
on chinwag without and with it in turn, interleaved as ``--sm both``, reports both
(``chinwag+archive``) and prints what it changed.

``--cluster`` runs msg-sat (or ``--scenarios``) on chinwag as one node, as two nodes
whose every message crosses between them (``chinwag-cluster``), with ``serve --workers
2`` (``chinwag-workers``), and on a two-node ejabberd cluster (``ejabberd-cluster``),
each also nameable in ``--servers`` (see ``bench/clusters.py``). chinwag's clusters use
the Redis and the PostgreSQL server of ``--redis`` and ``--postgres`` (127.0.0.1 by
default), with a key prefix and a database of the run's own, removed afterwards; a
second table compares the clusters with the issue's targets: the cross-node msg-sat
over the ejabberd cluster's, and the CPU a cross-node message costs over a local one.

``--smoke`` runs tiny counts for a few seconds per scenario, against chinwag only
unless ``--servers`` says otherwise. The exit status is 1 when any message went
undelivered or any error happened, so a smoke run can gate CI without looking at
timings.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import NoReturn

from rich.console import Console
from rich.table import Table

from bench import calibration
from bench.clusters import CLUSTER_SERVERS
from bench.loadgen import (
    FULL,
    HIGHER,
    LOWER,
    SCENARIOS,
    SMOKE,
    Params,
    Result,
    event_loop_kind,
    raise_fd_limit,
    run_scenario,
)
from bench.servers import (
    SERVERS,
    Backends,
    BenchServer,
    Chinwag,
    ServerError,
    TlsFiles,
    make_certificate,
)

ALL_SERVERS = ("chinwag", "prosody", "ejabberd")
BASELINE = "chinwag"
CROSSING, WORKERS, PEER_CLUSTER = "chinwag-cluster", "chinwag-workers", "ejabberd-cluster"
CLUSTER_SETUPS = (BASELINE, CROSSING, WORKERS, PEER_CLUSTER)
"""What ``--cluster`` runs."""
KINDS: dict[str, type[BenchServer]] = SERVERS | CLUSTER_SERVERS
CROSSING_TARGET = 1.5
"""chinwag's cross-node msg-sat over the ejabberd cluster's, at least."""
CPU_TARGET = 2.5
"""The CPU of a cross-node message over a local one's, at most."""
BUSY_MACHINE_PERCENT = 10.0
REPORT_WIDTH = 160
SM_MODES = {"off": (False,), "on": (True,), "both": (False, True)}
"""``--sm``: whether clients enable stream management, per run of a scenario."""
ARCHIVE_MODES = SM_MODES
"""``--archive``: whether chinwag archives messages, per run of a scenario."""


@dataclass
class ServerReport:
    """Everything one server did in this run."""

    name: str
    version: str = ""
    skipped: str = ""
    warnings: list[str] = field(default_factory=list)
    results: dict[str, Result] = field(default_factory=dict)
    sm: bool = False
    """Whether every client enabled stream management."""
    archive: bool = False
    """Whether the server archived messages (chinwag only)."""
    runs: dict[str, list[Result]] = field(default_factory=dict)
    """Each scenario's runs, in the order they ran (``results`` holds their medians)."""

    @property
    def label(self) -> str:
        """The server's name, with ``+sm`` when its clients used stream management and
        ``+archive`` when it archived messages."""
        return self.name + ("+sm" if self.sm else "") + ("+archive" if self.archive else "")

    def to_json(self) -> dict[str, object]:
        data = asdict(self)
        data["results"] = {name: result.to_json() for name, result in self.results.items()}
        data["runs"] = {name: [run.to_json() for run in runs] for name, runs in self.runs.items()}
        return data


@dataclass
class MachineSpeed:
    """Microseconds per message of the calibration (``bench/calibration.py``), taken
    before and after the servers ran; lower is faster."""

    before: float
    after: float


# --- Command line ------------------------------------------------------------------


def _names(text: str, allowed: Sequence[str], what: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in allowed]
    if unknown or not names:
        raise argparse.ArgumentTypeError(
            f"unknown {what} {', '.join(unknown) or '(none)'}; choose from {', '.join(allowed)}"
        )
    return names


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive whole number")
    return int(text)


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Benchmark chinwag side by side with Prosody and ejabberd on loopback.",
    )
    parser.add_argument(
        "--scenarios",
        type=lambda text: _names(text, SCENARIOS, "scenario"),
        default=None,
        help=f"comma-separated, from {','.join(SCENARIOS)} (default: all; msg-sat with --cluster)",
    )
    parser.add_argument(
        "--servers",
        type=lambda text: _names(text, list(KINDS), "server"),
        default=None,
        help="comma-separated (default: chinwag, prosody and ejabberd; chinwag alone with "
        f"--smoke; {','.join(CLUSTER_SETUPS)} with --cluster)",
    )
    parser.add_argument(
        "--cluster",
        action="store_true",
        help="chinwag as one node, as two nodes with every message crossing, with "
        "--workers 2, and a two-node ejabberd cluster, side by side",
    )
    parser.add_argument(
        "--redis",
        default=Backends.redis_url,
        metavar="URL",
        help=f"the Redis of chinwag's clusters (default: {Backends.redis_url})",
    )
    parser.add_argument(
        "--postgres",
        default=Backends.postgres_url,
        metavar="URL",
        help="a database of the PostgreSQL server where chinwag's clusters get a database "
        f"of their own (default: {Backends.postgres_url})",
    )
    parser.add_argument(
        "--repeat",
        type=_positive,
        default=1,
        metavar="N",
        help="run each scenario N times and report the median of each figure (default: 1)",
    )
    parser.add_argument(
        "--sm",
        choices=("on", "both"),
        nargs="?",
        const="on",
        default="off",
        help="every client enables stream management (XEP-0198); 'both': without it and "
        "with it in turn",
    )
    parser.add_argument(
        "--archive",
        choices=("on", "both"),
        nargs="?",
        const="on",
        default="off",
        help="chinwag archives every message (XEP-0313); 'both': without and with it in turn",
    )
    parser.add_argument("--smoke", action="store_true", help="tiny counts, a few seconds each")
    parser.add_argument("--json", metavar="FILE", type=Path, help="also write the results here")
    args = parser.parse_args(argv)
    if args.scenarios is None:
        args.scenarios = ["msg-sat"] if args.cluster else list(SCENARIOS)
    if args.servers is None:
        if args.cluster:
            args.servers = list(CLUSTER_SETUPS)
        else:
            args.servers = [BASELINE] if args.smoke else list(ALL_SERVERS)
    return args


# --- Running -----------------------------------------------------------------------


def run_server(
    name: str,
    scenarios: Sequence[str],
    params: Params,
    workdir: Path,
    tls: TlsFiles,
    log: Console,
    repeat: int = 1,
    sm: Sequence[bool] = (False,),
    archive: Sequence[bool] = (False,),
    backends: Backends | None = None,
) -> list[ServerReport]:
    """Provision ``name`` once, then run each scenario ``repeat`` times, each on a freshly
    started server, once with each of the ``sm`` settings (and, for chinwag, ``archive``)
    in turn: one report for each."""
    kind = KINDS[name]
    backends = backends or Backends()
    archiving = archive if issubclass(kind, Chinwag) else (False,)
    reports = [ServerReport(name, sm=s, archive=a) for s in sm for a in archiving]
    if (reason := kind.unavailable(backends)) is not None:
        for report in reports:
            report.skipped = reason
        log.print(f"[yellow]{name}: {reason}, skipped[/]")
        return reports
    version = kind.version()
    server = kind(workdir, tls, backends)
    try:
        users = params.users_needed(scenarios)
        log.print(f"{name} {version}: provisioning {users} users and their contacts")
        began = time.monotonic()
        server.provision(users)
        log.print(f"{name}: provisioned in {time.monotonic() - began:.1f} s")
        for scenario in scenarios:
            runs: list[list[Result]] = [[] for _ in reports]
            for index in turns(len(reports), repeat):
                variant = replace(params, sm=reports[index].sm, archive=reports[index].archive)
                runs[index].append(run_one(server, scenario, variant, log))
            for report, report_runs in zip(reports, runs, strict=True):
                report.results[scenario] = combined(report_runs)
                report.runs[scenario] = report_runs
    except ServerError as error:
        for report in reports:
            report.skipped = f"failed: {error}"
        log.print(f"[red]{name}: {error}[/]")
    finally:
        server.stop()
        warnings = list(server.warnings)
        if server.left_running():
            warnings.append(f"{name} left processes running after it was stopped")
        try:
            server.close()
        except Exception as error:  # reported, not raised: the figures still stand
            warnings.append(f"{name} could not clean up after itself: {error}")
        for report in reports:
            report.version = version
            report.warnings.extend(warnings)
    return reports


def turns(variants: int, repeat: int) -> list[int]:
    """The order in which a scenario's variants run, by index: each repetition runs every
    variant once, every other repetition in reverse order, so that a machine that slows
    down over minutes does not always weigh on the same variant of a pair."""
    forwards = list(range(variants))
    return [
        index
        for repetition in range(repeat)
        for index in (forwards if repetition % 2 == 0 else forwards[::-1])
    ]


def run_one(server: BenchServer, scenario: str, params: Params, log: Console) -> Result:
    """Start the server, run one scenario against it, stop it."""
    try:
        target = server.start(offline=scenario == "offline", sm=params.sm, archive=params.archive)
    except ServerError as error:
        return Result(scenario, errors=1, error_samples=[f"could not start: {error}"])
    try:
        result = run_scenario(scenario, target, params)
    finally:
        server.stop()
    figures = ", ".join(f"{f.name} {_number(f.value)} {f.unit}" for f in result.figures[:3])
    style = "green" if result.clean else "red"
    label = server.name + ("+sm" if params.sm else "") + ("+archive" if params.archive else "")
    log.print(
        f"  {label} {scenario}: {figures}; [{style}]undelivered {result.undelivered}, "
        f"errors {result.errors}[/]"
    )
    for sample in result.error_samples[:3]:
        log.print(f"    [red]{sample}[/]")
    for note in result.notes:
        log.print(f"    note: {note}")
    return result


def combined(runs: Sequence[Result]) -> Result:
    """Several runs of one scenario as one result: the median of each figure, with its
    range noted; every undelivered message and error of every run counted."""
    if len(runs) == 1:
        return runs[0]
    first = runs[0]
    result = Result(first.scenario, counts=dict(first.counts))
    named = {figure.name: figure for run in runs for figure in run.figures}  # failed runs have none
    for figure in named.values():
        values = [f.value for run in runs for f in run.figures if f.name == figure.name]
        result.add(figure.name, statistics.median(values), figure.unit, figure.better)
        if figure.better:
            low, high = _number(min(values)), _number(max(values))
            result.notes.append(f"{figure.name}: median of {len(values)} runs, {low} to {high}")
    for run in runs:
        result.undelivered += run.undelivered
        result.errors += run.errors
        result.error_samples.extend(run.error_samples[: 10 - len(result.error_samples)])
        result.notes.extend(note for note in run.notes if note not in result.notes)
    return result


def run_all(
    servers: Sequence[str],
    scenarios: Sequence[str],
    params: Params,
    log: Console,
    repeat: int = 1,
    sm: Sequence[bool] = (False,),
    archive: Sequence[bool] = (False,),
    backends: Backends | None = None,
) -> list[ServerReport]:
    with tempfile.TemporaryDirectory(prefix="chinwag-bench-", ignore_cleanup_errors=True) as tmp:
        workdir = Path(tmp)
        tls = make_certificate(workdir / "tls")
        return [
            report
            for name in servers
            for report in run_server(
                name, scenarios, params, workdir, tls, log, repeat, sm, archive, backends
            )
        ]


# --- Reporting ---------------------------------------------------------------------


def _number(value: float) -> str:
    if value >= 100:
        return f"{value:,.0f}"
    if value >= 10:
        return f"{value:.1f}"
    return f"{value:.2f}"


def _figure_rows(scenario: str, reports: Sequence[ServerReport]) -> list[tuple[str, str, str]]:
    """(name, unit, better) of every figure the servers reported for ``scenario``."""
    rows: dict[str, tuple[str, str, str]] = {}
    for report in reports:
        result = report.results.get(scenario)
        for figure in result.figures if result else ():
            rows.setdefault(figure.name, (figure.name, figure.unit, figure.better))
    return list(rows.values())


def _value(report: ServerReport, scenario: str, figure: str) -> float | None:
    result = report.results.get(scenario)
    return _figure(result, figure) if result else None


def _figure(result: Result, name: str) -> float | None:
    return next((figure.value for figure in result.figures if figure.name == name), None)


def _ratio(mine: float | None, theirs: float | None) -> str:
    if mine is None or theirs is None or theirs == 0:
        return ""
    return f"{mine / theirs:.2f}x"


def results_table(reports: Sequence[ServerReport], scenarios: Sequence[str]) -> Table:
    ran = [report for report in reports if report.results]
    base = next((report for report in ran if report.name == BASELINE), None)
    peers = [report for report in ran if report is not base] if base else []
    table = Table(title="chinwag benchmark", show_lines=False)
    table.add_column("scenario")
    table.add_column("figure")
    for report in ran:
        table.add_column(report.label, justify="right")
    for peer in peers:
        table.add_column(f"vs {peer.label}", justify="right")
    arrows = {HIGHER: " ↑", LOWER: " ↓"}
    for scenario in scenarios:
        first = True
        for name, unit, better in _figure_rows(scenario, ran):
            values = [_value(report, scenario, name) for report in ran]
            cells = ["-" if value is None else _number(value) for value in values]
            mine = _value(base, scenario, name) if base and better else None
            ratios = [_ratio(mine, _value(peer, scenario, name)) for peer in peers]
            label = f"{name} ({unit}){arrows.get(better, '')}"
            table.add_row(scenario if first else "", label, *cells, *ratios)
            first = False
        for label, attr in (("undelivered", "undelivered"), ("errors", "errors")):
            cells = [_count(report, scenario, attr) for report in ran]
            table.add_row(scenario if first else "", label, *cells, *([""] * len(peers)))
            first = False
        table.add_section()
    return table


def sm_pairs(
    reports: Sequence[ServerReport], switch: str = "sm"
) -> list[tuple[ServerReport, ServerReport]]:
    """(without, with) the ``switch`` (``sm`` or ``archive``), for each run that differs
    only by it."""

    def others(report: ServerReport) -> tuple[str, bool, bool]:
        return report.name, report.sm or switch == "sm", report.archive or switch == "archive"

    ran = [report for report in reports if report.results]
    without = {others(report): report for report in ran if not getattr(report, switch)}
    return [
        (without[others(report)], report)
        for report in ran
        if getattr(report, switch) and others(report) in without
    ]


SWITCH_TITLES = {"sm": "stream management", "archive": "archiving"}
SIZE_UNITS = ("KiB", "MiB")
"""Figures whose change is told in their unit; the others' in %."""


def sm_table(
    reports: Sequence[ServerReport], scenarios: Sequence[str], switch: str = "sm"
) -> Table | None:
    """Each figure that has a better direction without and with the ``switch`` (stream
    management or archiving), and the change: in % for rates, in the figure's unit for
    sizes. With repeated runs, also the change run by run, each run with the ``switch``
    against the one without it just before, and their median: the machine's speed moves
    between runs, and a pair shares more of it than the medians of each side do."""
    pairs = sm_pairs(reports, switch)
    if not pairs:
        return None
    repeated = any(len(runs) > 1 for _, managed in pairs for runs in managed.runs.values())
    table = Table(title=f"{SWITCH_TITLES[switch]}: what it changed", show_lines=False)
    columns = ["server", "scenario", "figure", "without", "with", "change"]
    for column in columns + (["pair by pair (median)"] if repeated else []):
        table.add_column(column, justify="right" if column in ("without", "with") else "left")
    for plain, managed in pairs:
        for scenario in scenarios:
            for name, unit, better in _figure_rows(scenario, [plain, managed]):
                before, after = _value(plain, scenario, name), _value(managed, scenario, name)
                if not better or before is None or after is None:
                    continue
                row = [
                    plain.label,
                    scenario,
                    f"{name} ({unit})",
                    _number(before),
                    _number(after),
                    _change(before, after, unit),
                ]
                if repeated:
                    row.append(_pairwise(plain, managed, scenario, name, unit))
                table.add_row(*row)
    return table


def _pairwise(
    plain: ServerReport, switched: ServerReport, scenario: str, figure: str, unit: str
) -> str:
    """The change of ``figure`` in each pair of runs (the n-th without and the n-th with,
    which ran one after the other), and their median."""
    size = unit in SIZE_UNITS
    changes = []
    runs = zip(plain.runs.get(scenario, []), switched.runs.get(scenario, []), strict=False)
    for before, after in runs:  # a run that failed has no figures, and no change
        was, now = _figure(before, figure), _figure(after, figure)
        if was is None or now is None:
            continue
        if size:
            changes.append(now - was)
        elif was:
            changes.append(100 * (now - was) / was)
    if not changes:
        return ""
    places, suffix = (2, f" {unit}") if size else (1, " %")
    listed = ", ".join(f"{change:+.{places}f}" for change in changes)
    return f"{listed} ({statistics.median(changes):+.{places}f}{suffix})"


def _change(before: float, after: float, unit: str) -> str:
    if unit in SIZE_UNITS:
        return f"{after - before:+.2f} {unit}"
    if before == 0:
        return ""
    return f"{100 * (after - before) / before:+.1f} %"


@dataclass(frozen=True)
class ClusterFigure:
    """One comparison between the cluster setups of a run, with its target if it has one."""

    what: str
    value: float
    target: str = ""
    met: bool | None = None

    @property
    def status(self) -> str:
        if self.met is None:
            return ""
        if self.met:
            return "met"
        bound = float(self.target.split()[-1])
        return f"missed by {100 * abs(self.value - bound) / bound:.0f} %"


def cluster_figures(reports: Sequence[ServerReport]) -> list[ClusterFigure]:
    """msg-sat's comparisons between the cluster setups that ran, for each variant (with
    or without stream management, archiving)."""
    figures: list[ClusterFigure] = []
    variants = {(report.sm, report.archive) for report in reports if report.results}
    for sm, archive in sorted(variants):
        ran = {
            report.name: report
            for report in reports
            if report.results and (report.sm, report.archive) == (sm, archive)
        }
        suffix = ("+sm" if sm else "") + ("+archive" if archive else "")
        figures += _variant_figures(ran, suffix)
    return figures


def _variant_figures(ran: dict[str, ServerReport], suffix: str) -> list[ClusterFigure]:
    def value(name: str, figure: str) -> float | None:
        return _value(ran[name], "msg-sat", figure) if name in ran else None

    figures: list[ClusterFigure] = []
    rate = {name: value(name, "delivered") for name in (*CLUSTER_SETUPS, "ejabberd")}
    local = value(BASELINE, "server CPU per message")
    crossing = value(CROSSING, "server CPU per message")
    redis = value(CROSSING, "Redis CPU per message")
    if (over := _over(rate[CROSSING], rate[PEER_CLUSTER])) is not None:
        what = f"msg-sat, every message crossing: {CROSSING}{suffix} / {PEER_CLUSTER}{suffix}"
        figures.append(ClusterFigure(what, over, f"≥ {CROSSING_TARGET}", over >= CROSSING_TARGET))
    if (cost := _over(crossing, local)) is not None:
        what = f"CPU per message: {CROSSING}{suffix} (crossing) / {BASELINE}{suffix} (local)"
        figures.append(ClusterFigure(what, cost, f"≤ {CPU_TARGET}", cost <= CPU_TARGET))
        if (
            crossing is not None
            and redis is not None
            and (with_redis := _over(crossing + redis, local))
        ):
            what = f"the same with Redis's CPU added to {CROSSING}{suffix}'s"
            figures.append(ClusterFigure(what, with_redis))
    for name, peer in ((CROSSING, BASELINE), (WORKERS, BASELINE), (PEER_CLUSTER, "ejabberd")):
        if (over := _over(rate[name], rate[peer])) is not None:
            figures.append(ClusterFigure(f"msg-sat: {name}{suffix} / {peer}{suffix}", over))
    return figures


def _over(mine: float | None, theirs: float | None) -> float | None:
    return mine / theirs if mine is not None and theirs else None


def cluster_table(reports: Sequence[ServerReport]) -> Table | None:
    figures = cluster_figures(reports)
    if not figures:
        return None
    table = Table(title="clusters: msg-sat against the targets", show_lines=False)
    for column in ("comparison", "ratio", "target", "status"):
        table.add_column(column, justify="right" if column == "ratio" else "left")
    for figure in figures:
        style = {True: "green", False: "red"}.get(figure.met, "default")
        table.add_row(
            figure.what, f"{figure.value:.2f}x", figure.target, f"[{style}]{figure.status}[/]"
        )
    return table


def _count(report: ServerReport, scenario: str, attr: str) -> str:
    result = report.results.get(scenario)
    if result is None:
        return "-"
    value = getattr(result, attr)
    return f"[red]{value}[/]" if value else "0"


def print_report(
    reports: Sequence[ServerReport],
    scenarios: Sequence[str],
    speed: MachineSpeed,
    out: Console,
    *,
    smoke: bool = False,
) -> None:
    out.print(results_table(reports, scenarios))
    if (clusters := cluster_table(reports)) is not None:
        out.print(clusters)
    for switch in SWITCH_TITLES:
        if (changed := sm_table(reports, scenarios, switch)) is not None:
            out.print(changed)
    out.print(
        "↑ higher is better, ↓ lower is better; 'vs peer' is chinwag's figure over the peer's. "
        f"Generator: one process on {event_loop_kind()}, {os.cpu_count()} CPUs on this machine."
    )
    out.print(
        f"Machine speed: {speed.before:.2f} µs per calibration message before the servers ran "
        f"and {speed.after:.2f} after (fastest round; lower is faster; see docs/performance.md)."
    )
    if calibration.drifted(speed.before, speed.after):
        out.print(
            "[bold yellow]WARNING: the machine's speed changed during the run; compare "
            "figures taken close together[/]"
        )
    for report in reports:
        label = report.label
        if report.skipped:
            out.print(f"[yellow]{label}: {report.skipped}[/]")
        for warning in report.warnings:
            out.print(f"[bold yellow]WARNING ({label}): {warning}[/]")
        for scenario, result in report.results.items():
            for note in result.notes:
                out.print(f"{label} {scenario}: {note}")
            busy = _value(report, scenario, "other CPU") or 0.0
            if busy > BUSY_MACHINE_PERCENT:
                out.print(
                    f"[bold yellow]WARNING ({label} {scenario}): other processes used "
                    f"{busy:.0f} % of a core while it was measured; its figures are skewed[/]"
                )
            stolen = _value(report, scenario, "stolen CPU") or 0.0
            if stolen > BUSY_MACHINE_PERCENT:
                out.print(
                    f"[bold yellow]WARNING ({label} {scenario}): the hypervisor gave "
                    f"{stolen:.0f} % of a core to other guests while it was measured (steal "
                    "time); its figures are skewed[/]"
                )
    if smoke:
        out.print("[yellow]Smoke counts: these figures say nothing about performance.[/]")


def report_json(
    reports: Sequence[ServerReport],
    params: Params,
    speed: MachineSpeed,
    smoke: bool,
    repeat: int = 1,
    sm: str = "off",
    archive: str = "off",
) -> dict[str, object]:
    return {
        "generated": datetime.now(UTC).isoformat(timespec="seconds"),
        "smoke": smoke,
        "repeat": repeat,
        "sm": sm,
        "archive": archive,
        "params": asdict(params),
        "generator": {
            "event_loop": event_loop_kind(),
            "python": platform.python_version(),
            "cpus": os.cpu_count(),
        },
        "machine_speed_us": asdict(speed),
        "servers": {report.label: report.to_json() for report in reports},
        "cluster": [
            asdict(figure) | {"status": figure.status} for figure in cluster_figures(reports)
        ],
    }


def all_clean(reports: Sequence[ServerReport]) -> bool:
    failed = any(report.skipped.startswith("failed") for report in reports)
    return not failed and all(r.clean for report in reports for r in report.results.values())


# --- Entry point -------------------------------------------------------------------


def _terminate(_signum: int, _frame: object) -> NoReturn:
    raise SystemExit(143)  # unwinds through every finally: the servers get stopped


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    params = SMOKE if args.smoke else FULL
    signal.signal(signal.SIGTERM, _terminate)
    wide = None if sys.stdout.isatty() else REPORT_WIDTH  # files and pipes get whole rows
    out, log = Console(width=wide), Console(stderr=True)
    wanted = params.users_needed(args.scenarios) + 1024
    if (limit := raise_fd_limit(wanted)) < wanted:
        log.print(f"[yellow]open-file limit {limit} is below the {wanted} this run wants[/]")
    before = calibration.measure()
    reports = run_all(
        args.servers,
        args.scenarios,
        params,
        log,
        args.repeat,
        SM_MODES[args.sm],
        ARCHIVE_MODES[args.archive],
        Backends(args.redis, args.postgres),
    )
    speed = MachineSpeed(before, calibration.measure())
    if args.json:
        document = report_json(
            reports, params, speed, args.smoke, args.repeat, args.sm, args.archive
        )
        args.json.write_text(json.dumps(document, indent=2) + "\n")
    print_report(reports, args.scenarios, speed, out, smoke=args.smoke)
    return 0 if all_clean(reports) else 1


if __name__ == "__main__":
    sys.exit(main())
