"""The HTTP listener: uvicorn, run inside chinwag's own event loop.

chinwag's process owns its signals (``chinwag serve`` stops every service
gracefully on SIGINT and SIGTERM), so uvicorn's signal handling is switched off
and the listener is started and stopped like the XMPP one. The socket is bound
here, before uvicorn starts, so that an unusable address is an ``OSError`` from
:meth:`HTTPServer.start` and port 0 gives a port :attr:`HTTPServer.port` reports.
Stopping is prompt: uvicorn's tick loop is woken at once, and with no connection
open its shutdown does not wait for any (a server stops in milliseconds, not 0.2 s).
Only the proxies of ``[http] trusted_proxies`` (not uvicorn's environment variable)
may set a request's scheme and client address with ``X-Forwarded-*`` headers.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import Iterator

import uvicorn
from starlette.types import ASGIApp

from chinwag.config import HTTPSettings

GRACEFUL_SHUTDOWN_SECONDS = 5
_STARTUP_POLL_SECONDS = 0.01
_TICK_SECONDS = 0.1
_TICKS_PER_DAY = 864_000


class _EmbeddedUvicorn(uvicorn.Server):
    def __init__(self, config: uvicorn.Config) -> None:
        super().__init__(config)
        self.stop_requested = asyncio.Event()

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield  # the process's signals are chinwag's, not uvicorn's

    async def main_loop(self) -> None:
        """uvicorn's loop of ticks (one per 0.1 s: the Date header, the exit check), woken
        at once by ``stop_requested`` rather than at the next tick."""
        tick = 0
        while not await self.on_tick(tick):
            tick = (tick + 1) % _TICKS_PER_DAY
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.stop_requested.wait(), _TICK_SECONDS)

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        """uvicorn's shutdown gives open connections 0.1 s to notice before it waits for
        them; with none open, closing the listener is all there is to do."""
        if self.server_state.connections or self.server_state.tasks:
            await super().shutdown(sockets)
            return
        for server in self.servers:
            server.close()
        for sock in sockets or []:
            sock.close()
        for server in self.servers:
            await server.wait_closed()
        await self.lifespan.shutdown()


class HTTPServer:
    """Serves ``app`` on ``settings.host``:``settings.port`` in the running event loop."""

    def __init__(
        self,
        app: ASGIApp,
        settings: HTTPSettings,
        *,
        websocket_max_bytes: int = 1 << 24,
        reuse_port: bool = False,
    ) -> None:
        """``reuse_port``: other processes may listen on the same port (SO_REUSEPORT)."""
        self._app = app
        self._reuse_port = reuse_port
        self._settings = settings
        self._websocket_max_bytes = websocket_max_bytes
        """A longer WebSocket message is refused by uvicorn itself (close code 1009); the
        XMPP stream refuses one over its stanza limit with a stream error first."""
        self._socket: socket.socket | None = None
        self._server: _EmbeddedUvicorn | None = None
        self._task: asyncio.Task[None] | None = None

    @property
    def port(self) -> int:
        """The bound port (the one chosen by the system when configured as 0)."""
        if self._socket is None:
            raise RuntimeError("the HTTP server is not started")
        port: int = self._socket.getsockname()[1]
        return port

    async def start(self) -> None:
        """Bind and start serving; returns once requests are accepted."""
        self._socket = _bind(self._settings.host, self._settings.port, self._reuse_port)
        config = uvicorn.Config(
            self._app,
            lifespan="off",
            log_config=None,
            access_log=False,
            server_header=False,
            timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
            ws_max_size=self._websocket_max_bytes,
            # X-Forwarded-Proto and X-Forwarded-For count from these proxies only.
            proxy_headers=True,
            forwarded_allow_ips=list(self._settings.trusted_proxies),
        )
        self._server = _EmbeddedUvicorn(config)
        self._task = asyncio.create_task(self._server.serve(sockets=[self._socket]))
        while not self._server.started:
            if self._task.done():
                await self._task  # raises what stopped it
            await asyncio.sleep(_STARTUP_POLL_SECONDS)

    async def stop(self) -> None:
        """Stop accepting, let running requests finish (a few seconds at most), close."""
        if self._server is None or self._task is None:
            return
        self._server.should_exit = True
        self._server.stop_requested.set()
        await self._task
        self._server = self._task = None


def _bind(host: str, port: int, reuse_port: bool) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, reuse_port=reuse_port)
