"""The installed ``chinwag`` console command, run as an operator would."""

import json
import os
import subprocess

import pytest
from cli_support import CHINWAG, error_line

from chinwag.config import CONFIG_ENV_VAR


async def test_user_lifecycle(chinwag):
    added = chinwag("user", "add", "Alice", "--password", "s3cret", "--name", "Alice Liddell")
    assert added.returncode == 0, added.stderr
    assert "alice@chat.example" in added.stdout
    assert (chinwag.data_dir / "chinwag.db").is_file()

    again = chinwag("user", "add", "alice", "--password", "other")
    assert again.returncode == 1
    assert error_line(again) == "error: user 'alice' already exists"

    listed = chinwag("user", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    [user] = json.loads(listed.stdout)
    assert user["username"] == "alice"
    assert user["jid"] == "alice@chat.example"
    assert user["full_name"] == "Alice Liddell"
    assert user["created_at"].endswith("+00:00")

    changed = chinwag("user", "passwd", "alice", "--password", "n3w", "--json")
    assert changed.returncode == 0, changed.stderr
    assert json.loads(changed.stdout) == {"username": "alice", "jid": "alice@chat.example"}
    async with chinwag.accounts() as accounts:
        assert await accounts.verify_password("alice", "n3w")
        assert not await accounts.verify_password("alice", "s3cret")

    deleted = chinwag("user", "delete", "alice")
    assert deleted.returncode == 0, deleted.stderr
    gone = chinwag("user", "delete", "alice")
    assert gone.returncode == 1
    assert error_line(gone) == "error: no such user 'alice'"


async def test_passwd_prompts_twice_when_no_password_is_given(chinwag):
    async with chinwag.accounts() as accounts:
        await accounts.add_user("bob", "old")

    changed = chinwag("user", "passwd", "bob", stdin="typed\ntyped\n")

    assert changed.returncode == 0, changed.stderr
    async with chinwag.accounts() as accounts:
        assert await accounts.verify_password("bob", "typed")


def test_invalid_username_is_refused_with_the_reason(chinwag):
    result = chinwag("user", "add", "a b", "--password", "pw")

    assert result.returncode == 1
    assert error_line(result) == "error: 'a b' is not a valid username: it contains a space"


@pytest.mark.parametrize(
    ("config_text", "expected"),
    [
        ("[c2s]\nprot = 5222\n", "unknown config key 'c2s.prot'"),
        ("[c2s]\nport = 'x'\n", "bad config value for 'c2s.port'"),
    ],
)
def test_bad_config_exits_2_with_one_line(chinwag, config_text, expected):
    chinwag.config.write_text(config_text)

    result = chinwag("user", "list")

    assert result.returncode == 2
    assert expected in error_line(result)
    assert result.stdout == ""


def test_config_comes_from_the_environment_variable(chinwag):
    missing = chinwag.directory / "absent.toml"
    env = {**os.environ, CONFIG_ENV_VAR: str(missing)}

    result = subprocess.run(
        [str(CHINWAG), "user", "list"], capture_output=True, text=True, env=env, timeout=60
    )

    assert result.returncode == 2
    assert (
        error_line(result) == f"error: cannot read config file {missing}: No such file or directory"
    )


async def test_import_with_a_bad_line_imports_nothing(chinwag):
    csv_file = chinwag.directory / "users.csv"
    csv_file.write_text("carol,pw1,Carol\nbad name,pw2\ndave\nerin,pw4\n")

    result = chinwag("user", "import", str(csv_file))

    assert result.returncode == 1
    assert "line 3: expected name,password[,full name]" in result.stderr
    assert "error: nothing imported: 1 bad line" in result.stderr

    csv_file.write_text("carol,pw1,Carol\nbad name,pw2\nerin,pw4\nCarol,pw5\n")

    result = chinwag("user", "import", str(csv_file))

    assert result.returncode == 1
    assert "line 2: 'bad name' is not a valid username: it contains a space" in result.stderr
    assert "line 4: user 'carol' appears more than once" in result.stderr
    assert "error: nothing imported: 2 bad lines" in result.stderr
    async with chinwag.accounts() as accounts:
        assert await accounts.list_users() == []


@pytest.mark.parametrize("header", ["name,password,full name", "Name, Password"])
async def test_import_takes_a_first_line_of_column_names_for_a_header(chinwag, header):
    result = chinwag("user", "import", "-", stdin=f"{header}\ncarol,pw1,Carol\n")

    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "✓ Imported 1 user"
    async with chinwag.accounts() as accounts:
        assert [user.username for user in await accounts.list_users()] == ["carol"]


@pytest.mark.parametrize("command", ["add", "passwd"])
def test_help_shows_the_prompted_password_as_optional(chinwag, command):
    result = chinwag.run(["user", command, "--help"])

    assert result.returncode == 0, result.stderr
    arguments, _, options = result.stdout.partition("Options")
    assert "[required]" in arguments  # NAME is
    assert "--password" in options and "[required]" not in options
    assert not any(line.lstrip("│ ").startswith("*") for line in options.splitlines())


async def test_import_from_stdin_creates_every_user(chinwag):
    rows = "".join(f"user{i},pw{i},User {i}\n" for i in range(200))

    result = chinwag("user", "import", "-", "--json", stdin=rows)

    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout) == {"imported": 200}
    async with chinwag.accounts() as accounts:
        users = {user.username: user.full_name for user in await accounts.list_users()}
        assert len(users) == 200
        assert users["user42"] == "User 42"
        assert await accounts.verify_password("user199", "pw199")


def test_an_unreachable_database_is_one_line_without_the_password(chinwag):
    url = "postgresql+asyncpg://chinwag:s3cret@127.0.0.1:1/chat"
    chinwag.config.write_text(f"[database]\nurl = '{url}'\n")

    result = chinwag("user", "list")

    assert result.returncode == 1
    line = error_line(result)
    assert line.startswith("error: cannot use the database postgresql+asyncpg://chinwag:***@")
    assert "s3cret" not in line
