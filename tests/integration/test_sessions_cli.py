"""``chinwag sessions list``: the live sessions of a running server, from another process.

The command reads the admin token the server wrote into its data directory and
asks ``GET /admin/sessions`` on the server's HTTP listener.
"""

from __future__ import annotations

import json
import stat

import httpx
from oauth.support import CALLBACK

from .signin_support import cli_config, run_chinwag, token_client, web_base
from .support import HOST, TIMEOUT, Connect, NewClient, ServerHandle, free_port, sign_in
from .test_serve import write_config


async def test_sessions_list_shows_user_resource_app_and_transport(
    server: ServerHandle, connect: Connect, new_client: NewClient, tmp_path
) -> None:
    assert server.app is not None
    registered = await server.app.oauth.register_app("Pocket Chat", [CALLBACK], public=True)
    client_id = registered.app.client_id
    token = await server.app.oauth.issue_token(client_id, "alice", "wl.messenger")
    laptop = await connect(server, "alice", "laptop")
    laptop.send_presence(ppriority=5)
    await laptop.plugin["xep_0199"].send_ping(server.domain, timeout=TIMEOUT)
    phone = token_client(new_client, server, token.access_token, "X-MESSENGER-OAUTH2")
    await sign_in(phone, server.host, server.port)
    await connect(server, "bob", "desk", direct_tls=True)
    config = cli_config(tmp_path, server)
    node = server.app.xmpp.local_router.node

    listed = await run_chinwag(config, "sessions", "list", "--json")

    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == [
        {
            "jid": "alice@localhost/laptop",
            "user": "alice",
            "resource": "laptop",
            "app": None,
            "transport": "starttls",
            "available": True,
            "priority": 5,
            "node": node,
        },
        {
            "jid": "alice@localhost/phone",
            "user": "alice",
            "resource": "phone",
            "app": client_id,
            "transport": "starttls",
            "available": False,
            "priority": 0,
            "node": node,
        },
        {
            "jid": "bob@localhost/desk",
            "user": "bob",
            "resource": "desk",
            "app": None,
            "transport": "tls",
            "available": False,
            "priority": 0,
            "node": node,
        },
    ]

    table = await run_chinwag(config, "sessions", "list")
    assert table.returncode == 0, table.stderr
    lines = table.stdout.splitlines()
    assert lines[0].split() == [
        "User",
        "Resource",
        "App",
        "Transport",
        "Available",
        "Priority",
        "Node",
    ]
    assert lines[1].split() == ["alice", "laptop", "-", "starttls", "yes", "5", node]
    assert lines[2].split() == ["alice", "phone", client_id, "starttls", "no", "0", node]
    assert lines[3].split() == ["bob", "desk", "-", "tls", "no", "0", node]


async def test_no_sessions(server: ServerHandle, tmp_path) -> None:
    config = cli_config(tmp_path, server)

    listed = await run_chinwag(config, "sessions", "list", "--json")
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []

    table = await run_chinwag(config, "sessions", "list")
    assert table.stdout.strip() == "No live sessions."


async def test_the_endpoint_needs_the_admin_token(server: ServerHandle) -> None:
    assert server.app is not None
    token_file = server.app.settings.data_path / "admin-token"
    assert stat.S_IMODE(token_file.stat().st_mode) == 0o600
    token = token_file.read_text().strip()
    assert len(token) >= 32

    async with httpx.AsyncClient(base_url=web_base(server), timeout=TIMEOUT) as web:
        anonymous = await web.get("/admin/sessions")
        wrong = await web.get("/admin/sessions", headers={"Authorization": "Bearer nope"})
        basic = await web.get("/admin/sessions", auth=("admin", token))
        right = await web.get("/admin/sessions", headers={"Authorization": f"Bearer {token}"})

    for refused in (anonymous, wrong, basic):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"] == "unauthorized"
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    assert right.status_code == 200
    assert right.headers["cache-control"] == "no-store"
    assert right.json() == []


async def test_a_server_that_is_not_running_is_one_line_and_exit_1(tmp_path) -> None:
    data = tmp_path / "data"
    config = write_config(
        tmp_path / "chinwag.toml", {"data_dir": str(data), "http": {"host": HOST, "port": 1}}
    )

    no_token = await run_chinwag(config, "sessions", "list")
    assert no_token.returncode == 1
    assert no_token.stderr.strip().splitlines() == [
        f"error: no admin token at {data / 'admin-token'}: is chinwag serve running with this "
        "configuration?"
    ]

    data.mkdir()
    (data / "admin-token").write_text("a-token-of-a-server-that-is-gone-0123456789\n")
    port = free_port()
    write_config(config, {"data_dir": str(data), "http": {"host": HOST, "port": port}})
    unreachable = await run_chinwag(config, "sessions", "list", "--json")
    assert unreachable.returncode == 1
    assert unreachable.stdout == ""
    [line] = unreachable.stderr.strip().splitlines()
    assert line.startswith(f"error: cannot reach the server at http://{HOST}:{port}/admin/sessions")
    assert line.endswith("(is chinwag serve running?)")


async def test_another_servers_token_is_refused(server: ServerHandle, tmp_path) -> None:
    assert server.app is not None
    data = tmp_path / "elsewhere"
    data.mkdir()
    (data / "admin-token").write_text("the-token-of-some-other-server-0123456789\n")
    config = write_config(
        tmp_path / "chinwag.toml",
        {"data_dir": str(data), "http": {"host": HOST, "port": server.app.http.port}},
    )

    refused = await run_chinwag(config, "sessions", "list")

    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert "refused the admin token" in line
