"""Helpers for the instant-messaging tests: clients that record every stanza they get,
matchers over those stanzas, and the ``chinwag`` command run against a running server.

A :class:`Peer` is a signed-in slixmpp client whose stanzas are written raw, in
the order the test gives them, and whose incoming stanzas are kept as element
trees. ``await peer.next(match)`` takes the first recorded stanza that matches,
waiting up to ``TIMEOUT``; ``await settle(a, b)`` pings the server from each peer
in turn, so that whatever the server queued for them before has arrived, and a
test can then assert that something did *not* arrive without sleeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import socket
import struct
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from xml.sax.saxutils import quoteattr

from slixmpp import ClientXMPP

from .support import TIMEOUT, NewClient, ServerHandle, sign_in, watch
from .test_serve import STARTUP_TIMEOUT, chinwag_command, clean_env, write_config

NS_CLIENT = "jabber:client"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
NS_ROSTER = "jabber:iq:roster"
NS_VCARD = "vcard-temp"
NS_DELAY = "urn:xmpp:delay"
NS_CHATSTATES = "http://jabber.org/protocol/chatstates"
NS_PING = "urn:xmpp:ping"
NS_DISCO_INFO = "http://jabber.org/protocol/disco#info"

RECORDED = ("{jabber:client}", "{http://etherx.jabber.org/streams}error")
"""Stanzas, and stream errors; not the stream negotiation."""

Match = Callable[[ET.Element], bool]
_ids = itertools.count(1)


def q(tag: str, ns: str = NS_CLIENT) -> str:
    """A qualified ElementTree tag."""
    return f"{{{ns}}}{tag}"


# --- matchers ---------------------------------------------------------------------


def stanza(tag: str, /, *, where: Match | None = None, **attrs: Any) -> Match:
    """Matches ``<tag/>`` in jabber:client whose attributes equal ``attrs``.

    ``from_`` stands for 'from'; None means the attribute is absent; ``where``
    is a further test on the element.
    """
    wanted = {name.rstrip("_"): value for name, value in attrs.items()}

    def match(element: ET.Element) -> bool:
        if element.tag != q(tag):
            return False
        for name, value in wanted.items():
            if element.get(name) != value:
                return False
        return where is None or where(element)

    return match


def presence(**attrs: Any) -> Match:
    return stanza("presence", **attrs)


def message(**attrs: Any) -> Match:
    return stanza("message", **attrs)


def roster_push(**attrs: Any) -> Match:
    return stanza(
        "iq", type="set", where=lambda e: e.find(q("query", NS_ROSTER)) is not None, **attrs
    )


def error_condition(element: ET.Element) -> str | None:
    """The defined condition of a stanza error, or None when ``element`` is no error."""
    error = element.find(q("error"))
    if error is None:
        return None
    for child in error:
        namespace, _, name = child.tag[1:].partition("}")
        if namespace == NS_STANZAS and name != "text":
            return name
    return None


def body(element: ET.Element) -> str | None:
    found = element.find(q("body"))
    return None if found is None else found.text or ""


def text_of(element: ET.Element, tag: str, ns: str = NS_CLIENT) -> str | None:
    found = element.find(q(tag, ns))
    return None if found is None else found.text or ""


@dataclass(frozen=True)
class Item:
    """A roster item as the client saw it."""

    jid: str
    subscription: str | None
    name: str | None
    ask: str | None
    approved: str | None
    groups: tuple[str, ...]


def roster_items(iq: ET.Element) -> dict[str, Item]:
    """The items of a roster result or push, by JID."""
    query = iq.find(q("query", NS_ROSTER))
    assert query is not None, ET.tostring(iq)
    return {
        item.get("jid", ""): Item(
            item.get("jid", ""),
            item.get("subscription"),
            item.get("name"),
            item.get("ask"),
            item.get("approved"),
            tuple(group.text or "" for group in item.findall(q("group", NS_ROSTER))),
        )
        for item in query.findall(q("item", NS_ROSTER))
    }


def roster_version(iq: ET.Element) -> str | None:
    query = iq.find(q("query", NS_ROSTER))
    return None if query is None else query.get("ver")


def delay_stamp(element: ET.Element) -> tuple[str | None, datetime]:
    """The XEP-0203 delay of a stanza: its 'from' and its stamp, which must be UTC."""
    delay = element.find(q("delay", NS_DELAY))
    assert delay is not None, f"no delay in {ET.tostring(element)!r}"
    stamp = delay.get("stamp", "")
    assert stamp.endswith("Z"), f"the stamp {stamp!r} is not in UTC ('Z')"
    when = datetime.fromisoformat(stamp.replace("Z", "+00:00"))
    assert when.utcoffset() is not None and when.utcoffset().total_seconds() == 0
    return delay.get("from"), when.astimezone(UTC)


# --- clients ----------------------------------------------------------------------


class Peer:
    """A signed-in slixmpp client that records every stanza it receives."""

    def __init__(self, client: ClientXMPP) -> None:
        self.client = client
        self.inbox: list[ET.Element] = []
        self._arrived = asyncio.Event()
        # Answer nothing about subscriptions on the user's behalf: the tests do.
        client.auto_authorize = None
        client.auto_subscribe = False
        client.add_filter("in", self._record)

    def _record(self, received: Any) -> Any:
        if received.xml.tag.startswith(RECORDED):
            # A copy: slixmpp's handlers turn some stanzas into their replies in place.
            self.inbox.append(copy.deepcopy(received.xml))
            self._arrived.set()
        return received

    @property
    def jid(self) -> str:
        return str(self.client.boundjid)

    def send(self, xml: str) -> None:
        """Write ``xml`` on the stream now (in order with every other ``send``)."""
        self.client.send_raw(xml)

    async def next(self, match: Match, timeout: float = TIMEOUT) -> ET.Element:
        """Take the first recorded stanza that matches, waiting up to ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, element in enumerate(self.inbox):
                if match(element):
                    return self.inbox.pop(index)
            remaining = deadline - loop.time()
            if remaining <= 0:
                received = "\n".join(ET.tostring(e, encoding="unicode") for e in self.inbox)
                raise AssertionError(
                    f"{self.jid} got no matching stanza within {timeout}s; it has:\n{received}"
                )
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    def take_all(self, match: Match) -> list[ET.Element]:
        """Every recorded stanza that matches, taken now (no waiting)."""
        taken = [element for element in self.inbox if match(element)]
        self.inbox = [element for element in self.inbox if not match(element)]
        return taken

    def assert_none(self, match: Match) -> None:
        found = [ET.tostring(e, encoding="unicode") for e in self.inbox if match(e)]
        assert not found, f"{self.jid} got what it should not have: {found}"

    async def iq(self, xml: str) -> ET.Element:
        """Send an IQ written without an id; returns its result or error."""
        iq_id = f"t{next(_ids)}"
        self.send(xml.replace("<iq ", f"<iq id='{iq_id}' ", 1))
        return await self.next(
            lambda e: (
                e.tag == q("iq") and e.get("id") == iq_id and e.get("type") in ("result", "error")
            )
        )

    async def sync(self) -> None:
        """Ping the server: once answered, it has handled everything sent before."""
        reply = await self.iq(f"<iq type='get' to='localhost'><ping xmlns='{NS_PING}'/></iq>")
        assert reply.get("type") == "result", ET.tostring(reply)

    async def roster(self, ver: str | None = None) -> ET.Element:
        """Ask for the roster (which makes this resource interested in pushes)."""
        attr = "" if ver is None else f" ver={quoteattr(ver)}"
        return await self.iq(f"<iq type='get'><query xmlns='{NS_ROSTER}'{attr}/></iq>")

    def kill(self) -> None:
        """Drop the connection as a crash would: a TCP reset, no closing stream tag."""
        transport = self.client.transport
        assert transport is not None
        sock = transport.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        transport.abort()


async def settle(*peers: Peer) -> None:
    """Ping from each peer in turn: what the server sent them before has arrived."""
    for peer in peers:
        await peer.sync()


async def login(
    new_client: NewClient,
    server: ServerHandle,
    user: str = "alice",
    resource: str = "test",
    *,
    priority: int | None = None,
    available: bool = True,
    roster: bool = False,
) -> Peer:
    """A signed-in :class:`Peer`; by default it has sent initial presence (handled)."""
    peer = Peer(new_client(server, user, resource))
    await sign_in(peer.client, server.host, server.port)
    if roster:
        reply = await peer.roster()
        assert reply.get("type") == "result", ET.tostring(reply)
    if available:
        extra = "" if priority is None else f"<priority>{priority}</priority>"
        peer.send(f"<presence>{extra}</presence>")
        await peer.sync()
    return peer


async def drop_and_resume(peer: Peer, server: ServerHandle) -> None:
    """Drop the peer's connection as a crash would, then have its client (with slixmpp's
    xep_0198) connect again and resume the session."""
    client = peer.client
    disconnected = watch(client, "disconnected")
    peer.kill()
    await asyncio.wait_for(disconnected, TIMEOUT)
    resumed = watch(client, "session_resumed")
    client.connect(server.host, server.port)
    await asyncio.wait_for(resumed, TIMEOUT)


async def add_user(server: ServerHandle, name: str, full_name: str | None = None) -> str:
    """A new account on a running in-process server; returns its password."""
    assert server.app is not None
    password = f"{name}-secret"
    await server.app.accounts.add_user(name, password, full_name)
    server.users[name] = password
    return password


# --- the chinwag command against a running server ------------------------------------


def cli_config(server: ServerHandle, directory: Path) -> Path:
    """A config file for the ``chinwag`` command naming the in-process server's data."""
    assert server.app is not None
    settings = server.app.settings
    return write_config(
        directory / "cli.toml",
        {"domain": settings.domain, "data_dir": settings.data_dir},
    )


@dataclass
class Finished:
    returncode: int
    stdout: str
    stderr: str


async def run_cli(config: Path, *args: str) -> Finished:
    """Run ``chinwag ARGS --config CONFIG`` without blocking the event loop."""
    process = await asyncio.create_subprocess_exec(
        *chinwag_command(),
        *args,
        "--config",
        str(config),
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        cwd=config.parent,
        env=clean_env(),
    )
    try:
        out, err = await asyncio.wait_for(process.communicate(), STARTUP_TIMEOUT)
    except TimeoutError:
        process.kill()
        await asyncio.wait_for(process.wait(), TIMEOUT)
        raise AssertionError(
            f"chinwag {' '.join(args)} ran longer than {STARTUP_TIMEOUT}s"
        ) from None
    assert process.returncode is not None
    return Finished(process.returncode, out.decode(), err.decode())
