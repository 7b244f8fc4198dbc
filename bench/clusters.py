"""The benchmark's cluster setups, started, provisioned and stopped as
``bench/servers.py`` does a server:

- ``chinwag-cluster``: two ``chinwag serve`` processes with ``[cluster]``, nodes ``a``
  and ``b``, on the Redis of ``Backends`` under a key prefix of the run's own (deleted
  afterwards) and on a PostgreSQL database of the run's own (created on the server
  ``Backends`` names, dropped afterwards). Even users sign in to node a, odd ones to
  node b: every user's partner is on the other node, so every message crosses.
- ``chinwag-workers``: ``chinwag serve --workers 2``, on a database and key prefix of
  its own. Both workers listen on one port and the kernel spreads the connections
  between them, so about half of the messages cross.
- ``ejabberd-cluster``: Debian's ejabberd as two Erlang nodes on loopback, each with
  its own spool and distribution port, found through an epmd of the run's own on a
  free loopback port (never the machine's). Node 2 joins node 1 with ejabberdctl's
  ``join_cluster``, run as ejabberdctl runs it (``-s ejabberd_ctl``) but as the current
  user; the users and contacts are registered once, on node 1, and Mnesia replicates
  them. Even users sign in to node 1, odd ones to node 2.

The chinwag setups report the CPU of the Redis they share as "Redis CPU", read from its
``INFO cpu`` (the whole server's: on a machine where others use it, it counts their
work too). PostgreSQL does not take part in routing a message.
"""

from __future__ import annotations

import asyncio
import importlib.metadata
import re
import secrets
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from bench.loadgen import DOMAIN, HOST, ProcessTree, Target
from bench.servers import (
    START_TIMEOUT_S,
    Backends,
    BenchServer,
    Chinwag,
    Ejabberd,
    ServerError,
    ServerProcess,
    TlsFiles,
    _environment,
    _run,
    free_port,
    group_alive,
)

if TYPE_CHECKING:
    from redis import Redis

CHECK_TIMEOUT_S = 3.0
LEVEL = re.compile(r" (?=(?:ERROR|CRITICAL) )")
"""Where a line of chinwag's text log stops giving the time."""


# --- Redis and PostgreSQL ----------------------------------------------------------


def backends_problem(backends: Backends) -> str | None:
    """Why the Redis or the PostgreSQL of ``backends`` cannot be used, or None."""
    try:
        with _redis(backends.redis_url) as client:
            client.ping()
    except Exception as error:  # whatever stops us reaching it is the reason to skip
        return f"Redis at {backends.redis_url} unreachable: {_first_line(error)}"
    try:
        asyncio.run(_postgres(backends.postgres_url, "SELECT 1"))
    except Exception as error:  # whatever stops us reaching it is the reason to skip
        return f"PostgreSQL at {backends.postgres_url} unreachable: {_first_line(error)}"
    return None


def _first_line(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def _redis(url: str) -> Redis:
    from redis import Redis

    return Redis.from_url(url, socket_connect_timeout=CHECK_TIMEOUT_S, socket_timeout=10)


async def _postgres(url: str, statement: str) -> None:
    import asyncpg

    connection = await asyncpg.connect(url, timeout=CHECK_TIMEOUT_S)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


class RunBackends:
    """A PostgreSQL database and a Redis key prefix of one setup's own, and the Redis's
    CPU clock."""

    def __init__(self, backends: Backends) -> None:
        self.backends = backends
        tag = secrets.token_hex(6)
        self.database = f"chinwag_bench_{tag}"
        self.key_prefix = f"chinwag-bench:{tag}:"
        server = backends.postgres_url.rpartition("/")[0]
        self.database_url = f"{server}/{self.database}".replace(
            "postgresql://", "postgresql+asyncpg://", 1
        )
        self._created = False
        self._client = _redis(backends.redis_url)

    def create_database(self) -> None:
        asyncio.run(_postgres(self.backends.postgres_url, f'CREATE DATABASE "{self.database}"'))
        self._created = True

    def redis_cpu_seconds(self) -> float:
        """User plus system CPU the Redis server has used since it started."""
        info = self._client.info("cpu")
        return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])

    def close(self) -> None:
        """Drop the database and delete the keys."""
        try:
            keys = list(self._client.scan_iter(match=f"{self.key_prefix}*", count=1000))
            if keys:
                self._client.delete(*keys)
        finally:
            self._client.close()
            if self._created:
                drop = f'DROP DATABASE IF EXISTS "{self.database}" WITH (FORCE)'
                asyncio.run(_postgres(self.backends.postgres_url, drop))
                self._created = False


# --- chinwag -----------------------------------------------------------------------


class ChinwagCluster(Chinwag):
    """chinwag as two ``chinwag serve`` nodes; every pair of partners split between them."""

    name = "chinwag-cluster"
    NODES: ClassVar[tuple[str, ...]] = ("a", "b")
    WORKERS: ClassVar[int | None] = None
    """With a number, one ``chinwag serve --workers N`` instead of a process per node."""

    def __init__(self, workdir: Path, tls: TlsFiles, backends: Backends | None = None) -> None:
        self.run_backends = RunBackends(backends or Backends())
        self.node_ports = {node: (free_port(), free_port(), free_port()) for node in self.NODES}
        self._processes: list[ServerProcess] = []
        self._pids: list[int] = []
        self._log_starts: dict[Path, int] = {}
        super().__init__(workdir, tls, backends)
        self.port = self.node_ports[self.NODES[0]][0]

    @classmethod
    def unavailable(cls, backends: Backends) -> str | None:
        return super().unavailable(backends) or backends_problem(backends)

    @classmethod
    def version(cls) -> str:
        """chinwag's, and whether its nodes parse Redis's replies with hiredis (in C)
        or in Python, which costs more CPU per message."""
        try:
            parser = f"hiredis {importlib.metadata.version('hiredis')}"
        except importlib.metadata.PackageNotFoundError:
            parser = "without hiredis"
        return f"{super().version()}, {parser}"

    def node_config(self, node: str) -> Path:
        """The first node's is the config the provisioning commands use."""
        return self.config if node == self.NODES[0] else self.workdir / f"{node}.toml"

    def write_config(self) -> None:
        run = self.run_backends
        for node, ports in self.node_ports.items():
            cluster = f"""
[database]
url = "{run.database_url}"

[cluster]
redis_url = "{run.backends.redis_url}"
node = "{node}"
key_prefix = "{run.key_prefix}"
"""
            self.node_config(node).write_text(self.config_text(*ports) + cluster)

    def provision(self, users: int) -> None:
        self.run_backends.create_database()
        super().provision(users)

    def start(self, *, offline: bool = False, sm: bool = False, archive: bool = False) -> Target:
        if self._processes:
            raise ServerError(f"{self.name} is already running")
        self.archive = archive
        self.write_config()
        workers = ["--workers", str(self.WORKERS)] if self.WORKERS else []
        try:
            for node in self.NODES:  # one after the other: they share a data directory
                command = [self._exe(), "serve", "--config", str(self.node_config(node))]
                process = ServerProcess(
                    f"{self.name} {node}",
                    [*command, *workers],
                    cwd=self.workdir,
                    env=_environment(),
                    log_name=f"{node}.log",
                )
                self._processes.append(process)
                self._pids.append(process.pid)
                self._log_starts[process.log_path] = process.log_path.stat().st_size
                process.wait_for_port(self.node_ports[node][0], START_TIMEOUT_S)
        except BaseException:
            self.stop()
            raise
        ports = tuple(self.node_ports[node][0] for node in self.NODES)
        return Target(
            self.name,
            HOST,
            self.port,
            DOMAIN,
            ProcessTree(*(process.pid for process in self._processes)),
            ports=ports if len(ports) > 1 else (),
            redis_cpu=self.run_backends.redis_cpu_seconds,
        )

    def stop(self) -> None:
        for process in self._processes:
            process.stop()
        self._processes = []
        for log, start in self._log_starts.items():
            self.warnings.extend(logged_errors(log, start))
        self._log_starts = {}

    def left_running(self) -> bool:
        return any(group_alive(pid) for pid in self._pids)

    def close(self) -> None:
        self.run_backends.close()

    def log_tail(self) -> str:
        return "\n".join(
            f"{node}: {line}"
            for node in self.NODES
            if (log := self.workdir / f"{node}.log").exists()
            for line in log.read_text(errors="replace").splitlines()[-12:]
        )


def logged_errors(log: Path, start: int, samples: int = 3) -> list[str]:
    """What a node logged at ERROR or CRITICAL after ``start`` (a byte offset): how many
    lines and the first few kinds, or nothing."""
    with log.open("rb") as file:
        file.seek(start)
        lines = file.read().decode(errors="replace").splitlines()
    errors = [line for line in lines if " ERROR " in line or " CRITICAL " in line]
    if not errors:
        return []
    kinds = list(dict.fromkeys(LEVEL.split(line, maxsplit=1)[-1][:200] for line in errors))
    shown = "; ".join(kinds[:samples])
    return [f"{log.stem} logged {len(errors)} errors, such as: {shown}"]


class ChinwagWorkers(ChinwagCluster):
    """``chinwag serve --workers 2``: two nodes on one port, the kernel spreading the
    connections between them."""

    name = "chinwag-workers"
    NODES = ("w",)
    WORKERS = 2


# --- ejabberd ----------------------------------------------------------------------


class EjabberdNode(Ejabberd):
    """One node of the ejabberd cluster: named ``bench<N>...@localhost``, registered with
    the cluster's epmd, with a distribution port of its own."""

    def __init__(self, workdir: Path, tls: TlsFiles, cluster: EjabberdCluster, number: int) -> None:
        super().__init__(workdir / f"node{number}", tls)
        self.node = f"bench{number}{secrets.token_hex(4)}@localhost"
        self.cookie = cluster.cookie
        self.epmd_port = cluster.epmd_port

    def _erl_node(self, node: str) -> list[str]:
        erl = shutil.which("erl")
        if erl is None:
            raise ServerError("erl is not installed")
        args = [erl, "-sname", node, "-setcookie", self.cookie, "-start_epmd", "false"]
        if node == self.node:
            port = str(self.dist_port)
            args += ["-kernel", "inet_dist_listen_min", port, "inet_dist_listen_max", port]
        return args

    def _env(self) -> dict[str, str]:
        return {**super()._env(), "ERL_EPMD_PORT": str(self.epmd_port)}

    def control(self, *command: str) -> str:
        """An ejabberdctl command on this node, run as ejabberdctl runs it."""
        args = [*self._erl_node(self.control_node()), "-hidden", "-noinput"]
        args += ["-s", "ejabberd_ctl", "-extra", self.node, *command]
        return _run(args, f"ejabberdctl {' '.join(command)}", cwd=self.workdir, env=self._env())


class EjabberdCluster(BenchServer):
    """Two ejabberd nodes in one Mnesia cluster, with an epmd of their own."""

    name = "ejabberd-cluster"

    def __init__(self, workdir: Path, tls: TlsFiles, backends: Backends | None = None) -> None:
        super().__init__(workdir, tls, backends)
        self.cookie = secrets.token_hex(16)
        self.epmd_port = free_port()
        self.nodes = [EjabberdNode(self.workdir, tls, self, number) for number in (1, 2)]
        self.port = self.nodes[0].port
        self._epmd: ServerProcess | None = None
        self._pids: list[int] = []

    @classmethod
    def available(cls) -> bool:
        return Ejabberd.available() and shutil.which("epmd") is not None

    @classmethod
    def version(cls) -> str:
        return Ejabberd.version()

    def provision(self, users: int) -> None:
        first, second = self.nodes
        self.start()
        try:
            second.control("join_cluster", first.node)
            second.wait_until_listening()  # joining restarts its applications
            members = first.control("list_cluster")
            if second.node not in members:
                raise ServerError(f"{second.node} did not join the cluster: {members}")
            first.register(users)
        finally:
            self.stop()

    def _launch(
        self, *, offline: bool, sm: bool, archive: bool = False
    ) -> tuple[list[str], dict[str, str]]:
        raise NotImplementedError("the nodes launch themselves")

    def start(self, *, offline: bool = False, sm: bool = False, archive: bool = False) -> Target:
        """Start epmd, then both nodes at once (each waits for the other's tables)."""
        if self._epmd is not None:
            raise ServerError(f"{self.name} is already running")
        epmd = shutil.which("epmd")
        if epmd is None:
            raise ServerError("epmd is not installed")
        try:
            self._epmd = ServerProcess(
                "epmd",
                [epmd, "-port", str(self.epmd_port), "-address", HOST],
                cwd=self.workdir,
                env=_environment(),
                log_name="epmd.log",
            )
            self._pids.append(self._epmd.pid)
            self._epmd.wait_for_port(self.epmd_port, 30.0)
            for node in self.nodes:
                node.launch(offline=offline, sm=sm)
                self._pids.append(node.pid)
            for node in self.nodes:
                node.wait_until_listening()
        except BaseException:
            self.stop()
            raise
        return Target(
            self.name,
            HOST,
            self.port,
            DOMAIN,
            ProcessTree(*(node.pid for node in self.nodes)),
            ports=tuple(node.port for node in self.nodes),
        )

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()
        if self._epmd is not None:
            self._epmd.stop()
            self._epmd = None

    def left_running(self) -> bool:
        return any(group_alive(pid) for pid in self._pids)

    def log_tail(self) -> str:
        return "\n".join(node.log_tail() for node in self.nodes)


CLUSTER_SERVERS: dict[str, type[BenchServer]] = {
    "chinwag-cluster": ChinwagCluster,
    "chinwag-workers": ChinwagWorkers,
    "ejabberd-cluster": EjabberdCluster,
}
