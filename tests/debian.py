"""Debian packages that tests need (Chromium, Prosody), installed with apt-get when they
are missing and the tests run as root; otherwise the tests that need them skip and say
why. A package's own service is never started: these tests run their own instances.
One install runs at a time on the machine (parallel test workers wait for each other,
and apt-get waits for any other holder of dpkg's lock)."""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tests.machine_lock import machine_lock

APT_TIMEOUT = 600.0
POLICY_RC_D = Path("/usr/sbin/policy-rc.d")
"""While it exits 101, Debian's maintainer scripts start no service (invoke-rc.d)."""


def apt_install(*packages: str) -> str | None:
    """Install Debian packages without starting their services; None on success, else
    why not."""
    if shutil.which("apt-get") is None:
        return "apt-get is not available"
    if os.geteuid() != 0:
        return "the tests do not run as root, so cannot apt-get install"
    with machine_lock("apt-get"):
        if all(_installed(package) for package in packages):
            return None  # another test process installed them meanwhile
        return _install(packages)


def _installed(package: str) -> bool:
    query = ["dpkg-query", "--show", "--showformat=${db:Status-Status}", package]
    found = subprocess.run(query, capture_output=True, text=True, check=False)
    return found.returncode == 0 and found.stdout == "installed"


def _install(packages: tuple[str, ...]) -> str | None:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    wait_for_dpkg = ["-o", f"DPkg::Lock::Timeout={APT_TIMEOUT:.0f}"]
    placed_policy = _forbid_service_starts()
    try:
        for command in (
            ["apt-get", *wait_for_dpkg, "update", "-q"],
            [
                "apt-get",
                *wait_for_dpkg,
                "install",
                "-y",
                "-q",
                "--no-install-recommends",
                *packages,
            ],
        ):
            result = subprocess.run(
                command, capture_output=True, text=True, timeout=APT_TIMEOUT, env=env
            )
            if result.returncode != 0:
                return f"{' '.join(command)} failed: {result.stderr.strip()[-400:]}"
    except subprocess.TimeoutExpired:
        return f"apt-get did not finish within {APT_TIMEOUT:.0f}s"
    finally:
        if placed_policy:
            POLICY_RC_D.unlink(missing_ok=True)
    return None


def _forbid_service_starts() -> bool:
    """Put a policy-rc.d in place unless the machine has one; whether it was placed."""
    if POLICY_RC_D.exists():
        return False
    with tempfile.NamedTemporaryFile("w", dir=POLICY_RC_D.parent, delete=False) as script:
        script.write("#!/bin/sh\nexit 101\n")
    os.chmod(script.name, 0o755)
    os.replace(script.name, POLICY_RC_D)
    return True
