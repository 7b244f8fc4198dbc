"""What the log says about a real run: one INFO line, with its fields, for each sign-in,
failed sign-in, session end (with its reason), revocation and suspension; and never a
password, token, code or client secret, even at debug level."""

from __future__ import annotations

import asyncio
import base64
import json
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from oauth.support import CALLBACK, form_to, submit

from chinwag import logs
from chinwag.config import LogSettings
from chinwag.web.admin_routes import ReloadFailed
from tests.log_support import restored_logging

from .signin_support import (
    MESSENGER,
    browser,
    code_flow,
    refusal,
    session_end,
    token_client,
)
from .support import TIMEOUT, USERS, Connect, NewClient, ServerHandle, StartServer, sign_in
from .test_serve import run_chinwag, write_config

WRONG_PASSWORD = "not-alices-password-1234"


@pytest.fixture
def log_file(tmp_path: Path) -> Iterator[Path]:
    """The process logs as ``chinwag serve`` would with ``[log]`` level debug, format json
    and a file; put back as it was after the test."""
    path = tmp_path / "chinwag.log"
    with restored_logging():
        logs.configure(LogSettings(level="debug", format="json", file=str(path)))
        yield path


def entries(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def find(path: Path, message: str, **fields: object) -> list[dict[str, Any]]:
    return [
        entry
        for entry in entries(path)
        if entry["message"] == message and all(entry.get(k) == v for k, v in fields.items())
    ]


async def revoke_by_the_app(server: ServerHandle, client_id: str, secret: str, token: str) -> None:
    """RFC 7009: the confidential app revokes its refresh token (and so the whole grant)."""
    async with browser(server) as web:
        answer = await web.post(
            "/oauth/revoke",
            data={"token": token, "token_type_hint": "refresh_token"},
            auth=httpx.BasicAuth(client_id, secret),
        )
    assert answer.status_code == 200, answer.text


async def test_a_full_run_logs_every_event_and_no_secret(
    server: ServerHandle, connect: Connect, new_client: NewClient, log_file: Path
) -> None:
    assert server.app is not None
    oauth = server.app.oauth
    await connect(server, "alice", "laptop")  # SCRAM, slixmpp's choice
    await connect(server, "bob", "desk", sasl_mech="PLAIN")
    await connect(server, "bob", "laptop", direct_tls=True)
    async with browser(server) as web:
        page = await web.get("/account/signin")
        await submit(web, form_to(page, "/account/signin"), username="bob", password=WRONG_PASSWORD)
    wrong = new_client(server, "alice", "guess", password=WRONG_PASSWORD, sasl_mech="PLAIN")
    assert await refusal(wrong, server) == "not-authorized"

    registered = await oauth.register_app("Logged Chat", [CALLBACK], public=False)
    client_id, secret = registered.app.client_id, registered.client_secret
    assert secret is not None
    flow = await code_flow(
        server, client_id, "alice", f"{MESSENGER} wl.offline_access", secret=secret
    )
    access, refresh = flow.tokens["access_token"], flow.tokens["refresh_token"]
    messenger = token_client(new_client, server, access, "X-MESSENGER-OAUTH2")
    await sign_in(messenger, server.host, server.port)
    xoauth2 = token_client(new_client, server, access, "X-OAUTH2", user="alice", resource="pad")
    await sign_in(xoauth2, server.host, server.port)
    ended = session_end(messenger)
    await revoke_by_the_app(server, client_id, secret, refresh)
    await ended
    await oauth.suspend_app(client_id)

    text = log_file.read_text()
    secrets = {
        "alice's password": USERS["alice"],
        "bob's password": USERS["bob"],
        "the wrong password": WRONG_PASSWORD,
        "the PLAIN message": base64.b64encode(b"\0bob\0" + USERS["bob"].encode()).decode(),
        "the access token": access,
        "the refresh token": refresh,
        "the client secret": secret,
        "the authorization code": flow.code,
    }
    leaked = [name for name, value in secrets.items() if value in text]
    assert not leaked, f"the log shows {', '.join(leaked)}:\n{text}"

    signed_in = {
        (e["user"], e["resource"], e["mechanism"], e.get("client_id"), e["transport"])
        for e in find(log_file, "signed in", level="INFO", address="127.0.0.1")
    }
    assert {
        ("bob", "desk", "PLAIN", None, "c2s"),
        ("bob", "laptop", "SCRAM-SHA-256", None, "direct-tls"),
        ("alice", "phone", "X-MESSENGER-OAUTH2", client_id, "c2s"),
        ("alice", "pad", "X-OAUTH2", client_id, "c2s"),
    } <= signed_in
    assert any(s[:2] == ("alice", "laptop") and s[2].startswith("SCRAM-") for s in signed_in)
    assert find(
        log_file,
        "sign-in failed",
        user="alice",
        mechanism="PLAIN",
        address="127.0.0.1",
        condition="not-authorized",
        reason="wrong username or password",
    )
    assert find(
        log_file,
        "sign-in failed",
        user="bob",
        transport="web",
        address="127.0.0.1",
        reason="wrong username or password",
    )
    assert find(log_file, "signed in on the web", user="alice", address="127.0.0.1")
    assert find(log_file, "tokens revoked", user="alice", client_id=client_id)
    assert find(log_file, "session ended", user="alice", resource="phone", reason="revoked")
    assert find(log_file, "session ended", user="alice", resource="pad", reason="revoked")
    assert find(log_file, "app suspended", client_id=client_id)


async def test_session_ends_are_logged_with_their_reason(
    start_server: StartServer, connect: Connect, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="chinwag")
    server = await start_server(stream_management={"resume_timeout_seconds": 1})
    assert server.app is not None
    leaving = await connect(server, "bob", "leaving")
    await connect(server, "alice", "phone")
    replacing = await connect(server, "alice", "phone")
    kicked = session_end(replacing)
    server.app.control.kick("alice@localhost/phone", None)
    await asyncio.wait_for(kicked, TIMEOUT)
    left = asyncio.get_running_loop().create_future()
    leaving.add_event_handler("disconnected", lambda _event: left.set_result(None))
    leaving.disconnect()
    await asyncio.wait_for(left, TIMEOUT)
    await _until(lambda: len(_ends(caplog)) == 3)

    assert _ends(caplog) == [
        ("phone", "conflict", "conflict: replaced by a new session for the same resource"),
        ("phone", "kicked", "policy-violation: ended by the server's operator"),
        ("leaving", "closed by client", None),
    ]


def _ends(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str, str | None]]:
    return [
        (line.fields["resource"], line.fields["reason"], line.fields.get("detail"))  # type: ignore[attr-defined]
        for line in caplog.records
        if line.getMessage() == "session ended"
    ]


async def _until(condition: Any) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(0.02)

    await asyncio.wait_for(poll(), TIMEOUT)


async def test_a_reload_whose_log_file_cannot_be_opened_changes_nothing(
    server: ServerHandle, log_file: Path
) -> None:
    assert server.app is not None
    control = server.app.control
    before = control.settings
    missing = log_file.parent / "no-such-directory" / "chinwag.log"
    control.reread = lambda: before.model_copy(
        update={
            "log": LogSettings(file=str(missing)),
            "limits": before.limits.model_copy(update={"max_stanza_bytes": 20_000}),
        }
    )

    with pytest.raises(ReloadFailed, match=r"cannot open the log file .*no-such-directory"):
        control.reload()

    assert control.settings == before
    assert server.app.xmpp.limits == before.limits
    logging.getLogger("chinwag.test").info("still logged here")
    assert find(log_file, "still logged here")


def test_serve_stops_in_one_line_when_its_log_file_cannot_be_opened(tmp_path: Path) -> None:
    missing = tmp_path / "no-such-directory" / "chinwag.log"
    config = write_config(
        tmp_path / "chinwag.toml",
        {"data_dir": str(tmp_path / "data"), "log": {"file": str(missing)}},
    )

    result = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert result.stderr == (
        f"error: cannot open the log file {missing}: No such file or directory\n"
    )
