"""What routing one message costs chinwag's own code, without sockets or a load generator.

    python -m bench.inprocess [--reads N] [--rounds R]

Two contacts are provisioned in a temporary directory, as for the benchmark, and
chinwag's services start in this process. Both users sign in through the same
stream code a socket drives, over stand-in transports, and the first is fed reads of
seven chat messages to the second, like the ``msg-sat`` scenario's. The figure is
the time per routed message: parsing, the stream, dispatch, the contact check,
routing and queueing the write (the event loop flushes once per hundred reads, as it
flushes once per turn under load), without the kernel's share of the I/O.

It moves with the machine's speed: to compare two versions of the hot path, run
them in turn, several times each. Under a profiler (``py-spy record -- python -m
bench.inprocess``), it shows where that time goes.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from bench.loadgen import AUTH, BIND, CHAT, DOMAIN, PASSWORD, STREAM_HEADER, user_name
from bench.servers import Chinwag, make_certificate
from chinwag.app import running
from chinwag.config import load_settings
from chinwag.server.c2s import C2SConnection
from chinwag.server.xmpp_server import XMPPServer

MESSAGES_PER_READ = 7
READS_PER_TURN = 100
SIGN_IN_TIMEOUT_S = 10.0
HEADER = STREAM_HEADER.format(domain=DOMAIN).encode()


class StandInTransport:
    """A transport that counts what it is given to send and sends nothing."""

    kind = "tcp"
    secure = False

    def __init__(self) -> None:
        self.elements = 0

    def writelines(self, items: list[bytes]) -> int:
        self.elements += len(items)
        return 0

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def start_tls(self) -> None:
        raise ConnectionError("no TLS in process")


async def _until(done: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + SIGN_IN_TIMEOUT_S
    while not done():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} took longer than {SIGN_IN_TIMEOUT_S:.0f} s")
        await asyncio.sleep(0.005)


async def sign_in(server: XMPPServer, user: str) -> tuple[C2SConnection, StandInTransport]:
    """Authenticate ``user`` with SASL PLAIN, bind a resource and send initial presence."""
    transport = StandInTransport()
    connection = C2SConnection(server, transport)
    connection.data_received(HEADER)
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    connection.data_received(AUTH.format(token=token).encode())
    await _until(lambda: connection.stream.username is not None, f"{user}'s authentication")
    connection.data_received(HEADER)
    connection.data_received(BIND.encode())
    await _until(lambda: connection.session is not None, f"{user}'s resource binding")
    connection.data_received(b"<presence/>")
    return connection, transport


def message_reads(reads: int, to: str) -> list[bytes]:
    return [
        b"".join(
            CHAT % (to.encode(), read * MESSAGES_PER_READ + n, time.monotonic_ns())
            for n in range(MESSAGES_PER_READ)
        )
        for read in range(reads)
    ]


async def measure(config: Path, reads: int, rounds: int) -> list[float]:
    """Microseconds per routed message, one figure per round."""
    settings = load_settings(config)
    async with running(settings) as app:
        sender, _ = await sign_in(app.xmpp, user_name(0))
        _, recipient = await sign_in(app.xmpp, user_name(1))
        await asyncio.sleep(0.05)  # presence and roster pushes settle
        batches = message_reads(reads, f"{user_name(1)}@{DOMAIN}")
        figures = []
        for _round in range(rounds + 1):  # the first warms up
            before = recipient.elements
            started = time.perf_counter()
            for index, data in enumerate(batches, 1):
                sender.data_received(data)
                if index % READS_PER_TURN == 0:
                    await asyncio.sleep(0)
            await asyncio.sleep(0)
            elapsed = time.perf_counter() - started
            delivered = recipient.elements - before
            if delivered != reads * MESSAGES_PER_READ:
                raise RuntimeError(f"{delivered} of {reads * MESSAGES_PER_READ} delivered")
            figures.append(elapsed / delivered * 1e6)
        return figures[1:]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--reads", type=int, default=1000, help="reads of 7 messages per round")
    parser.add_argument("--rounds", type=int, default=9, help="rounds measured (after one warm-up)")
    args = parser.parse_args(argv)
    if args.reads < READS_PER_TURN or args.rounds < 1:
        parser.error(f"--reads must be at least {READS_PER_TURN} and --rounds at least 1")
    with tempfile.TemporaryDirectory(prefix="chinwag-inprocess-") as directory:
        workdir = Path(directory)
        server = Chinwag(workdir, make_certificate(workdir))
        server.provision(2)
        work = measure(server.config, args.reads, args.rounds)
        try:
            import uvloop
        except ImportError:
            figures = asyncio.run(work)
        else:
            figures = uvloop.run(work)
    print(
        f"{args.reads * MESSAGES_PER_READ:,} messages per round, {args.rounds} rounds: "
        f"{statistics.median(figures):.2f} µs per routed message (median), "
        f"{min(figures):.2f} µs fastest"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
