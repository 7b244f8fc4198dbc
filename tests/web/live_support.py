"""A real XMPP client for the REST API's live tests: it signs in, and records what arrives.

Built on the integration suite's slixmpp helpers; stanzas are written raw and kept
as ElementTree elements, so a test can wait for a roster push or a presence.
"""

from __future__ import annotations

import asyncio
import contextlib
import copy
import itertools
import xml.etree.ElementTree as ET
from collections.abc import Callable
from typing import Any

from integration.support import TIMEOUT, NewClient, ServerHandle, sign_in
from slixmpp import ClientXMPP

NS_CLIENT = "jabber:client"
NS_ROSTER = "jabber:iq:roster"
NS_PING = "urn:xmpp:ping"

Match = Callable[[ET.Element], bool]
_ids = itertools.count(1)


def roster_push(element: ET.Element) -> bool:
    return (
        element.tag == f"{{{NS_CLIENT}}}iq"
        and element.get("type") == "set"
        and element.find(f"{{{NS_ROSTER}}}query") is not None
    )


def available_from(jid: str) -> Match:
    def match(element: ET.Element) -> bool:
        return (
            element.tag == f"{{{NS_CLIENT}}}presence"
            and element.get("from") == jid
            and element.get("type") is None
        )

    return match


def pushed_items(push: ET.Element) -> dict[str, dict[str, str]]:
    """The items of a roster push, by JID: their attributes."""
    query = push.find(f"{{{NS_ROSTER}}}query")
    assert query is not None
    return {
        item.get("jid", ""): dict(item.attrib) for item in query.findall(f"{{{NS_ROSTER}}}item")
    }


class Online:
    """A signed-in slixmpp client that keeps every stanza it receives."""

    def __init__(self, client: ClientXMPP) -> None:
        self.client = client
        self.inbox: list[ET.Element] = []
        self._arrived = asyncio.Event()
        client.auto_authorize = None
        client.auto_subscribe = False
        client.add_filter("in", self._record)

    def _record(self, received: Any) -> Any:
        if received.xml.tag.startswith(f"{{{NS_CLIENT}}}"):
            self.inbox.append(copy.deepcopy(received.xml))
            self._arrived.set()
        return received

    @property
    def jid(self) -> str:
        return str(self.client.boundjid)

    def send(self, xml: str) -> None:
        self.client.send_raw(xml)

    async def next(self, match: Match, timeout: float = TIMEOUT) -> ET.Element:
        """Take the first stanza received that matches, waiting up to ``timeout``."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout
        while True:
            for index, element in enumerate(self.inbox):
                if match(element):
                    return self.inbox.pop(index)
            remaining = deadline - loop.time()
            if remaining <= 0:
                got = "\n".join(ET.tostring(e, encoding="unicode") for e in self.inbox)
                raise AssertionError(f"{self.jid}: nothing matching within {timeout}s; got:\n{got}")
            self._arrived.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._arrived.wait(), remaining)

    async def iq(self, xml: str) -> ET.Element:
        """Send an IQ written without an id; returns its result or error."""
        iq_id = f"api{next(_ids)}"
        self.send(xml.replace("<iq ", f"<iq id='{iq_id}' ", 1))
        return await self.next(
            lambda e: e.get("id") == iq_id and e.get("type") in ("result", "error")
        )


async def go_online(
    new_client: NewClient, server: ServerHandle, user: str, resource: str, presence: str = ""
) -> Online:
    """Sign in, ask for the roster (so roster pushes come), send ``<presence>`` with
    ``presence`` inside, and wait until the server has handled it."""
    online = Online(new_client(server, user, resource))
    await sign_in(online.client, server.host, server.port)
    roster = await online.iq(f"<iq type='get'><query xmlns='{NS_ROSTER}'/></iq>")
    assert roster.get("type") == "result", ET.tostring(roster)
    online.send(f"<presence>{presence}</presence>")
    ping = await online.iq(f"<iq type='get' to='{server.domain}'><ping xmlns='{NS_PING}'/></iq>")
    assert ping.get("type") == "result", ET.tostring(ping)
    return online
