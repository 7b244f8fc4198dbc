"""The real ``chinwag`` command in a subprocess: user add, serve, signals, configuration.

Users are added once per module with ``chinwag user add`` into a template data
directory made with ``chinwag db migrate``; each test copies it and writes a config with free loopback ports.
"""

from __future__ import annotations

import asyncio
import contextlib
import importlib.util
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import AsyncIterator, Mapping
from pathlib import Path

import pytest

from .support import (
    DOMAIN,
    HOST,
    TIMEOUT,
    USERS,
    NewClient,
    ServerHandle,
    free_port,
    port_is_free,
    sign_in,
    watch,
)

STARTUP_TIMEOUT = 180.0
"""A bound against a hang only: start-up is awaited by its readiness line (or the process's
exit), however long a loaded machine takes to start Python, migrate and make a
certificate (more than 30 s at a load of 14 on two cores)."""
ANNOUNCEMENT_END = "add a user"


def chinwag_command() -> list[str]:
    """How to run the console script with the interpreter running the tests."""
    if importlib.util.find_spec("chinwag.__main__") is not None:
        return [sys.executable, "-m", "chinwag"]
    script = Path(sys.executable).with_name("chinwag")
    assert script.exists(), f"no chinwag script next to {sys.executable}"
    return [str(script)]


def clean_env(**extra: str) -> dict[str, str]:
    env = {key: value for key, value in os.environ.items() if key != "CHINWAG_CONFIG"}
    env["PYTHONUNBUFFERED"] = "1"
    env.update(extra)
    return env


def run_chinwag(
    *args: str, cwd: Path, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*chinwag_command(), *args],
        capture_output=True,
        text=True,
        cwd=cwd,
        env=dict(env) if env is not None else clean_env(),
        timeout=STARTUP_TIMEOUT,
        check=False,
    )


def toml_value(value: object) -> str:
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def write_config(path: Path, settings: Mapping[str, object]) -> Path:
    """Write ``settings`` (top-level keys, then one level of tables) as TOML."""
    lines = [
        f"{key} = {toml_value(value)}"
        for key, value in settings.items()
        if not isinstance(value, Mapping)
    ]
    for table, values in settings.items():
        if isinstance(values, Mapping):
            lines.append(f"\n[{table}]")
            lines += [f"{key} = {toml_value(value)}" for key, value in values.items()]
    path.write_text("\n".join(lines) + "\n")
    return path


class ServeProcess:
    """``chinwag serve`` running in a subprocess, its output collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._announced = asyncio.get_running_loop().create_future()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(
        cls, *args: str, cwd: Path, env: Mapping[str, str] | None = None
    ) -> ServeProcess:
        process = await asyncio.create_subprocess_exec(
            *chinwag_command(),
            "serve",
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            cwd=cwd,
            env=dict(env) if env is not None else clean_env(),
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            text = line.decode(errors="replace").rstrip()
            self.lines.append(text)
            if ANNOUNCEMENT_END in text and not self._announced.done():
                self._announced.set_result(None)

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def announced(self) -> list[str]:
        """Wait until the "add a user" line; returns the lines so far."""
        exited = asyncio.ensure_future(self.process.wait())
        try:
            done, _ = await asyncio.wait(
                {self._announced, exited},
                timeout=STARTUP_TIMEOUT,
                return_when=asyncio.FIRST_COMPLETED,
            )
        finally:
            exited.cancel()
        if self._announced not in done:
            await asyncio.sleep(0.1)  # let the last lines in
            raise AssertionError(f"chinwag serve did not announce itself:\n{self.output}")
        return list(self.lines)

    async def stop(self, signum: int = signal.SIGTERM, timeout: float = TIMEOUT) -> int:
        """Send ``signum`` and wait (bounded) for the exit status."""
        self.process.send_signal(signum)
        try:
            status = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"chinwag serve still running {timeout}s after signal {signum}:\n{self.output}"
            ) from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, TIMEOUT)
        return status

    async def kill(self) -> None:
        if self.process.returncode is None:
            self.process.kill()
            await asyncio.wait_for(self.process.wait(), TIMEOUT)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


@pytest.fixture(scope="module")
def template_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A data directory holding alice and bob, added with ``chinwag user add``."""
    data = tmp_path_factory.mktemp("template") / "data"
    config = write_config(data.parent / "chinwag.toml", {"data_dir": str(data)})
    migrated = run_chinwag("db", "migrate", "--config", str(config), cwd=data.parent)
    assert migrated.returncode == 0, migrated.stderr
    for name, password in USERS.items():
        result = run_chinwag(
            "user", "add", name, "--password", password, "--config", str(config), cwd=data.parent
        )
        assert result.returncode == 0, result.stderr
        assert f"{name}@{DOMAIN}" in result.stdout
    assert (data / "chinwag.db").exists()
    return data


def server_config(tmp_path: Path, template_data: Path) -> tuple[Path, ServerHandle]:
    """A copy of the template data and a config for it on free ports."""
    data = tmp_path / "data"
    shutil.copytree(template_data, data)
    handle = ServerHandle(host=HOST, port=free_port(), direct_tls_port=free_port(), domain=DOMAIN)
    config = write_config(
        tmp_path / "chinwag.toml",
        {
            "domain": DOMAIN,
            "data_dir": str(data),
            "c2s": {"host": HOST, "port": handle.port, "direct_tls_port": handle.direct_tls_port},
            "http": {"host": HOST, "port": free_port()},
        },
    )
    return config, handle


@pytest.fixture
async def processes() -> AsyncIterator[list[ServeProcess]]:
    """Serve processes to kill at teardown if a test left them running."""
    started: list[ServeProcess] = []
    yield started
    for process in started:
        await process.kill()


def assert_announces(lines: list[str], handle: ServerHandle) -> None:
    text = "\n".join(lines)
    assert f"{handle.host}:{handle.port}" in text, text
    assert f"{handle.host}:{handle.direct_tls_port}" in text, text
    assert "chinwag user add" in text, text


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
async def test_serve_until_a_signal_ends_every_stream_with_system_shutdown(
    tmp_path: Path,
    template_data: Path,
    processes: list[ServeProcess],
    new_client: NewClient,
    signum: int,
) -> None:
    config, handle = server_config(tmp_path, template_data)
    serve = await ServeProcess.start("--config", str(config), cwd=tmp_path)
    processes.append(serve)
    assert_announces(await serve.announced(), handle)

    alice = new_client(handle, "alice", "laptop")
    await sign_in(alice, handle.host, handle.port)
    bob = new_client(handle, "bob", "phone", direct_tls=True)
    await sign_in(bob, handle.host, handle.direct_tls_port)
    errors = [watch(client, "stream_error") for client in (alice, bob)]

    started = time.monotonic()
    status = await serve.stop(signum)

    assert status == 0, serve.output
    assert time.monotonic() - started < 5, serve.output
    for error in errors:
        received = await asyncio.wait_for(error, TIMEOUT)
        assert received["condition"] == "system-shutdown"


async def test_serve_reads_the_config_named_by_the_environment(
    tmp_path: Path, template_data: Path, processes: list[ServeProcess], new_client: NewClient
) -> None:
    config, handle = server_config(tmp_path, template_data)
    serve = await ServeProcess.start(env=clean_env(CHINWAG_CONFIG=str(config)), cwd=tmp_path)
    processes.append(serve)

    assert_announces(await serve.announced(), handle)
    client = new_client(handle, "bob", "phone")
    await sign_in(client, handle.host, handle.port)
    assert not (tmp_path / "chinwag-data").exists()  # the defaults were not used
    assert await serve.stop() == 0


@pytest.mark.parametrize(
    ("settings", "key"),
    [
        pytest.param({"colour": "blue"}, "colour", id="top-level"),
        pytest.param({"c2s": {"prot": 5222}}, "c2s.prot", id="in-a-table"),
        pytest.param({"limits": {"max_stanza_byte": 4096}}, "limits.max_stanza_byte", id="typo"),
    ],
)
def test_unknown_config_key_exits_2_naming_it(
    tmp_path: Path, settings: dict[str, object], key: str
) -> None:
    config = write_config(
        tmp_path / "chinwag.toml", {"data_dir": str(tmp_path / "data"), **settings}
    )

    result = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    assert result.returncode == 2, result
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert key in lines[0]
    assert "Traceback" not in result.stderr + result.stdout
    assert not (tmp_path / "data").exists()  # nothing was started


async def test_serve_without_any_config_uses_the_defaults_in_the_working_directory(
    tmp_path: Path, processes: list[ServeProcess]
) -> None:
    if not (port_is_free(5222) and port_is_free(5223) and port_is_free(5280)):
        pytest.skip("the default ports 5222, 5223 and 5280 are in use on 127.0.0.1")
    cwd = tmp_path / "empty"
    cwd.mkdir()
    serve = await ServeProcess.start(cwd=cwd)
    processes.append(serve)

    try:
        lines = await serve.announced()
    except AssertionError:
        if "already in use" in serve.output:  # taken between our check and the bind
            pytest.skip("the default ports 5222 and 5223 were taken meanwhile")
        raise

    assert_announces(lines, ServerHandle(HOST, 5222, 5223, DOMAIN))
    data = cwd / "chinwag-data"
    assert (data / "chinwag.db").is_file()
    assert (data / "tls" / "localhost.crt").is_file()
    assert await serve.stop() == 0


def test_busy_port_is_reported_in_one_line(tmp_path: Path) -> None:
    """A port in use is a problem the operator can fix: one error line, no traceback."""
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        port = busy.getsockname()[1]
        config = write_config(
            tmp_path / "chinwag.toml",
            {
                "data_dir": str(tmp_path / "data"),
                "c2s": {"host": HOST, "port": port, "direct_tls_port": free_port()},
                "http": {"host": HOST, "port": free_port()},
            },
        )

        result = run_chinwag("serve", "--config", str(config), cwd=tmp_path)

    output = result.stdout + result.stderr
    assert result.returncode == 1, output
    assert "Traceback" not in output
    last_line = result.stderr.strip().splitlines()[-1]
    assert f"{port}" in last_line, output
    assert "in use" in last_line, output
