"""HTTPServer (uvicorn inside chinwag's event loop) and the cookie-signing secret."""

import asyncio
import stat

import httpx
import pytest
from starlette.applications import Starlette

from chinwag.config import HTTPSettings
from chinwag.web import server as web_server
from chinwag.web.app import SECRET_FILE, signing_secret
from chinwag.web.server import HTTPServer
from oauth.support import shared_loop


@shared_loop
async def test_it_serves_on_the_port_the_system_chose(platform):
    async with httpx.AsyncClient(base_url=platform.base) as client:
        response = await client.get("/")
    assert response.status_code == 303
    assert response.headers["location"] == "/account/apps"
    assert "server" not in response.headers


@shared_loop
async def test_after_stop_nothing_listens():
    server = HTTPServer(Starlette(), HTTPSettings(port=0))
    await server.start()
    port = server.port

    await server.stop()
    await server.stop()

    with pytest.raises(httpx.ConnectError):
        async with httpx.AsyncClient() as client:
            await client.get(f"http://127.0.0.1:{port}/")


@shared_loop
async def test_stop_wakes_the_server_without_waiting_for_its_next_tick(monkeypatch):
    monkeypatch.setattr(web_server, "_TICK_SECONDS", 3600.0)  # a tick it must not wait out
    server = HTTPServer(Starlette(), HTTPSettings(port=0))
    await server.start()
    async with httpx.AsyncClient() as client:  # the Date header comes from the first tick
        response = await client.get(f"http://127.0.0.1:{server.port}/")
    assert "date" in response.headers

    async with asyncio.timeout(10):
        await server.stop()


@shared_loop
async def test_stop_closes_a_connection_left_open_and_stops_listening():
    server = HTTPServer(Starlette(), HTTPSettings(port=0))
    await server.start()
    url = f"http://127.0.0.1:{server.port}/"
    async with httpx.AsyncClient() as client:
        assert (await client.get(url)).status_code == 404  # the connection stays open

        async with asyncio.timeout(10):
            await server.stop()

        with pytest.raises(httpx.TransportError):
            await client.get(url)


@shared_loop
async def test_a_port_in_use_fails_at_start():
    first = HTTPServer(Starlette(), HTTPSettings(port=0))
    await first.start()
    try:
        with pytest.raises(OSError):
            await HTTPServer(Starlette(), HTTPSettings(port=first.port)).start()
    finally:
        await first.stop()


def test_the_signing_secret_is_made_once_and_private(tmp_path):
    secret = signing_secret(tmp_path / "data")

    path = tmp_path / "data" / SECRET_FILE
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(secret) >= 32
    assert signing_secret(tmp_path / "data") == secret


def test_a_truncated_secret_is_refused(tmp_path):
    (tmp_path / SECRET_FILE).write_text("short\n")

    with pytest.raises(RuntimeError, match="delete it"):
        signing_secret(tmp_path)
