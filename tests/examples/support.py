"""Helpers shared by the tests of ``examples/``: processes whose output is read line
by line, and a browser played over HTTP on chinwag's sign-in and consent forms.

Every wait is bounded.
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import sys
from collections.abc import Mapping
from pathlib import Path

import httpx
from oauth.support import form_to, submit

REPO = Path(__file__).resolve().parents[2]
PYTHON_EXAMPLE = REPO / "examples" / "python" / "chat.py"
URL_LINE = re.compile(r"^Open this page to sign in: (\S+)$")


class LineProcess:
    """A subprocess whose stdout and stderr are collected line by line."""

    def __init__(self, process: asyncio.subprocess.Process) -> None:
        self.process = process
        self.lines: list[str] = []
        self._changed = asyncio.Event()
        self._reader = asyncio.ensure_future(self._read())

    @classmethod
    async def start(cls, *args: str, env: Mapping[str, str] | None = None) -> LineProcess:
        process = await asyncio.create_subprocess_exec(
            *args,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.STDOUT,
            env=dict(env) if env is not None else None,
        )
        return cls(process)

    async def _read(self) -> None:
        assert self.process.stdout is not None
        while line := await self.process.stdout.readline():
            self.lines.append(line.decode(errors="replace").rstrip())
            self._changed.set()
        self._changed.set()

    @property
    def output(self) -> str:
        return "\n".join(self.lines)

    async def line(self, pattern: str | re.Pattern[str], timeout: float) -> re.Match[str]:
        """The first output line matching ``pattern`` (searched), waiting up to ``timeout``."""
        regex = re.compile(pattern)

        async def wait() -> re.Match[str]:
            while True:
                for text in self.lines:
                    if found := regex.search(text):
                        return found
                if self._reader.done():
                    raise AssertionError(
                        f"the process ended without printing {regex.pattern!r}:\n{self.output}"
                    )
                self._changed.clear()
                await self._changed.wait()

        try:
            return await asyncio.wait_for(wait(), timeout)
        except TimeoutError:
            raise AssertionError(
                f"no line {regex.pattern!r} within {timeout}s:\n{self.output}"
            ) from None

    async def wait(self, timeout: float) -> int:
        try:
            status = await asyncio.wait_for(self.process.wait(), timeout)
        except TimeoutError:
            raise AssertionError(f"still running after {timeout}s:\n{self.output}") from None
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._reader, timeout)
        return status

    async def stop(self) -> None:
        """Kill the process if it still runs (bounded)."""
        if self.process.returncode is None:
            self.process.kill()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.process.wait(), 5)
        self._reader.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await self._reader


def python_example_command(*args: str) -> list[str]:
    return [sys.executable, str(PYTHON_EXAMPLE), *args]


async def approve_in_browser(
    authorize_url: str, user: str, password: str, timeout: float = 10.0
) -> httpx.Response:
    """Play the user's browser: open ``authorize_url``, sign in, allow the app, and follow
    the redirect to the app's redirect URI; returns the redirect URI's answer."""
    async with httpx.AsyncClient(follow_redirects=False, timeout=timeout) as web:
        page = await web.get(authorize_url)
        assert page.status_code == 200, page.text
        base = httpx.URL(authorize_url)
        signin = form_to(page, "/account/signin")
        signin.action = str(base.join(signin.action))
        signed_in = await submit(web, signin, username=user, password=password)
        assert signed_in.status_code == 303, signed_in.text
        consent = await web.get(base.join(signed_in.headers["location"]))
        assert consent.status_code == 200, consent.text
        form = form_to(consent, "/oauth/authorize")
        form.action = str(base.join(form.action))
        redirect = await submit(web, form, decision="approve")
        assert redirect.status_code == 302, redirect.text
        return await web.get(redirect.headers["location"])


DOC_BUILD = "npm ci --prefix examples/browser && npm run build --prefix examples/browser"
"""How docs/getting-started.md builds the browser example, from the repository's root."""
