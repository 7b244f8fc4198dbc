"""What routing one message, or signing in, costs chinwag's own code, without sockets or
a load generator.

    python -m bench.inprocess [--reads N] [--rounds R] [--sm] [--reads-per-turn T]
                              [--archive [--archive-window S]]
    python -m bench.inprocess --sign-ins N [--without-pbkdf2] [--sm]

Two contacts are provisioned in a temporary directory, as for the benchmark, and
chinwag's services start in this process. Both users sign in through the same
stream code a socket drives, over stand-in transports, and the first is fed reads of
seven chat messages to the second, like the ``msg-sat`` scenario's. The figure is
the time per routed message: parsing, the stream, dispatch, the contact check,
routing and queueing the write (the event loop flushes once per hundred reads, as it
flushes once per turn under load), without the kernel's share of the I/O.

With ``--sign-ins N``, N users sign in instead, at most 100 at a time as in the
``login`` scenario, each with SASL PLAIN, binding, initial presence and a ping to the
server, and stay signed in. The figure is the event loop's thread's CPU time per
sign-in (the PBKDF2 derivations run on worker threads and are not in it), with the
wall time per sign-in beside it. ``--without-pbkdf2`` replaces the password check on
the worker threads with one that accepts at once, leaving the event loop's work as it
is: ``bench.instructions`` counts sign-ins that way.

With ``--sm`` every user enables XEP-0198 stream management after binding, as the
generator's clients do with ``--sm``: the sender asks for an acknowledgement after
every fifth message, and the recipient acknowledges what it was sent at the end of an
event-loop turn when the server has asked (it asks at most once per turn, and once
``stream_management.request_ack_after`` stanzas wait), as the generator's clients do.

``--reads-per-turn 1`` ends an event-loop turn after every read instead of every
hundred: with ``--sm``, the server then asks the recipient for an acknowledgement about
once per ten messages, and the recipient answers each request, as the generator's
clients do under load.

With ``--archive`` chinwag archives every message (XEP-0313), as ``bench.run
--archive`` has it do; otherwise archiving is off, as in the benchmark.
``--archive-window S`` has each of the archive's batches gather for S seconds instead
of ``modules.mam.BATCH_WINDOW_SECONDS``: under valgrind, some fifty times slower, the
usual window holds a fiftieth of the messages it holds at full speed, so each batch's
fixed cost weighs fifty times more per message; a window longer than the run stores
every message in one batch, at the server's stop.

Once the server has started, its heap is settled as ``chinwag serve`` settles it
(``settle_after_start``: what start-up left alive is frozen out of the garbage
collector's walks). Without that, whether a full collection of the start-up objects
fell among the counted sign-ins depended on how many objects start-up happened to
leave: one did in the larger run of ``bench.instructions`` and not in the smaller,
counting some 155,000 objects walked that ``chinwag serve`` never walks.

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
from collections.abc import Callable, Coroutine, Sequence
from pathlib import Path
from typing import Any, TypeVar

from bench.loadgen import (
    AUTH,
    BIND,
    CHAT,
    DOMAIN,
    PASSWORD,
    SM_ACK,
    SM_ENABLE,
    SM_REQUEST,
    SM_REQUEST_EVERY,
    STREAM_HEADER,
    user_name,
)
from bench.servers import Chinwag, make_certificate
from chinwag.app import running
from chinwag.config import Settings, load_settings
from chinwag.modules import mam
from chinwag.network import accounts
from chinwag.network.accounts import StoredScram
from chinwag.server.c2s import C2SConnection
from chinwag.server.memory import settle_after_start
from chinwag.server.stream_management import StreamManagement
from chinwag.server.xmpp_server import XMPPServer

MESSAGES_PER_READ = 7
READS_PER_TURN = 100
SIGN_IN_TIMEOUT_S = 120.0
SIGN_INS_IN_FLIGHT = 100
WARM_UP_SIGN_INS = 50
_T = TypeVar("_T")
HEADER = STREAM_HEADER.format(domain=DOMAIN).encode()
PING = f"<iq type='get' id='ping' to='{DOMAIN}'><ping xmlns='urn:xmpp:ping'/></iq>".encode()


class StandInTransport:
    """A transport that counts what it is given to send and sends nothing."""

    kind = "tcp"
    secure = False
    peer_address = "127.0.0.1"

    def __init__(self) -> None:
        self.elements = 0
        self.wrote: asyncio.Event | None = None
        """Set at every write while a sign-in waits for an answer."""

    def writelines(self, items: list[bytes]) -> int:
        self.elements += len(items)
        if self.wrote is not None:
            self.wrote.set()
        return 0

    def close(self) -> None:
        pass

    def pause_reading(self) -> None:
        pass

    def resume_reading(self) -> None:
        pass

    async def start_tls(self) -> None:
        raise ConnectionError("no TLS in process")


async def _answered(transport: StandInTransport, done: Callable[[], bool], what: str) -> None:
    """Wait, write by write, until ``done()``."""
    transport.wrote = asyncio.Event()
    try:
        async with asyncio.timeout(SIGN_IN_TIMEOUT_S):
            while not done():
                transport.wrote.clear()
                await transport.wrote.wait()
    except TimeoutError:
        raise RuntimeError(f"{what} took longer than {SIGN_IN_TIMEOUT_S:.0f} s") from None
    finally:
        transport.wrote = None


async def sign_in(
    server: XMPPServer, user: str, *, sm: bool = False
) -> tuple[C2SConnection, StandInTransport]:
    """Authenticate ``user`` with SASL PLAIN, bind a resource, enable stream management
    if ``sm``, send initial presence and ping the server (and then, with stream
    management, acknowledge what the server sent)."""
    transport = StandInTransport()
    connection = C2SConnection(server, transport)
    connection.data_received(HEADER)
    token = base64.b64encode(f"\0{user}\0{PASSWORD}".encode()).decode()
    connection.data_received(AUTH.format(token=token).encode())
    await _answered(
        transport, lambda: connection.stream.username is not None, f"{user}'s authentication"
    )
    connection.data_received(HEADER)
    connection.data_received(BIND.encode())
    await _answered(transport, lambda: connection.session is not None, f"{user}'s binding")
    if sm:
        connection.data_received(SM_ENABLE)
        await _answered(transport, lambda: _managed(connection) is not None, f"{user}'s <enable/>")
    session = connection.session
    assert session is not None
    connection.data_received(b"<presence/>")
    answers = transport.elements
    connection.data_received(PING)
    await _answered(transport, lambda: transport.elements > answers, f"{user}'s ping")
    # The first presence waits for the photo's hash; once out, it comes back to its own
    # resource (RFC 6121 4.2.2), a write. Polling instead would put turns in the counts
    # that grow with the run's length, and so with valgrind's slowness.
    await _answered(transport, lambda: session.available, f"{user}'s first presence")
    if (managed := _managed(connection)) is not None:  # as a client does when asked
        connection.data_received(SM_ACK % managed.sent)
    return connection, transport


def message_reads(reads: int, to: str, *, sm: bool = False) -> list[bytes]:
    """Reads of seven chat messages each; with ``sm``, a request for an acknowledgement
    follows every fifth message."""

    def message(number: int) -> bytes:
        chat = CHAT % (to.encode(), number, time.monotonic_ns())
        return chat + SM_REQUEST if sm and number % SM_REQUEST_EVERY == 0 else chat

    return [
        b"".join(message(read * MESSAGES_PER_READ + n) for n in range(1, MESSAGES_PER_READ + 1))
        for read in range(reads)
    ]


def _managed(connection: C2SConnection) -> StreamManagement | None:
    """The stream management of the connection's session, once it is enabled."""
    session = connection.session
    return session.stream_management if session is not None else None


def _stanzas_sent(connection: C2SConnection, transport: StandInTransport) -> int:
    """What the server has written to ``connection``: the stanzas counted by stream
    management when it is on (the requests for acknowledgements left out)."""
    sm = _managed(connection)
    return sm.sent if sm is not None else transport.elements


def _settings(config: Path) -> Settings:
    """The benchmark server's settings, listening where the kernel chooses: the streams
    here are fed directly, and a port chosen in advance may be taken meanwhile (by the
    run that ``bench.instructions`` starts beside this one, say)."""
    settings = load_settings(config)
    return settings.model_copy(
        update={
            "c2s": settings.c2s.model_copy(update={"port": 0, "direct_tls_port": 0}),
            "http": settings.http.model_copy(update={"port": 0}),
        }
    )


async def measure(
    config: Path,
    reads: int,
    rounds: int,
    *,
    sm: bool = False,
    reads_per_turn: int = READS_PER_TURN,
) -> list[float]:
    """Microseconds per routed message, one figure per round."""
    async with running(_settings(config)) as app:
        settle_after_start()  # as chinwag serve does
        sender, _ = await sign_in(app.xmpp, user_name(0), sm=sm)
        recipient, written = await sign_in(app.xmpp, user_name(1), sm=sm)
        await asyncio.sleep(0.05)  # presence and roster pushes settle
        batches = message_reads(reads, f"{user_name(1)}@{DOMAIN}", sm=sm)
        figures = []
        for _round in range(rounds + 1):  # the first warms up
            before = _stanzas_sent(recipient, written)
            started = time.perf_counter()
            for index, data in enumerate(batches, 1):
                sender.data_received(data)
                if index % reads_per_turn == 0:
                    await asyncio.sleep(0)
                    if (managed := _managed(recipient)) is not None and managed.awaiting:
                        recipient.data_received(SM_ACK % managed.sent)
            await asyncio.sleep(0)
            elapsed = time.perf_counter() - started
            delivered = _stanzas_sent(recipient, written) - before
            if delivered != reads * MESSAGES_PER_READ:
                raise RuntimeError(f"{delivered} of {reads * MESSAGES_PER_READ} delivered")
            figures.append(elapsed / delivered * 1e6)
        return figures[1:]


async def measure_sign_ins(config: Path, count: int, *, sm: bool = False) -> tuple[float, float]:
    """Microseconds of the event loop's CPU and of wall time per sign-in."""
    async with running(_settings(config)) as app:
        settle_after_start()  # as chinwag serve does
        gate = asyncio.Semaphore(SIGN_INS_IN_FLIGHT)

        async def one(index: int) -> None:
            async with gate:
                await sign_in(app.xmpp, user_name(index), sm=sm)

        await asyncio.gather(*(one(index) for index in range(WARM_UP_SIGN_INS)))
        cpu, wall = time.thread_time(), time.perf_counter()
        await asyncio.gather(*(one(WARM_UP_SIGN_INS + index) for index in range(count)))
        return (time.thread_time() - cpu) / count * 1e6, (time.perf_counter() - wall) / count * 1e6


def _accept(_stored: StoredScram, _password: str) -> bool:
    """The password check run on the worker threads, without its PBKDF2 derivation."""
    return True


def _run(work: Coroutine[Any, Any, _T]) -> _T:
    try:
        import uvloop
    except ImportError:
        return asyncio.run(work)
    return uvloop.run(work)


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.inprocess", description=__doc__)
    parser.add_argument("--reads", type=int, default=1000, help="reads of 7 messages per round")
    parser.add_argument("--rounds", type=int, default=9, help="rounds measured (after one warm-up)")
    parser.add_argument("--sign-ins", type=int, default=0, help="measure N sign-ins instead")
    parser.add_argument(
        "--without-pbkdf2",
        action="store_true",
        help="sign-ins: accept every password without deriving its key (for counting)",
    )
    parser.add_argument(
        "--sm", action="store_true", help="every user enables stream management (XEP-0198)"
    )
    parser.add_argument(
        "--reads-per-turn",
        type=int,
        default=READS_PER_TURN,
        help="reads between two event-loop turns (and, with --sm, acknowledgements)",
    )
    parser.add_argument(
        "--archive", action="store_true", help="chinwag archives every message (XEP-0313)"
    )
    parser.add_argument(
        "--archive-window",
        type=float,
        default=mam.BATCH_WINDOW_SECONDS,
        help="seconds each of the archive's batches gathers messages",
    )
    args = parser.parse_args(argv)
    if args.without_pbkdf2 and not args.sign_ins:
        parser.error("--without-pbkdf2 goes with --sign-ins")
    if not 1 <= args.reads_per_turn <= READS_PER_TURN:
        parser.error(f"--reads-per-turn must be 1 to {READS_PER_TURN}")
    if args.reads < args.reads_per_turn or args.rounds < 1 or args.sign_ins < 0:
        parser.error(
            f"--reads must be at least {args.reads_per_turn} (--reads-per-turn), --rounds at "
            "least 1 and --sign-ins not negative"
        )
    with tempfile.TemporaryDirectory(prefix="chinwag-inprocess-") as directory:
        workdir = Path(directory)
        server = Chinwag(workdir, make_certificate(workdir))
        server.archive = args.archive
        mam.BATCH_WINDOW_SECONDS = args.archive_window
        if args.sign_ins:
            if args.without_pbkdf2:
                accounts.password_matches = _accept
            server.provision(WARM_UP_SIGN_INS + args.sign_ins)
            server.write_config()
            cpu, wall = _run(measure_sign_ins(server.config, args.sign_ins, sm=args.sm))
            print(
                f"{args.sign_ins:,} sign-ins, at most {SIGN_INS_IN_FLIGHT} at a time: {cpu:.0f} "
                f"µs of the event loop's CPU per sign-in, {wall:.0f} µs of wall time"
            )
            return 0
        server.provision(2)
        server.write_config()
        figures = _run(
            measure(
                server.config,
                args.reads,
                args.rounds,
                sm=args.sm,
                reads_per_turn=args.reads_per_turn,
            )
        )
    print(
        f"{args.reads * MESSAGES_PER_READ:,} messages per round, {args.rounds} rounds: "
        f"{statistics.median(figures):.2f} µs per routed message (median), "
        f"{min(figures):.2f} µs fastest"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
