"""Options of ``chinwag`` itself: ``--version``, and ``--config`` before the command,
which every command then reads (its own ``--config`` still wins)."""

from __future__ import annotations

import json

from cli_support import Chinwag

import chinwag as package


def test_version_prints_the_package_version(chinwag: Chinwag):
    result = chinwag.run(["--version"])

    assert result.returncode == 0, result.stderr
    assert result.stdout == f"chinwag {package.__version__}\n"


def test_config_before_the_command_is_every_command_s(chinwag: Chinwag, tmp_path):
    config = str(chinwag.config)

    added = chinwag.run(["--config", config, "user", "add", "alice", "--password", "pw"])
    listed = chinwag.run(["-c", config, "user", "list", "--json"])
    contacts = chinwag.run(["--config", config, "contacts", "list", "alice", "--json"])

    assert added.returncode == 0, added.stderr
    assert "alice@chat.example" in added.stdout
    assert listed.returncode == 0, listed.stderr
    assert [user["jid"] for user in json.loads(listed.stdout)] == ["alice@chat.example"]
    assert contacts.returncode == 0, contacts.stderr
    assert json.loads(contacts.stdout) == []
    assert not (tmp_path / "chinwag-data").exists()  # the defaults were not used


def test_a_command_s_own_config_wins_over_the_global_one(chinwag: Chinwag, tmp_path):
    other = tmp_path / "other.toml"
    other.write_text(f"domain = 'other.example'\ndata_dir = '{tmp_path / 'other'}'\n")
    assert chinwag("user", "add", "alice", "--password", "pw").returncode == 0

    listed = chinwag.run(
        ["--config", str(other), "user", "list", "--json", "--config", str(chinwag.config)]
    )

    assert listed.returncode == 0, listed.stderr
    assert [user["jid"] for user in json.loads(listed.stdout)] == ["alice@chat.example"]
    assert not (tmp_path / "other").exists()


def test_a_bad_global_config_is_a_configuration_error(chinwag: Chinwag, tmp_path):
    result = chinwag.run(["--config", str(tmp_path / "missing.toml"), "user", "list"])

    assert result.returncode == 2
    assert result.stderr.strip().startswith("error: cannot read config file")
