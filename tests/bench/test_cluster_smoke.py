"""Smoke-runs msg-sat on every cluster setup of ``python -m bench.run --cluster``: tiny
counts, a few seconds each.

chinwag's clusters need the Redis at 127.0.0.1:6379 and the PostgreSQL at
127.0.0.1:5432 (the run makes a database and a key prefix of its own and removes them);
the ejabberd cluster needs Debian's ejabberd, installed here with apt-get when it is
missing and the tests run as root. A setup that cannot run is skipped with the reason.
Each must have delivered every message without an error, left no process running
and cleaned up after itself (its database and Redis keys; a failure is a warning); timings are never asserted.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from bench.clusters import backends_problem
from bench.servers import Backends, Ejabberd
from tests.debian import apt_install

pytestmark = pytest.mark.slow  # four setups provisioned and run: a minute or two
ROOT = Path(__file__).resolve().parents[2]
SMOKE_TIMEOUT_S = 600
SETUPS = ("chinwag-cluster", "chinwag-workers", "ejabberd-cluster")


@pytest.fixture(scope="module")
def smoke(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """What one smoke run of ``--cluster`` wrote."""
    if (problem := backends_problem(Backends())) is not None:
        pytest.skip(problem)
    if not Ejabberd.available():
        apt_install("ejabberd")  # if it fails, the run skips the ejabberd cluster and says why
    out = tmp_path_factory.mktemp("bench") / "cluster.json"
    done = subprocess.run(
        [sys.executable, "-m", "bench.run", "--cluster", "--smoke", "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    if not out.exists():
        pytest.fail(f"the smoke run wrote no results:\n{done.stdout}\n{done.stderr}")
    return dict(json.loads(out.read_text()))


def _report(smoke: dict[str, Any], setup: str) -> dict[str, Any]:
    report: dict[str, Any] = smoke["servers"][setup]
    if report["skipped"] == "not installed":
        pytest.skip(f"{setup}: {report['skipped']}")
    assert not report["skipped"], report["skipped"]
    return report


@pytest.mark.parametrize("setup", SETUPS)
def test_each_setup_delivers_every_message(smoke: dict[str, Any], setup: str) -> None:
    result = _report(smoke, setup)["results"]["msg-sat"]

    assert result["errors"] == 0, result["error_samples"]
    assert result["undelivered"] == 0, result["counts"]
    assert result["counts"]["delivered"] == result["counts"]["sent"] > 0, result["counts"]


@pytest.mark.parametrize("setup", SETUPS)
def test_each_setup_leaves_nothing_running(smoke: dict[str, Any], setup: str) -> None:
    warnings = _report(smoke, setup)["warnings"]

    assert not [w for w in warnings if "left processes" in w or "clean up" in w], warnings


@pytest.mark.parametrize("setup", ["chinwag-cluster", "chinwag-workers"])
def test_chinwag_clusters_report_the_cpu_per_message_with_redis_beside_it(
    smoke: dict[str, Any], setup: str
) -> None:
    figures = {f["name"] for f in _report(smoke, setup)["results"]["msg-sat"]["figures"]}

    assert {"server CPU per message", "Redis CPU per message", "Redis CPU"} <= figures


def test_the_cross_node_cost_is_set_against_its_target(smoke: dict[str, Any]) -> None:
    _report(smoke, "chinwag-cluster")
    targets = {figure["target"] for figure in smoke["cluster"]}

    assert "≤ 2.5" in targets, smoke["cluster"]
