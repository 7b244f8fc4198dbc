"""``--cluster``: which setups and scenario it runs, where each user of a cluster signs
in, and the table that sets the clusters' msg-sat against issue 18's targets."""

from __future__ import annotations

import io
from pathlib import Path

from rich.console import Console

from bench.clusters import logged_errors
from bench.loadgen import HIGHER, LOWER, ProcessTree, Result, Target
from bench.run import (
    CLUSTER_SETUPS,
    MachineSpeed,
    ServerReport,
    cluster_figures,
    parse_args,
    print_report,
)


def msg_sat(
    name: str, delivered: float, cpu_per_message: float, redis: float = 0.0
) -> ServerReport:
    result = Result("msg-sat")
    result.add("delivered", delivered, "msg/s", HIGHER)
    result.add("server CPU per message", cpu_per_message, "µs", LOWER)
    if redis:
        result.add("Redis CPU per message", redis, "µs")
    return ServerReport(name, results={"msg-sat": result})


def test_cluster_runs_msg_sat_on_the_four_setups() -> None:
    args = parse_args(["--cluster"])

    assert args.servers == list(CLUSTER_SETUPS)
    assert CLUSTER_SETUPS == ("chinwag", "chinwag-cluster", "chinwag-workers", "ejabberd-cluster")
    assert args.scenarios == ["msg-sat"]


def test_cluster_keeps_the_scenarios_and_servers_asked_for() -> None:
    args = parse_args(["--cluster", "--scenarios", "login", "--servers", "ejabberd-cluster"])

    assert args.scenarios == ["login"] and args.servers == ["ejabberd-cluster"]


def test_without_cluster_the_defaults_are_unchanged() -> None:
    args = parse_args([])

    assert args.servers == ["chinwag", "prosody", "ejabberd"]
    assert "login" in args.scenarios and "msg-sat" in args.scenarios


def test_each_user_of_a_two_node_target_has_its_partner_on_the_other_node() -> None:
    target = Target("c", "127.0.0.1", 5000, "localhost", ProcessTree(1), ports=(5000, 5001))

    for user in range(10):
        assert target.port_for(user) != target.port_for(user ^ 1)
    assert {target.port_for(user) for user in range(10)} == {5000, 5001}


def test_a_one_node_target_has_every_user_on_its_port() -> None:
    target = Target("c", "127.0.0.1", 5000, "localhost", ProcessTree(1))

    assert {target.port_for(user) for user in range(10)} == {5000}


def test_the_targets_are_met_or_missed_by_how_much() -> None:
    figures = cluster_figures(
        [
            msg_sat("chinwag", 100_000, 10.0),
            msg_sat("chinwag-cluster", 45_000, 30.0, redis=5.0),
            msg_sat("chinwag-workers", 120_000, 12.0),
            msg_sat("ejabberd-cluster", 25_000, 80.0),
        ]
    )
    by_start = {figure.what.split(":")[0]: figure for figure in figures}

    crossing = by_start["msg-sat, every message crossing"]
    assert round(crossing.value, 2) == 1.8 and crossing.met and crossing.status == "met"
    cpu = by_start["CPU per message"]
    assert cpu.value == 3.0 and cpu.met is False and cpu.status == "missed by 20 %"
    with_redis = next(figure for figure in figures if "Redis" in figure.what)
    assert with_redis.value == 3.5 and with_redis.met is None
    assert [round(f.value, 2) for f in figures if f.what.startswith("msg-sat: ")] == [0.45, 1.2]


def test_without_the_cluster_setups_there_is_no_cluster_table() -> None:
    assert cluster_figures([msg_sat("chinwag", 100_000, 10.0)]) == []

    out = Console(file=io.StringIO(), width=200)
    print_report([msg_sat("chinwag", 100_000, 10.0)], ["msg-sat"], MachineSpeed(2, 2), out)
    assert "targets" not in out.file.getvalue()  # type: ignore[attr-defined]


def test_the_cluster_table_is_printed_under_the_results() -> None:
    out = Console(file=io.StringIO(), width=200)
    reports = [msg_sat("chinwag", 100_000, 10.0), msg_sat("chinwag-cluster", 40_000, 20.0)]
    print_report(reports, ["msg-sat"], MachineSpeed(2, 2), out)
    text = out.file.getvalue()  # type: ignore[attr-defined]

    assert "clusters: msg-sat against the targets" in text
    assert "2.00x" in text and "≤ 2.5" in text and "met" in text


def test_a_nodes_errors_since_it_started_become_one_warning(tmp_path: Path) -> None:
    log = tmp_path / "a.log"
    log.write_text("2026-12-07 02:39:59,000 ERROR chinwag.cluster: before this start\n")
    start = log.stat().st_size
    with log.open("a") as file:
        file.write("2026-12-07 02:40:00,123 INFO chinwag: serving\n")
        for second in (1, 2):
            file.write(f"2026-12-07 02:40:0{second},000 ERROR chinwag.cluster: writing failed\n")

    assert logged_errors(log, start) == [
        "a logged 2 errors, such as: ERROR chinwag.cluster: writing failed"
    ]
    assert logged_errors(log, log.stat().st_size) == []
