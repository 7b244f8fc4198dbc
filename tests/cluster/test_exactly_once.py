"""Exactly once across a node's death, with real ``chinwag serve`` processes: an inbox
entry is acknowledged only after the offline commit it led to, and a client with
XEP-0198 resumption resumes its session on another node (after its node was killed or
lost its lease, or while that node is alive) with nothing lost or duplicated, or, when
it does not come back, what it had not acknowledged goes to offline storage once its
window closes; a node cut off from Redis, or under a Redis that restarted empty, loses
nothing it held for such a session.

Node ``a`` lives through the module; each test starts the nodes it kills or stops.
"""

from __future__ import annotations

import asyncio
import shutil
import socket
import subprocess
import time
from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import asyncpg
import pytest

from chinwag.cluster.connection import connect
from chinwag.store.contacts import RosterChange
from chinwag.xmpp import ns
from tests.integration.support import free_port, make_client, watch

from .nodes import (
    DOMAIN,
    HOST,
    PASSWORD,
    Client,
    Clients,
    Node,
    NodeProcesses,
    clients,
    unique,
)
from .support import FreezableProxy, eventually
from .test_node_death import assert_no_record_names
from .test_node_state import contact
from .test_nodes import waiting_to_store

pytestmark = pytest.mark.postgres

RESUME_SECONDS = 4
"""The resumption window of the module's nodes: short, for the test of its end."""
OWN_LEASE_SECONDS = 5.0
"""The lease of a node on a Redis of its own (behind a proxy, or a private server),
long enough that a loaded machine does not lose it before the test takes it away."""


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
    alice, bob = await two_contacts(processes)
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


async def managed(opened: Clients, node: Node, user: str, resource: str) -> Client:
    """``user`` signed in with slixmpp's XEP-0198 plugin (asking for resumption), available."""
    client = await opened.connect(node, user, resource, plugins=("xep_0198",))
    await eventually(lambda: client.xmpp.plugin["xep_0198"].sm_id is not None)
    client.xmpp.send_presence()
    return client


async def resume(client: Client, node: Node) -> None:
    """The client, cut off from its node, resumes its session on ``node``."""
    await eventually(client.disconnected.is_set)
    client.disconnected.clear()
    resumed = watch(client.xmpp, "session_resumed")
    client.xmpp.connect(HOST, node.port)
    await asyncio.wait_for(resumed, 30)
    client.node = node


def send_numbered(sender: Client, to: str, numbers: range) -> None:
    for number in numbers:
        sender.send(to, str(number))


def counted(*clients: Client) -> Counter[str]:
    return Counter(body for client in clients for body in client.bodies())


async def start_on_own_redis(processes: NodeProcesses, name: str, redis_url: str) -> Node:
    """Node ``name``, set up as the module's nodes but reaching Redis at ``redis_url`` (a
    proxy that this busy process runs, or a server of the test's own), with a longer
    lease (``OWN_LEASE_SECONDS``)."""
    processes.options["cluster"] = {"redis_url": redis_url, "lease_seconds": OWN_LEASE_SECONDS}
    try:
        return await asyncio.to_thread(processes.start, name)
    finally:
        del processes.options["cluster"]


async def two_contacts(processes: NodeProcesses) -> tuple[str, str]:
    """Two new users, alice and bob, contacts of each other."""
    user = unique()
    alice, bob = user("alice"), user("bob")
    await processes.prepare([alice, bob], [(alice, bob)])
    return alice, bob


async def away_while_messages_wait(
    processes: NodeProcesses, sender: Client, phone: Client, waiting: range
) -> None:
    """Messages 1 to 20 reach ``phone``, which then drops its connection without closing
    its stream, so that its session waits on its node for it to resume; then those of
    ``waiting`` are sent, and wait there with it."""
    send_numbered(sender, phone.jid, range(1, 21))
    await eventually(lambda: len(phone.bodies()) == 20)
    phone.xmpp.abort()
    await eventually(phone.disconnected.is_set)
    send_numbered(sender, phone.jid, waiting)
    await processes.settle()


async def lose_lease(processes: NodeProcesses, node: Node) -> None:
    """``node``'s lease goes, as if it had expired unseen by the node, which ends its
    streams and joins again."""
    joined = node.output.count("joined again")
    redis = connect(processes.redis_url)
    try:
        await redis.delete(f"{processes.prefix}lease:{node.name}")
    finally:
        await redis.aclose()
    await eventually(lambda: node.output.count("joined again") == joined + 1, 30)


async def window_closed(processes: NodeProcesses, sm_id: str) -> None:
    """Wait for the resumption window of session ``sm_id`` to close, and for the sweep
    that routes what the session left; then Redis keeps nothing of it."""
    redis = connect(processes.redis_url)
    kept = f"{processes.prefix}resumable:{sm_id}"
    try:
        await asyncio.sleep(RESUME_SECONDS)
        for _ in range(200):
            if not await redis.exists(kept):
                break
            await asyncio.sleep(0.1)
        assert not await redis.exists(kept, f"{processes.prefix}unacked:{sm_id}")
    finally:
        await redis.aclose()


async def test_a_session_is_resumed_on_another_node_after_its_node_is_killed(
    processes: NodeProcesses,
) -> None:
    a = processes.nodes["a"]
    victim = await asyncio.to_thread(processes.start, "killed-r")
    alice, bob = await two_contacts(processes)
    async with clients() as opened:
        phone = await managed(opened, victim, alice, "phone")
        sender = await opened.connect(a, bob, "desk")
        send_numbered(sender, phone.jid, range(1, 21))
        await eventually(lambda: len(phone.bodies()) == 20)
        send_numbered(sender, phone.jid, range(21, 26))  # in flight as it dies
        victim.kill()
        send_numbered(sender, phone.jid, range(26, 41))  # while it is dead
        await resume(phone, a)
        everything = {str(n) for n in range(1, 41)}
        await eventually(lambda: set(phone.bodies()) >= everything, timeout=30)
        await processes.settle()
        assert counted(phone) == Counter(everything)
        assert_no_record_names(processes.prefix, victim.name)


async def test_a_message_stored_on_one_node_while_another_takes_over_its_session_arrives(
    processes: NodeProcesses,
) -> None:
    """The session's node is killed and cleaned up after; a message for the account is
    being stored on node ``b`` (the table locked against writes, not reads) while the
    client resumes on ``a``, whose delivery of what was stored meanwhile reads the storage
    before ``b`` commits. Once ``b`` has, it tells ``a``, and the client gets the message
    once."""
    a = processes.nodes["a"]
    victim = await asyncio.to_thread(processes.start, "killed-t")
    b = await asyncio.to_thread(processes.start, "stores-t")
    alice, bob = await two_contacts(processes)
    redis = connect(processes.redis_url)
    database = await asyncpg.connect(processes.database_url.replace("+asyncpg", ""))
    try:
        async with clients() as opened:
            phone = await managed(opened, victim, alice, "phone")
            sender = await opened.connect(b, bob, "desk")
            victim.kill()
            record = f"{processes.prefix}sessions:{alice}@{DOMAIN}"
            for _ in range(500):  # cleaned up after: the session waits in Redis alone
                if not await redis.hexists(record, "phone"):
                    break
                await asyncio.sleep(0.02)
            else:
                raise AssertionError("the killed node's record is still there")
            lock = database.transaction()
            await lock.start()
            await database.execute("LOCK TABLE offline_messages IN EXCLUSIVE MODE")
            sender.send(f"{alice}@{DOMAIN}", "stored during the take-over")
            await waiting_to_store(database)
            await resume(phone, a)
            await asyncio.sleep(0.5)  # the resumed session's delivery has read the storage
            assert phone.bodies() == []
            await lock.commit()
            await eventually(lambda: phone.bodies() == ["stored during the take-over"])
            await processes.settle()
            assert phone.bodies() == ["stored during the take-over"]
    finally:
        await database.close()
        await redis.aclose()
        b.stop()


async def test_a_session_is_handed_over_by_a_live_node_to_the_node_it_resumes_on(
    processes: NodeProcesses,
) -> None:
    a = processes.nodes["a"]
    other = await asyncio.to_thread(processes.start, "hands-over")
    alice, bob = await two_contacts(processes)
    try:
        async with clients() as opened:
            phone = await managed(opened, other, alice, "phone")
            sender = await opened.connect(a, bob, "desk")
            await away_while_messages_wait(processes, sender, phone, range(21, 41))
            await resume(phone, a)
            await eventually(lambda: len(phone.bodies()) >= 40, timeout=30)
            await processes.settle()
            assert phone.bodies() == [str(n) for n in range(1, 41)]
            redis = connect(processes.redis_url)
            try:
                key = f"{processes.prefix}sessions:{alice}@{DOMAIN}"
                record = await redis.hget(key, "phone")
            finally:
                await redis.aclose()
            assert record is not None and record.split(b"\x1f", 1)[0] == b"a"
            assert "session handed over to another node" in other.output
    finally:
        other.stop()


@pytest.mark.parametrize("goes", ["killed", "loses its lease"])
async def test_what_a_session_left_goes_offline_once_when_its_window_closes(
    processes: NodeProcesses, goes: str
) -> None:
    """The node of a session waiting for its client dies, or loses its lease (then the
    session is left to the cluster as after its death, not ended on the node too); the
    client never comes back: once the window closes, what waited for the session goes to
    offline storage once, neither lost nor stored twice."""
    a = processes.nodes["a"]
    node = await asyncio.to_thread(processes.start, f"gone-w-{goes.split()[0]}")
    alice, bob = await two_contacts(processes)
    async with clients() as opened:
        phone = await managed(opened, node, alice, "phone")
        sm_id = phone.xmpp.plugin["xep_0198"].sm_id
        sender = await opened.connect(a, bob, "desk")
        await away_while_messages_wait(processes, sender, phone, range(21, 26))
        try:
            if goes == "killed":
                node.kill()
            else:
                await lose_lease(processes, node)
            send_numbered(sender, phone.jid, range(26, 31))  # after it went
            await window_closed(processes, sm_id)
        finally:
            node.stop()
        later = await opened.connect(a, alice, "later")
        later.xmpp.send_presence()
        await eventually(lambda: set(later.bodies()) >= {str(n) for n in range(21, 31)}, 20)
        await processes.settle()
    stored = counted(later)
    assert max(stored.values()) == 1, stored
    assert set(stored) >= {str(n) for n in range(21, 31)}  # what waited, and what came after
    assert set(counted(phone, later)) == {str(n) for n in range(1, 31)}


async def test_a_session_still_open_on_a_live_node_is_resumed_on_another(
    processes: NodeProcesses,
) -> None:
    """The old stream is still open (its node has not noticed the client go, as behind a
    load balancer): the node closes it with <conflict/> and hands the session over."""
    a = processes.nodes["a"]
    other = await asyncio.to_thread(processes.start, "still-open")
    alice, bob = await two_contacts(processes)
    try:
        async with clients() as opened:
            old = await managed(opened, other, alice, "phone")
            sender = await opened.connect(a, bob, "desk")
            send_numbered(sender, old.jid, range(1, 21))
            await eventually(lambda: len(old.bodies()) == 20)
            state = old.xmpp.plugin["xep_0198"]
            new = Client(make_client(old.jid, PASSWORD, plugins=("xep_0199", "xep_0198")), a)
            opened.all.append(new)
            plugin = new.xmpp.plugin["xep_0198"]
            plugin.sm_id, plugin.handled = state.sm_id, state.handled
            resumed = watch(new.xmpp, "session_resumed")
            new.xmpp.connect(HOST, a.port)
            await asyncio.wait_for(resumed, 30)
            await eventually(lambda: "conflict" in old.stream_errors)
            send_numbered(sender, old.jid, range(21, 31))
            await eventually(lambda: set(counted(old, new)) >= {str(n) for n in range(1, 31)})
            await processes.settle()
            assert counted(old, new) == Counter(str(n) for n in range(1, 31))
            assert "session handed over to another node" in other.output
    finally:
        other.stop()


async def test_directed_presence_travels_with_a_session_handed_over(
    processes: NodeProcesses,
) -> None:
    a = processes.nodes["a"]
    other = await asyncio.to_thread(processes.start, "hands-directed")
    user = unique()
    alice, carol = user("alice"), user("carol")
    await processes.prepare([alice, carol], [])
    async with processes.network() as (services, _oauth):  # carol does not hear alice
        await services.contacts.save(
            [
                RosterChange(alice, carol, contact(carol, "to")),
                RosterChange(carol, alice, contact(alice, "from")),
            ]
        )
    try:
        async with clients() as opened:
            carol_on_a = await opened.connect(a, carol, "desk")
            carol_on_a.xmpp.send_presence()
            phone = await managed(opened, other, alice, "phone")
            phone.xmpp.send_presence(pto=f"{carol}@{DOMAIN}", pstatus="just to carol")
            await eventually(
                lambda: (
                    "just to carol" in [status for _, status in carol_on_a.presence_from(phone.jid)]
                )
            )
            phone.xmpp.abort()  # the session waits on its node, which then hands it over
            await resume(phone, a)
            await processes.settle()
            phone.xmpp.disconnect()  # a clean end: who got directed presence hears of it
            await eventually(
                lambda: (
                    [kind for kind, _ in carol_on_a.presence_from(phone.jid)][-1:]
                    == ["unavailable"]
                )
            )
            await processes.settle()
            kinds = [kind for kind, _ in carol_on_a.presence_from(phone.jid)]
            assert kinds.count("unavailable") == 1, kinds
    finally:
        other.stop()


@pytest.mark.parametrize("on", ["another node", "the same node"])
async def test_a_session_is_resumed_after_its_node_lost_its_lease(
    processes: NodeProcesses, on: str
) -> None:
    """A node that lost its lease ends its streams and joins again; a resumable session
    is left to the cluster as after the node's death, not ended there too: its client
    resumes it on another node, or on that one once it has joined again, with nothing
    lost, and no copy of what waited for it goes to offline storage besides."""
    a = processes.nodes["a"]
    other = await asyncio.to_thread(processes.start, f"lost-lease-{on.split()[1]}")
    alice, bob = await two_contacts(processes)
    try:
        async with clients() as opened:
            phone = await managed(opened, other, alice, "phone")
            sender = await opened.connect(a, bob, "desk")
            await away_while_messages_wait(processes, sender, phone, range(21, 31))
            await lose_lease(processes, other)
            send_numbered(sender, phone.jid, range(31, 41))  # stored for it meanwhile
            await processes.settle()
            await resume(phone, a if on == "another node" else other)
            everything = {str(n) for n in range(1, 41)}
            await eventually(lambda: set(phone.bodies()) >= everything, timeout=30)
            later = await opened.connect(a, alice, "later")
            later.xmpp.send_presence()
            await processes.settle()
            await asyncio.sleep(1.0)  # long enough for offline messages to arrive
            assert counted(phone) == Counter(everything)
            assert later.bodies() == []
    finally:
        other.stop()


async def test_what_a_node_cut_off_from_redis_held_for_a_resumable_session_is_not_lost(
    processes: NodeProcesses,
) -> None:
    """Redis out of reach: what a node routes to a resumable session of its own cannot be
    copied to Redis, so its client gets none of it. When the node loses its lease, that is
    routed again on the node (to offline storage here), the session left to the cluster:
    every message reaches the account once, by resumption or from offline storage."""
    a = processes.nodes["a"]
    proxy = FreezableProxy()
    other = await start_on_own_redis(processes, "lost-lease-c", await proxy.start())
    alice, bob = await two_contacts(processes)
    try:
        async with clients() as opened:
            phone = await managed(opened, other, alice, "phone")
            sender = await opened.connect(other, bob, "desk")
            send_numbered(sender, phone.jid, range(1, 11))
            await eventually(lambda: len(phone.bodies()) == 10)
            proxy.cut()
            send_numbered(sender, phone.jid, range(11, 21))  # routed on the node, held there
            await eventually(lambda: phone.stream_errors == ["reset"], 30)  # its lease lost
            assert len(phone.bodies()) == 10  # nothing the copy lacks, only the stream's end
            proxy.restore()
            await resume(phone, a)  # within its window: node a has cleaned up after the node
            later = await opened.connect(a, alice, "later")
            later.xmpp.send_presence()
            everything = {str(n) for n in range(1, 21)}
            await eventually(lambda: set(counted(phone, later)) >= everything, 20)
            await processes.settle()
            assert counted(phone, later) == Counter(everything)
    finally:
        other.stop()
        await proxy.close()


class PrivateRedis:
    """A Redis server of the test's own on a free loopback port, keeping nothing on disk,
    that can be restarted: the new process has another run id and is empty."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://{HOST}:{self.port}/0"
        self._directory = directory
        self._process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        """Start it, and wait until it accepts connections."""
        options = ("--save", "", "--appendonly", "no", "--dir", str(self._directory))
        command = ["redis-server", "--bind", HOST, "--port", str(self.port), *options]
        self._process = subprocess.Popen(command, stdout=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection((HOST, self.port), timeout=1).close()
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)

    def stop(self) -> None:
        if self._process is not None:
            self._process.kill()
            self._process.wait(10)


@pytest.fixture
def private_redis(tmp_path: Path) -> Iterator[PrivateRedis]:
    if shutil.which("redis-server") is None:
        pytest.skip("redis-server is not installed")
    redis = PrivateRedis(tmp_path)
    redis.start()
    try:
        yield redis
    finally:
        redis.stop()


async def test_what_a_resumable_session_held_is_routed_again_when_redis_restarted(
    processes: NodeProcesses, private_redis: PrivateRedis
) -> None:
    """Redis restarts, empty, and the node loses its lease: the copies of its resumable
    sessions went with Redis, so once the node has joined again it routes what they held
    itself (to offline storage here) rather than leave it to a cleanup with nothing to
    clean up."""
    node = await start_on_own_redis(processes, "own-redis", private_redis.url)
    alice, bob = await two_contacts(processes)
    try:
        async with clients() as opened:
            phone = await managed(opened, node, alice, "phone")
            sender = await opened.connect(node, bob, "desk")
            await away_while_messages_wait(processes, sender, phone, range(21, 31))
            joined = node.output.count("joined again")
            private_redis.stop()
            private_redis.start()
            await eventually(lambda: node.output.count("joined again") == joined + 1, 30)
            later = await opened.connect(node, alice, "later")
            later.xmpp.send_presence()
            await eventually(lambda: set(later.bodies()) >= {str(n) for n in range(21, 31)}, 20)
            refused = watch(phone.xmpp, "sm_failed")  # its copy went with Redis
            phone.xmpp.connect(HOST, node.port)
            failed = await asyncio.wait_for(refused, 30)
            assert failed.xml.find(f"{{{ns.STANZA_ERRORS}}}item-not-found") is not None
            await processes.settle()
    finally:
        node.stop()
    assert max(counted(later).values()) == 1, counted(later)
    assert counted(phone, later).keys() == {str(n) for n in range(1, 31)}
