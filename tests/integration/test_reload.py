"""``chinwag reload`` and SIGHUP on a ``chinwag serve`` process: the certificate, the
limits and the log level change, connections stay open, and a settings file or
certificate that does not load changes nothing. With ``[log] file``, the log goes
there and not to the terminal; moved aside as logrotate does, the file is opened anew
by either, which also apply a new format."""

from __future__ import annotations

import asyncio
import json
import signal
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from chinwag.server.tls import ensure_certificate

from .signin_support import run_chinwag, still_served
from .support import (
    DOMAIN,
    TIMEOUT,
    NewClient,
    RawStream,
    ServerHandle,
    insecure_context,
    sign_in,
    stream_error_condition,
    stream_header,
)
from .test_serve import ServeProcess, server_config, write_config
from .test_serve import processes as processes  # a fixture
from .test_serve import template_data as template_data  # a fixture

POLL_SECONDS = 0.05


def new_certificate(directory: Path) -> tuple[Path, Path]:
    """A fresh self-signed certificate for the domain (a new key each time)."""
    cert, key = directory / "server.crt", directory / "server.key"
    assert ensure_certificate(cert, key, DOMAIN)
    return cert, key


def der(cert: Path) -> bytes:
    return x509.load_pem_x509_certificate(cert.read_bytes()).public_bytes(Encoding.DER)


async def served_by_direct_tls(handle: ServerHandle) -> bytes:
    """The certificate a new direct TLS connection is shown."""
    _reader, writer = await asyncio.wait_for(
        asyncio.open_connection(
            handle.host, handle.direct_tls_port, ssl=insecure_context(), server_hostname=DOMAIN
        ),
        TIMEOUT,
    )
    try:
        shown: bytes = writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        writer.close()
    return shown


async def served_by_starttls(handle: ServerHandle) -> bytes:
    """The certificate a new STARTTLS stream is shown."""
    raw = await RawStream.open(handle.host, handle.port)
    try:
        await raw.send(stream_header())
        await raw.read_until(b"</stream:features>")
        await raw.start_tls()
        shown: bytes = raw.writer.get_extra_info("ssl_object").getpeercert(binary_form=True)
    finally:
        raw.abort()
    return shown


def rewrite(config: Path, settings: dict[str, Any], **sections: dict[str, Any]) -> None:
    for name, values in sections.items():
        settings[name] = {**settings.get(name, {}), **values}
    write_config(config, settings)


@dataclass
class Served:
    config: Path
    settings: dict[str, Any]
    """What ``config`` holds, for ``rewrite``."""
    handle: ServerHandle
    serve: ServeProcess


async def serve_with(
    tmp_path: Path,
    template_data: Path,
    processes: list[ServeProcess],
    **sections: dict[str, Any],
) -> Served:
    """``chinwag serve`` on a copy of the template data, with ``sections`` in its config."""
    config, handle = server_config(tmp_path, template_data)
    settings = tomllib.loads(config.read_text())
    rewrite(config, settings, **sections)
    serve = await ServeProcess.start("--config", str(config), cwd=tmp_path)
    processes.append(serve)
    return Served(config, settings, handle, serve)


async def test_reload_applies_certificate_limits_and_log_level_to_what_comes_next(
    tmp_path: Path,
    template_data: Path,
    processes: list[ServeProcess],
    new_client: NewClient,
) -> None:
    first_cert, first_key = new_certificate(tmp_path / "first")
    served = await serve_with(
        tmp_path, template_data, processes, tls={"cert": str(first_cert), "key": str(first_key)}
    )
    config, settings, handle, serve = served.config, served.settings, served.handle, served.serve
    await serve.announced()
    alice = new_client(handle, "alice", "laptop")
    await sign_in(alice, handle.host, handle.port)
    assert await served_by_direct_tls(handle) == der(first_cert)

    second_cert, second_key = new_certificate(tmp_path / "second")
    rewrite(
        config,
        settings,
        tls={"cert": str(second_cert), "key": str(second_key)},
        limits={"auth_timeout_seconds": 0.5},
        log={"level": "debug"},
        http={"operators": ["alice"]},
    )
    reloaded = await run_chinwag(config, "reload", "--json")

    assert reloaded.returncode == 0, reloaded.stderr
    answer = json.loads(reloaded.stdout)
    assert answer["changed"] == [
        "limits.auth_timeout_seconds",
        "log.level",
        "tls.cert",
        "tls.key",
    ]
    assert answer["restart_needed"] == ["http.operators"]
    assert answer["certificate"]["file"] == str(second_cert)
    await still_served(alice, handle)
    assert await served_by_direct_tls(handle) == der(second_cert)
    assert await served_by_starttls(handle) == der(second_cert)

    # The new limits: a stream that does not sign in is closed after half a second.
    raw = await RawStream.open(handle.host, handle.port)
    await raw.send(stream_header())
    assert stream_error_condition(await raw.read_until_closed(timeout=5)) == "connection-timeout"
    # The new log level: a handshake that fails is logged at debug level.
    _reader, writer = await asyncio.open_connection(handle.host, handle.direct_tls_port)
    writer.write(b"this is not TLS\r\n\r\n")
    await _wait_for(lambda: "DEBUG chinwag.server.tcp" in serve.output, serve)
    writer.close()
    await still_served(alice, handle)
    assert await serve.stop() == 0


async def test_sighup_reloads_and_what_does_not_load_changes_nothing(
    tmp_path: Path,
    template_data: Path,
    processes: list[ServeProcess],
    new_client: NewClient,
) -> None:
    config, handle = server_config(tmp_path, template_data)
    settings = tomllib.loads(config.read_text())
    cli = write_config(
        tmp_path / "cli.toml", {"data_dir": settings["data_dir"], "http": settings["http"]}
    )
    serve = await ServeProcess.start("--config", str(config), cwd=tmp_path)
    processes.append(serve)
    await serve.announced()
    bob = new_client(handle, "bob", "phone", direct_tls=True)
    await sign_in(bob, handle.host, handle.direct_tls_port)

    cert, key = new_certificate(tmp_path / "signalled")
    rewrite(config, settings, tls={"cert": str(cert), "key": str(key)})
    serve.process.send_signal(signal.SIGHUP)
    await _wait_for_certificate(handle, der(cert), serve)
    await still_served(bob, handle)

    rewrite(config, settings, limits={"max_stanza_bytes": 10})
    bad_setting = await run_chinwag(cli, "reload")
    rewrite(config, settings, limits={"max_stanza_bytes": 65536})
    _other_cert, other_key = new_certificate(tmp_path / "other")
    rewrite(config, settings, tls={"cert": str(cert), "key": str(other_key)})
    bad_key = await run_chinwag(cli, "reload")

    assert bad_setting.returncode == 1
    assert bad_setting.stderr.startswith(
        "error: bad config value for 'limits.max_stanza_bytes': "
    ), bad_setting.stderr
    assert bad_key.returncode == 1
    assert bad_key.stderr.startswith(
        f"error: cannot load the certificate: cannot use {cert} with {other_key}: "
        "the key is not the certificate's"
    ), bad_key.stderr
    assert await served_by_direct_tls(handle) == der(cert)
    await still_served(bob, handle)
    assert await serve.stop() == 0


async def _wait_for(condition: Callable[[], bool], serve: ServeProcess) -> None:
    async def poll() -> None:
        while not condition():
            await asyncio.sleep(POLL_SECONDS)

    try:
        await asyncio.wait_for(poll(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"not within {TIMEOUT}s; the server said:\n{serve.output}") from None


async def _wait_for_certificate(handle: ServerHandle, expected: bytes, serve: ServeProcess) -> None:
    """Until new connections are shown ``expected`` (a signal is handled asynchronously)."""

    async def poll() -> None:
        while await served_by_direct_tls(handle) != expected:
            await asyncio.sleep(POLL_SECONDS)

    try:
        await asyncio.wait_for(poll(), TIMEOUT)
    except TimeoutError:
        raise AssertionError(f"the certificate did not change:\n{serve.output}") from None


def _text(path: Path) -> str:
    return path.read_text() if path.exists() else ""


async def test_the_log_file_is_reopened_by_reload_and_sighup_after_a_move(
    tmp_path: Path,
    template_data: Path,
    processes: list[ServeProcess],
    new_client: NewClient,
) -> None:
    log = tmp_path / "logs" / "chinwag.log"
    log.parent.mkdir()
    served = await serve_with(tmp_path, template_data, processes, log={"file": str(log)})
    config, settings, handle, serve = served.config, served.settings, served.handle, served.serve
    await _wait_for(lambda: "add a user" in _text(log), serve)
    await sign_in(new_client(handle, "alice", "laptop"), handle.host, handle.port)
    await _wait_for(lambda: "signed in user=alice resource=laptop" in _text(log), serve)

    log.rename(log.with_name("chinwag.log.1"))
    rewrite(config, settings, log={"format": "json"})
    reloaded = await run_chinwag(config, "reload")
    assert reloaded.returncode == 0, reloaded.stderr
    await sign_in(new_client(handle, "bob", "desk"), handle.host, handle.port)
    await _wait_for(lambda: '"user": "bob"' in _text(log), serve)

    log.rename(log.with_name("chinwag.log.2"))
    serve.process.send_signal(signal.SIGHUP)
    await _wait_for(log.exists, serve)
    await sign_in(new_client(handle, "alice", "tablet"), handle.host, handle.port)
    await _wait_for(lambda: '"resource": "tablet"' in _text(log), serve)

    first, second = log.with_name("chinwag.log.1").read_text(), log.with_name("chinwag.log.2")
    assert "chinwag is serving localhost" in first
    assert '"user": "bob"' not in first
    signed_in = [json.loads(line) for line in second.read_text().splitlines()]
    assert [(e["message"], e.get("user")) for e in signed_in if e.get("user")] == [
        ("signed in", "bob")
    ]
    assert '"resource": "tablet"' not in second.read_text()
    assert await serve.stop() == 0
    assert "chinwag" not in serve.output, "log lines went to the terminal too"
    assert '"message": "stopped"' in log.read_text()
