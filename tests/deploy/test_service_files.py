"""The systemd unit, its system user, the Dockerfile and the settings each of them
ships agree with each other and with chinwag: checked with systemd's own tools where
this machine has them, and by reading the files (no Docker daemon is needed)."""

from __future__ import annotations

import fnmatch
import json
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from chinwag.config import load_settings

ROOT = Path(__file__).resolve().parents[2]
UNIT = ROOT / "contrib" / "systemd" / "chinwag.service"
SYSUSERS = ROOT / "contrib" / "systemd" / "chinwag.sysusers"
SERVICE_SETTINGS = ROOT / "contrib" / "systemd" / "chinwag.toml"
DOCKERFILE = ROOT / "Dockerfile"
CHINWAG = Path(sys.executable).with_name("chinwag")


def unit_entries(path: Path) -> dict[str, list[tuple[str, str]]]:
    """Each section's ``Key=value`` lines in order (a key may come more than once)."""
    sections: dict[str, list[tuple[str, str]]] = {}
    current: list[tuple[str, str]] = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = sections.setdefault(line.strip("[]"), [])
            continue
        key, _, value = line.partition("=")
        current.append((key, value))
    return sections


def service() -> dict[str, str]:
    return dict(unit_entries(UNIT)["Service"])


def assignments(text: str) -> dict[str, str]:
    """``A=1 B="two words"`` (systemd's Environment=, Docker's ENV) as a mapping."""
    return dict(assignment.split("=", 1) for assignment in shlex.split(text))


def test_the_unit_is_a_notify_service_that_reloads_with_sighup():
    entries = service()

    assert entries["Type"] == "notify"  # chinwag/server/sd_notify.py
    assert entries["ExecStart"].split()[1:] == ["serve"]
    assert entries["ExecReload"] == "/bin/kill -HUP $MAINPID"
    assert entries["RestartPreventExitStatus"] == "2"  # the settings do not load
    assert entries["User"] == entries["Group"] == "chinwag"


def test_the_unit_is_hardened_and_writes_only_its_state_directory():
    entries = service()

    for key, value in {
        "NoNewPrivileges": "yes",
        "ProtectSystem": "strict",
        "ProtectHome": "yes",
        "PrivateTmp": "yes",
        "StateDirectory": "chinwag",
        "StateDirectoryMode": "0700",
        "CapabilityBoundingSet": "",
    }.items():
        assert entries[key] == value, key
    assert "ReadWritePaths" not in entries


def test_the_unit_s_settings_file_puts_data_in_its_state_directory():
    entries = service()
    environment = assignments(entries["Environment"])
    settings = load_settings(SERVICE_SETTINGS)

    assert environment["CHINWAG_CONFIG"] == "/etc/chinwag/chinwag.toml"
    assert settings.data_path == Path("/var/lib", entries["StateDirectory"])
    assert entries["WorkingDirectory"] == str(settings.data_path)
    # The deploy hook of docs/operations.md copies certbot's files beside the settings.
    assert settings.tls_cert_path == SERVICE_SETTINGS.parent / "tls" / "fullchain.pem"
    assert settings.tls_key_path == SERVICE_SETTINGS.parent / "tls" / "privkey.pem"
    assert settings.http.host == "127.0.0.1" and settings.http.public_url.startswith("https://")


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="no systemd-analyze")
def test_systemd_analyze_verifies_the_unit(tmp_path):
    unit = tmp_path / "chinwag.service"
    # verify checks that ExecStart's program exists: this installation's chinwag.
    unit.write_text(UNIT.read_text().replace("/opt/chinwag/bin/chinwag", str(CHINWAG)))

    result = subprocess.run(
        ["systemd-analyze", "verify", "--man=no", str(unit)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    assert result.stderr == "", result.stderr  # an unknown key or value is only a warning


@pytest.mark.skipif(shutil.which("systemd-sysusers") is None, reason="no systemd-sysusers")
def test_systemd_sysusers_makes_the_unit_s_user(tmp_path):
    (tmp_path / "etc").mkdir()

    result = subprocess.run(
        ["systemd-sysusers", f"--root={tmp_path}", str(SYSUSERS)],
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert result.returncode == 0, result.stderr
    [user] = [line.split(":") for line in (tmp_path / "etc" / "passwd").read_text().splitlines()]
    assert user[0] == service()["User"]
    assert user[5] == "/var/lib/chinwag"


def dockerfile() -> list[tuple[str, str]]:
    """The instructions (name, arguments), continuation lines joined."""
    instructions: list[tuple[str, str]] = []
    pending = ""
    for line in DOCKERFILE.read_text().splitlines():
        if not pending and (not line.strip() or line.lstrip().startswith("#")):
            continue
        pending += line.rstrip().removesuffix("\\") + " "
        if not line.rstrip().endswith("\\"):
            name, _, arguments = pending.strip().partition(" ")
            instructions.append((name.upper(), " ".join(arguments.split())))
            pending = ""
    return instructions


def arguments(name: str) -> list[str]:
    return [found for instruction, found in dockerfile() if instruction == name]


def test_the_image_is_built_in_two_stages_on_debian_slim_with_debian_s_python():
    stages = arguments("FROM")
    installed = " ".join(arguments("RUN"))

    assert len(stages) == 2
    assert all(stage.startswith("debian:bookworm-slim") for stage in stages)
    assert "apt-get install -y --no-install-recommends python3 " in installed


def test_every_file_the_image_copies_is_in_the_build_context():
    ignored = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text().splitlines()
        if line.strip() and not line.startswith("#")
    ]
    copied = [copy.split()[:-1] for copy in arguments("COPY") if not copy.startswith("--from=")]

    assert copied
    for sources in copied:
        for source in sources:
            assert (ROOT / source).exists(), source
            assert not _ignored(source.rstrip("/"), ignored), source


def _ignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule: the last pattern that matches the path or a parent of it decides."""
    parents = [str(Path(*Path(path).parts[:end])) for end in range(1, len(Path(path).parts) + 1)]
    decision = False
    for pattern in patterns:
        wanted = pattern.startswith("!")
        bare = pattern.removeprefix("!").rstrip("/")
        if any(fnmatch.fnmatchcase(each, bare) for each in parents):
            decision = not wanted
    return decision


def test_the_image_runs_serve_as_a_user_with_its_data_on_a_volume():
    copies = [copy.split() for copy in arguments("COPY") if not copy.startswith("--from=")]
    settings_file = {copy[-1]: copy[0] for copy in copies if len(copy) == 2}
    environment = assignments(" ".join(arguments("ENV")))
    config = environment["CHINWAG_CONFIG"]
    settings = load_settings(ROOT / settings_file[config])
    [user] = arguments("USER")
    [volume] = arguments("VOLUME")
    [exposed] = arguments("EXPOSE")
    [command] = arguments("CMD")
    [healthcheck] = arguments("HEALTHCHECK")

    assert user not in ("root", "0")
    assert json.loads(volume) == [str(settings.data_path)]
    assert exposed.split() == [
        str(settings.c2s.port),
        str(settings.c2s.direct_tls_port),
        str(settings.http.port),
    ]
    assert "0.0.0.0" == settings.c2s.host == settings.http.host  # reachable from outside
    assert json.loads(command) == ["chinwag", "serve"]
    assert f"http://127.0.0.1:{settings.http.port}/health" in healthcheck


def test_the_files_the_operations_page_names_are_in_the_repository():
    text = (ROOT / "docs" / "operations.md").read_text()
    named = set(re.findall(r"\bcontrib/[\w./-]*[\w/]", text))

    assert len(named) >= 6
    for path in sorted(named):
        assert (ROOT / path).exists(), path
    assert "`Dockerfile`" in text and DOCKERFILE.exists()


def test_the_certbot_hook_copies_to_where_the_service_settings_point():
    hook = (ROOT / "contrib" / "certbot" / "chinwag").read_text()
    [tls_dir] = re.findall(r'CHINWAG_TLS_DIR:=([^}"]+)', hook)
    [config] = re.findall(r'CHINWAG_CONFIG:=([^}"]+)', hook)
    settings = load_settings(SERVICE_SETTINGS)

    assert config == assignments(service()["Environment"])["CHINWAG_CONFIG"]
    installed = Path(config).parent
    assert installed / settings.tls_cert_path.relative_to(SERVICE_SETTINGS.parent) == Path(
        tls_dir, "fullchain.pem"
    )
    assert installed / settings.tls_key_path.relative_to(SERVICE_SETTINGS.parent) == Path(
        tls_dir, "privkey.pem"
    )
