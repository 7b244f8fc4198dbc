"""The OAuth commands of the ``chinwag`` command, run as an operator would (in this
process: ``tests/command_line.py``)."""

import json
import subprocess
from pathlib import Path

from chinwag.config import CONFIG_ENV_VAR
from tests.command_line import run_command


def run(config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    # COLUMNS: as narrow as a terminal may be
    env = {CONFIG_ENV_VAR: None, "COLUMNS": "80"}
    return run_command([*args, "--config", str(config)], cwd=config.parent, env=env)


def test_register_an_app_and_issue_a_token(tmp_path):
    config = tmp_path / "chinwag.toml"
    config.write_text(f"data_dir = '{tmp_path / 'data'}'\n")
    assert run(config, "db", "migrate").returncode == 0  # as the first chinwag serve would
    assert run(config, "user", "add", "alice", "--password", "wonderland").returncode == 0

    registered = run(
        config, "app", "register", "Bot", "--redirect-uri", "https://a.example/cb", "--json"
    )
    assert registered.returncode == 0, registered.stderr
    client_id = json.loads(registered.stdout)["client_id"]

    issued = run(
        config,
        "token",
        "issue",
        "--app",
        client_id,
        "--user",
        "alice",
        "--scope",
        "wl.messenger",
        "--json",
    )
    assert issued.returncode == 0, issued.stderr
    token = json.loads(issued.stdout)["access_token"]

    made = run(config, "app-password", "create", "--user", "alice", "--app", client_id, "--json")
    assert made.returncode == 0, made.stderr
    assert run(config, "token", "revoke", token).returncode == 0

    suspended = run(config, "app", "suspend", "nope")
    assert suspended.returncode == 1
    assert suspended.stderr.strip() == "error: no such app 'nope'"


def test_app_list_shows_whole_client_ids(tmp_path):
    config = tmp_path / "chinwag.toml"
    config.write_text(f"data_dir = '{tmp_path / 'data'}'\n")
    assert run(config, "db", "migrate").returncode == 0
    client_ids = []
    for name in ("A chat app with a name long enough to need wrapping", "Bot"):
        registered = run(
            config,
            "app",
            "register",
            name,
            "--redirect-uri",
            "https://a-rather-long-host-name.example/oauth/callback/of/the/app",
            "--pkce-optional",
            "--json",
        )
        assert registered.returncode == 0, registered.stderr
        client_ids.append(json.loads(registered.stdout)["client_id"])

    listed = run(config, "app", "list")

    assert listed.returncode == 0, listed.stderr
    assert all(client_id in listed.stdout for client_id in client_ids)
    assert "…" not in listed.stdout  # nothing cut
