"""Two ``chinwag serve`` processes as one server: everything a client does works across
nodes as on one node. Slixmpp clients on loopback; the nodes share the module's
PostgreSQL database and Redis key prefix, and each test has accounts of its own."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg
import pytest
from redis import Redis
from websockets.asyncio.client import connect
from websockets.typing import Subprotocol

from tests.integration.test_websocket import WSStream

from .nodes import DOMAIN, HOST, PASSWORD, Client, Node, NodeProcesses, clients, unique
from .support import REDIS_URL, eventually

pytestmark = pytest.mark.postgres


@pytest.fixture(scope="module")
def nodes(node_processes: NodeProcesses) -> NodeProcesses:
    node_processes.start("a")
    node_processes.start("b")
    return node_processes


def available(client: Client, jid: str, status: str | None = None) -> bool:
    """Whether ``client``'s last presence from ``jid`` says available (with ``status``)."""
    seen = client.presence_from(jid)
    if not seen or seen[-1][0] in ("unavailable", "error"):
        return False
    return status is None or seen[-1][1] == status


async def contacts(nodes: NodeProcesses) -> tuple[str, str, Node, Node]:
    """Two new accounts of this test's own, each on the other's contact list, and the
    two nodes."""
    user = unique()
    alice, bob = user("alice"), user("bob")
    await nodes.prepare([alice, bob], [(alice, bob)])
    return alice, bob, nodes.nodes["a"], nodes.nodes["b"]


async def test_messages_follow_rfc_6121_across_nodes(nodes: NodeProcesses) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        desk = await opened.connect(a, alice, "desk", plugins=["xep_0085"])
        phone = await opened.connect(b, alice, "phone", plugins=["xep_0085"])
        sender = await opened.connect(b, bob, "pc", plugins=["xep_0085"])
        desk.xmpp.send_presence(ppriority=5, pstatus="desk 5")
        phone.xmpp.send_presence(ppriority=1, pstatus="phone 1")
        sender.xmpp.send_presence()
        await eventually(lambda: available(sender, desk.jid, "desk 5"))
        await eventually(lambda: available(sender, phone.jid, "phone 1"))

        sender.send(f"{alice}@{DOMAIN}", "to the bare JID: the highest priority, on a")
        sender.send(phone.jid, "to the full JID, on b")
        states: list[Any] = []
        desk.xmpp.add_event_handler("chatstate_composing", states.append)
        composing = sender.xmpp.make_message(mto=desk.jid, mtype="chat")
        composing["chat_state"] = "composing"
        composing.send()
        await eventually(lambda: len(desk.bodies()) == 1 and len(phone.bodies()) == 1)
        await eventually(lambda: len(states) == 1)

        desk.xmpp.send_presence(ppriority=-1, pstatus="desk -1")
        await eventually(lambda: available(sender, desk.jid, "desk -1"))
        sender.send(f"{alice}@{DOMAIN}", "negative priority on a: to b")
        await eventually(lambda: len(phone.bodies()) == 2)

        phone.xmpp.send_presence(ppriority=-1, pstatus="phone -1")
        await eventually(lambda: available(sender, phone.jid, "phone -1"))
        sender.send(f"{alice}@{DOMAIN}", "no resource takes it: offline storage")
        tablet = await opened.connect(a, alice, "tablet")
        tablet.xmpp.send_presence()
        await eventually(lambda: len(tablet.bodies()) == 1)

    assert desk.bodies() == ["to the bare JID: the highest priority, on a"]
    assert phone.bodies() == ["to the full JID, on b", "negative priority on a: to b"]
    [stored] = tablet.messages
    assert str(stored["body"]) == "no resource takes it: offline storage"
    assert "urn:xmpp:delay" in str(stored)  # kept offline, and marked as such


async def test_a_message_committed_after_initial_presence_on_another_node_arrives(
    nodes: NodeProcesses,
) -> None:
    """Node b stores a message for alice while her tablet signs in on node a, whose initial
    presence reads the storage before b's commit (the table locked against writes, not
    reads): once b has committed, it tells a, and the tablet gets the message, once."""
    alice, bob, a, b = await contacts(nodes)
    database = await asyncpg.connect(nodes.database_url.replace("+asyncpg", ""))
    try:
        async with clients() as opened:
            sender = await opened.connect(b, bob, "pc")
            sender.xmpp.send_presence()
            lock = database.transaction()
            await lock.start()
            await database.execute("LOCK TABLE offline_messages IN EXCLUSIVE MODE")
            sender.send(f"{alice}@{DOMAIN}", "committed after the tablet's presence")
            await waiting_to_store(database)
            tablet = await opened.connect(a, alice, "tablet")
            tablet.xmpp.send_presence()
            await eventually(lambda: available(sender, tablet.jid))
            await asyncio.sleep(0.5)  # the tablet's delivery has read the storage
            assert tablet.bodies() == []
            await lock.commit()
            await eventually(lambda: len(tablet.bodies()) == 1)
            await nodes.settle()
            assert tablet.bodies() == ["committed after the tablet's presence"]
            assert "urn:xmpp:delay" in str(tablet.messages[0])
    finally:
        await database.close()


async def waiting_to_store(database: asyncpg.Connection) -> None:
    """Return once a transaction waits for the lock on the offline messages' table."""
    for _ in range(500):
        if await database.fetchval(
            "SELECT count(*) FROM pg_locks WHERE NOT granted"
            " AND relation = 'offline_messages'::regclass"
            " AND database = (SELECT oid FROM pg_database WHERE datname = current_database())"
        ):
            return
        await asyncio.sleep(0.02)
    raise AssertionError("no store waits for the offline messages' table")


async def test_presence_crosses_nodes_and_probes_are_answered_from_the_mirror(
    nodes: NodeProcesses,
) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        on_b = await opened.connect(b, bob, "pc")
        on_b.xmpp.send_presence(pstatus="bob on b")
        on_a = await opened.connect(a, alice, "laptop")
        on_a.xmpp.send_presence(pstatus="alice on a")  # initial: probes bob's presence

        await eventually(lambda: available(on_a, on_b.jid, "bob on b"))
        await eventually(lambda: available(on_b, on_a.jid, "alice on a"))
        on_a.xmpp.send_presence(pto=f"{bob}@{DOMAIN}", ptype="probe")
        await eventually(lambda: len(on_a.presence_from(on_b.jid)) == 2)

        on_b.xmpp.send_presence(pstatus="bob, later")
        await eventually(lambda: available(on_a, on_b.jid, "bob, later"))
        alice_jid = on_a.jid
        await opened.disconnect(on_a)
        await eventually(lambda: not available(on_b, alice_jid))

    assert [kind for kind, _ in on_b.presence_from(alice_jid)].count("unavailable") == 1


async def test_roster_pushes_reach_every_resource_once(nodes: NodeProcesses) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        on_a = await opened.connect(a, alice, "laptop")
        on_b = await opened.connect(b, alice, "phone")
        for client in (on_a, on_b):
            await client.xmpp.get_roster()  # asks for the roster: gets pushes from now on

        await on_a.xmpp.update_roster(f"{bob}@{DOMAIN}", name="Bobby", subscription="both")
        await eventually(lambda: len(on_a.pushes) == 1 and len(on_b.pushes) == 1)
        await nodes.settle()  # a second push, if any, would come within this

    for client in (on_a, on_b):
        [push] = client.pushes
        assert push["roster"]["items"][f"{bob}@{DOMAIN}"]["name"] == "Bobby"


async def test_a_resource_bound_on_another_node_replaces_the_first(nodes: NodeProcesses) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        first = await opened.connect(a, alice, "same")
        sender = await opened.connect(a, bob, "pc")
        second = await opened.connect(b, alice, "same")

        await eventually(lambda: first.stream_errors == ["conflict"])
        await eventually(first.disconnected.is_set)
        sender.send(f"{alice}@{DOMAIN}/same", "to the session that replaced it")
        await eventually(lambda: second.bodies() == ["to the session that replaced it"])

    assert first.bodies() == []


async def test_a_suspended_app_and_a_revoked_token_end_sessions_on_every_node(
    nodes: NodeProcesses,
) -> None:
    user = unique()
    alice = user("alice")
    await nodes.prepare([alice], [])
    a, b = nodes.nodes["a"], nodes.nodes["b"]
    async with nodes.network() as (_services, oauth):
        suspended = (await oauth.register_app(user("Pocket"), ["https://x.example/cb"])).app
        revoked = (await oauth.register_app(user("Other"), ["https://y.example/cb"])).app
        tokens = [
            await oauth.issue_token(app.client_id, alice, "wl.messenger")
            for app in (suspended, suspended, revoked)
        ]
    async with clients() as opened:
        on_a = await opened.connect_with_token(a, alice, tokens[0].access_token, "pocket-a")
        on_b = await opened.connect_with_token(b, alice, tokens[1].access_token, "pocket-b")
        other = await opened.connect_with_token(b, alice, tokens[2].access_token, "other")
        async with nodes.network() as (_services, oauth):
            await oauth.suspend_app(suspended.client_id)
        await eventually(lambda: on_a.stream_errors == on_b.stream_errors == ["not-authorized"])
        assert other.stream_errors == []
        async with nodes.network() as (_services, oauth):
            assert await oauth.revoke_token(tokens[2].access_token)
        await eventually(lambda: other.stream_errors == ["not-authorized"])


async def test_sessions_list_shows_every_nodes_sessions(nodes: NodeProcesses) -> None:
    user = unique()
    alice = user("alice")
    await nodes.prepare([alice], [])
    a, b = nodes.nodes["a"], nodes.nodes["b"]
    async with clients() as opened:
        on_a = await opened.connect(a, alice, "laptop")
        on_b = await opened.connect(b, alice, "phone")
        on_b.xmpp.send_presence(ppriority=3)

        def mine() -> list[dict[str, Any]]:
            listed = nodes.run_cli("a", "sessions", "list", "--json")
            assert listed.returncode == 0, listed.stderr
            return [s for s in json.loads(listed.stdout) if s["user"] == alice]

        for _attempt in range(20):  # until b's record of the phone's presence has crossed
            listed = mine()
            if len(listed) == 2 and listed[1]["available"]:
                break
            await asyncio.sleep(0.1)
        table = nodes.run_cli("a", "sessions", "list")

    assert listed == [
        {
            "jid": on_a.jid,
            "user": alice,
            "resource": "laptop",
            "app": None,
            "transport": "starttls",
            "available": False,
            "priority": 0,
            "node": "a",
        },
        {
            "jid": on_b.jid,
            "user": alice,
            "resource": "phone",
            "app": None,
            "transport": None,
            "available": True,
            "priority": 3,
            "node": "b",
        },
    ]
    rows = [line.split() for line in table.stdout.splitlines() if alice in line]
    assert rows == [
        [alice, "laptop", "-", "starttls", "no", "0", "a"],
        [alice, "phone", "-", "-", "yes", "3", "b"],
    ]


async def test_websocket_clients_meet_tcp_clients_on_other_nodes(nodes: NodeProcesses) -> None:
    alice, bob, a, b = await contacts(nodes)
    web = await websocket(a)
    try:
        await web.sign_in(alice, password=PASSWORD, resource="web")
        async with clients() as opened:
            on_b = await opened.connect(b, bob, "pc")
            on_b.xmpp.send_presence()
            await web.send("<presence xmlns='jabber:client'/>")
            await eventually(lambda: available(on_b, f"{alice}@{DOMAIN}/web"))
            on_b.send(f"{alice}@{DOMAIN}/web", "over the bus, then a WebSocket")
            got: Any = await web.recv_until(lambda e: e.tag.endswith("}message"))
            assert got.findtext("{jabber:client}body") == "over the bus, then a WebSocket"
            await web.send(
                f"<message xmlns='jabber:client' type='chat' to='{on_b.jid}'>"
                "<body>back over TCP</body></message>"
            )
            await eventually(lambda: on_b.bodies() == ["back over TCP"])
    finally:
        await web.close()


async def websocket(node: Node) -> WSStream:
    url = f"ws://{HOST}:{node.http_port}/xmpp-websocket"
    opened = connect(url, subprotocols=[Subprotocol("xmpp")], proxy=None, open_timeout=10)
    return WSStream(await asyncio.wait_for(opened, 10))


def flags(nodes: NodeProcesses, full: str) -> str | None:
    """The flags of the registry's record of ``full`` in Redis (``c``: carbons)."""
    bare, _, resource = full.partition("/")
    redis = Redis.from_url(REDIS_URL)
    try:
        packed = redis.hget(f"{nodes.prefix}sessions:{bare}", resource)
    finally:
        redis.close()
    return None if packed is None else packed.split(b"\x1f")[1].decode()


async def test_carbons_copy_to_resources_on_other_nodes(nodes: NodeProcesses) -> None:
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        laptop = await opened.connect(a, alice, "laptop", plugins=["xep_0280"])
        phone = await opened.connect(b, alice, "phone", plugins=["xep_0280"])
        friend = await opened.connect(a, bob, "pc")
        copies: list[tuple[str, str]] = []
        for name, client in (("laptop", laptop), ("phone", phone)):
            await client.xmpp.plugin["xep_0280"].enable()
            for kind in ("received", "sent"):
                client.xmpp.add_event_handler(
                    f"carbon_{kind}",
                    lambda m, n=name, k=kind: copies.append((n, k, str(m[f"carbon_{k}"]["body"]))),
                )
        await eventually(lambda: flags(nodes, laptop.jid) == flags(nodes, phone.jid) == "c")
        await asyncio.sleep(0.2)  # for the nodes' mirrors to follow the registry

        friend.send(laptop.jid, "to the laptop, copied to the phone on b")
        laptop.send(f"{bob}@{DOMAIN}", "from the laptop, copied to the phone on b")
        await eventually(lambda: len(copies) == 2)
        await nodes.settle()

    assert sorted(copies) == [
        ("phone", "received", "to the laptop, copied to the phone on b"),
        ("phone", "sent", "from the laptop, copied to the phone on b"),
    ]


async def test_a_node_that_lost_its_lease_ends_its_streams_and_joins_again(
    nodes: NodeProcesses,
) -> None:
    """Last in the module: node a's sessions end."""
    alice, bob, a, b = await contacts(nodes)
    async with clients() as opened:
        on_a = await opened.connect(a, alice, "laptop")
        on_b = await opened.connect(b, bob, "pc")
        on_a.xmpp.send_presence()
        on_b.xmpp.send_presence()
        await eventually(lambda: available(on_b, on_a.jid))
        joined = a.output.count("joined again")

        redis = Redis.from_url(REDIS_URL)
        try:
            redis.delete(f"{nodes.prefix}lease:a")  # as if it had expired unseen by a
        finally:
            redis.close()
        await eventually(lambda: on_a.stream_errors == ["reset"])
        await eventually(lambda: not available(on_b, on_a.jid))
        await eventually(lambda: a.output.count("joined again") == joined + 1)

        again = await opened.connect(a, alice, "again")
        again.xmpp.send_presence()
        await eventually(lambda: available(on_b, again.jid))
        on_b.send(again.jid, "after the node joined again")
        await eventually(lambda: again.bodies() == ["after the node joined again"])
        await nodes.settle()

    assert [kind for kind, _ in on_b.presence_from(on_a.jid)].count("unavailable") == 1
