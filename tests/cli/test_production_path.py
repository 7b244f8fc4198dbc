"""Commands run as an operator of a real installation runs them: from any directory,
against the database the server made, never making an empty one elsewhere."""

from __future__ import annotations

import json

import pytest
from cli_support import Chinwag, error_line


@pytest.mark.parametrize(
    "command",
    [
        ["user", "list"],
        ["user", "add", "alice", "--password", "wonderland"],
        ["contacts", "list", "alice"],
        ["app", "list"],
        ["export", "-"],
        ["db", "copy", "--to", "sqlite+aiosqlite:///elsewhere.db"],
    ],
    ids=lambda command: " ".join(command[:2]),
)
def test_a_command_finds_no_database_instead_of_making_one(tmp_path, command):
    chinwag = Chinwag(tmp_path, database=False)

    result = chinwag(*command)

    assert result.returncode == 1, result
    assert error_line(result) == (
        f"error: no database at {chinwag.data_dir / 'chinwag.db'}: chinwag serve creates it at "
        "its first start (or chinwag db migrate); is this the server's configuration?"
    )
    assert not chinwag.data_dir.exists()
    assert not (tmp_path / "elsewhere.db").exists()


def test_db_migrate_makes_the_database_the_other_commands_use(tmp_path):
    chinwag = Chinwag(tmp_path, database=False)

    made = chinwag("db", "migrate", "--json")
    again = chinwag("db", "migrate")
    added = chinwag("user", "add", "alice", "--password", "wonderland")

    assert made.returncode == 0, made.stderr
    report = json.loads(made.stdout)
    assert report["database"] == chinwag.database_url
    assert report["revision"].isdigit()
    assert (chinwag.data_dir / "chinwag.db").is_file()
    assert again.returncode == 0, again.stderr
    assert f"is at revision {report['revision']}" in again.stdout
    assert added.returncode == 0, added.stderr


def test_relative_paths_start_from_the_settings_file_wherever_commands_run(tmp_path):
    chinwag = Chinwag(tmp_path, database=False)
    installation, home, other = tmp_path / "srv", tmp_path / "home", tmp_path / "other"
    for directory in (installation, home, other):
        directory.mkdir()
    config = installation / "chinwag.toml"
    config.write_text('domain = "chat.example"\ndata_dir = "data"\n')

    made = chinwag.run(["db", "migrate", "--config", "../srv/chinwag.toml"], cwd=home)
    added = chinwag.run(
        ["--config", str(config), "user", "add", "alice", "--password", "pw"], cwd=other
    )
    listed = chinwag.run(["user", "list", "--json", "--config", str(config)], cwd=home)

    assert made.returncode == 0, made.stderr
    assert added.returncode == 0, added.stderr
    assert listed.returncode == 0, listed.stderr
    assert [user["jid"] for user in json.loads(listed.stdout)] == ["alice@chat.example"]
    assert (installation / "data" / "chinwag.db").is_file()
    assert not (home / "data").exists() and not (other / "data").exists()
