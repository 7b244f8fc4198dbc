"""Fixtures of the browser tests: Debian's headless Chromium driven by Playwright.

The setup installs what it needs itself, and says why it skips when it cannot:

- Chromium is Debian's ``chromium`` package (with ``chromium-driver``), installed
  with apt-get when ``/usr/bin/chromium`` is missing and the tests run as root.
  Playwright launches that executable; it never downloads a browser of its own
  (``playwright install`` is never run).
- Playwright is the ``playwright`` package of the test extras.
- The browser example is built with npm (``npm ci`` and ``npm run build`` in
  ``examples/browser/``), as docs/getting-started.md says, one test process at a time.

A test that fails leaves a screenshot in ``test-artifacts/``.
"""

from __future__ import annotations

import contextlib
import shlex
import shutil
import subprocess
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from examples.support import DOC_BUILD
from integration.conftest import connect, empty_store, new_client, server, start_server

from tests.debian import apt_install
from tests.machine_lock import machine_lock

__all__ = ["connect", "empty_store", "new_client", "server", "start_server"]

REPO = Path(__file__).resolve().parents[2]
BROWSER_EXAMPLE = REPO / "examples" / "browser"
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-proxy-server",
]
NPM_TIMEOUT = 300.0
QUIET = ["--no-audit", "--no-fund", "--loglevel=error"]
BUILD_COMMANDS = [[*shlex.split(part), *QUIET] for part in DOC_BUILD.split(" && ")]
"""The build commands of docs/getting-started.md, run from the repository's root."""


@pytest.fixture(scope="session")
def chromium() -> Path:
    """Debian's Chromium, installed if missing (as root); else the tests skip."""
    if not CHROMIUM.exists():
        problem = apt_install("chromium", "chromium-driver")
        if problem is not None or not CHROMIUM.exists():
            pytest.skip(f"Debian's chromium is not installed and could not be: {problem}")
    return CHROMIUM


@pytest.fixture(scope="session")
def browser_example() -> Path:
    """The built browser example (``examples/browser/dist``), built with npm here."""
    if shutil.which("npm") is None or shutil.which("node") is None:
        pytest.skip("node and npm are not installed: cannot build examples/browser")
    with machine_lock("npm", BROWSER_EXAMPLE):
        for command in BUILD_COMMANDS:
            _build_step(command)
    built = BROWSER_EXAMPLE / "dist"
    assert (built / "index.html").is_file() and (built / "xmpp.min.js").is_file()
    return built


def _build_step(command: list[str]) -> None:
    if command[1] == "ci" and (BROWSER_EXAMPLE / "node_modules" / "@xmpp" / "client").is_dir():
        return  # already installed: npm ci would only reinstall the same
    try:
        result = subprocess.run(
            command, cwd=REPO, capture_output=True, text=True, timeout=NPM_TIMEOUT
        )
    except subprocess.TimeoutExpired:
        pytest.skip(f"{' '.join(command)} did not finish within {NPM_TIMEOUT:.0f}s")
    if result.returncode != 0:
        pytest.fail(f"{' '.join(command)} failed: {result.stderr.strip()[-800:]}")


@pytest.fixture
async def browser(chromium: Path) -> AsyncIterator[Any]:
    """A fresh Playwright browser on Debian's Chromium (headless)."""
    try:
        from playwright.async_api import async_playwright
    except ImportError:
        pytest.skip("playwright is not installed: pip install -e '.[test]'")
    async with async_playwright() as playwright:
        launched = await playwright.chromium.launch(
            executable_path=str(chromium), headless=True, args=CHROMIUM_ARGS, timeout=20_000
        )
        try:
            yield launched
        finally:
            await launched.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Iterator[Any]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
async def page(browser: Any, request: pytest.FixtureRequest) -> AsyncIterator[Any]:
    """A page in a new browser context; its screenshot is saved if the test fails."""
    context = await browser.new_context(viewport={"width": 1100, "height": 800})
    context.set_default_timeout(10_000)
    opened = await context.new_page()
    messages: list[str] = []
    opened.on("console", lambda message: messages.append(f"{message.type}: {message.text}"))
    opened.on("pageerror", lambda error: messages.append(f"pageerror: {error}"))
    try:
        yield opened
    finally:
        if request.node.stash.get(_FAILED, False):
            ARTIFACTS.mkdir(exist_ok=True)
            stem = ARTIFACTS / request.node.name
            with contextlib.suppress(Exception):
                await opened.screenshot(path=f"{stem}.png", full_page=True)
            (ARTIFACTS / f"{request.node.name}.console.txt").write_text("\n".join(messages))
        await context.close()
