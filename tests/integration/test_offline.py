"""XEP-0160 offline messages with XEP-0203 delay stamps, with real clients, and the
promise that a stored message survives the server being killed outright.
"""

from __future__ import annotations

import asyncio
import re
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from chinwag.app import running
from chinwag.config import settings_from_mapping
from chinwag.store.offline import NewOfflineMessage

from .im_support import (
    NS_CHATSTATES,
    NS_STANZAS,
    Peer,
    add_user,
    body,
    delay_stamp,
    error_condition,
    login,
    message,
    q,
    settle,
    text_of,
)
from .support import (
    DOMAIN,
    HOST,
    TIMEOUT,
    USERS,
    NewClient,
    ServerHandle,
    StartServer,
    free_port,
    sign_in,
)
from .test_serve import ServeProcess, write_config

STAMP_TOLERANCE = timedelta(seconds=2)


def chat(text: str, kind: str | None = "chat", to: str = "bob@localhost") -> str:
    type_attr = "" if kind is None else f" type='{kind}'"
    return f"<message to='{to}'{type_attr} id='{text}'><body>{text}</body></message>"


async def stored_for(server: ServerHandle, user: str) -> int:
    assert server.app is not None
    return await server.app.services.offline.count(user)


async def test_messages_for_an_offline_user_come_with_delay_at_initial_presence(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "desk")
    texts = ["first", "second", "third", "fourth"]
    sent_at = datetime.now(UTC)
    for text, kind in zip(texts, ("chat", "normal", None, "chat"), strict=True):
        alice.send(chat(text, kind))
    await alice.sync()  # stored before alice's stream moved on
    assert await stored_for(server, "bob") == 4

    bob = await login(new_client, server, "bob", "phone", available=False)
    await settle(bob)
    assert bob.take_all(message()) == []  # not before initial presence
    bob.send("<presence/>")

    delivered = [await bob.next(message()) for _ in texts]
    assert [body(m) for m in delivered] == texts  # in order
    for stanza in delivered:
        assert stanza.get("from") == alice.jid
        assert stanza.get("to") == bob.jid
        source, stamp = delay_stamp(stanza)
        assert source == DOMAIN
        assert abs(stamp - sent_at) < STAMP_TOLERANCE, (stamp, sent_at)

    for _ in range(50):  # removed once delivered (the delete follows the delivery)
        if await stored_for(server, "bob") == 0:
            break
        await asyncio.sleep(0.02)
    assert await stored_for(server, "bob") == 0
    await bob.client.disconnect()
    again = await login(new_client, server, "bob", "tablet")
    await asyncio.sleep(0.3)  # delivery is started by the presence; give it the chance
    await settle(again)
    again.assert_none(message())


async def test_a_user_online_but_not_available_gets_messages_stored(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, server, "bob", "phone", available=False)
    alice = await login(new_client, server, "alice", "desk")

    alice.send(chat("waiting"))
    await settle(alice, bob)

    bob.assert_none(message())
    assert await stored_for(server, "bob") == 1
    bob.send("<presence/>")
    got = await bob.next(message(id="waiting"))
    delay_stamp(got)


async def test_only_negative_priority_resources_count_as_offline(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, server, "bob", "phone", priority=-1)
    alice = await login(new_client, server, "alice", "desk")

    alice.send(chat("to-the-bare-jid"))
    await settle(alice, bob)

    bob.assert_none(message())
    assert await stored_for(server, "bob") == 1


async def test_headlines_errors_and_chat_states_alone_are_not_stored(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "desk")

    alice.send(chat("news", "headline"))
    alice.send(chat("oops", "error"))
    alice.send(
        f"<message to='bob@localhost' type='chat'><composing xmlns='{NS_CHATSTATES}'/></message>"
    )
    alice.send(f"<message to='bob@localhost' type='chat'><gone xmlns='{NS_CHATSTATES}'/></message>")
    alice.send("<message to='bob@localhost' type='chat'/>")  # nothing at all
    alice.send(chat("groupchat", "groupchat"))
    error = await alice.next(message(type="error", id="groupchat"))
    assert error_condition(error) == "service-unavailable"
    await alice.sync()

    assert await stored_for(server, "bob") == 0
    alice.assert_none(message(type="error"))  # dropped quietly, bob exists
    bob = await login(new_client, server, "bob", "phone")
    await asyncio.sleep(0.3)
    await settle(bob)
    bob.assert_none(message())


async def test_quota_bounces_further_messages(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(messages={"offline_quota": 3})
    alice = await login(new_client, server, "alice", "desk")

    for index in range(5):
        alice.send(chat(f"m{index}"))
    for index in (3, 4):
        error = await alice.next(message(type="error", id=f"m{index}"))
        assert error_condition(error) == "service-unavailable"
    await alice.sync()
    alice.assert_none(message(type="error"))
    assert await stored_for(server, "bob") == 3

    bob = await login(new_client, server, "bob", "phone")
    assert [body(await bob.next(message())) for _ in range(3)] == ["m0", "m1", "m2"]


# --- a killed server loses nothing it acknowledged ---------------------------------------------


async def prepared_data(directory: Path) -> tuple[Path, ServerHandle]:
    """A config on free ports, and a data directory holding alice and bob as contacts."""
    data = directory / "data"
    loopback = {
        "c2s": {"host": HOST, "port": 0, "direct_tls_port": 0},
        "http": {"host": HOST, "port": 0},
    }
    async with running(settings_from_mapping({"data_dir": str(data), **loopback})) as app:
        for name, password in USERS.items():
            await app.accounts.add_user(name, password)
        await app.services.contacts.add_mutual("alice", "bob")
    handle = ServerHandle(host=HOST, port=free_port(), direct_tls_port=free_port(), domain=DOMAIN)
    config = write_config(
        directory / "chinwag.toml",
        {
            "domain": DOMAIN,
            "data_dir": str(data),
            "c2s": {"host": HOST, "port": handle.port, "direct_tls_port": handle.direct_tls_port},
            "http": {"host": HOST, "port": free_port()},
        },
    )
    return config, handle


async def test_messages_acknowledged_before_sigkill_are_delivered_after_restart(
    tmp_path: Path, new_client: NewClient
) -> None:
    config, handle = await prepared_data(tmp_path)
    texts = [f"kept-{index}" for index in range(5)]
    serve = await ServeProcess.start("--config", str(config), cwd=tmp_path)
    try:
        await serve.announced()
        alice = Peer(new_client(handle, "alice", "desk"))
        await sign_in(alice.client, handle.host, handle.port)
        for text in texts:
            alice.send(chat(text))
        await alice.sync()  # answered only after every message above was committed
        serve.process.kill()
        await asyncio.wait_for(serve.process.wait(), TIMEOUT)
    finally:
        await serve.kill()

    restarted = await ServeProcess.start("--config", str(config), cwd=tmp_path)
    try:
        await restarted.announced()
        bob = Peer(new_client(handle, "bob", "phone"))
        await sign_in(bob.client, handle.host, handle.port)
        bob.send("<presence/>")
        delivered = [await bob.next(message()) for _ in texts]
        assert [body(m) for m in delivered] == texts
    finally:
        await restarted.kill()


async def test_a_stanza_read_later_waits_for_every_held_store(
    server: ServerHandle, new_client: NewClient
) -> None:
    """Several stores held in turn: the stream must not read on when the first one ends.

    Stores are slowed down, the messages go out in one write and the ping in a later
    one; the ping may only be answered once every message is committed.
    """
    assert server.app is not None
    offline = server.app.services.offline
    original = offline.store_many
    committed: list[str] = []

    async def slow_store_many(messages: list[NewOfflineMessage], quota: int) -> object:
        await asyncio.sleep(0.1)
        results = await original(messages, quota)
        committed.extend(message.stanza for message in messages)
        return results

    offline.store_many = slow_store_many  # type: ignore[method-assign]
    try:
        alice = await login(new_client, server, "alice", "desk")
        alice.send("".join(chat(f"held-{index}") for index in range(3)))
        await asyncio.sleep(0.05)  # the ping arrives while the first store is in flight
        await alice.sync()
        assert len(committed) == 3
    finally:
        offline.store_many = original  # type: ignore[method-assign]


# --- group commit: stores that arrive together share a transaction -----------------------------

SENDERS = 12
QUOTA = 15


def bodies(messages: list[NewOfflineMessage]) -> list[str]:
    return [re.findall(r"<body>(.*?)</body>", message.stanza)[0] for message in messages]


async def test_many_senders_at_once_are_stored_together_each_held_until_its_commit(
    start_server: StartServer, new_client: NewClient
) -> None:
    """Every sender's ping is answered only once its messages' transaction has ended;
    the quota counts the messages of a batch, and those past it bounce one by one."""
    server = await start_server(messages={"offline_quota": QUOTA, "from_strangers": True})
    assert server.app is not None
    offline = server.app.services.offline
    original = offline.store_many
    batches: list[list[str]] = []
    ended: set[str] = set()

    async def slow_store_many(messages: list[NewOfflineMessage], quota: int) -> object:
        batches.append(bodies(messages))
        await asyncio.sleep(0.05)  # the others arrive meanwhile and make the next batch
        results = await original(messages, quota)
        ended.update(bodies(messages))
        return results

    names = [f"sender{index}" for index in range(SENDERS)]
    for name in names:
        await add_user(server, name)
    senders = [await login(new_client, server, name, "desk") for name in names]
    offline.store_many = slow_store_many  # type: ignore[method-assign]

    async def send_two(sender: Peer, name: str) -> list[ET.Element]:
        sender.send(chat(f"{name}-0") + chat(f"{name}-1"))
        await sender.sync()
        assert {f"{name}-0", f"{name}-1"} <= ended  # held until committed
        return sender.take_all(message(type="error"))

    try:
        bounced = await asyncio.gather(*map(send_two, senders, names))
    finally:
        offline.store_many = original  # type: ignore[method-assign]

    errors = [error for per_sender in bounced for error in per_sender]
    assert len(errors) == 2 * SENDERS - QUOTA
    for error in errors:
        assert error_condition(error) == "service-unavailable"
        assert text_of(error.find(q("error")), "text", NS_STANZAS) == "mailbox full"
    sent = {f"{name}-{index}" for name in names for index in range(2)}
    assert sorted(text for batch in batches for text in batch) == sorted(sent)
    assert max(map(len, batches)) > 1 and len(batches) < 2 * SENDERS
    assert await stored_for(server, "bob") == QUOTA

    bob = await login(new_client, server, "bob", "phone")
    delivered = [body(await bob.next(message())) for _ in range(QUOTA)]
    refused = {error.get("id") for error in errors}
    assert set(delivered) == sent - refused
    for name in names:  # each sender's messages in the order sent
        own = [text for text in delivered if text.startswith(f"{name}-")]
        assert own == sorted(own)
    await settle(bob)
    bob.assert_none(message())


async def test_a_failed_store_bounces_with_internal_server_error(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    offline = server.app.services.offline
    original = offline.store_many

    async def failing_store_many(messages: list[NewOfflineMessage], quota: int) -> object:
        raise RuntimeError("the disk is full")

    alice = await login(new_client, server, "alice", "desk")
    offline.store_many = failing_store_many  # type: ignore[method-assign]
    try:
        alice.send(chat("lost"))
        error = await alice.next(message(type="error", id="lost"))
    finally:
        offline.store_many = original  # type: ignore[method-assign]
    assert error_condition(error) == "internal-server-error"

    alice.send(chat("kept"))
    await alice.sync()
    alice.assert_none(message(type="error"))
    assert await stored_for(server, "bob") == 1


# --- a store that commits after the recipient's initial presence -------------------------------


@pytest.mark.parametrize("fetch_outlasts_the_commit", [False, True])
async def test_a_message_committed_after_initial_presence_still_arrives_once(
    server: ServerHandle, new_client: NewClient, fetch_outlasts_the_commit: bool
) -> None:
    """Bob's initial presence reads the storage while alice's message is being stored.

    Once it commits, it is delivered: by a new delivery, or, when the first one is still
    running (its read returns only after the commit), by that delivery running again.
    """
    assert server.app is not None
    offline = server.app.services.offline
    original_store, original_fetch = offline.store_many, offline.fetch
    storing, commit, fetched, fetch_returns = (asyncio.Event() for _ in range(4))
    if not fetch_outlasts_the_commit:
        fetch_returns.set()

    async def gated_store_many(messages: list[NewOfflineMessage], quota: int) -> object:
        storing.set()
        await commit.wait()
        return await original_store(messages, quota)

    async def watched_fetch(username: str) -> object:
        stored = await original_fetch(username)
        if username == "bob":
            fetched.set()
            await fetch_returns.wait()
        return stored

    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone", available=False)
    offline.store_many = gated_store_many  # type: ignore[method-assign]
    offline.fetch = watched_fetch  # type: ignore[method-assign]
    try:
        alice.send(chat("late"))
        await asyncio.wait_for(storing.wait(), TIMEOUT)
        bob.send("<presence/>")
        await asyncio.wait_for(fetched.wait(), TIMEOUT)  # read before the message is there
        commit.set()
        await alice.sync()  # committed
        fetch_returns.set()
        delay_stamp(await bob.next(message(id="late")))
    finally:
        offline.store_many, offline.fetch = original_store, original_fetch  # type: ignore[method-assign]

    for _ in range(50):  # removed once delivered
        if await stored_for(server, "bob") == 0:
            break
        await asyncio.sleep(0.02)
    assert await stored_for(server, "bob") == 0
    await settle(bob)
    bob.assert_none(message())


async def test_a_resource_available_again_while_a_message_is_stored_gets_it_once_committed(
    server: ServerHandle, new_client: NewClient
) -> None:
    """Bob's only resource, at a negative priority, leaves the message to storage; it goes
    unavailable and comes back while the message is being stored, and its new initial
    presence reads the storage before the commit: it is told once the message is there."""
    assert server.app is not None
    offline = server.app.services.offline
    original_store, original_fetch = offline.store_many, offline.fetch
    storing, commit, fetched_again = (asyncio.Event() for _ in range(3))
    fetches = 0

    async def gated_store_many(messages: list[NewOfflineMessage], quota: int) -> object:
        storing.set()
        await commit.wait()
        return await original_store(messages, quota)

    async def watched_fetch(username: str) -> object:
        nonlocal fetches
        stored = await original_fetch(username)
        if username == "bob":
            fetches += 1
            if fetches == 2:  # the first: bob's first initial presence
                fetched_again.set()
        return stored

    offline.fetch = watched_fetch  # type: ignore[method-assign]
    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone", priority=-1)
    offline.store_many = gated_store_many  # type: ignore[method-assign]
    try:
        alice.send(chat("late"))
        await asyncio.wait_for(storing.wait(), TIMEOUT)
        bob.send("<presence type='unavailable'/>")
        bob.send("<presence/>")
        await asyncio.wait_for(fetched_again.wait(), TIMEOUT)  # before the message is there
        commit.set()
        await alice.sync()  # committed
        delay_stamp(await bob.next(message(id="late")))
    finally:
        offline.store_many, offline.fetch = original_store, original_fetch  # type: ignore[method-assign]
    await settle(bob)
    bob.assert_none(message())


async def test_stored_messages_arrive_before_those_sent_after_initial_presence(
    server: ServerHandle, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A live message that overtakes the read of the stored ones waits for them."""
    assert server.app is not None
    offline = server.app.services.offline
    read_stored, reading, read_returns = offline.fetch, asyncio.Event(), asyncio.Event()

    async def slow_read(username: str) -> object:
        stored = await read_stored(username)
        reading.set()
        await read_returns.wait()
        return stored

    alice = await login(new_client, server, "alice", "desk")
    alice.send(chat("stored"))
    await alice.sync()
    assert await stored_for(server, "bob") == 1
    bob = await login(new_client, server, "bob", "phone", available=False)
    monkeypatch.setattr(offline, "fetch", slow_read)
    bob.send("<presence/>")
    await asyncio.wait_for(reading.wait(), TIMEOUT)
    alice.send(chat("live", to="bob@localhost/phone"))
    await alice.sync()  # routed to bob while his stored message is still being read
    read_returns.set()
    await bob.next(message(id="live"))
    arrived = [element.get("id") for element in bob.inbox if element.tag == q("message")]
    assert arrived == ["stored"], f"the live message came first: {arrived}"


async def test_live_messages_flow_even_when_reading_the_stored_ones_fails(
    server: ServerHandle, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert server.app is not None

    async def failing_read(username: str) -> object:
        raise RuntimeError("storage unavailable")

    alice = await login(new_client, server, "alice", "desk")
    bob = await login(new_client, server, "bob", "phone", available=False)
    monkeypatch.setattr(server.app.services.offline, "fetch", failing_read)
    bob.send("<presence/>")
    await bob.sync()
    alice.send(chat("live", to="bob@localhost/phone"))
    assert body(await bob.next(message(id="live"))) == "live"
