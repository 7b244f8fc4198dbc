"""``chinwag app``, ``chinwag token`` and ``chinwag app-password``, through Typer's test runner."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest
from typer.testing import CliRunner

from chinwag.config import load_settings
from chinwag.network.accounts import AccountService
from chinwag.oauth.service import OAuthService
from chinwag.oauth.tokens import new_client_id, new_secret
from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.db import Database
from chinwag.store.oauth import SqlOAuthRepository
from oauth.support import commands

T = TypeVar("T")


class Chinwag:
    def __init__(self, directory: Path) -> None:
        self.config = directory / "chinwag.toml"
        self.config.write_text(f"data_dir = '{directory / 'data'}'\n")
        self.runner = CliRunner()

    def __call__(self, *args: str):
        return self.runner.invoke(commands, [*args, "--config", str(self.config)])

    def json(self, *args: str):
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    def services(self, action: Callable[[OAuthService, AccountService], Awaitable[T]]) -> T:
        async def run() -> T:
            settings = load_settings(self.config)
            db = Database.open(settings.database_url)
            try:
                await db.migrate()
                accounts = AccountService(SqlAccountRepository(db))
                oauth = OAuthService(SqlOAuthRepository(db), accounts, settings.oauth)
                return await action(oauth, accounts)
            finally:
                await db.close()

        return asyncio.run(run())


@pytest.fixture
def chinwag(tmp_path):
    chinwag = Chinwag(tmp_path)
    chinwag.services(lambda _oauth, accounts: accounts.add_user("alice", "wonderland"))
    return chinwag


def one_error_line(result) -> str:
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


def test_app_lifecycle(chinwag):
    registered = chinwag.json(
        "app",
        "register",
        "Pocket Chat",
        "--redirect-uri",
        "https://a.example/cb",
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
    )
    client_id = registered["client_id"]
    assert registered["client_secret"]
    assert registered["redirect_uris"] == ["https://a.example/cb", "http://127.0.0.1:9/cb"]
    assert registered["public"] is False and registered["status"] == "active"

    [listed] = chinwag.json("app", "list")
    assert listed["client_id"] == client_id and "client_secret" not in listed
    assert chinwag.json("app", "show", client_id)["name"] == "Pocket Chat"
    assert chinwag.json("app", "suspend", client_id) == {
        "client_id": client_id,
        "status": "suspended",
    }
    assert chinwag.json("app", "show", client_id)["status"] == "suspended"
    assert chinwag.json("app", "resume", client_id)["status"] == "active"
    assert chinwag.json("app", "delete", client_id) == {"client_id": client_id, "deleted": True}
    assert chinwag.json("app", "list") == []


def test_people_read_the_plain_output(chinwag):
    registered = chinwag(
        "app",
        "register",
        "Web Chat",
        "--redirect-uri",
        "https://a.example/cb",
        "--public",
        "--allow-implicit",
    )

    assert registered.exit_code == 0, registered.output
    assert "✓ Registered Web Chat" in registered.stdout
    assert "client_id:" in registered.stdout and "client_secret" not in registered.stdout
    listed = chinwag("app", "list")
    assert "Web Chat" in listed.stdout and "public, implicit" in listed.stdout
    assert "No apps yet." not in listed.stdout


def test_registration_problems_are_one_line(chinwag):
    implicit = chinwag(
        "app", "register", "X", "--redirect-uri", "https://a.example/cb", "--allow-implicit"
    )
    assert implicit.exit_code == 1
    assert one_error_line(implicit).startswith("error: the implicit grant is for public apps")

    insecure = chinwag("app", "register", "X", "--redirect-uri", "http://a.example/cb")
    assert insecure.exit_code == 1
    assert "must use https" in one_error_line(insecure)

    unknown = chinwag("app", "suspend", "nope")
    assert unknown.exit_code == 1
    assert one_error_line(unknown) == "error: no such app 'nope'"


def test_an_owner_or_user_who_does_not_exist_is_refused(chinwag):
    registered = chinwag(
        "app", "register", "X", "--redirect-uri", "https://a.example/cb", "--owner", "ghost"
    )
    listed = chinwag("app-password", "list", "--user", "Ghost")

    assert registered.exit_code == listed.exit_code == 1
    assert one_error_line(registered) == one_error_line(listed) == "error: no such user 'ghost'"
    assert chinwag.json("app", "list") == []
    owned = chinwag.json(
        "app", "register", "X", "--redirect-uri", "https://a.example/cb", "--owner", "Alice"
    )
    assert owned["owner"] == "alice"
    assert chinwag.json("app-password", "list", "--user", "alice") == []


def test_app_edit(chinwag):
    client_id = chinwag.json("app", "register", "Bridge", "--redirect-uri", "https://a.example/cb")[
        "client_id"
    ]

    edited = chinwag.json(
        "app",
        "edit",
        client_id,
        "--name",
        "Chat Bridge",
        "--redirect-uri",
        "https://b.example/cb",
        "--redirect-uri",
        "http://127.0.0.1:9/cb",
        "--pkce-optional",
    )

    assert edited["client_id"] == client_id and edited["name"] == "Chat Bridge"
    assert edited["redirect_uris"] == ["https://b.example/cb", "http://127.0.0.1:9/cb"]
    assert edited["require_pkce"] is False
    strict = chinwag.json("app", "edit", client_id, "--require-pkce")
    assert strict["require_pkce"] is True and strict["name"] == "Chat Bridge"
    assert strict["redirect_uris"] == edited["redirect_uris"]
    plain = chinwag("app", "edit", client_id, "--name", "Bridge")
    assert plain.exit_code == 0 and "✓ Updated Bridge" in plain.stdout


def test_app_edit_problems_are_one_line(chinwag):
    confidential = chinwag.json("app", "register", "B", "--redirect-uri", "https://a.example/cb")
    public = chinwag.json(
        "app", "register", "P", "--redirect-uri", "https://a.example/cb", "--public"
    )

    for args, message in [
        ([confidential["client_id"]], "error: nothing to change: give --name, --redirect-uri"),
        ([confidential["client_id"], "--name", " "], "error: the app's name is empty"),
        ([confidential["client_id"], "--redirect-uri", "http://a.example/cb"], "must use https"),
        ([public["client_id"], "--pkce-optional"], "error: a public app always uses PKCE"),
        (["nope", "--name", "X"], "error: no such app 'nope'"),
    ]:
        result = chinwag("app", "edit", *args)
        assert result.exit_code == 1, args
        assert message in one_error_line(result)
    unchanged = chinwag.json("app", "show", confidential["client_id"])
    assert unchanged == {
        key: value for key, value in confidential.items() if key != "client_secret"
    }


def test_token_issue_and_revoke(chinwag):
    client_id = chinwag.json("app", "register", "Bot", "--redirect-uri", "https://a.example/cb")[
        "client_id"
    ]

    token = chinwag.json(
        "token",
        "issue",
        "--app",
        client_id,
        "--user",
        "Alice",
        "--scope",
        "wl.messenger wl.offline_access",
        "--ttl",
        "600",
    )

    assert token["token_type"] == "Bearer" and token["expires_in"] == 600
    assert token["refresh_token"]
    grant = chinwag.services(lambda oauth, _: oauth.check_token(token["access_token"]))
    assert (grant.username, grant.client_id) == ("alice", client_id)

    assert chinwag.json("token", "revoke", token["access_token"]) == {"revoked": True}
    assert chinwag.services(lambda oauth, _: oauth.check_token(token["access_token"])) is None
    unknown = chinwag("token", "revoke", "nonsense")
    assert unknown.exit_code == 1 and one_error_line(unknown) == "error: no such token"


def test_token_issue_problems_are_one_line(chinwag):
    client_id = chinwag.json("app", "register", "Bot", "--redirect-uri", "https://a.example/cb")[
        "client_id"
    ]

    scope = chinwag(
        "token", "issue", "--app", client_id, "--user", "alice", "--scope", "wl.everything"
    )
    user = chinwag("token", "issue", "--app", client_id, "--user", "bob", "--scope", "wl.messenger")

    assert scope.exit_code == user.exit_code == 1
    assert one_error_line(scope).startswith("error: unknown scope 'wl.everything'")
    assert one_error_line(user) == "error: no such user 'bob'"


def test_app_passwords(chinwag):
    client_id = chinwag.json("app", "register", "Gajim", "--redirect-uri", "https://a.example/cb")[
        "client_id"
    ]

    made = chinwag.json(
        "app-password", "create", "--user", "alice", "--app", client_id, "--label", "desktop"
    )

    grant = chinwag.services(lambda oauth, _: oauth.check_app_password("alice", made["password"]))
    assert grant.client_id == client_id and grant.app_password_id == made["id"]
    [listed] = chinwag.json("app-password", "list", "--user", "alice")
    assert (listed["id"], listed["label"], listed["client_id"]) == (
        made["id"],
        "desktop",
        client_id,
    )
    assert "password" not in listed
    revoked = chinwag.json("app-password", "revoke", str(made["id"]), "--user", "alice")
    assert revoked == {"id": made["id"], "revoked": True}
    again = chinwag("app-password", "revoke", str(made["id"]), "--user", "alice")
    assert again.exit_code == 1
    assert one_error_line(again) == f"error: no app password {made['id']} for alice"


def test_a_bad_config_exits_2(chinwag):
    chinwag.config.write_text("[oauth]\naccess_token_ttl = 5\n")

    result = chinwag("app", "list")

    assert result.exit_code == 2
    assert one_error_line(result) == "error: unknown config key 'oauth.access_token_ttl'"


def test_client_ids_never_look_like_options():
    assert not any(new_client_id().startswith("-") for _ in range(2000))


def test_tokens_never_look_like_options():
    """``chinwag token revoke TOKEN`` must take any token the server issued."""
    assert not any(new_secret().startswith("-") for _ in range(2000))
