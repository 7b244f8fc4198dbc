"""Operating a cluster of ``chinwag serve`` processes: the sign-in limit counted across
nodes, a drain to another live node that advertises its address, and ``serve
--workers`` as nodes that share their ports. Slixmpp clients on loopback; the nodes share
the module's PostgreSQL database and Redis key prefix."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from tests.integration.support import SignInFailed, make_client, sign_in
from tests.integration.test_drain import follow_see_other_host, peer_port

from .nodes import DOMAIN, HOST, PASSWORD, Node, NodeProcesses, clients, unique
from .support import TIMEOUT, eventually

pytestmark = pytest.mark.postgres

FAILURES = 2


def configure(nodes: NodeProcesses, name: str) -> Node:
    """Node ``name``'s settings: the module's, with a low sign-in limit, and advertising
    its own c2s address."""
    node = nodes.config(name)
    text = node.config.read_text().replace(
        "[cluster]\n", f'[cluster]\nadvertise = "{HOST}:{node.port}"\n'
    )
    node.config.write_text(text + f"[limits]\nmax_auth_failures_per_address = {FAILURES}\n")
    return node


@pytest.fixture(scope="module")
def nodes(node_processes: NodeProcesses) -> NodeProcesses:
    for name in ("a", "b"):
        configure(node_processes, name)
        node_processes.start(name)
    return node_processes


async def test_failed_sign_ins_on_one_node_refuse_the_address_on_another(
    nodes: NodeProcesses,
) -> None:
    user = unique()
    alice = user("alice")
    await nodes.prepare([alice], [])
    a, b = nodes.nodes["a"], nodes.nodes["b"]
    try:
        for _ in range(FAILURES):
            guesser = make_client(f"{alice}@{DOMAIN}/guess", "wrong")
            with pytest.raises(SignInFailed):
                await sign_in(guesser, HOST, a.port)
            guesser.abort()
        refused = make_client(f"{alice}@{DOMAIN}/right", PASSWORD)
        errors: list[str] = []
        refused.add_event_handler("stream_error", lambda e: errors.append(e["condition"]))
        with pytest.raises(SignInFailed):
            await sign_in(refused, HOST, b.port)
        refused.abort()
        assert errors == ["policy-violation"]

        listed = nodes.run_cli("b", "bans", "list", "--json")
        assert [ban["address"] for ban in json.loads(listed.stdout)] == [HOST]
    finally:
        lifted = nodes.run_cli("a", "bans", "lift", HOST)
    assert lifted.returncode == 0, lifted.stderr
    async with clients() as opened:
        await opened.connect(b, alice, "after")


async def test_a_drained_node_sends_its_clients_to_a_live_node_that_advertises_itself(
    nodes: NodeProcesses,
) -> None:
    user = unique()
    alice = user("alice")
    await nodes.prepare([alice], [])
    configure(nodes, "c")
    c = nodes.start("c")
    client = make_client(f"{alice}@{DOMAIN}/laptop", PASSWORD)
    follow_see_other_host(client)
    await sign_in(client, HOST, c.port)
    restarted = asyncio.get_running_loop().create_future()
    client.add_event_handler(
        "session_start", lambda _e: restarted.done() or restarted.set_result(None)
    )
    try:
        drained = await asyncio.to_thread(nodes.run_cli, "c", "drain", "--json")

        assert drained.returncode == 0, drained.stderr
        answer = json.loads(drained.stdout)
        live = {f"{HOST}:{nodes.nodes[name].port}" for name in ("a", "b")}
        assert answer["to"] in live and answer["sent"] == 1 and answer["stopped"]
        assert c.process is not None and c.process.wait(TIMEOUT) == 0
        await asyncio.wait_for(restarted, TIMEOUT)
        assert f"{HOST}:{peer_port(client)}" == answer["to"]
    finally:
        client.abort()


async def test_workers_are_nodes_that_share_the_ports(nodes: NodeProcesses) -> None:
    user = unique()
    names = [user(f"u{index}") for index in range(12)]
    await nodes.prepare(names, [(names[0], name) for name in names[1:]])
    w = nodes.config("w")
    supervisor = serve_two_workers(nodes, w)
    try:
        await eventually(lambda: w.output.count("add a user") == 2, 60)
        async with clients() as opened:
            signed_in = await asyncio.gather(*(opened.connect(w, name, "phone") for name in names))
            listed = await asyncio.to_thread(nodes.run_cli, "w", "sessions", "list", "--json")
            by_user = {s["user"]: s["node"] for s in json.loads(listed.stdout)}
            assert {by_user[name] for name in names} == {"w-1", "w-2"}
            first, *others = signed_in
            for other in others:
                first.send(other.jid, "across the workers")
            await eventually(lambda: all(o.bodies() == ["across the workers"] for o in others))
        supervisor.send_signal(signal.SIGTERM)
        assert await asyncio.to_thread(supervisor.wait, TIMEOUT) == 0, w.output
        assert len(re.findall(r"worker w-\d stopped", w.output)) == 2
    finally:
        if supervisor.poll() is None:
            supervisor.kill()


async def test_workers_stop_when_their_supervisor_is_killed(nodes: NodeProcesses) -> None:
    w = nodes.config("w")
    supervisor = serve_two_workers(nodes, w)
    pids: list[int] = []
    try:
        await eventually(lambda: w.output.count("add a user") == 2, 60)
        pids = [int(pid) for pid in re.findall(r"worker w-\d started \(pid (\d+)\)", w.output)]
        assert len(pids) == 2, w.output
        supervisor.kill()
        supervisor.wait(TIMEOUT)
        await eventually(lambda: not any(running(pid) for pid in pids), TIMEOUT)
    finally:
        supervisor.kill()
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


def running(pid: int) -> bool:
    """Whether ``pid`` is a process that has not ended (a zombie has)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def serve_two_workers(nodes: NodeProcesses, w: Node) -> subprocess.Popen[bytes]:
    """``chinwag serve --workers 2`` with node ``w``'s settings, logging to its log."""
    env = {k: v for k, v in os.environ.items() if k != "CHINWAG_CONFIG"}
    with w.log.open("ab") as log:
        return subprocess.Popen(
            [sys.executable, "-m", "chinwag", "serve", "--workers", "2", "--config", str(w.config)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env | {"PYTHONUNBUFFERED": "1"},
            cwd=nodes.root,
        )
