"""``chinwag serve`` failing to start, as a real process: one line on stderr saying why,
exit status 2 for the settings and 1 for the rest, the traceback only with ``--debug``;
and its readiness told to systemd (``$NOTIFY_SOCKET``) once it serves.

Bad keys and a port in use are in test_serve.py.
"""

from __future__ import annotations

import asyncio
import socket
import sqlite3
import subprocess
from pathlib import Path

import pytest

from chinwag.server.tls import ensure_certificate

from .support import HOST, TIMEOUT, free_port
from .test_serve import ServeProcess, clean_env, run_chinwag, write_config

UNREACHABLE_POSTGRESQL = "postgresql+asyncpg://chinwag:s3cret@127.0.0.1:1/chinwag"
"""Port 1 on the loopback: nothing listens, so the connection is refused at once."""


def config_on_free_ports(directory: Path, **sections: object) -> Path:
    settings: dict[str, object] = {
        "data_dir": "data",  # beside the config, wherever serve runs
        "c2s": {"host": HOST, "port": free_port(), "direct_tls_port": free_port()},
        "http": {"host": HOST, "port": free_port()},
        **sections,
    }
    return write_config(directory / "chinwag.toml", settings)


def the_error(result: subprocess.CompletedProcess[str]) -> str:
    """The one error line of a failed start (log lines of its progress may come before)."""
    assert "Traceback" not in result.stdout + result.stderr, result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    assert result.stderr.strip().splitlines()[-1] == errors[0], result.stderr
    return errors[0]


def test_settings_that_are_not_toml_exit_2(tmp_path: Path) -> None:
    config = tmp_path / "chinwag.toml"
    config.write_text('domain = "chat.example\n')

    result = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2, result.stderr
    assert the_error(result).startswith(f"error: config file {config} is not valid TOML: ")


def test_a_missing_certificate_exits_1_and_none_is_made_in_its_place(tmp_path: Path) -> None:
    config = config_on_free_ports(
        tmp_path, tls={"cert": "tls/fullchain.pem", "key": "tls/privkey.pem"}
    )
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()

    result = run_chinwag("serve", "--config", str(config), cwd=elsewhere)

    assert result.returncode == 1, result.stderr
    assert the_error(result) == (
        "error: cannot use the [tls] cert and key: "
        f"cannot read {tmp_path / 'tls/fullchain.pem'}: No such file or directory"
    )
    assert not (tmp_path / "tls").exists()
    assert not (tmp_path / "data" / "tls").exists()


@pytest.mark.parametrize("broken", ["cert", "key"])
def test_a_certificate_or_key_that_is_not_pem_exits_1(tmp_path: Path, broken: str) -> None:
    cert, key = tmp_path / "chat.crt", tmp_path / "chat.key"
    ensure_certificate(cert, key, "localhost")
    {"cert": cert, "key": key}[broken].write_text("-- not PEM --\n")
    config = config_on_free_ports(tmp_path, tls={"cert": "chat.crt", "key": "chat.key"})

    result = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    holds_no = {
        "cert": f"{cert} holds no PEM certificate",
        "key": f"{key} holds no PEM private key",
    }
    assert the_error(result) == f"error: cannot use the [tls] cert and key: {holds_no[broken]}"


def test_an_unreachable_database_exits_1_with_the_traceback_only_with_debug(
    tmp_path: Path,
) -> None:
    config = config_on_free_ports(tmp_path, database={"url": UNREACHABLE_POSTGRESQL})

    plain = run_chinwag("serve", "--config", str(config), cwd=tmp_path)
    debug_after = run_chinwag("serve", "--config", str(config), "--debug", cwd=tmp_path)
    debug_before = run_chinwag("--debug", "serve", "--config", str(config), cwd=tmp_path)

    assert plain.returncode == 1, plain.stderr
    assert the_error(plain).startswith(
        "error: cannot use the database "
        "postgresql+asyncpg://chinwag:***@127.0.0.1:1/chinwag: [Errno 111] "
    )
    assert "s3cret" not in plain.stderr
    for debug in (debug_after, debug_before):
        assert debug.returncode == 1, debug.stderr
        assert "Traceback (most recent call last)" in debug.stderr
        assert "ConnectionRefusedError" in debug.stderr  # the cause, not only StartupError
        assert debug.stderr.strip().splitlines()[-1] == the_error(plain)


def test_a_data_directory_that_cannot_be_made_exits_1(tmp_path: Path) -> None:
    config = config_on_free_ports(tmp_path)
    (tmp_path / "data").write_text("not a directory")

    plain = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    assert plain.returncode == 1, plain.stderr
    assert (
        the_error(plain)
        == f"error: cannot make the data directory {tmp_path / 'data'}: File exists"
    )


async def test_systemd_hears_when_serve_is_ready_and_when_it_stops(tmp_path: Path) -> None:
    config = config_on_free_ports(tmp_path)
    address = tmp_path / "notify.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as systemd:
        systemd.bind(str(address))
        systemd.setblocking(False)
        loop = asyncio.get_running_loop()
        serve = await ServeProcess.start(
            "--config", str(config), cwd=tmp_path, env=clean_env(NOTIFY_SOCKET=str(address))
        )
        try:
            ready = await asyncio.wait_for(loop.sock_recv(systemd, 4096), TIMEOUT * 3)
            announced = await serve.announced()
            assert await serve.stop() == 0
            stopping = await asyncio.wait_for(loop.sock_recv(systemd, 4096), TIMEOUT)
        finally:
            await serve.kill()

    assert ready.decode().splitlines() == ["READY=1", "STATUS=serving localhost"]
    assert any("chinwag is serving localhost" in line for line in announced)
    assert stopping == b"STOPPING=1"


def test_a_database_of_a_newer_chinwag_exits_1(tmp_path: Path) -> None:
    config = config_on_free_ports(tmp_path)
    assert run_chinwag("db", "migrate", "--config", str(config), cwd=tmp_path).returncode == 0
    database = tmp_path / "data" / "chinwag.db"
    with sqlite3.connect(database) as db:
        db.execute("UPDATE alembic_version SET version_num = 'ffff'")

    result = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 1, result.stderr
    assert the_error(result) == (
        f"error: cannot migrate the database sqlite+aiosqlite:///{database}: "
        "Can't locate revision identified by 'ffff' (made by a newer chinwag?)"
    )
