"""Debian's Prosody for the migration tests: a server of its own in a temporary directory,
``prosodyctl`` and ``prosody-migrator``, and slixmpp clients for it.

``require_prosody()`` installs Debian's ``prosody`` package when it is missing and the
tests run as root, without starting its service (these tests run their own instance,
on a free loopback port). Where it cannot, the tests are skipped, saying why.

Run as root, every Prosody program runs as the ``prosody`` user, which owns the
temporary directory (Prosody refuses to run as root). ``prosody-migrator`` writes and
reads XEP-0227 files in its compiled-in data directory (``/var/lib/prosody`` on
Debian), which it takes from no option: the tests run a copy of it whose data
directory is a temporary one, and change nothing else.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import re
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from slixmpp import ClientXMPP

from tests.debian import apt_install

from .support import HOST, TIMEOUT, free_port, sign_in

TOOLS = ("prosody", "prosodyctl", "prosody-migrator")
DOMAIN = "localhost"
MODULES = ("roster", "saslauth", "disco", "pep", "vcard4", "vcard_legacy", "ping")
"""As Debian's default prosody.cfg.lua has them: vCards kept as PEP vCard4 and avatar."""
_AS_ROOT = os.geteuid() == 0


def _missing() -> list[str]:
    return [tool for tool in TOOLS if shutil.which(tool) is None]


def require_prosody() -> None:
    """Install Debian's Prosody if it is missing; skip the test if it cannot be."""
    if not _missing():
        return
    problem = apt_install("prosody")
    if _missing():
        pytest.skip(
            f"Debian's Prosody is not installed (no {', '.join(_missing())}) and could not "
            f"be: {problem}"
        )


def _as_prosody() -> dict[str, Any]:
    return {"user": "prosody", "group": "prosody"} if _AS_ROOT else {}


@contextlib.contextmanager
def prosody_directory() -> Iterator[Path]:
    """A temporary directory the Prosody programs may write (not under pytest's, which
    only its owner may enter)."""
    directory = Path(tempfile.mkdtemp(prefix="chinwag-prosody-"))
    try:
        give_to_prosody(directory)
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)


def give_to_prosody(path: Path) -> None:
    """Let the Prosody programs read and write ``path`` and all it holds."""
    if not _AS_ROOT:
        return
    for each in (path, *path.rglob("*")):
        shutil.chown(each, "prosody", "prosody")


class Prosody:
    """One Prosody server's settings and data in ``directory``, on a free port."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.data = directory / "data"
        self.port = free_port()
        self.config = directory / "prosody.cfg.lua"
        self.log = directory / "prosody.log"
        self.process: subprocess.Popen[bytes] | None = None
        for each in (self.data, directory / "certs"):
            each.mkdir(parents=True, exist_ok=True)
        modules = "; ".join(f'"{module}"' for module in MODULES)
        self.config.write_text(
            f'pidfile = "{directory}/prosody.pid"\n'
            f'data_path = "{self.data}"\n'
            f'certificates = "{directory}/certs"\n'
            f'log = {{ {{ levels = {{ min = "info" }}, to = "file", filename = "{self.log}" }} }}\n'
            f'interfaces = {{ "{HOST}" }}\n'
            f"c2s_ports = {{ {self.port} }}\n"
            "c2s_direct_tls_ports = { }\nlegacy_ssl_ports = { }\ns2s_ports = { }\n"
            "c2s_require_encryption = false\n"
            'authentication = "internal_hashed"\nstorage = "internal"\n'
            f"modules_enabled = {{ {modules} }}\n"
            f'VirtualHost "{DOMAIN}"\n'
        )
        give_to_prosody(directory)

    def register(self, user: str, password: str) -> None:
        run(["prosodyctl", "--config", str(self.config), "register", user, DOMAIN, password])

    async def start(self) -> None:
        self.process = subprocess.Popen(
            ["prosody", "--config", str(self.config), "-F"],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            **_as_prosody(),
        )
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TIMEOUT
        while not _accepts(self.port):
            if self.process.poll() is not None or loop.time() > deadline:
                raise AssertionError(f"Prosody did not start:\n{self.log_tail()}")
            await asyncio.sleep(0.1)

    def stop(self) -> None:
        if self.process is None:
            return
        self.process.terminate()
        try:
            self.process.wait(TIMEOUT)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait(TIMEOUT)
        self.process = None

    def log_tail(self) -> str:
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text().splitlines()[-20:])
        return "(no log)"

    def client(self, user: str, password: str, plugins: Sequence[str] = ()) -> ClientXMPP:
        """A slixmpp client for this server, which offers no TLS: SCRAM-SHA-1 in the clear,
        on the loopback."""
        client = ClientXMPP(f"{user}@{DOMAIN}/test", password, sasl_mech="SCRAM-SHA-1")
        client.enable_starttls = False
        client.enable_direct_tls = False
        client.enable_plaintext = True
        client.plugin["feature_mechanisms"].unencrypted_scram = True
        for plugin in ("xep_0030", *plugins):
            client.register_plugin(plugin)
        return client

    async def sign_in(self, client: ClientXMPP) -> None:
        await sign_in(client, HOST, self.port)


def _accepts(port: int) -> bool:
    with socket.socket() as probe:
        probe.settimeout(0.5)
        return probe.connect_ex((HOST, port)) == 0


def run(command: list[str]) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(command, capture_output=True, text=True, timeout=60, **_as_prosody())
    assert result.returncode == 0, f"{command} failed:\n{result.stdout}\n{result.stderr}"
    return result


def migrate(
    directory: Path,
    xep0227: Path,
    source: dict[str, str],
    target: dict[str, str],
    stores: Sequence[str],
) -> None:
    """Run prosody-migrator from ``source`` to ``target`` (Lua tables of the migrator's
    configuration, beside ``hosts``), with ``xep0227`` as its data directory, where its
    XEP-0227 storage reads and writes ``user@host.xml`` files."""
    migrator = Path(shutil.which("prosody-migrator") or "prosody-migrator")
    script = migrator.read_text()
    interpreter = script.splitlines()[0].removeprefix("#!").split()
    patched, count = re.subn(
        r"^CFG_DATADIR\s*=.*$", f"CFG_DATADIR='{xep0227}';", script, count=1, flags=re.MULTILINE
    )
    assert count == 1, f"{migrator} sets no CFG_DATADIR: not the migrator these tests know"
    copy = directory / "prosody-migrator.lua"
    copy.write_text(patched)
    listed = ", ".join(f'"{store}"' for store in stores)

    def table(fields: dict[str, str]) -> str:
        return "; ".join(f'{key} = "{value}"' for key, value in fields.items())

    config = directory / "migrator.cfg.lua"
    config.write_text(
        f'input {{ hosts = {{ ["{DOMAIN}"] = {{ {listed} }} }}; {table(source)} }}\n'
        f"output {{ {table(target)} }}\n"
    )
    give_to_prosody(directory)
    run([*interpreter, str(copy), "--config", str(config), "input", "output"])
