"""contrib/certbot/chinwag, certbot's deploy hook, run as certbot runs it: it copies the
renewed files of its domain where ``[tls]`` points, and the running server serves them
from the next handshake on; with no server running, it only copies."""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from .support import DOMAIN, TIMEOUT
from .test_reload import der, new_certificate, rewrite, served_by_direct_tls
from .test_serve import ServeProcess, clean_env, server_config, write_config
from .test_serve import processes as processes  # a fixture
from .test_serve import template_data as template_data  # a fixture

HOOK = Path(__file__).resolve().parents[2] / "contrib" / "certbot" / "chinwag"

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0 or shutil.which("runuser") is None,
    reason="the hook gives files to a group and runs chinwag as a user: root and runuser only",
)


def renewed(directory: Path, name: str = DOMAIN) -> Path:
    """A certbot lineage, ``live/NAME`` with its fullchain.pem and privkey.pem."""
    lineage = directory / "live" / name
    lineage.mkdir(parents=True)
    cert, key = new_certificate(directory)
    shutil.move(cert, lineage / "fullchain.pem")
    shutil.move(key, lineage / "privkey.pem")
    return lineage


def run_hook(lineage: Path, tls_dir: Path, config: Path) -> subprocess.CompletedProcess[str]:
    user = subprocess.run(["id", "-un"], capture_output=True, text=True, check=True).stdout
    env = clean_env(
        RENEWED_LINEAGE=str(lineage),
        CHINWAG_DOMAIN=DOMAIN,
        CHINWAG_TLS_DIR=str(tls_dir),
        CHINWAG_USER=user.strip(),
        CHINWAG_CONFIG=str(config),
        CHINWAG=str(Path(sys.executable).with_name("chinwag")),
    )
    return subprocess.run([str(HOOK)], capture_output=True, text=True, env=env, timeout=TIMEOUT * 3)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


async def test_a_renewal_reaches_the_running_server(
    tmp_path: Path, template_data: Path, processes: list[ServeProcess]
) -> None:
    config, handle = server_config(tmp_path, template_data)
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    first = renewed(tmp_path / "first")
    shutil.copy(first / "fullchain.pem", tls_dir / "fullchain.pem")
    shutil.copy(first / "privkey.pem", tls_dir / "privkey.pem")
    rewrite(
        config,
        tomllib.loads(config.read_text()),
        tls={"cert": "tls/fullchain.pem", "key": "tls/privkey.pem"},
    )
    serve = await ServeProcess.start("--config", str(config), cwd=tmp_path)
    processes.append(serve)
    await serve.announced()
    assert await served_by_direct_tls(handle) == der(first / "fullchain.pem")
    second = renewed(tmp_path / "second")

    result = run_hook(second, tls_dir, config)

    assert result.returncode == 0, result.stderr
    assert await served_by_direct_tls(handle) == der(second / "fullchain.pem")
    assert (mode(tls_dir / "fullchain.pem"), mode(tls_dir / "privkey.pem")) == (0o644, 0o640)
    assert sorted(path.name for path in tls_dir.iterdir()) == ["fullchain.pem", "privkey.pem"]
    assert await serve.stop() == 0


def test_with_no_server_running_it_only_copies(tmp_path: Path) -> None:
    config = write_config(tmp_path / "chinwag.toml", {"data_dir": str(tmp_path / "data")})
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()
    lineage = renewed(tmp_path)

    result = run_hook(lineage, tls_dir, config)

    assert result.returncode == 0, result.stderr
    assert (tls_dir / "privkey.pem").read_bytes() == (lineage / "privkey.pem").read_bytes()
    assert (tls_dir / "fullchain.pem").read_bytes() == (lineage / "fullchain.pem").read_bytes()


def test_another_domain_s_renewal_is_left_alone(tmp_path: Path) -> None:
    config = write_config(tmp_path / "chinwag.toml", {"data_dir": str(tmp_path / "data")})
    tls_dir = tmp_path / "tls"
    tls_dir.mkdir()

    result = run_hook(renewed(tmp_path, "www.example.com"), tls_dir, config)

    assert result.returncode == 0, result.stderr
    assert list(tls_dir.iterdir()) == []
