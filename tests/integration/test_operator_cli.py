"""The operator's commands on a running server, from another process: ``chinwag status``,
``sessions kick``, ``bans list|lift``, ``check`` (which sees the ports served) and the
admin endpoints they call, which take the admin token only."""

from __future__ import annotations

import asyncio
import json
import os
from datetime import datetime

import httpx
import pytest

import chinwag

from .signin_support import (
    chats,
    cli_config,
    run_chinwag,
    session_end,
    still_served,
    web_base,
)
from .support import HOST, TIMEOUT, Connect, NewClient, ServerHandle, StartServer, free_port
from .test_auth_failures import guess, limited, refused_at_sign_in
from .test_serve import write_config

KICKED = "ended by the server's operator"


async def test_status_tells_version_uptime_sessions_listeners_and_database(
    server: ServerHandle, connect: Connect, tmp_path
) -> None:
    assert server.app is not None
    await connect(server, "alice", "laptop")
    await connect(server, "bob", "desk", direct_tls=True)
    config = cli_config(tmp_path, server)

    shown = await run_chinwag(config, "status", "--json")

    assert shown.returncode == 0, shown.stderr
    status = json.loads(shown.stdout)
    assert datetime.fromisoformat(status.pop("started_at")) <= datetime.now().astimezone()
    assert 0 <= status.pop("uptime_seconds") < 60
    data = server.app.settings.data_path
    assert status == {
        "version": chinwag.__version__,
        "domain": "localhost",
        "pid": os.getpid(),
        "sessions": 2,
        "sessions_by_transport": {"starttls": 1, "tls": 1},
        "streams": 2,
        "listeners": [
            {"name": "c2s", "host": HOST, "port": server.port},
            {"name": "direct_tls", "host": HOST, "port": server.direct_tls_port},
            {"name": "http", "host": HOST, "port": server.app.http.port},
        ],
        "database": {"url": f"sqlite+aiosqlite:///{data}/chinwag.db", "reachable": True},
    }

    table = await run_chinwag(config, "status")
    assert table.returncode == 0, table.stderr
    lines = [line.split(None, 1) for line in table.stdout.splitlines()]
    assert lines[0] == [
        "Running",
        f"chinwag {chinwag.__version__} for localhost, pid {os.getpid()}",
    ]
    assert lines[2] == ["Sessions", "2 (starttls 1, tls 1)"]
    assert lines[4] == [
        "Listening",
        f"c2s {HOST}:{server.port}, direct_tls {HOST}:{server.direct_tls_port}, "
        f"http {HOST}:{server.app.http.port}",
    ]
    assert lines[5] == ["Database", f"sqlite+aiosqlite:///{data}/chinwag.db, reachable"]


async def test_status_of_no_running_server_exits_3(tmp_path) -> None:
    data = tmp_path / "data"
    port = free_port()
    config = write_config(
        tmp_path / "chinwag.toml", {"data_dir": str(data), "http": {"host": HOST, "port": port}}
    )

    no_token = await run_chinwag(config, "status")
    data.mkdir()
    (data / "admin-token").write_text("a-token-of-a-server-that-is-gone-0123456789\n")
    nothing_listens = await run_chinwag(config, "status")

    assert no_token.returncode == nothing_listens.returncode == 3
    assert no_token.stderr.startswith(f"error: no admin token at {data / 'admin-token'}")
    assert nothing_listens.stderr.startswith(
        f"error: cannot reach the server at http://{HOST}:{port}/admin/status"
    )


async def test_kick_a_full_jid_ends_that_session_with_policy_violation(
    server: ServerHandle, connect: Connect, tmp_path
) -> None:
    laptop = await connect(server, "alice", "laptop")
    phone = await connect(server, "alice", "phone")
    bob = await connect(server, "bob", "desk")
    phone_ended = session_end(phone)
    config = cli_config(tmp_path, server)

    kicked = await run_chinwag(config, "sessions", "kick", "alice@localhost/phone", "--json")

    assert kicked.returncode == 0, kicked.stderr
    assert json.loads(kicked.stdout) == {"ended": ["alice@localhost/phone"]}
    end = await asyncio.wait_for(phone_ended, TIMEOUT)
    assert (end.condition, end.text) == ("policy-violation", KICKED)
    await still_served(laptop, server)
    await chats(laptop, bob)
    listed = await run_chinwag(config, "sessions", "list", "--json")
    assert [session["jid"] for session in json.loads(listed.stdout)] == [
        "alice@localhost/laptop",
        "bob@localhost/desk",
    ]


async def test_kick_a_bare_jid_ends_every_session_of_the_user(
    server: ServerHandle, connect: Connect, tmp_path
) -> None:
    clients = [await connect(server, "alice", resource) for resource in ("laptop", "phone")]
    bob = await connect(server, "bob", "desk")
    ended = [session_end(client) for client in clients]
    config = cli_config(tmp_path, server)

    kicked = await run_chinwag(
        config, "sessions", "kick", "Alice@LOCALHOST", "--reason", "down for maintenance"
    )

    assert kicked.returncode == 0, kicked.stderr
    assert kicked.stdout.strip() == (
        "✓ Ended 2 sessions: alice@localhost/laptop, alice@localhost/phone"
    )
    for end in await asyncio.gather(*(asyncio.wait_for(e, TIMEOUT) for e in ended)):
        assert (end.condition, end.text) == ("policy-violation", "down for maintenance")
    await still_served(bob, server)


@pytest.mark.parametrize(
    ("jid", "message"),
    [
        ("carol@localhost", "carol@localhost has no session"),
        ("alice@localhost/nowhere", "alice@localhost/nowhere has no session"),
        (
            "alice@elsewhere.example",
            "alice@elsewhere.example is not the address of a user of localhost",
        ),
        ("localhost", "localhost is not the address of a user of localhost"),
        ("alice@", "alice@ is not a JID: empty domainpart"),
    ],
)
async def test_kick_what_is_not_a_session_exits_1(
    server: ServerHandle, connect: Connect, tmp_path, jid: str, message: str
) -> None:
    alice = await connect(server, "alice", "laptop")
    config = cli_config(tmp_path, server)

    refused = await run_chinwag(config, "sessions", "kick", jid)

    assert refused.returncode == 1
    assert refused.stderr.strip() == f"error: {message}"
    await still_served(alice, server)


async def test_bans_list_shows_refused_addresses_and_lift_lets_one_in(
    start_server: StartServer, new_client: NewClient, connect: Connect, tmp_path
) -> None:
    server = await start_server(**limited(failures=2, ban_seconds=600.0))
    config = cli_config(tmp_path, server)
    none = await run_chinwag(config, "bans", "list")
    assert (none.returncode, none.stdout.strip()) == (0, "No address is refused.")
    await guess(new_client, server, 2)
    await refused_at_sign_in(new_client, server)

    listed = await run_chinwag(config, "bans", "list", "--json")
    table = await run_chinwag(config, "bans", "list")
    lifted = await run_chinwag(config, "bans", "lift", "127.0.0.1", "--json")

    assert listed.returncode == 0, listed.stderr
    [ban] = json.loads(listed.stdout)
    assert ban.pop("remaining_seconds") == pytest.approx(600, abs=30)
    assert ban == {"address": "127.0.0.1", "failures": 2}
    header, row = table.stdout.splitlines()
    assert header.split() == ["Address", "Failures", "Refused", "for"]
    assert row.split()[:3] == ["127.0.0.1", "2", "9"] or row.split()[:3] == ["127.0.0.1", "2", "10"]
    assert lifted.returncode == 0, lifted.stderr
    assert json.loads(lifted.stdout)["address"] == "127.0.0.1"
    await connect(server, "alice", "back")
    again = await run_chinwag(config, "bans", "lift", "127.0.0.1")
    assert (again.returncode, again.stderr.strip()) == (1, "error: 127.0.0.1 is not refused")


async def test_check_sees_the_ports_served_by_the_running_chinwag(
    server: ServerHandle, tmp_path
) -> None:
    assert server.app is not None
    settings = server.app.settings
    config = write_config(
        tmp_path / "chinwag.toml",
        {
            "domain": settings.domain,
            "data_dir": settings.data_dir,
            "c2s": {"host": HOST, "port": server.port, "direct_tls_port": server.direct_tls_port},
            "http": {"host": HOST, "port": server.app.http.port},
        },
    )

    checked = await run_chinwag(config, "check")

    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert [line for line in checked.stdout.splitlines() if " ports: " in line] == [
        f"ok      ports: c2s {HOST}:{server.port}: served by the running chinwag (pid {os.getpid()})",
        f"ok      ports: direct_tls {HOST}:{server.direct_tls_port}: served by the running "
        f"chinwag (pid {os.getpid()})",
        f"ok      ports: http {HOST}:{server.app.http.port}: served by the running chinwag "
        f"(pid {os.getpid()})",
    ]


async def test_reload_of_a_server_without_a_settings_file_reloads_its_certificate(
    server: ServerHandle, tmp_path
) -> None:
    assert server.app is not None
    config = cli_config(tmp_path, server)

    reloaded = await run_chinwag(config, "reload", "--json")

    assert reloaded.returncode == 0, reloaded.stderr
    answer = json.loads(reloaded.stdout)
    assert answer["changed"] == answer["restart_needed"] == []
    assert answer["certificate"]["file"] == str(server.app.settings.tls_cert_path)
    assert answer["certificate"]["names"] == ["localhost"]


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/admin/status"),
        ("DELETE", "/admin/sessions?jid=alice@localhost"),
        ("GET", "/admin/bans"),
        ("DELETE", "/admin/bans?address=127.0.0.1"),
        ("POST", "/admin/reload"),
    ],
)
async def test_the_admin_endpoints_take_the_admin_token_only(
    server: ServerHandle, connect: Connect, method: str, path: str
) -> None:
    alice = await connect(server, "alice", "laptop")
    async with httpx.AsyncClient(base_url=web_base(server), timeout=TIMEOUT) as web:
        anonymous = await web.request(method, path)
        wrong = await web.request(method, path, headers={"Authorization": "Bearer nope"})

    for refused in (anonymous, wrong):
        assert refused.status_code == 401
        assert refused.headers["www-authenticate"].startswith("Bearer")
        assert refused.json()["error"] == "unauthorized"
    await still_served(alice, server)
