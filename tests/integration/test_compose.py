"""The deployment of compose.yaml, checked without a Docker daemon: its services, the
files it mounts, Compose's own check of the file, each node's settings (loaded as chinwag loads them), HAProxy's
backends against those settings, HAProxy's own check of its configuration, and
HAProxy with that configuration (on loopback ports) carrying slixmpp clients to a
chinwag that takes the PROXY protocol."""

from __future__ import annotations

import asyncio
import contextlib
import re
import shutil
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from chinwag.config import Settings, load_settings
from tests.debian import apt_install

from .conftest import NewClient, StartServer
from .support import HOST, TIMEOUT, ServerHandle, free_port, sign_in
from .test_proxy_protocol import peer_address

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "compose.yaml"
NODES = ("chinwag-a", "chinwag-b", "chinwag-c")


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())
    return document


def mounted_file(compose: dict[str, Any], service: str, target: str) -> Path:
    """The repository's file that ``service`` bind-mounts read-only at ``target``."""
    [source] = [
        volume.split(":")[0]
        for volume in compose["services"][service]["volumes"]
        if volume.split(":")[1:] == [target, "ro"]
    ]
    return ROOT / source


def node_settings(compose: dict[str, Any], service: str) -> Settings:
    target = compose["services"][service]["environment"]["CHINWAG_CONFIG"]
    return load_settings(mounted_file(compose, service, target))


def haproxy_servers(backend: str) -> list[tuple[str, int, str]]:
    """(host, port, options) of each server line of ``backend`` in haproxy.cfg."""
    text = (ROOT / "deploy" / "compose" / "haproxy.cfg").read_text()
    section = re.search(rf"^backend {backend}\n(.*?)(?=^\S|\Z)", text, re.M | re.S)
    assert section is not None, backend
    return [
        (host, int(port), options.strip())
        for host, port, options in re.findall(
            r"^\s+server \S+ ([\w.-]+):(\d+)(.*)$", section[1], re.M
        )
    ]


def test_one_command_starts_redis_postgresql_three_nodes_and_haproxy(
    compose: dict[str, Any],
) -> None:
    services = compose["services"]
    assert set(services) == {"redis", "postgres", "haproxy", *NODES}
    for node in NODES:
        assert services[node]["build"] == "."  # the repository's Dockerfile
        assert services[node]["stop_signal"] == "SIGUSR1"  # a drain on stop
        assert {"redis", "postgres"} <= set(services[node]["depends_on"])
        assert mounted_file(compose, node, "/etc/chinwag/chinwag.toml").is_file()
    for service in ("redis", "postgres", "haproxy"):  # Debian's packages, built here
        assert services[service]["build"] == {"context": "deploy/compose", "target": service}
    assert mounted_file(compose, "haproxy", "/etc/haproxy/haproxy.cfg").is_file()
    published = [port.rsplit(":", 1) for port in services["haproxy"]["ports"]]
    assert sorted(
        (re.sub(r"\$\{\w+:-(\d+)\}", r"\1", host), inside) for host, inside in published
    ) == [
        ("5222", "5222"),
        ("5223", "5223"),
        ("5280", "5280"),
    ]


def test_compose_itself_finds_the_file_valid() -> None:
    """Debian 12's docker-compose (v1.29) or the docker CLI's Compose v2, whichever is
    here: checking the file needs no daemon."""
    commands = [["docker-compose"], ["docker", "compose"]]
    usable = [
        command
        for command in commands
        if shutil.which(command[0]) is not None
        and subprocess.run([*command, "version"], capture_output=True, timeout=30).returncode == 0
    ]
    if not usable:
        pytest.skip("neither docker-compose nor `docker compose` is installed")

    for command in usable:
        checked = subprocess.run(
            [*command, "-f", str(COMPOSE), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=ROOT,
        )
        assert checked.returncode == 0, checked.stderr


def test_the_nodes_are_one_cluster_behind_the_balancer(compose: dict[str, Any]) -> None:
    nodes = [node_settings(compose, service) for service in NODES]
    balancer = compose["services"]["haproxy"]["networks"]["cluster"]["ipv4_address"]

    clusters = [settings.cluster for settings in nodes]
    assert all(cluster is not None for cluster in clusters)
    assert sorted(cluster.node for cluster in clusters if cluster) == ["a", "b", "c"]
    assert len({(s.database_url, s.data_dir, s.domain) for s in nodes}) == 1
    assert len({cluster.redis_url for cluster in clusters if cluster}) == 1
    assert nodes[0].database_url.startswith("postgresql+asyncpg://chinwag:chinwag@postgres:")
    for settings in nodes:
        assert settings.c2s.proxy_protocol
        assert settings.c2s.proxy_trusted == (balancer,)
        assert settings.http.trusted_proxies == (balancer,)


def test_haproxy_sends_the_proxy_protocol_to_each_node_s_ports(compose: dict[str, Any]) -> None:
    nodes = {service: node_settings(compose, service) for service in NODES}

    for backend, port_of in (
        ("c2s", lambda s: s.c2s.port),
        ("direct_tls", lambda s: s.c2s.direct_tls_port),
        ("web", lambda s: s.http.port),
    ):
        servers = haproxy_servers(backend)
        assert sorted(host for host, _, _ in servers) == sorted(NODES)
        for host, port, options in servers:
            assert port == port_of(nodes[host])
            assert ("send-proxy-v2" in options) == (backend != "web")


def require_haproxy() -> None:
    if shutil.which("haproxy") is None and (problem := apt_install("haproxy")) is not None:
        pytest.skip(f"HAProxy is not installed and cannot be: {problem}")


def test_haproxy_finds_its_configuration_valid() -> None:
    require_haproxy()
    checked = subprocess.run(
        ["haproxy", "-c", "-f", str(ROOT / "deploy" / "compose" / "haproxy.cfg")],
        capture_output=True,
        text=True,
        timeout=30,
    )

    assert checked.returncode == 0, checked.stderr
    assert "Configuration file is valid" in checked.stdout
    warnings = [line for line in checked.stderr.splitlines() if "[WARNING]" in line]
    # Outside Docker the nodes' names do not resolve; nothing else may be wrong.
    assert all("could not resolve address 'chinwag-" in line for line in warnings), warnings


def on_loopback(server: ServerHandle, fronts: dict[int, int]) -> str:
    """haproxy.cfg with its listeners on the loopback ports ``fronts`` gives for each of
    its own, and every node's address replaced by ``server``'s."""
    assert server.app is not None
    text = (ROOT / "deploy" / "compose" / "haproxy.cfg").read_text()
    for port, front in fronts.items():
        text = text.replace(f"bind :{port}\n", f"bind {HOST}:{front}\n")
    backends = {5222: server.port, 5223: server.direct_tls_port, 5280: server.app.http.port}
    for port, node_port in backends.items():
        text = re.sub(rf"chinwag-[abc]:{port}\b", f"{HOST}:{node_port}", text)
    return text


@contextlib.asynccontextmanager
async def haproxy(config: Path, port: int) -> AsyncIterator[None]:
    process = await asyncio.create_subprocess_exec(
        "haproxy", "-db", "-f", str(config), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
    )
    try:
        deadline = asyncio.get_running_loop().time() + TIMEOUT
        while True:
            with contextlib.suppress(OSError):
                _, writer = await asyncio.open_connection(HOST, port)
                writer.close()
                break
            assert process.returncode is None, "haproxy exited"
            assert asyncio.get_running_loop().time() < deadline, "haproxy does not listen"
            await asyncio.sleep(0.05)
        yield
    finally:
        process.terminate()
        await asyncio.wait_for(process.wait(), TIMEOUT)


async def test_haproxy_with_the_compose_configuration_carries_clients_to_a_node(
    start_server: StartServer, new_client: NewClient, tmp_path: Path
) -> None:
    require_haproxy()
    server = await start_server(c2s={"proxy_protocol": True})  # trusting only 127.0.0.1
    fronts = {5222: free_port(), 5223: free_port(), 5280: free_port()}
    config = tmp_path / "haproxy.cfg"
    config.write_text(on_loopback(server, fronts))

    async with haproxy(config, fronts[5222]):
        starttls = new_client(server, "alice", "starttls")
        direct = new_client(server, "bob", "direct", direct_tls=True)
        # A node accepts a connection only once it has read a PROXY header from it.
        await sign_in(starttls, HOST, fronts[5222])
        await sign_in(direct, HOST, fronts[5223])
        assert peer_address(server, server.jid("alice", "starttls")) == (HOST, "starttls")
        assert peer_address(server, server.jid("bob", "direct")) == (HOST, "tls")
        async with httpx.AsyncClient(trust_env=False) as web:
            answer = await web.get(f"http://{HOST}:{fronts[5280]}/.well-known/host-meta")

    assert answer.status_code == 200
