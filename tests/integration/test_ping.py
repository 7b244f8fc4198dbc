"""XEP-0199 with real slixmpp clients: the server pings a silent client and ends the
connection of one that does not answer, keeps one that does, and answers a ping to a
contact's bare JID on the contact's behalf.

The server's pings are set to come after a second of silence or less, so each test
takes a few seconds.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError

from chinwag.xmpp.jid import JID

from .im_support import NS_PING, Peer, add_user, login, presence, q, stanza
from .support import TIMEOUT, NewClient, ServerHandle, StartServer, watch
from .test_websocket import WSStream


def server_ping(element: ET.Element) -> bool:
    return (
        element.tag == q("iq")
        and element.get("type") == "get"
        and element.get("from") == "localhost"
        and element.find(q("ping", NS_PING)) is not None
    )


def deaf_to_pings(client: ClientXMPP) -> list[ET.Element]:
    """Make ``client`` drop the server's pings unanswered, as a dead peer would; returns
    the list of those it dropped."""
    dropped: list[ET.Element] = []

    def drop(received: Any) -> Any:
        if server_ping(received.xml):
            dropped.append(received.xml)
            return None
        return received

    client.add_filter("in", drop)
    return dropped


def is_bound(server: ServerHandle, peer: Peer) -> bool:
    assert server.app is not None
    return server.app.xmpp.sessions.get(JID.parse(peer.jid)) is not None


async def test_a_client_that_does_not_answer_is_pinged_then_disconnected(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(limits={"ping_after_seconds": 1, "ping_timeout_seconds": 1})
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")
    await alice.next(presence(from_=bob.jid, type=None))
    dropped = deaf_to_pings(bob.client)
    disconnected = watch(bob.client, "disconnected")
    loop = asyncio.get_running_loop()
    silent_from = loop.time()

    await alice.next(presence(from_=bob.jid, type="unavailable"), TIMEOUT)

    waited = loop.time() - silent_from
    assert 1.5 <= waited <= 5, f"bob's session ended after {waited:.1f}s of silence"
    assert len(dropped) == 1, [ET.tostring(ping) for ping in dropped]
    assert dropped[0].get("to") == bob.jid
    assert not is_bound(server, bob)
    await asyncio.wait_for(disconnected, TIMEOUT)
    [error] = bob.take_all(lambda e: e.tag == "{http://etherx.jabber.org/streams}error")
    assert error.find("{urn:ietf:params:xml:ns:xmpp-streams}connection-timeout") is not None


async def test_a_client_that_answers_stays_connected(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(limits={"ping_after_seconds": 0.5, "ping_timeout_seconds": 0.5})
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")
    await alice.next(presence(from_=bob.jid, type=None))

    await asyncio.sleep(3)  # several rounds of pings, each answered by slixmpp's xep_0199

    pings = bob.take_all(server_ping)
    assert len(pings) >= 3, f"bob was pinged {len(pings)} times in 3 s"
    assert len({ping.get("id") for ping in pings}) == len(pings)
    assert is_bound(server, bob) and bob.client.is_connected()
    # The answers went to the server and stopped there: nothing came back for them.
    bob.assert_none(stanza("iq", type="error"))
    alice.assert_none(presence(from_=bob.jid, type="unavailable"))
    await bob.sync()


async def test_pings_are_off_with_zero(start_server: StartServer, new_client: NewClient) -> None:
    server = await start_server(limits={"ping_after_seconds": 0, "ping_timeout_seconds": 0.5})
    bob = await login(new_client, server, "bob", "phone")
    deaf_to_pings(bob.client)

    await asyncio.sleep(1.5)

    assert is_bound(server, bob)
    bob.assert_none(server_ping)


async def ping_error(client: ClientXMPP, jid: str) -> str:
    with pytest.raises(IqError) as failure:
        await client.plugin["xep_0199"].send_ping(jid, timeout=TIMEOUT)
    return str(failure.value.iq["error"]["condition"])


async def test_a_ping_to_a_bare_jid_is_answered_on_the_accounts_behalf(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")
    await add_user(server, "carol")
    carol = await login(new_client, server, "carol", "laptop")
    pinger = alice.client.plugin["xep_0199"]

    await pinger.send_ping("bob@localhost", timeout=TIMEOUT)  # a contact: a result
    await pinger.send_ping("alice@localhost", timeout=TIMEOUT)  # oneself

    await bob.sync()
    bob.assert_none(lambda e: e.find(q("ping", NS_PING)) is not None)
    # A stranger gets what any IQ to a stranger gets, whether the account exists or not.
    assert await ping_error(carol.client, "alice@localhost") == "service-unavailable"
    assert await ping_error(carol.client, "nobody@localhost") == "service-unavailable"


async def test_a_websocket_client_is_pinged_and_must_answer(start_server: StartServer) -> None:
    server = await start_server(limits={"ping_after_seconds": 0.5, "ping_timeout_seconds": 0.5})
    stream = await WSStream.connect(server)
    try:
        jid = await stream.sign_in()
        first = await stream.recv_until(server_ping)
        assert first.get("to") == jid
        await stream.send(
            f"<iq type='result' id='{first.get('id')}' to='localhost' xmlns='jabber:client'/>"
        )
        second = await stream.recv_until(server_ping)  # answered, so pinged again, not closed
        assert second.get("id") != first.get("id")

        assert await stream.stream_error() == "connection-timeout"
    finally:
        await stream.close()
