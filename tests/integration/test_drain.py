"""``chinwag drain`` on a ``chinwag serve`` process: it stops accepting, sends every
client to the other node with <see-other-host/> (RFC 6120 4.9.3.19), which slixmpp
follows, and stops once they have gone; without a node to send them to, it refuses and
the server serves on, and SIGUSR1 stops it as SIGTERM does."""

from __future__ import annotations

import asyncio
import json
import signal
from pathlib import Path
from typing import Any

from slixmpp import ClientXMPP

from .signin_support import run_chinwag
from .support import TIMEOUT, NewClient, ServerHandle, sign_in, watch
from .test_serve import ServeProcess, server_config
from .test_serve import processes as processes  # a fixture
from .test_serve import template_data as template_data  # a fixture


async def serve_in(
    directory: Path, template_data: Path, processes: list[ServeProcess]
) -> tuple[Path, ServerHandle, ServeProcess]:
    directory.mkdir()
    config, handle = server_config(directory, template_data)
    serve = await ServeProcess.start("--config", str(config), cwd=directory)
    processes.append(serve)
    await serve.announced()
    return config, handle, serve


def follow_see_other_host(client: ClientXMPP) -> None:
    """slixmpp (1.17) takes the host and port of <see-other-host/> and reconnects, but a
    client that was given an address to connect to goes back to that one: like a client
    that found the server through DNS, this one goes where it is sent."""

    def redirected(error: Any) -> None:
        if error["condition"] == "see-other-host":
            host, port = error["see_other_host"].rsplit(":", 1)
            client.custom_address = (host, int(port))

    client.add_event_handler("stream_error", redirected)


def peer_port(client: object) -> int:
    transport = client.transport  # type: ignore[attr-defined]
    port: int = transport.get_extra_info("peername")[1]
    return port


async def test_drained_clients_follow_see_other_host_to_the_other_node_and_it_stops(
    tmp_path: Path, template_data: Path, processes: list[ServeProcess], new_client: NewClient
) -> None:
    config_a, a, serve_a = await serve_in(tmp_path / "a", template_data, processes)
    _config_b, b, _serve_b = await serve_in(tmp_path / "b", template_data, processes)
    alice, bob = new_client(a, "alice", "laptop"), new_client(a, "bob", "phone")
    for client in (alice, bob):
        follow_see_other_host(client)
        await sign_in(client, a.host, a.port)
    assert peer_port(alice) == a.port
    errors = [watch(client, "stream_error") for client in (alice, bob)]
    restarted = [watch(client, "session_start") for client in (alice, bob)]

    drained = await run_chinwag(config_a, "drain", "--to", f"{b.host}:{b.port}", "--json")

    assert drained.returncode == 0, drained.stderr
    answer = json.loads(drained.stdout)
    assert answer == {
        "to": f"{b.host}:{b.port}",
        "sent": 2,
        "timeout_seconds": 30,
        "pid": serve_a.process.pid,
        "stopped": True,
    }
    assert await asyncio.wait_for(serve_a.process.wait(), TIMEOUT) == 0, serve_a.output
    for error in errors:
        received = await asyncio.wait_for(error, TIMEOUT)
        assert received["condition"] == "see-other-host"
        assert received["see_other_host"] == f"{b.host}:{b.port}"
    await asyncio.wait_for(asyncio.gather(*restarted), TIMEOUT)
    assert peer_port(alice) == peer_port(bob) == b.port
    assert "sent 2 client streams to" in serve_a.output


async def test_a_drain_without_a_node_to_send_clients_to_is_refused_and_sigusr1_stops(
    tmp_path: Path, template_data: Path, processes: list[ServeProcess], new_client: NewClient
) -> None:
    config, handle, serve = await serve_in(tmp_path / "a", template_data, processes)
    alice = new_client(handle, "alice", "laptop")
    await sign_in(alice, handle.host, handle.port)

    ended = watch(alice, "stream_error")

    nowhere, malformed = await asyncio.gather(
        run_chinwag(config, "drain"), run_chinwag(config, "drain", "--to", "b.example.org")
    )

    assert nowhere.returncode == 1
    assert "give the address to send the clients to (--to HOST:PORT)" in nowhere.stderr
    assert malformed.returncode == 1
    assert "'b.example.org' is not HOST:PORT" in malformed.stderr
    assert await alice.plugin["xep_0199"].send_ping(handle.domain, timeout=5) is not None
    # SIGUSR1 finds no node either (no [cluster]): the server stops as on SIGTERM.
    assert await serve.stop(signal.SIGUSR1) == 0
    assert (await asyncio.wait_for(ended, TIMEOUT))["condition"] == "system-shutdown"
    assert "not drained: give the address" in serve.output
