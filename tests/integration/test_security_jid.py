"""Issue 16, point 4, with a real server and client: a signed-in user who addresses many
distinct long JIDs gets an error for each at once, and the server keeps serving.

An address with a part longer than 1023 bytes as sent is ``jid-malformed`` (even one
that PRECIS width mapping would shorten); a long valid address of nobody is
``service-unavailable`` (RFC 6121 8.5.1).
"""

from __future__ import annotations

import pytest

from .im_support import Peer, error_condition, login, message
from .support import AssertServing, NewClient, ServerHandle

pytestmark = pytest.mark.security

EACH = 100
"""Distinct addresses of each kind."""


def fullwidth(text: str) -> str:
    return "".join(chr(ord(c) + 0xFEE0) for c in text)


OVER_LONG = {
    "wide": lambda i: f"{fullwidth('a') * 342}{i}@localhost",
    "dotted-i": lambda i: f"{'İ' * 512}{i}@localhost",
    "resource": lambda i: f"bob@localhost/{'r' * 1024}{i}",
    "domain": lambda i: f"bob@{'ü' * 512}{i}",
}


async def errors_for(peer: Peer, addresses: list[str]) -> list[str | None]:
    """Send a chat to each address at once; the condition of the error each gets back."""
    for index, address in enumerate(addresses):
        peer.send(f"<message to='{address}' type='chat' id='j{index}'><body>hi</body></message>")
    conditions = []
    for index in range(len(addresses)):
        reply = await peer.next(message(type="error", id=f"j{index}"))
        conditions.append(error_condition(reply))
    return conditions


async def test_over_long_addresses_are_malformed_and_the_server_keeps_serving(
    server: ServerHandle, new_client: NewClient, assert_serving: AssertServing
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    addresses = [make(i) for make in OVER_LONG.values() for i in range(EACH)]
    assert await errors_for(alice, addresses) == ["jid-malformed"] * len(addresses)
    await assert_serving(server)


async def test_long_valid_addresses_of_nobody_are_unavailable_and_the_server_keeps_serving(
    server: ServerHandle, new_client: NewClient, assert_serving: AssertServing
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    addresses = [f"{'n' * 1000}{i}@localhost/{'r' * 1000}" for i in range(3 * EACH)]
    assert await errors_for(alice, addresses) == ["service-unavailable"] * len(addresses)
    await assert_serving(server)
