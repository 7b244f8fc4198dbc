"""The TCP listener: every pending connection accepted at once, nothing after close.

Each test runs on both loops chinwag serves with: the standard one, and uvloop."""

from __future__ import annotations

import asyncio
import errno
import socket
import time
from collections.abc import AsyncIterator, Callable, Coroutine
from contextlib import asynccontextmanager
from typing import Any

import pytest
import uvloop

from chinwag.server import tcp

PENDING = 30
LOOPS = pytest.mark.parametrize(
    "loop_factory", [asyncio.new_event_loop, uvloop.new_event_loop], ids=["asyncio", "uvloop"]
)


def run(
    loop_factory: Callable[[], asyncio.AbstractEventLoop], test: Coroutine[Any, Any, None]
) -> None:
    with asyncio.Runner(loop_factory=loop_factory) as runner:
        runner.run(test)


class Recorder(asyncio.Protocol):
    made: list[asyncio.BaseTransport] = []

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        Recorder.made.append(transport)


@asynccontextmanager
async def listening() -> AsyncIterator[tcp.Listener]:
    Recorder.made = []
    listener = tcp.Listener(await tcp._bound_sockets("127.0.0.1", 0), Recorder, None)
    try:
        yield listener
    finally:
        listener.close()
        await listener.wait_closed()
        for transport in Recorder.made:
            transport.close()


@pytest.fixture
def wakeups(monkeypatch: pytest.MonkeyPatch) -> list[int]:
    """One entry per time a listener found its socket readable."""
    counted: list[int] = []
    accept = tcp.Listener._accept

    def counting(self: tcp.Listener, listening_socket: socket.socket) -> None:
        counted.append(1)
        accept(self, listening_socket)

    monkeypatch.setattr(tcp.Listener, "_accept", counting)
    return counted


@LOOPS
def test_every_pending_connection_is_accepted_in_one_wakeup(loop_factory, wakeups) -> None:
    async def scenario() -> None:
        async with listening() as listener:
            address = listener.sockets[0].getsockname()
            # Connected by the kernel while the loop is busy right here.
            clients = [socket.create_connection(address) for _ in range(PENDING)]
            try:
                async with asyncio.timeout(5):
                    while len(Recorder.made) < PENDING:
                        await asyncio.sleep(0.01)
                assert len(wakeups) == 1
                for transport in Recorder.made:
                    sock = transport.get_extra_info("socket")
                    assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY)
            finally:
                for client in clients:
                    client.close()

    run(loop_factory, scenario())


@LOOPS
def test_a_closed_listener_refuses_connections(loop_factory) -> None:
    async def scenario() -> None:
        async with listening() as listener:
            address = listener.sockets[0].getsockname()
            listener.close()
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection(address, timeout=1).close()

    run(loop_factory, scenario())


async def test_a_busy_port_names_its_address() -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]

        with pytest.raises(OSError, match=f"bind on address \\('127.0.0.1', {port}\\)"):
            await tcp._bound_sockets("127.0.0.1", port)


@LOOPS
def test_out_of_file_descriptors_pauses_accepting_then_resumes(
    loop_factory, wakeups, monkeypatch, caplog
) -> None:
    monkeypatch.setattr(tcp, "ACCEPT_RETRY_S", 0.05)
    accept = socket.socket.accept
    out_of_descriptors_until = time.monotonic() + 0.03

    def accept_or_fail(self: socket.socket):
        if time.monotonic() < out_of_descriptors_until:
            raise OSError(errno.EMFILE, "Too many open files")
        return accept(self)

    monkeypatch.setattr(socket.socket, "accept", accept_or_fail)

    async def scenario() -> None:
        async with listening() as listener:
            client = socket.create_connection(listener.sockets[0].getsockname())
            try:
                async with asyncio.timeout(5):
                    while not Recorder.made:
                        await asyncio.sleep(0.01)
                assert len(wakeups) == 2  # the failed one, then one after the pause: no spinning
            finally:
                client.close()

    run(loop_factory, scenario())
    assert caplog.text.count("cannot accept connections") == 1


async def test_an_empty_host_listens_on_every_interface() -> None:
    sockets = await tcp._bound_sockets("", 0)
    try:
        assert {sock.getsockname()[0] for sock in sockets} >= {"0.0.0.0"}
    finally:
        for sock in sockets:
            sock.close()
