"""compose.yaml run for real: built and started with one command on a Docker daemon,
then used as an operator and a client would. A user is added with ``compose exec``,
slixmpp clients sign in through HAProxy (STARTTLS) and land on different nodes, a
message crosses between them, the node names the client's own address (read from the
PROXY header), and ``compose stop`` drains a node, whose client is sent on with
``<see-other-host/>`` and signs in again on another node; ``down -v`` removes it all.

It runs where a Docker daemon answers. Where none does, it skips and says so, unless
``CHINWAG_TEST_DOCKERD=start`` asks it to start Debian's ``dockerd`` itself as root
(installing docker.io with apt-get if need be) and stop it afterwards: with nothing
cached that takes some ten minutes, past what the whole suite may take. Where no
registry serves ``debian:bookworm-slim``, ``deploy/compose/debian-base.sh`` makes it
from Debian's archive, once: the tag is kept, as are the images built on it. Where
none of this can be had, the test skips and says why."""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import re
import shutil
import subprocess
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from slixmpp import ClientXMPP

from tests.debian import apt_install
from tests.integration.support import close_client, free_port, make_client, sign_in, watch
from tests.machine_lock import machine_lock

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
PROJECT = "chinwag-compose-test"
BASE_IMAGE = "debian:bookworm-slim"
NODES = ("chinwag-a", "chinwag-b", "chinwag-c")
HAPROXY_ADDRESS = "172.28.0.10"  # compose.yaml's fixed address of the balancer
PASSWORD = "a long password"
DOMAIN = "localhost"
BUILD_TIMEOUT = 1200.0  # a first build of every image, on a loaded machine
READY_TIMEOUT = 240.0
COMMAND_TIMEOUT = 180.0  # one `chinwag` command in a node: a Python start, on a loaded machine
CLIENT_TIMEOUT = 60.0
START_DOCKERD = "CHINWAG_TEST_DOCKERD"


def run(command: list[str], timeout: float, **options: Any) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        command, capture_output=True, text=True, timeout=timeout, check=False, **options
    )


def daemon_answers() -> bool:
    if shutil.which("docker") is None:
        return False
    try:
        return run(["docker", "info"], 30).returncode == 0
    except subprocess.TimeoutExpired:
        return False


@contextlib.contextmanager
def docker_daemon() -> Iterator[None]:
    """A Docker daemon that answers: the running one, or one this test starts (as root)
    and stops afterwards."""
    if daemon_answers():
        yield
        return
    if os.environ.get(START_DOCKERD) != "start":
        pytest.skip(
            f"no Docker daemon answers: start one, or set {START_DOCKERD}=start to have "
            "this test install and start Debian's dockerd (as root)"
        )
    if os.geteuid() != 0:
        pytest.skip("no Docker daemon answers, and the tests do not run as root to start one")
    missing = shutil.which("dockerd") is None or shutil.which("docker") is None
    if missing and (problem := apt_install("docker.io")) is not None:
        pytest.skip(f"no Docker daemon answers, and docker.io cannot be installed: {problem}")
    with machine_lock("dockerd"):
        if daemon_answers():  # another test process started one meanwhile
            yield
            return
        log = Path(os.environ.get("TMPDIR", "/tmp")) / f"chinwag-test-dockerd-{os.getpid()}.log"
        with log.open("wb") as output:
            dockerd = subprocess.Popen(
                ["dockerd"], stdout=output, stderr=subprocess.STDOUT, start_new_session=True
            )
        try:
            deadline = time.monotonic() + 60
            while not daemon_answers():
                if dockerd.poll() is not None or time.monotonic() > deadline:
                    tail = log.read_text(errors="replace")[-2000:]
                    pytest.skip(f"dockerd did not start: {tail}")
                time.sleep(1)
            yield
        finally:
            dockerd.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                dockerd.wait(60)
            if dockerd.poll() is None:
                dockerd.kill()
                dockerd.wait(10)


def compose_command() -> list[str]:
    """Compose v2 (the docker CLI's plugin) where there is one, else Debian's v1."""
    if run(["docker", "compose", "version"], 30).returncode == 0:
        return ["docker", "compose"]
    if shutil.which("docker-compose") is None and (problem := apt_install("docker-compose")):
        pytest.skip(
            f"neither `docker compose` nor docker-compose, nor can it be installed: {problem}"
        )
    return ["docker-compose"]


def ensure_base_image() -> None:
    """The image every Dockerfile of the stack builds on, pulled or made once."""
    with machine_lock("debian-base-image"):
        if run(["docker", "image", "inspect", BASE_IMAGE], 30).returncode == 0:
            return
        with contextlib.suppress(subprocess.TimeoutExpired):
            if run(["docker", "pull", BASE_IMAGE], 180).returncode == 0:
                return
        if shutil.which("debootstrap") is None and (problem := apt_install("debootstrap")):
            pytest.skip(
                f"{BASE_IMAGE} cannot be pulled, and debootstrap cannot be installed: {problem}"
            )
        made = run([str(ROOT / "deploy" / "compose" / "debian-base.sh"), BASE_IMAGE], 900)
        if made.returncode != 0:
            pytest.skip(f"{BASE_IMAGE} cannot be pulled nor made: {made.stderr[-2000:]}")


@dataclass
class Stack:
    compose: list[str]
    ports: dict[str, int]

    def run(
        self, *arguments: str, timeout: float = COMMAND_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        environment = {**os.environ, **{name: str(port) for name, port in self.ports.items()}}
        return run(
            [*self.compose, "-p", PROJECT, "-f", str(ROOT / "compose.yaml"), *arguments],
            timeout,
            cwd=ROOT,
            env=environment,
        )

    def check(self, *arguments: str, timeout: float = COMMAND_TIMEOUT) -> str:
        done = self.run(*arguments, timeout=timeout)
        assert done.returncode == 0, f"{arguments}: {done.stdout}{done.stderr}"
        return done.stdout

    def chinwag(self, node: str, *arguments: str) -> str:
        return self.check("exec", "-T", node, "chinwag", *arguments)

    def container(self, service: str) -> str:
        return self.check("ps", "-q", service).strip()

    def state(self, service: str) -> dict[str, Any]:
        answer = run(
            ["docker", "inspect", "--format", "{{json .State}}", self.container(service)], 30
        )
        state: dict[str, Any] = json.loads(answer.stdout)
        return state

    def logs(self, service: str) -> str:
        return self.check("logs", "--no-color", service)

    def sessions(self, via: str) -> dict[str, str]:
        """Node of each live session's full JID, as node ``via`` lists the cluster's."""
        listed = json.loads(self.chinwag(f"chinwag-{via}", "sessions", "list", "--json"))
        return {session["jid"]: session["node"] for session in listed}


@pytest.fixture(scope="module")
def stack() -> Iterator[Stack]:
    if shutil.which("docker") is None and os.geteuid() != 0:
        pytest.skip("no docker command, and the tests do not run as root to install it")
    with docker_daemon(), machine_lock("compose-stack"):  # compose.yaml's subnet is fixed
        compose = compose_command()
        ensure_base_image()
        ports = {
            "CHINWAG_XMPP_PORT": free_port(),
            "CHINWAG_XMPPS_PORT": free_port(),
            "CHINWAG_HTTP_PORT": free_port(),
        }
        started = Stack(compose, ports)
        started.run("down", "-v", "--remove-orphans", timeout=120)  # what a killed run left
        try:
            started.check("up", "-d", "--build", timeout=BUILD_TIMEOUT)
            deadline = time.monotonic() + READY_TIMEOUT
            while not all(
                started.state(node).get("Health", {}).get("Status") == "healthy" for node in NODES
            ):
                assert time.monotonic() < deadline, started.check("ps")
                time.sleep(2)
            yield started
        finally:
            started.run("down", "-v", "--remove-orphans", timeout=180)


async def signed_in(stack: Stack, jid: str) -> ClientXMPP:
    client = make_client(jid, PASSWORD)
    await sign_in(client, "127.0.0.1", stack.ports["CHINWAG_XMPP_PORT"], timeout=CLIENT_TIMEOUT)
    client.send_presence()
    return client


@contextlib.asynccontextmanager
async def closing(clients: list[ClientXMPP]) -> AsyncIterator[list[ClientXMPP]]:
    try:
        yield clients
    finally:
        for client in clients:
            await close_client(client)


async def eventually_listed(stack: Stack, jid: str, via: str, not_on: str | None = None) -> str:
    deadline = time.monotonic() + CLIENT_TIMEOUT
    while True:
        node = (await asyncio.to_thread(stack.sessions, via)).get(jid)
        if node is not None and node != not_on:
            return node
        assert time.monotonic() < deadline, f"{jid} is not listed (on a node but {not_on})"
        await asyncio.sleep(1)


async def message_arrives(sender: ClientXMPP, recipient: ClientXMPP, body: str) -> None:
    arrived = watch(recipient, "message")
    sender.send_message(mto=recipient.boundjid.full, mbody=body, mtype="chat")
    message = await asyncio.wait_for(arrived, CLIENT_TIMEOUT)
    assert str(message["body"]) == body


async def test_the_cluster_serves_clients_through_haproxy_and_drains_on_stop(stack: Stack) -> None:
    stack.check(
        "exec", "-T", "chinwag-a", "sh", "-c",
        f"chinwag user add alice --password '{PASSWORD}' && "
        f"chinwag user add bob --password '{PASSWORD}' && "
        "chinwag contacts add alice bob",
    )  # fmt: skip

    async with closing([]) as clients:
        alice = await signed_in(stack, f"alice@{DOMAIN}/laptop")
        clients.append(alice)
        alice_node = await eventually_listed(stack, alice.boundjid.full, via="a")
        # HAProxy balances by least connections: bob lands on another node.
        bob = await signed_in(stack, f"bob@{DOMAIN}/phone")
        clients.append(bob)
        bob_node = await eventually_listed(stack, bob.boundjid.full, via="a")
        assert alice_node != bob_node
        await message_arrives(alice, bob, "from one node to another")
        await message_arrives(bob, alice, "and back")

        # The node names the address HAProxy took the connection from, not HAProxy's own.
        signed = re.search(
            r"signed in user=alice .* address=(\S+)", stack.logs(f"chinwag-{alice_node}")
        )
        assert signed is not None
        accepted = re.findall(r"Connect from (\S+):\d+ to \S+:5222", stack.logs("haproxy"))
        assert signed[1] in accepted and signed[1] != HAPROXY_ADDRESS

        redirects: list[str] = []
        alice.add_event_handler(
            "stream_error", lambda error: redirects.append(str(error["see_other_host"]))
        )
        back = watch(alice, "session_start")
        started = time.monotonic()
        await asyncio.to_thread(stack.check, "stop", f"chinwag-{alice_node}", timeout=120)
        stopped_in = time.monotonic() - started
        await asyncio.wait_for(back, CLIENT_TIMEOUT)

        assert redirects == ["localhost:5222"]  # every node advertises the balancer
        drained = stack.state(f"chinwag-{alice_node}")
        assert drained["Status"] == "exited" and drained["ExitCode"] == 0
        assert stopped_in < 40  # the drain ended well within compose.yaml's grace period
        alice.send_presence()
        assert await eventually_listed(stack, alice.boundjid.full, via=bob_node, not_on=alice_node)
        await message_arrives(bob, alice, "after the drain")
