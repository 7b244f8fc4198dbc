"""A second, independent XMPP library against chinwag: aioxmpp (with its own XML stack,
lxml, and its own TLS layer, aioopenssl) talking to slixmpp clients through the server.

aioxmpp was chosen over go-sendxmpp because it installs from PyPI as a test extra
and runs on the test's event loop, so it can be driven stanza by stanza (roster,
presence, message handlers) rather than only sending one message from a CLI.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import aioxmpp
import aioxmpp.connector
import aioxmpp.dispatcher
import aioxmpp.misc  # registers Message.xep0203_delay

from .im_support import add_user, body, login, message, presence
from .support import TIMEOUT, NewClient, ServerHandle


@dataclass
class AioClient:
    client: aioxmpp.Client
    roster: aioxmpp.RosterClient
    presence: aioxmpp.PresenceClient
    messages: asyncio.Queue[aioxmpp.Message]

    @property
    def jid(self) -> str:
        return str(self.client.local_jid)

    async def send(
        self, to: str, text: str, kind: aioxmpp.MessageType = aioxmpp.MessageType.CHAT
    ) -> None:
        stanza = aioxmpp.Message(to=aioxmpp.JID.fromstr(to), type_=kind)
        stanza.body[None] = text
        await asyncio.wait_for(self.client.send(stanza), TIMEOUT)

    async def next_message(self) -> aioxmpp.Message:
        return await asyncio.wait_for(self.messages.get(), TIMEOUT)


@asynccontextmanager
async def aioxmpp_client(
    server: ServerHandle, user: str = "alice", resource: str = "aio"
) -> AsyncIterator[AioClient]:
    """An aioxmpp client signed in over STARTTLS (trusting the self-signed certificate),
    available, with its initial roster received."""
    client = aioxmpp.Client(
        aioxmpp.JID.fromstr(server.jid(user, resource)),
        aioxmpp.make_security_layer(server.users[user], no_verify=True),
        override_peer=[(server.host, server.port, aioxmpp.connector.STARTTLSConnector())],
    )
    # Initial presence, sent as soon as the stream is established.
    client.summon(aioxmpp.PresenceServer).set_presence(aioxmpp.PresenceState(True))
    messages: asyncio.Queue[aioxmpp.Message] = asyncio.Queue()
    dispatcher = client.summon(aioxmpp.dispatcher.SimpleMessageDispatcher)
    for kind in (aioxmpp.MessageType.CHAT, aioxmpp.MessageType.NORMAL):
        dispatcher.register_callback(kind, None, messages.put_nowait)
    peer = AioClient(
        client, client.summon(aioxmpp.RosterClient), client.summon(aioxmpp.PresenceClient), messages
    )
    roster_received = peer.roster.on_initial_roster_received.future()
    async with AsyncExitStack() as stack:
        await asyncio.wait_for(
            stack.enter_async_context(client.connected(presence=aioxmpp.PresenceState(False))),
            TIMEOUT,
        )
        await asyncio.wait_for(roster_received, TIMEOUT)
        try:
            yield peer
        finally:
            stack.pop_all()
            await asyncio.wait_for(stop(client), TIMEOUT)


async def stop(client: aioxmpp.Client) -> None:
    """Disconnect cleanly and wait until aioxmpp has let go of the stream."""
    if client.running:
        stopped = client.on_stopped.future()
        client.stop()
        await stopped


async def test_aioxmpp_signs_in_and_reads_the_roster_and_its_pushes(
    server: ServerHandle,
) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields("bob", fn="Bob Builder")
    await add_user(server, "carol", "Carol Jones")

    async with aioxmpp_client(server) as alice:
        assert alice.jid == "alice@localhost/aio"
        items = alice.roster.items
        assert set(map(str, items)) == {"bob@localhost"}
        bob = items[aioxmpp.JID.fromstr("bob@localhost")]
        assert (bob.subscription, bob.name) == ("both", "Bob Builder")

        added = alice.roster.on_entry_added.future()
        await server.app.services.contacts.add_mutual("alice", "carol")
        carol = await asyncio.wait_for(added, 1.0)  # a roster push within a second
        assert (str(carol.jid), carol.subscription, carol.name) == (
            "carol@localhost",
            "both",
            "Carol Jones",
        )


async def test_aioxmpp_and_slixmpp_exchange_presence_and_messages(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, server, "bob", "phone")
    bob.send("<presence><status>on the phone</status><priority>5</priority></presence>")
    await bob.sync()
    laptop = await login(new_client, server, "bob", "laptop")

    async with aioxmpp_client(server) as alice:
        # alice's initial presence reached bob; bob's presence reached alice
        await bob.next(presence(from_=alice.jid, type=None))
        bare = aioxmpp.JID.fromstr("bob@localhost")
        for _ in range(100):  # every available resource of bob answered alice's probe
            resources = alice.presence.get_peer_resources(bare)
            if set(resources) == {"phone", "laptop"}:
                break
            await asyncio.sleep(0.02)
        assert set(resources) == {"phone", "laptop"}
        assert resources["phone"].status.any() == "on the phone"
        assert resources["phone"].priority == 5

        await alice.send("bob@localhost", "hello from aioxmpp")
        got = await bob.next(message(from_=alice.jid))
        assert body(got) == "hello from aioxmpp"

        bob.send(f"<message to='{alice.jid}' type='chat'><body>hello from slixmpp</body></message>")
        reply = await alice.next_message()
        assert reply.body.any() == "hello from slixmpp"
        assert reply.from_ == aioxmpp.JID.fromstr(bob.jid)

        gone: asyncio.Future[aioxmpp.JID] = asyncio.get_running_loop().create_future()
        alice.presence.on_unavailable.connect(
            lambda full_jid, _stanza: None if gone.done() else gone.set_result(full_jid)
        )
        laptop.send("<presence type='unavailable'/>")
        assert str(await asyncio.wait_for(gone, TIMEOUT)) == laptop.jid

    await bob.next(presence(from_="alice@localhost/aio", type="unavailable"))


async def test_aioxmpp_gets_offline_messages_with_delay(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, server, "bob", "phone")
    sent_at = datetime.now(UTC)
    for text in ("while you were out", "and another"):
        bob.send(f"<message to='alice@localhost' type='chat'><body>{text}</body></message>")
    await bob.sync()

    async with aioxmpp_client(server) as alice:
        delivered = [await alice.next_message() for _ in range(2)]

    assert [m.body.any() for m in delivered] == ["while you were out", "and another"]
    for stanza in delivered:
        assert stanza.from_ == aioxmpp.JID.fromstr(bob.jid)
        [delay] = stanza.xep0203_delay
        assert delay.from_ == aioxmpp.JID.fromstr("localhost")
        stamp = delay.stamp if delay.stamp.tzinfo else delay.stamp.replace(tzinfo=UTC)
        assert abs(stamp - sent_at) < timedelta(seconds=2)
