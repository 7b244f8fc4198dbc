"""XEP-0198 acknowledgements across nodes, with real ``chinwag serve`` processes on a
Redis of the module's own (a ``redis-server`` this module starts on a free loopback
port, since pausing its writes would stall every other test on the shared one): the
server's <a h/> counts a stanza routed to another node only once its XADD is in Redis.
"""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis as SyncRedis

from tests.integration.support import free_port, watch
from tests.integration.test_drain import follow_see_other_host, peer_port

from .nodes import (
    HOST,
    Client,
    Clients,
    Node,
    NodeProcesses,
    clients,
    create_database,
    drop_database,
    unique,
)
from .support import TIMEOUT, eventually
from .test_exactly_once import managed

pytestmark = pytest.mark.postgres

LEASE_SECONDS = 6.0
"""Longer than the pauses of Redis's writes below, so that no node loses its lease."""
PAUSE_MS = 2000


def private_redis(directory: Path) -> Iterator[str]:
    """A ``redis-server`` of this module's own, without persistence; its URL."""
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = free_port()
    process = subprocess.Popen(
        [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
        cwd=directory,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    client = SyncRedis(host="127.0.0.1", port=port)
    try:
        deadline = time.monotonic() + TIMEOUT
        while True:
            try:
                client.ping()
                break
            except Exception:
                if time.monotonic() > deadline or process.poll() is not None:
                    raise
                time.sleep(0.05)
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        client.close()
        process.terminate()
        process.wait(TIMEOUT)


@pytest.fixture(scope="module")
def processes(
    redis_problem: str | None,
    postgres_problem: str | None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[NodeProcesses]:
    if postgres_problem is not None:
        pytest.skip(f"PostgreSQL unreachable: {postgres_problem}")
    root = tmp_path_factory.mktemp("acks")
    for url in private_redis(root):
        name, database = create_database()
        nodes = NodeProcesses(
            root, database, url, f"chinwag-test:{uuid.uuid4().hex}:", LEASE_SECONDS
        )
        try:
            for node in ("a", "b"):
                nodes.start(node)
            yield nodes
        finally:
            nodes.close()
            drop_database(name)


async def test_an_ack_covers_a_stanza_for_another_node_only_once_its_xadd_is_written(
    processes: NodeProcesses,
) -> None:
    redis = SyncRedis.from_url(processes.redis_url)
    async with clients() as opened:
        sender, receiver = await contacts(
            processes, opened, processes.nodes["a"], processes.nodes["b"]
        )
        sm = sender.xmpp.plugin["xep_0198"]
        await send_then_request_ack(sender, receiver.jid, "before")
        await eventually(lambda: receiver.bodies() == ["before"])
        await eventually(lambda: sm.last_ack == sm.seq and not sm.unacked_queue)
        acked = sm.last_ack

        redis.execute_command("CLIENT", "PAUSE", PAUSE_MS, "WRITE")
        paused = time.monotonic()
        await send_then_request_ack(sender, receiver.jid, "while Redis takes no writes")
        await asyncio.sleep(PAUSE_MS / 1000 * 0.6)
        assert time.monotonic() - paused < PAUSE_MS / 1000, "the check came too late"
        assert sm.last_ack == acked, "acknowledged before its XADD was written"
        assert receiver.bodies() == ["before"]

        await eventually(lambda: sm.last_ack == sm.seq)
        await eventually(lambda: receiver.bodies() == ["before", "while Redis takes no writes"])
    redis.close()


async def contacts(
    processes: NodeProcesses, opened: Clients, managed_on: Node, other_on: Node
) -> tuple[Client, Client]:
    """Two new contacts, available to each other: one with XEP-0198 resumption on
    ``managed_on``, one without on ``other_on``."""
    user = unique()
    names = user("managed"), user("other")
    await processes.prepare(names, [names])
    first = await managed(opened, managed_on, names[0], "phone")
    second = await opened.connect(other_on, names[1], "desk")
    second.xmpp.send_presence()
    await eventually(lambda: ("available", "") in first.presence_from(second.jid))
    await eventually(lambda: ("available", "") in second.presence_from(first.jid))
    return first, second


async def send_then_request_ack(sender: Client, to: str, body: str) -> None:
    """Send a message, then <r/> after it (slixmpp writes an <r/> at once, ahead of the
    stanzas its send queue still holds)."""
    sm = sender.xmpp.plugin["xep_0198"]
    sent = sm.seq
    sender.send(to, body)
    await eventually(lambda: sm.seq != sent)
    await asyncio.sleep(0.05)
    sm.request_ack()


async def test_a_drained_nodes_client_resumes_its_session_on_the_node_it_is_sent_to(
    processes: NodeProcesses,
) -> None:
    """RFC 6120 4.9.3.19 sends the client elsewhere; XEP-0198 lets it resume there: the
    session lives on, with nothing lost or repeated, and its contacts see no change."""
    a = processes.nodes["a"]
    c = await asyncio.to_thread(processes.start, "drained-c")
    async with clients() as opened:
        phone, desk = await contacts(processes, opened, c, a)
        follow_see_other_host(phone.xmpp)
        before = [f"before {n}" for n in range(3)]
        for body in before:
            desk.send(phone.jid, body)
        await eventually(lambda: phone.bodies() == before)

        resumed = watch(phone.xmpp, "session_resumed")
        moved = watch(phone.xmpp, "disconnected")
        drain = asyncio.ensure_future(
            asyncio.to_thread(
                processes.run_cli, c.name, "drain", "--to", f"{HOST}:{a.port}", "--json"
            )
        )
        meanwhile = [f"meanwhile {n}" for n in range(3)]
        try:
            await asyncio.wait_for(moved, TIMEOUT)
            for body in meanwhile:  # for the session while it waits on the drained node
                desk.send(phone.jid, body)
            await asyncio.wait_for(resumed, TIMEOUT)
        finally:
            drained = await drain
        assert drained.returncode == 0, drained.stderr
        assert c.process is not None and c.process.wait(TIMEOUT) == 0
        assert f"{HOST}:{peer_port(phone.xmpp)}" == f"{HOST}:{a.port}"

        after = [f"after {n}" for n in range(3)]
        for body in after:
            desk.send(phone.jid, body)
        await eventually(lambda: len(phone.bodies()) == 9)
        await processes.settle()
        assert phone.bodies() == before + meanwhile + after
        assert "unavailable" not in [kind for kind, _ in desk.presence_from(phone.jid)]
