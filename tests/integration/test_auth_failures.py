"""Failed sign-ins counted per client address (``limits.max_auth_failures_per_address``):
a guesser that reconnects is refused, even with the right password, while other
addresses sign in as usual."""

from __future__ import annotations

import asyncio
import base64

import pytest
from oauth.support import form_to, submit

from .conftest import NewClient, StartServer
from .signin_support import (
    RawSasl,
    browser,
    condition,
    refusal,
    session_end,
    token_client,
)
from .support import TIMEOUT, ServerHandle, SignInFailed, sign_in

OTHER_ADDRESS = "127.0.0.2"
"""Another loopback address (Linux answers all of 127/8 on the loopback)."""


def limited(*, failures: int = 2, ban_seconds: float = 60.0) -> dict[str, object]:
    return {
        "limits": {
            "max_auth_failures_per_address": failures,
            "auth_failure_ban_seconds": ban_seconds,
        }
    }


async def guess(new_client: NewClient, server: ServerHandle, times: int) -> None:
    """Sign in as alice with wrong passwords, one stream each, as a guesser would."""
    for attempt in range(times):
        client = new_client(server, "alice", password=f"guess-{attempt}", sasl_mech="PLAIN")
        assert await refusal(client, server) == "not-authorized"


async def refused_at_sign_in(new_client: NewClient, server: ServerHandle) -> str:
    """Sign in as alice with the right password, expecting a stream error; its text."""
    client = new_client(server, "alice", sasl_mech="PLAIN")
    ended = session_end(client)
    with pytest.raises(SignInFailed):
        await sign_in(client, server.host, server.port)
    end = await asyncio.wait_for(ended, TIMEOUT)
    assert end.condition == "policy-violation", end
    return end.text


def plain(user: str, password: str) -> str:
    return base64.b64encode(f"\0{user}\0{password}".encode()).decode()


async def test_an_address_with_too_many_failures_is_refused_even_with_the_right_password(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**limited(failures=2))
    await guess(new_client, server, 2)

    text = await refused_at_sign_in(new_client, server)

    assert text == "too many failed sign-ins from this address; try again in 1 minute"


async def test_the_web_sign_in_form_and_xmpp_share_the_count(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**limited(failures=2))
    async with browser(server) as web:
        page = await web.get("/account/signin")
        wrong = await submit(web, form_to(page, "/account/signin"), username="alice", password="x")
        assert wrong.status_code == 200  # the form again, saying the password was wrong
    await guess(new_client, server, 1)

    async with browser(server) as web:
        page = await web.get("/account/signin")
        right = {"username": "alice", "password": server.users["alice"]}
        assert (await submit(web, form_to(page, "/account/signin"), **right)).status_code == 429
    await refused_at_sign_in(new_client, server)


async def test_below_the_limit_the_right_password_still_signs_in(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**limited(failures=2))
    await guess(new_client, server, 1)

    await sign_in(new_client(server, "alice", sasl_mech="PLAIN"), server.host, server.port)


async def test_refused_tokens_do_not_count(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**limited(failures=2))
    for _ in range(3):  # an app retrying an expired token is no password guesser
        stale = token_client(new_client, server, "expired-token", "X-MESSENGER-OAUTH2")
        assert await refusal(stale, server) == "not-authorized"

    await sign_in(new_client(server, "alice", sasl_mech="PLAIN"), server.host, server.port)


async def test_other_addresses_are_not_refused(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**limited(failures=2))
    await guess(new_client, server, 2)

    other = await RawSasl.open(server, source=OTHER_ADDRESS)
    try:
        assert condition(await other.auth("PLAIN", plain("alice", "alice-secret"))) == "success"
    finally:
        await other.close()


async def test_failures_are_forgotten_once_the_ban_has_run_out(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**limited(failures=2, ban_seconds=1.0))
    await guess(new_client, server, 2)
    await asyncio.sleep(1.2)

    await sign_in(new_client(server, "alice", sasl_mech="PLAIN"), server.host, server.port)
