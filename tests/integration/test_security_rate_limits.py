"""Issue 16, point 10 (rate limits): a stream that sends faster than
``limits.stanzas_per_second`` or ``limits.bytes_per_second`` is read more slowly, over
TCP and WebSocket and before authentication, while other users' streams stay quick.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable

import pytest

from .im_support import Peer, add_user, login
from .support import (
    NS_TLS,
    TIMEOUT,
    NewClient,
    RawStream,
    ServerHandle,
    StartServer,
    stream_header,
)
from .test_websocket import WSStream

pytestmark = pytest.mark.security

RATE = 200
"""Stanzas per second allowed in these tests."""
BURST_SECONDS = 0.25
FLOOD = 5000
WINDOW = (0.5, 1.5)
"""Seconds after the first flooded message arrives: bob's count is read at both ends."""
PINGS = 10
"""carol's pings while bob gets messages at RATE politely (her baseline), then while the
flood is read."""
SLOWDOWN_BOUND = 4.0
"""How many times her slowest ping of the baseline her slowest ping during the flood may
take: a flood read at RATE costs others about what messages sent at RATE cost them,
however busy the machine is with other work (without the limit, one of her pings waited
behind the whole flood: 10 s on a loaded machine)."""
PING_FLOOR = 1.0
"""Seconds her slowest ping may always take, when the baseline is quicker than a
quarter of that (a few milliseconds on an idle machine)."""


def chats(count: int, prefix: str = "f") -> list[str]:
    return [
        f"<message to='bob@localhost' type='chat' id='{prefix}{index}'><body>{index}</body>"
        "</message>"
        for index in range(count)
    ]


def received(bob: Peer) -> int:
    return sum(element.get("id", "").startswith("f") for element in bob.inbox)


async def ping_times(carol: Peer) -> list[float]:
    """Seconds each of carol's PINGS pings took (each bounded by TIMEOUT)."""
    times = []
    for _ in range(PINGS):
        began = time.monotonic()
        await asyncio.wait_for(carol.sync(), TIMEOUT)
        times.append(time.monotonic() - began)
        await asyncio.sleep(0.05)
    return times


async def send_at_rate(sender: Peer) -> None:
    """Messages to bob at RATE, a twentieth of a second's worth at a time, until cancelled."""
    batch = chats(RATE // 20, prefix="p")
    while True:
        sender.send("".join(batch))
        await asyncio.sleep(0.05)


async def measure_flood(
    bob: Peer, carol: Peer, polite: Peer, start_flood: Callable[[], Awaitable[None]]
) -> tuple[int, int]:
    """Start the flood; returns how many of its messages bob got within WINDOW, and in
    all by its end. Meanwhile carol stays served about as quickly as while ``polite``
    (another stream) sent bob messages at RATE just before (see SLOWDOWN_BOUND)."""
    sending = asyncio.ensure_future(send_at_rate(polite))
    try:
        usual = await ping_times(carol)
    finally:
        sending.cancel()
    await polite.sync()
    pinging = asyncio.ensure_future(ping_times(carol))
    await start_flood()
    async with asyncio.timeout(TIMEOUT):
        while not received(bob):
            await asyncio.sleep(0.005)
    first = time.monotonic()
    await asyncio.sleep(WINDOW[0])
    at_start = received(bob)
    await asyncio.sleep(first + WINDOW[1] - time.monotonic())
    at_end = received(bob)
    during = await asyncio.wait_for(pinging, TIMEOUT)
    assert max(during) < max(max(usual) * SLOWDOWN_BOUND, PING_FLOOR), (usual, during)
    return at_end - at_start, at_end


def assert_slowed(in_window: int, in_all: int) -> None:
    seconds = WINDOW[1] - WINDOW[0]
    assert RATE * seconds / 2 <= in_window <= RATE * seconds * 2, in_window
    assert in_all < FLOOD / 4, f"{in_all} of {FLOOD} arrived: the flood was not slowed"


@pytest.fixture
async def limited(start_server: StartServer) -> ServerHandle:
    server = await start_server(limits={"stanzas_per_second": RATE, "burst_seconds": BURST_SECONDS})
    await add_user(server, "carol")
    return server


async def test_a_flooding_stream_is_slowed_to_its_rate_and_others_stay_quick(
    limited: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, limited, "bob", "phone")
    carol = await login(new_client, limited, "carol", "desk")
    polite = await login(new_client, limited, "alice", "laptop")
    alice = await login(new_client, limited, "alice", "desk")

    async def flood() -> None:
        alice.send("".join(chats(FLOOD)))

    try:
        assert_slowed(*await measure_flood(bob, carol, polite, flood))
    finally:
        alice.kill()  # what it has not sent yet is of no interest


async def test_a_flooding_websocket_stream_is_slowed_the_same(
    limited: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, limited, "bob", "phone")
    carol = await login(new_client, limited, "carol", "desk")
    polite = await login(new_client, limited, "alice", "laptop")
    alice = await WSStream.connect(limited)
    sending: asyncio.Future[None] | None = None

    async def send_all() -> None:
        for index, stanza in enumerate(chats(FLOOD)):
            await alice.send(stanza.replace("<message ", "<message xmlns='jabber:client' ", 1))
            if index % 100 == 0:
                await asyncio.sleep(0)  # the test's other clients share this event loop

    async def flood() -> None:
        nonlocal sending
        sending = asyncio.ensure_future(send_all())  # as fast as the WebSocket takes them

    try:
        await alice.sign_in("alice", "alice-secret")
        assert_slowed(*await measure_flood(bob, carol, polite, flood))
    finally:
        if sending is not None:
            sending.cancel()
        alice.websocket.transport.abort()  # a close frame would wait behind the flood


async def test_bytes_are_limited_before_authentication(start_server: StartServer) -> None:
    """4,000 bytes at 10,000 per second, 1,000 of them allowed at once: the stream is not
    read again for about 0.3 s, so a <starttls/> sent just after waits that long."""
    server = await start_server(limits={"bytes_per_second": 10_000, "burst_seconds": 0.1})
    raw = await RawStream.open(server.host, server.port)
    try:
        await raw.send(stream_header())
        await raw.read_until(b"</stream:features>")
        began = time.monotonic()
        await raw.send(b" " * 4000)  # whitespace between elements: allowed, and counted
        await asyncio.sleep(0.05)
        await raw.send(f"<starttls xmlns='{NS_TLS}'/>".encode())
        await raw.read_until(b"<proceed")
        assert b"<proceed" in raw.received, raw.received
        assert time.monotonic() - began >= 0.2
    finally:
        raw.abort()
