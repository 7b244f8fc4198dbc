"""Exactly once across a node's death, with real ``chinwag serve`` processes: an inbox
entry is acknowledged only after the offline commit it led to, and a client with
XEP-0198 resumption resumes its session on another node (after its node was killed, or
while that node is alive) with nothing lost or duplicated, or, when it does not come
back, what it had not acknowledged goes to offline storage once its window closes.

Node ``a`` lives through the module; each test starts the nodes it kills or stops.
"""

from __future__ import annotations

import asyncio
from collections import Counter

import asyncpg
import pytest

from chinwag.cluster.connection import connect

from .nodes import DOMAIN, Clients, NodeProcesses, clients, unique
from .support import eventually

pytestmark = pytest.mark.postgres

RESUME_SECONDS = 4
"""The resumption window of the module's nodes: short, for the test of its end."""


@pytest.fixture(scope="module")
def processes(node_processes: NodeProcesses) -> NodeProcesses:
    node_processes.options = {"stream_management": {"resume_timeout_seconds": RESUME_SECONDS}}
    node_processes.start("a")
    return node_processes


async def test_an_inbox_entry_is_acknowledged_only_after_its_offline_commit(
    processes: NodeProcesses,
) -> None:
    """Node ``b`` routes an entry for a session that has gone to offline storage; while the
    commit waits (the table locked), the entry stays unacknowledged, so that when ``b`` is
    killed before the commit, ``a`` routes it again and the message is stored once."""
    a = processes.nodes["a"]
    b = await asyncio.to_thread(processes.start, "commit-b")
    user = unique()
    alice, bob = user("alice"), user("bob")
    await processes.prepare([alice, bob], [(alice, bob)])
    inbox = f"{processes.prefix}inbox:{b.name}"
    stanza = (
        f"<message from='{bob}@{DOMAIN}/x' to='{alice}@{DOMAIN}/gone' type='chat' id='m1'>"
        "<body>committed once</body></message>"
    )
    redis = connect(processes.redis_url)
    database = await asyncpg.connect(processes.database_url.replace("+asyncpg", ""))
    try:
        lock = database.transaction()
        await lock.start()
        await database.execute("LOCK TABLE offline_messages IN ACCESS EXCLUSIVE MODE")
        entry = await redis.xadd(inbox, {"t": f"{alice}@{DOMAIN}/gone", "s": stanza})

        async def read() -> bool:
            groups = await redis.xinfo_groups(inbox)
            return bool(groups) and groups[0]["last-delivered-id"] == entry

        for _ in range(500):
            if await read():
                break
            await asyncio.sleep(0.02)
        await asyncio.sleep(1.0)  # long enough for an early acknowledgement to be sent
        pending = await redis.xpending(inbox, "chinwag")
        assert pending["pending"] == 1, "acknowledged before the commit"
        b.kill()
        await lock.rollback()
    finally:
        await database.close()
        await redis.aclose()

    async with clients() as opened:
        client = await opened.connect(a, alice, "later")
        client.xmpp.send_presence()
        await eventually(lambda: "committed once" in client.bodies(), timeout=20)
        await processes.settle()
        assert client.bodies().count("committed once") == 1


def bodies(clients: Clients, user: str) -> Counter[str]:
    return Counter(body for c in clients.all if c.jid.startswith(f"{user}@") for body in c.bodies())
