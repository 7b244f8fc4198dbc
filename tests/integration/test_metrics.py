"""``/metrics``, ``/health`` and ``/ready`` on a running chinwag, with real slixmpp
clients: the figures move as clients sign in, fail to, chat and get their offline
messages; the text parses as OpenMetrics; readiness follows the listeners and the
database; ``[metrics] allow`` and ``token`` decide who may read them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import httpx
import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families
from slixmpp import ClientXMPP

from chinwag.store.db import Database

from .signin_support import web_base
from .support import (
    TIMEOUT,
    Connect,
    NewClient,
    ServerHandle,
    SignInFailed,
    StartServer,
    free_port,
    sign_in,
    watch,
)

Samples = dict[tuple[str, frozenset[tuple[str, str]]], float]
MECHANISM = "SCRAM-SHA-256"


async def get(server: ServerHandle, path: str, **headers: str) -> httpx.Response:
    async with httpx.AsyncClient(base_url=web_base(server), timeout=TIMEOUT) as http:
        return await http.get(path, headers=headers)


async def scrape(server: ServerHandle) -> Samples:
    """Every sample of ``/metrics``, parsed by prometheus-client's OpenMetrics parser
    (which refuses what is not valid OpenMetrics text)."""
    response = await get(server, "/metrics")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("application/openmetrics-text")
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def value(samples: Samples, name: str, **labels: str) -> float:
    return samples.get((name, frozenset(labels.items())), 0.0)


async def eventually(server: ServerHandle, holds: Callable[[Samples], bool]) -> Samples:
    """The metrics once ``holds`` is true of them (within ``TIMEOUT``)."""
    deadline = asyncio.get_running_loop().time() + TIMEOUT
    while True:
        samples = await scrape(server)
        if holds(samples) or asyncio.get_running_loop().time() > deadline:
            return samples
        await asyncio.sleep(0.05)


async def test_metrics_follow_sessions_stanzas_and_sign_ins(
    start_server: StartServer, connect: Connect, new_client: NewClient
) -> None:
    server = await start_server(limits={"max_auth_failures_per_address": 2})
    before = await scrape(server)
    assert value(before, "chinwag_sign_ins_total", mechanism=MECHANISM) == 0

    alice = await connect(server, "alice", "desk", sasl_mech=MECHANISM)
    bob = await connect(server, "bob", "phone", sasl_mech=MECHANISM, direct_tls=True)
    heard = watch(bob, "message")
    alice.send_message(mto="bob@localhost/phone", mbody="hello", mtype="chat")
    await asyncio.wait_for(heard, TIMEOUT)
    for _ in range(2):
        wrong = new_client(server, "alice", password="wrong", sasl_mech=MECHANISM)
        with pytest.raises(SignInFailed):
            await sign_in(wrong, server.host, server.port)

    after = await scrape(server)
    assert value(after, "chinwag_sessions", transport="starttls", app="(password)") == 1
    assert value(after, "chinwag_sessions", transport="tls", app="(password)") == 1
    assert value(after, "chinwag_sign_ins_total", mechanism=MECHANISM) == 2
    assert value(after, "chinwag_sign_in_failures_total", mechanism=MECHANISM) == 2
    assert value(after, "chinwag_stanzas_received_total", kind="message") >= 1
    assert value(after, "chinwag_stanzas_sent_total", kind="message") >= 1
    assert value(after, "chinwag_address_bans") == 1
    assert value(after, "chinwag_address_bans_started_total") == 1
    assert value(after, "chinwag_database_call_seconds_count", operation="select") > 0
    assert value(after, "process_resident_memory_bytes") > 0
    assert value(after, "process_cpu_seconds_total") > 0
    assert server.app is not None
    now = server.app.metrics.live()["samples"][-1]  # what the operators' page draws
    assert (now["sessions"], now["sign_ins"], now["sign_in_failures"]) == (2, 2, 2)

    lagged = await eventually(
        server, lambda s: value(s, "chinwag_event_loop_lag_seconds_count") > 0
    )
    assert value(lagged, "chinwag_event_loop_lag_seconds_count") > 0


async def test_offline_messages_stored_then_delivered(
    server: ServerHandle, connect: Connect, new_client: NewClient
) -> None:
    alice = await connect(server, "alice", "desk")
    alice.send_message(mto="bob@localhost", mbody="while you were out", mtype="chat")
    stored = await eventually(
        server, lambda s: value(s, "chinwag_offline_messages_stored_total") == 1
    )
    assert value(stored, "chinwag_offline_messages_stored_total") == 1
    assert value(stored, "chinwag_offline_messages_delivered_total") == 0

    bob: ClientXMPP = await connect(server, "bob", "phone")
    arrived = watch(bob, "message")
    bob.send_presence()
    await asyncio.wait_for(arrived, TIMEOUT)
    delivered = await eventually(
        server, lambda s: value(s, "chinwag_offline_messages_delivered_total") == 1
    )
    assert value(delivered, "chinwag_offline_messages_delivered_total") == 1


async def test_health_and_ready(server: ServerHandle) -> None:
    assert (await get(server, "/health")).json() == {"status": "ok"}
    ready = await get(server, "/ready")
    assert (ready.status_code, ready.json()) == (200, {"status": "ready"})


async def test_not_ready_while_the_database_does_not_answer(server: ServerHandle) -> None:
    assert server.app is not None
    metrics = server.app.metrics
    working = metrics.database
    closed_port = free_port()
    unreachable = Database.open(f"postgresql+asyncpg://postgres@127.0.0.1:{closed_port}/test")
    metrics.database = unreachable
    try:
        refused = await get(server, "/ready")
    finally:
        metrics.database = working
        await unreachable.close()
    assert refused.status_code == 503
    assert refused.json()["status"] == "unavailable"
    assert refused.json()["reason"].startswith("the database does not answer")
    assert (await get(server, "/health")).status_code == 200  # alive all the same
    assert (await get(server, "/ready")).status_code == 200


async def test_not_ready_once_an_xmpp_listener_stops(server: ServerHandle) -> None:
    assert server.app is not None
    server.app.xmpp._listeners[0].close()
    refused = await get(server, "/ready")
    assert refused.status_code == 503
    assert refused.json() == {
        "status": "unavailable",
        "reason": "the XMPP listeners are not accepting connections",
    }


async def test_metrics_only_for_allowed_addresses(start_server: StartServer) -> None:
    elsewhere = await start_server(metrics={"allow": ["10.0.0.0/8"]})
    refused = await get(elsewhere, "/metrics")
    assert refused.status_code == 403
    assert "[metrics] allow" in refused.json()["message"]

    loopback = await start_server()
    assert (await get(loopback, "/metrics")).status_code == 200
    # Through a trusted proxy, the address it forwards is the one that counts.
    forwarded = await get(loopback, "/metrics", **{"X-Forwarded-For": "203.0.113.9"})
    assert forwarded.status_code == 403


async def test_metrics_with_a_bearer_token(start_server: StartServer) -> None:
    server = await start_server(metrics={"allow": [], "token": "metrics-secret"})
    unsent = await get(server, "/metrics")
    assert unsent.status_code == 401
    assert unsent.headers["www-authenticate"] == 'Bearer realm="chinwag-metrics"'
    wrong = await get(server, "/metrics", Authorization="Bearer guessed")
    assert wrong.status_code == 401
    assert 'error="invalid_token"' in wrong.headers["www-authenticate"]
    right = await get(server, "/metrics", Authorization="Bearer metrics-secret")
    assert right.status_code == 200
    assert "chinwag_sessions" in right.text


async def test_the_live_figures_need_a_signed_in_operator(server: ServerHandle) -> None:
    async with httpx.AsyncClient(base_url=web_base(server), timeout=TIMEOUT) as http:
        page = await http.get("/developers/admin/live")
        data = await http.get("/developers/admin/live.json")
        script = await http.get("/developers/admin/live.js")
    assert page.status_code == 303
    assert page.headers["location"] == "/account/signin?next=%2Fdevelopers%2Fadmin%2Flive"
    assert data.status_code == 401
    assert script.status_code == 200
    assert script.headers["content-type"].startswith("text/javascript")
