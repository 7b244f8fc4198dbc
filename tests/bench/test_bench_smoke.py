"""Smoke-runs every benchmark scenario against chinwag: tiny counts, a few seconds each.

``python -m bench.run --smoke --sm both`` runs as a subprocess (its own event loop,
open-file limit and server process), and writes its results as JSON: each scenario
once as it is, and once with every client using stream management (XEP-0198), from
one provisioning and one pair of machine-speed calibrations. Each scenario must have
delivered every message without a single error; timings are never asserted. With
stream management, the server must also have acknowledged every stanza each client sent.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any, NamedTuple

import pytest

pytestmark = pytest.mark.slow  # the module's smoke run takes tens of seconds
ROOT = Path(__file__).resolve().parents[2]
SCENARIOS = ("login", "login-tls", "idle", "msg-sat", "msg-rate", "offline")
SMOKE_TIMEOUT_S = 300


class SmokeRun(NamedTuple):
    results: dict[str, Any]
    """The JSON the command wrote."""
    printed: str


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory: pytest.TempPathFactory) -> SmokeRun:
    """What one smoke run of every scenario against chinwag, without and with stream
    management, wrote and printed."""
    out = tmp_path_factory.mktemp("bench") / "smoke.json"
    command = [sys.executable, "-m", "bench.run", "--smoke", "--servers", "chinwag", "--sm", "both"]
    done = subprocess.run(
        [*command, "--json", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMOKE_TIMEOUT_S,
        check=False,
    )
    if not out.exists():
        pytest.fail(f"the smoke run wrote no results:\n{done.stdout}\n{done.stderr}")
    return SmokeRun(json.loads(out.read_text()), done.stdout)


@pytest.fixture(scope="module")
def smoke(smoke_run: SmokeRun) -> dict[str, Any]:
    """The chinwag results of the smoke run, by scenario."""
    report = smoke_run.results["servers"]["chinwag"]
    assert not report["skipped"], report["skipped"]
    return report["results"]


@pytest.fixture(scope="module")
def sm_smoke(smoke_run: SmokeRun) -> dict[str, Any]:
    """The chinwag results with stream management, by scenario."""
    assert smoke_run.results["sm"] == "both"
    report = smoke_run.results["servers"]["chinwag+sm"]
    assert not report["skipped"] and report["sm"], report
    assert "chinwag+sm" in smoke_run.printed, smoke_run.printed
    return report["results"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_runs_without_errors(smoke: dict[str, Any], scenario: str) -> None:
    result = smoke[scenario]
    assert result["errors"] == 0, result["error_samples"]


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_scenario_delivers_every_message(smoke: dict[str, Any], scenario: str) -> None:
    result = smoke[scenario]
    assert result["undelivered"] == 0, result["counts"]
    if "sent" in result["counts"]:
        assert result["counts"]["delivered"] == result["counts"]["sent"] > 0


@pytest.mark.parametrize("scenario", ["login", "msg-sat"])
def test_cpu_figures_include_time_stolen_by_a_hypervisor(
    smoke: dict[str, Any], scenario: str
) -> None:
    figures = {figure["name"] for figure in smoke[scenario]["figures"]}
    assert {"server CPU", "generator CPU", "other CPU", "stolen CPU"} <= figures


@pytest.mark.parametrize("scenario", ["login", "login-tls", "idle"])
def test_every_session_signs_in(smoke: dict[str, Any], scenario: str) -> None:
    assert smoke[scenario]["counts"]["sessions"] > 0


def test_the_machine_speed_is_taken_before_and_after_the_servers(smoke_run: SmokeRun) -> None:
    speed = smoke_run.results["machine_speed_us"]
    assert speed["before"] > 0 and speed["after"] > 0, speed
    assert "Machine speed:" in smoke_run.printed, smoke_run.printed


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_with_stream_management_every_scenario_delivers_without_errors(
    sm_smoke: dict[str, Any], scenario: str
) -> None:
    result = sm_smoke[scenario]
    assert result["errors"] == 0, result["error_samples"]
    assert result["undelivered"] == 0, result["counts"]
    if "sent" in result["counts"]:
        assert result["counts"]["delivered"] == result["counts"]["sent"] > 0


@pytest.mark.parametrize("scenario", SCENARIOS)
def test_with_stream_management_the_server_acknowledged_every_stanza(
    sm_smoke: dict[str, Any], scenario: str
) -> None:
    counts = sm_smoke[scenario]["counts"]
    assert counts["sm_acked"] == counts["sm_sent"] > 0, counts
    assert counts["sm_received"] > 0, counts
