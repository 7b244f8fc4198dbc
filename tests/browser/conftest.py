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
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import pytest
from integration.conftest import connect, empty_store, new_client, server, start_server

from tests.browser_example import BuildFailed, NotBuilt, build_browser_example
from tests.debian import apt_install

__all__ = ["connect", "empty_store", "new_client", "server", "start_server"]

REPO = Path(__file__).resolve().parents[2]
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
    try:
        return build_browser_example()
    except NotBuilt as reason:
        pytest.skip(str(reason))
    except BuildFailed as failure:
        pytest.fail(str(failure))


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
