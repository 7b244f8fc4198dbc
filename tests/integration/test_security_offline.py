"""Issue 16, points 6 and 10 (offline part): stored messages are deleted only once the
recipient's connection is heard from after they were written, so a connection that dies
during the delivery loses nothing; and a flood past the offline quota is refused without
a transaction per message, while other users are served.
"""

from __future__ import annotations

import asyncio
import base64
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime

import pytest
from slixmpp import JID as SlixJID
from slixmpp import Message as SlixMessage
from slixmpp.plugins.xep_0203 import Delay

from chinwag.store.offline import NewOfflineMessage, StoreResult
from chinwag.xmpp.jid import JID

from .im_support import (
    NS_DELAY,
    NS_PING,
    NS_STANZAS,
    add_user,
    body,
    error_condition,
    login,
    message,
    q,
    settle,
    text_of,
)
from .signin_support import RawSasl, condition
from .support import DOMAIN, TIMEOUT, NewClient, ServerHandle, StartServer
from .test_offline import STAMP_TOLERANCE, chat, stored_for

pytestmark = pytest.mark.security

COUNT = 100
LAST_BODY = f"<body>m{COUNT - 1}</body>".encode()
DELAY = q("delay", NS_DELAY)
STAMP = re.compile(rb"stamp=['\"]([^'\"]+)['\"]")


async def store_for_bob(server: ServerHandle, new_client: NewClient) -> None:
    """COUNT messages from alice, stored for bob (who is offline)."""
    alice = await login(new_client, server, "alice", "desk")
    alice.send("".join(chat(f"m{index}") for index in range(COUNT)))
    await alice.sync()  # answered once all are committed
    assert await stored_for(server, "bob") == COUNT


async def raw_bob_receives_them(server: ServerHandle, resource: str) -> RawSasl:
    """bob on a raw stream: signs in, sends initial presence, reads up to the last stored
    message and then sends nothing more."""
    sasl = await RawSasl.open(server)
    answer = await sasl.auth("PLAIN", base64.b64encode(b"\0bob\0bob-secret").decode())
    assert condition(answer) == "success"
    await sasl.restart()
    await sasl.bind(resource)
    await sasl.raw.send(b"<presence/>")
    await sasl.raw.read_until(LAST_BODY)
    assert LAST_BODY in sasl.raw.received, sasl.raw.received[-500:]
    return sasl


async def gone(server: ServerHandle, jid: str) -> None:
    """Wait until the server has ended the session of ``jid``."""
    assert server.app is not None
    router = server.app.xmpp.router
    async with asyncio.timeout(TIMEOUT):
        while router.session(JID.parse(jid)) is not None:
            await asyncio.sleep(0.01)


async def stored_becomes(server: ServerHandle, user: str, expected: int) -> None:
    async with asyncio.timeout(TIMEOUT):
        while await stored_for(server, user) != expected:
            await asyncio.sleep(0.02)


async def test_messages_written_to_a_connection_that_dies_are_delivered_again(
    server: ServerHandle, new_client: NewClient
) -> None:
    """The connection is reset (no closing stream) as soon as the messages are written:
    nothing is deleted, and the next login gets all of them, with their first stamps."""
    await store_for_bob(server, new_client)
    doomed = await raw_bob_receives_them(server, "doomed")
    first_stamps = [stamp.decode() for stamp in STAMP.findall(doomed.raw.received)]
    assert len(first_stamps) == COUNT
    doomed.raw.abort()  # SO_LINGER 0: a reset, as a crash or a dropped network does
    await gone(server, "bob@localhost/doomed")
    assert await stored_for(server, "bob") == COUNT

    bob = await login(new_client, server, "bob", "phone")
    delivered = [await bob.next(message()) for _ in range(COUNT)]
    assert [body(m) for m in delivered] == [f"m{index}" for index in range(COUNT)]
    stamps = [delay.get("stamp") for m in delivered if (delay := m.find(DELAY)) is not None]
    assert stamps == first_stamps
    await stored_becomes(server, "bob", 0)  # bob answered: now they go


async def test_a_client_that_stays_gets_them_once_then_a_ping_and_they_are_deleted(
    server: ServerHandle, new_client: NewClient
) -> None:
    await store_for_bob(server, new_client)
    bob = await login(new_client, server, "bob", "phone")
    delivered = [await bob.next(message()) for _ in range(COUNT)]
    assert [body(m) for m in delivered] == [f"m{index}" for index in range(COUNT)]
    ping = await bob.next(lambda e: e.tag == q("iq") and e.find(f"{{{NS_PING}}}ping") is not None)
    assert ping.get("type") == "get" and ping.get("from") == server.domain, ET.tostring(ping)
    await stored_becomes(server, "bob", 0)  # slixmpp answered the ping
    await bob.client.disconnect()

    again = await login(new_client, server, "bob", "tablet")
    await asyncio.sleep(0.3)  # the delivery starts with the presence; give it the chance
    await settle(again)
    again.assert_none(message())


async def test_a_session_silent_after_the_delivery_is_closed_and_keeps_its_messages(
    start_server: StartServer, new_client: NewClient
) -> None:
    # The ping sweep's own pings come after a minute of silence: only the delivery's is out.
    server = await start_server(limits={"ping_timeout_seconds": 0.5})
    await store_for_bob(server, new_client)
    silent = await raw_bob_receives_them(server, "silent")
    ended = await silent.raw.read_until(b"</stream:stream>")
    assert b"<connection-timeout" in ended and ended.endswith(b"</stream:stream>"), ended[-300:]
    await silent.close()
    assert await stored_for(server, "bob") == COUNT


# --- a flood past the quota ---------------------------------------------------------------------

QUOTA = 5
FLOOD = 2000


async def test_a_flood_past_the_quota_is_refused_without_a_transaction_each(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(messages={"offline_quota": QUOTA})
    assert server.app is not None
    repository = server.app.services.offline
    original = repository.store_many
    transactions = 0

    async def counted_store_many(
        messages: list[NewOfflineMessage], quota: int
    ) -> list[StoreResult]:
        nonlocal transactions
        transactions += 1
        return await original(messages, quota)

    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", "desk")
    carol = await login(new_client, server, "carol", "desk")
    repository.store_many = counted_store_many  # type: ignore[method-assign]

    async def refused() -> None:
        while sum(e.get("type") == "error" for e in alice.inbox) < FLOOD - QUOTA:
            await asyncio.sleep(0.02)

    async def carol_is_served() -> None:
        for _ in range(10):
            await asyncio.wait_for(carol.sync(), 1.0)

    try:
        alice.send("".join(chat(f"f{index}") for index in range(FLOOD)))
        await asyncio.wait_for(asyncio.gather(refused(), carol_is_served()), TIMEOUT * 3)
        await alice.sync()
    finally:
        repository.store_many = original  # type: ignore[method-assign]

    errors = alice.take_all(message(type="error"))
    assert [e.get("id") for e in errors] == [f"f{index}" for index in range(QUOTA, FLOOD)]
    for error in errors:
        assert error_condition(error) == "service-unavailable"
        assert text_of(error.find(q("error")), "text", NS_STANZAS) == "mailbox full"
    assert transactions <= QUOTA + 1, transactions
    assert await stored_for(server, "bob") == QUOTA

    bob = await login(new_client, server, "bob", "phone")
    assert [body(await bob.next(message())) for _ in range(QUOTA)] == [
        f"f{index}" for index in range(QUOTA)
    ]
    await stored_becomes(server, "bob", 0)
    await bob.client.disconnect()
    await gone(server, "bob@localhost/phone")
    alice.send(chat("after-delivery"))  # the mailbox has room again: stored, not refused
    await alice.sync()
    alice.assert_none(message(type="error"))
    assert await stored_for(server, "bob") == 1


async def test_a_mailbox_emptied_takes_messages_again_at_once(
    start_server: StartServer, new_client: NewClient
) -> None:
    """The mark of a full mailbox goes before its messages are deleted: a message that
    comes once they are gone is stored, even before the deletion's caller resumes."""
    server = await start_server(messages={"offline_quota": QUOTA})
    assert server.app is not None
    repository = server.app.services.offline
    original = repository.delete
    alice = await login(new_client, server, "alice", "desk")
    alice.send("".join(chat(f"f{index}") for index in range(QUOTA + 1)))
    await alice.sync()
    assert [e.get("id") for e in alice.take_all(message(type="error"))] == [f"f{QUOTA}"]
    bob = await login(new_client, server, "bob", "phone")

    async def delete_then_hear_from_alice(username: str, last_id: int) -> int:
        deleted = await original(username, last_id)
        await bob.client.disconnect()
        await gone(server, "bob@localhost/phone")
        alice.send(chat("just-after-the-delete"))
        await alice.sync()
        return deleted

    repository.delete = delete_then_hear_from_alice  # type: ignore[method-assign]
    try:
        assert [body(await bob.next(message())) for _ in range(QUOTA)] == [
            f"f{index}" for index in range(QUOTA)
        ]
        await stored_becomes(server, "bob", 1)
    finally:
        repository.delete = original  # type: ignore[method-assign]
    alice.assert_none(message(type="error"))


FORGED_STAMP = datetime(2001, 1, 1, tzinfo=UTC)


def delays(received: SlixMessage) -> list[tuple[str | None, datetime]]:
    """The XEP-0203 delays of a message, as slixmpp's xep_0203 stanza reads them."""
    found = [Delay(xml=element) for element in received.xml.findall(DELAY)]
    return [(str(delay["from"]) if delay["from"] else None, delay["stamp"]) for delay in found]


async def test_a_delay_a_client_forges_in_the_servers_name_does_not_keep_the_stores_stamp_off(
    server: ServerHandle, new_client: NewClient
) -> None:
    """A client's own <delay from='DOMAIN'/> is dropped as it comes in: the offline store
    stamps the message itself. A delay the client gives in its own name is left alone."""
    alice = await login(new_client, server, "alice", "desk")
    alice.client.register_plugin("xep_0203")
    bob_jid = SlixJID(f"bob@{DOMAIN}")
    forged = alice.client.make_message(bob_jid, "forged", mtype="chat")
    forged["id"] = "forged"
    forged["delay"]["from"] = DOMAIN
    forged["delay"]["stamp"] = FORGED_STAMP
    own = alice.client.make_message(bob_jid, "composed offline", mtype="chat")
    own["id"] = "own"
    own["delay"]["from"] = SlixJID(alice.jid).bare
    own["delay"]["stamp"] = FORGED_STAMP
    sent_at = datetime.now(UTC)
    alice.send(str(forged) + str(own))  # in order with the sync after it
    await alice.sync()
    assert await stored_for(server, "bob") == 2

    bob = await login(new_client, server, "bob", "phone", available=False)
    bob.client.register_plugin("xep_0203")
    received: dict[str, SlixMessage] = {}
    bob.client.add_event_handler("message", lambda got: received.setdefault(got["id"], got))
    bob.send("<presence/>")
    await bob.next(message(id="forged"))
    await bob.next(message(id="own"))

    ((source, stamp),) = delays(received["forged"])
    assert source == DOMAIN
    assert abs(stamp - sent_at) < STAMP_TOLERANCE, (stamp, sent_at)
    by_source = dict(delays(received["own"]))
    assert by_source.keys() == {f"alice@{DOMAIN}", DOMAIN}
    assert by_source[f"alice@{DOMAIN}"] == FORGED_STAMP
    assert abs(by_source[DOMAIN] - sent_at) < STAMP_TOLERANCE


async def test_a_delay_forged_in_the_servers_name_does_not_reach_an_online_contact(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone")
    alice.send(
        "<message to='bob@localhost' type='chat' id='live'><body>now</body>"
        f"<delay xmlns='{NS_DELAY}' from='LocalHost' stamp='2001-01-01T00:00:00Z'/></message>"
    )
    got = await bob.next(message(id="live"))
    assert got.findall(DELAY) == []
