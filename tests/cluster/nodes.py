"""Real ``chinwag serve`` processes as the nodes of one cluster, on loopback, against this
machine's PostgreSQL (a fresh database per test module) and Redis (a key prefix per
module), and slixmpp clients for them.

``NodeProcesses`` starts nodes one after the other (they share a data directory, whose
secrets the first one makes) and waits for each to announce itself. Accounts and
contacts are made in this process, straight into the database, before clients sign in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import asyncpg
from slixmpp import ClientXMPP
from slixmpp.xmlstream.handler import Callback
from slixmpp.xmlstream.matcher import StanzaPath

from chinwag.app import build_services
from chinwag.config import load_settings
from chinwag.oauth.service import OAuthService
from chinwag.server.services import Services
from chinwag.store.db import Database
from tests.integration.support import close_client, free_port, make_client, sign_in

from .support import POSTGRES_URL

DOMAIN = "localhost"
HOST = "127.0.0.1"
PASSWORD = "cluster-secret"
START_SECONDS = 30.0
"""Starting a Python process and joining: allow for a slow machine."""
ANNOUNCEMENT_END = "add a user"


async def _postgres(statement: str) -> None:
    connection = await asyncpg.connect(POSTGRES_URL.replace("+asyncpg", ""), timeout=5)
    try:
        await connection.execute(statement)
    finally:
        await connection.close()


def create_database() -> tuple[str, str]:
    """A new, empty PostgreSQL database: its name and URL."""
    name = f"chinwag_cluster_{uuid.uuid4().hex}"
    asyncio.run(_postgres(f'CREATE DATABASE "{name}"'))
    return name, POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"


def drop_database(name: str) -> None:
    asyncio.run(_postgres(f'DROP DATABASE "{name}" WITH (FORCE)'))


def _toml(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value)
    return str(value)


@dataclass
class Node:
    name: str
    config: Path
    log: Path
    port: int
    direct_tls_port: int
    http_port: int
    process: subprocess.Popen[bytes] | None = None

    @property
    def output(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def kill(self) -> None:
        """SIGKILL: the node dies without a word to anyone."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait(10)

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(10)
        return self.process.returncode


@dataclass
class NodeProcesses:
    """Nodes of one cluster, each ``chinwag serve`` with a config file of its own."""

    root: Path
    database_url: str
    redis_url: str
    prefix: str
    lease_seconds: float = 1.0
    nodes: dict[str, Node] = field(default_factory=dict)
    options: dict[str, dict[str, object]] = field(default_factory=dict)
    """More settings for every node started from here on, by table."""

    @property
    def data_dir(self) -> Path:
        return self.root / "data"

    def config(self, name: str) -> Node:
        node = Node(
            name,
            self.root / f"{name}.toml",
            self.root / f"{name}.log",
            free_port(),
            free_port(),
            free_port(),
        )
        settings: dict[str, dict[str, object]] = {
            "database": {"url": self.database_url},
            "c2s": {"host": HOST, "port": node.port, "direct_tls_port": node.direct_tls_port},
            "http": {"host": HOST, "port": node.http_port},
            "roster": {"management": True},
            "cluster": {
                "redis_url": self.redis_url,
                "node": name,
                "lease_seconds": self.lease_seconds,
                "key_prefix": self.prefix,
            },
        }
        for table, values in self.options.items():
            settings[table] = {**settings.get(table, {}), **values}
        lines = [f"domain = {_toml(DOMAIN)}", f"data_dir = {_toml(str(self.data_dir))}"]
        for table, values in settings.items():
            lines.append(f"[{table}]")
            lines += [f"{key} = {_toml(value)}" for key, value in values.items()]
        node.config.write_text("\n".join(lines) + "\n")
        self.nodes[name] = node
        return node

    def start(self, name: str) -> Node:
        node = self.nodes.get(name) or self.config(name)
        env = {k: v for k, v in os.environ.items() if k != "CHINWAG_CONFIG"}
        env["PYTHONUNBUFFERED"] = "1"
        with node.log.open("ab") as log:
            node.process = subprocess.Popen(
                [sys.executable, "-m", "chinwag", "serve", "--config", str(node.config)],
                stdout=log,
                stderr=subprocess.STDOUT,
                env=env,
                cwd=self.root,
            )
        deadline = time.monotonic() + START_SECONDS
        while ANNOUNCEMENT_END not in node.output:
            if node.process.poll() is not None or time.monotonic() > deadline:
                node.kill()
                raise AssertionError(f"node {name} did not start:\n{node.output}")
            time.sleep(0.05)
        return node

    def close(self) -> None:
        for node in self.nodes.values():
            node.stop()

    async def prepare(self, users: Iterable[str], contacts: Iterable[tuple[str, str]]) -> None:
        """Make ``users`` (password ``PASSWORD``) and mutual ``contacts``, straight into
        the database the nodes share."""
        async with self.network() as (services, _oauth):
            for user in users:
                await services.accounts.add_user(user, PASSWORD, None)
            await services.contacts.add_many(list(contacts))

    @contextlib.asynccontextmanager
    async def network(self) -> AsyncIterator[tuple[Services, OAuthService]]:
        """The network's services on the nodes' database, as the CLI or the portal uses
        them: what they change reaches every node as an event."""
        settings = load_settings(next(iter(self.nodes.values())).config)
        database = Database.open(settings.database_url)
        try:
            yield build_services(settings, database)
        finally:
            await database.close()

    async def settle(self) -> None:
        """Long enough for every node to have read the network's latest events, several
        times over."""
        await asyncio.sleep(1.0)

    def run_cli(self, node: str, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-m", "chinwag", *args, "--config", str(self.nodes[node].config)],
            capture_output=True,
            text=True,
            timeout=START_SECONDS,
            cwd=self.root,
            check=False,
        )


# --- clients ---------------------------------------------------------------------------


class Client:
    """A signed-in slixmpp client that keeps what it receives."""

    def __init__(self, xmpp: ClientXMPP, node: Node) -> None:
        self.xmpp = xmpp
        self.node = node
        self.messages: list[Any] = []
        self.presences: list[tuple[str, str, str]] = []
        """(from, type, status) of each presence received."""
        self.pushes: list[Any] = []
        """Roster pushes received."""
        self.stream_errors: list[str] = []
        self.disconnected = asyncio.Event()
        xmpp.add_event_handler("message", self.messages.append)
        xmpp.add_event_handler("presence", self._presence)
        xmpp.add_event_handler("stream_error", self._stream_error)
        xmpp.add_event_handler("disconnected", lambda _event: self.disconnected.set())
        xmpp.register_handler(
            Callback("pushes", StanzaPath("iq@type=set/roster"), self.pushes.append)
        )

    @property
    def jid(self) -> str:
        return str(self.xmpp.boundjid)

    def _presence(self, presence: Any) -> None:
        self.presences.append((str(presence["from"]), presence["type"], presence["status"]))

    def _stream_error(self, error: Any) -> None:
        self.stream_errors.append(error["condition"])

    def bodies(self) -> list[str]:
        return [str(message["body"]) for message in self.messages if message["body"]]

    def presence_from(self, jid: str) -> list[tuple[str, str]]:
        return [(kind, status) for sender, kind, status in self.presences if sender == jid]

    def send(self, to: str, body: str, **extra: Any) -> None:
        self.xmpp.send_message(mto=to, mbody=body, mtype="chat", **extra)


class Clients:
    """Signs clients in to nodes, and closes them all at the end."""

    def __init__(self) -> None:
        self.all: list[Client] = []

    async def connect(
        self, node: Node, user: str, resource: str, *, plugins: Iterable[str] = ()
    ) -> Client:
        xmpp = make_client(f"{user}@{DOMAIN}/{resource}", PASSWORD, plugins=("xep_0199", *plugins))
        client = Client(xmpp, node)
        self.all.append(client)
        await sign_in(xmpp, HOST, node.port)
        return client

    async def connect_with_token(self, node: Node, user: str, token: str, resource: str) -> Client:
        """Signed in as an app, with an access token (X-MESSENGER-OAUTH2)."""
        xmpp = make_client(
            f"{user}@{DOMAIN}/{resource}", "", sasl_mech="X-MESSENGER-OAUTH2", plugins=["xep_0199"]
        )
        xmpp.credentials["access_token"] = token
        client = Client(xmpp, node)
        self.all.append(client)
        await sign_in(xmpp, HOST, node.port)
        return client

    async def disconnect(self, client: Client) -> None:
        await close_client(client.xmpp)

    async def close(self) -> None:
        await asyncio.gather(*(close_client(client.xmpp) for client in self.all))


@contextlib.asynccontextmanager
async def clients() -> AsyncIterator[Clients]:
    opened = Clients()
    try:
        yield opened
    finally:
        await opened.close()


def unique() -> Callable[[str], str]:
    """Usernames of a test's own: ``user("alice")`` is ``alice-<tag>``."""
    tag = uuid.uuid4().hex[:8]
    return lambda name: f"{name}-{tag}"
