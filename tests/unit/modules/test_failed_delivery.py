"""What becomes of the stanzas a session with stream management ends without its client
acknowledging (``deliver/failed``): a message another of the account's sessions holds,
itself or as a carbon copy, is delivered and goes nowhere again; a copy is dropped; what
nobody else holds is routed again, and stored offline with the one delay stamp of when
it was first sent. Also: a resumption replays everything whatever the stream's bound,
and a session whose client does not answer after its stored messages waits for
resumption like any other that times out.

alice is signed in at ``phone`` and ``laptop`` (both with resumable stream management,
available at priority 0, nothing unacknowledged); bob, her contact, at ``desk``.
"""

from __future__ import annotations

import asyncio

from module_harness import Harness, MakeHarness, MemoryConnection

from chinwag.server.session import Session, SessionState
from chinwag.xmpp import ns
from chinwag.xmpp.errors import StreamCondition
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import parse_stanza

CARBONS = "urn:xmpp:carbons:2"
ENABLE_CARBONS = f"<iq type='set' id='on'><enable xmlns='{CARBONS}'/></iq>"


def chat(to: str, body: str) -> str:
    return f"<message to='{to}' type='chat' id='{body}'><body>{body}</body></message>"


def bodies(received: list[str]) -> list[str]:
    return [text.split("<body>")[1].split("</body>")[0] for text in received if "<body>" in text]


async def managed(host: Harness, user: str, resource: str) -> MemoryConnection:
    client = await host.bind(user, resource)
    session = client.session
    assert session is not None
    host.sessions.enable(session, resume=True, max_seconds=None)
    host.send(client, "<presence/>")
    await host.settle()
    return client


def acknowledge_all(*clients: MemoryConnection) -> None:
    for client in clients:
        session = client.session
        assert session is not None and session.stream_management is not None
        sm = session.stream_management
        sm.acknowledge(sm.sent)


def session_of(client: MemoryConnection) -> Session:
    assert client.session is not None
    return client.session


async def signed_in(
    harness: MakeHarness, *, carbons: bool = False, **settings: object
) -> tuple[Harness, MemoryConnection, MemoryConnection, MemoryConnection]:
    modules = ("presence", "message", "offline", "carbons", "csi")
    host = await harness(modules, **settings)
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    phone = await managed(host, "alice", "phone")
    laptop = await managed(host, "alice", "laptop")
    bob = await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    if carbons:
        host.send(laptop, ENABLE_CARBONS)
    await host.settle()
    acknowledge_all(phone, laptop)
    for client in (phone, laptop, bob):
        host.received(client)
    return host, phone, laptop, bob


async def stored(host: Harness, user: str = "alice") -> list[str]:
    return bodies([message.stanza for message in await host.services.offline.fetch(user)])


# --- a message more than one session got (RFC 6121 §8.5.2.1.1) ----------------------------


async def test_a_bare_jid_message_another_resource_got_is_not_routed_again(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness)
    host.send(bob, chat("alice@localhost", "both"))
    assert bodies(host.received(phone)) == bodies(host.received(laptop)) == ["both"]
    acknowledge_all(laptop)  # the phone's client never acknowledges it

    host.sessions.end(session_of(phone))
    await host.settle()

    assert bodies(host.received(laptop)) == []
    assert await stored(host) == []


async def test_a_message_every_resource_left_unacknowledged_is_stored_once(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness)
    host.send(bob, chat("alice@localhost", "both"))
    host.received(phone), host.received(laptop)

    host.sessions.end(session_of(phone))
    host.sessions.end(session_of(laptop))
    await host.settle()

    assert await stored(host) == ["both"]


async def test_a_message_parked_for_a_detached_resource_is_not_routed_again(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness)
    host.sessions.detach(session_of(phone), hold_seconds=60)
    host.send(bob, chat("alice@localhost", "while away"))
    assert bodies(host.received(laptop)) == ["while away"]

    host.sessions.end(session_of(phone))
    await host.settle()

    assert bodies(host.received(laptop)) == []
    assert await stored(host) == []


async def test_a_message_only_the_ended_resource_got_goes_to_the_others(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness)
    host.send(bob, chat("alice@localhost/phone", "only phone"))
    host.received(phone)

    host.sessions.end(session_of(phone))
    await host.settle()

    assert bodies(host.received(laptop)) == ["only phone"]
    assert await stored(host) == []


# --- carbon copies (XEP-0280) ---------------------------------------------------------------


async def test_a_message_whose_copy_another_resource_got_is_not_routed_again(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness, carbons=True)
    host.send(bob, chat("alice@localhost/phone", "copied"))
    host.received(phone)
    [copy] = host.received(laptop)
    assert "<received" in copy
    acknowledge_all(laptop)

    host.sessions.end(session_of(phone))
    await host.settle()

    assert bodies(host.received(laptop)) == []
    assert await stored(host) == []


async def test_an_unacknowledged_copy_is_dropped_and_no_longer_holds_the_message(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness, carbons=True)
    host.send(bob, chat("alice@localhost/phone", "copied"))
    host.received(phone), host.received(laptop)

    host.sessions.end(session_of(laptop))  # its copy goes nowhere
    await host.settle()
    assert bodies(host.received(phone)) == [] and await stored(host) == []

    host.sessions.end(session_of(phone))  # now nobody holds the message: it is stored
    await host.settle()
    assert await stored(host) == ["copied"]


async def test_a_copy_left_by_a_session_replaced_by_a_new_login_goes_nowhere(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness, carbons=True)
    host.send(bob, chat("alice@localhost/phone", "copied"))
    acknowledge_all(phone)
    host.received(phone)
    host.sessions.detach(session_of(laptop), hold_seconds=60)

    again = await host.bind("alice", "laptop")  # a failed resumption, then a new bind
    host.send(again, "<presence/>")
    await host.settle()

    assert bodies(host.received(again)) == []
    assert bodies(host.received(phone)) == [] and await stored(host) == []


# --- offline storage: one delay stamp ---------------------------------------------------------


async def test_a_message_left_unacknowledged_is_stored_with_its_first_stamp_only(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness)
    host.sessions.end(session_of(laptop))
    host.send(bob, chat("alice@localhost", "late"))
    await asyncio.sleep(0.01)  # stamps have milliseconds
    host.sessions.end(session_of(phone))
    await host.settle()

    tablet = await host.bind("alice", "tablet")
    host.send(tablet, "<presence/>")
    got = await host.arrived(tablet, 3)  # its own presence, the message and a ping
    [row] = await host.services.offline.fetch("alice")
    tablet.heard()  # the answer to the ping
    await host.settle()

    [message] = [text for text in got if "<body>" in text]
    delays = parse_stanza(message).find_all("delay", ns.DELAY)
    assert len(delays) == 1, message
    first_sent = delays[0].attrs["stamp"]
    assert first_sent < row.stored_at.isoformat(timespec="milliseconds")


# --- resumption -------------------------------------------------------------------------------


async def test_a_resumption_replays_more_than_the_bound_and_leaves_room_for_it(
    harness: MakeHarness,
) -> None:
    host, phone, _laptop, bob = await signed_in(
        harness, stream_management={"max_unacked_stanzas": 3}
    )
    session = session_of(phone)
    sm = session.stream_management
    assert sm is not None
    for number in range(3):
        host.send(bob, chat("alice@localhost/phone", f"unacked {number}"))
    host.sessions.detach(session, hold_seconds=60)
    for number in range(3):
        host.send(bob, chat("alice@localhost/phone", f"parked {number}"))

    resumed = host.connect()
    resumed.session = session
    host.sessions.resume(sm.id or "", "alice", None, sm.acked)
    host.sessions.reattach(session, resumed)

    assert len(bodies(host.received(resumed))) == 6
    assert sm.max_unacked == 3 + 6  # the configured bound, after what was replayed


async def test_a_resumed_inactive_session_gets_what_was_held_at_once(
    harness: MakeHarness,
) -> None:
    host, phone, _laptop, bob = await signed_in(harness)
    session = session_of(phone)
    host.send_element(phone, "<inactive xmlns='urn:xmpp:csi:0'/>")
    host.send(bob, "<presence><show>away</show></presence>")
    assert host.received(phone) == []
    host.sessions.detach(session, hold_seconds=60)

    resumed = host.connect()
    resumed.session = session
    host.sessions.reattach(session, resumed)

    [presence] = host.received(resumed)  # with nothing else routed to it
    assert "<show>away</show>" in presence
    assert session.filters == ()


# --- dead connections -------------------------------------------------------------------------


async def test_silence_after_stored_messages_leaves_a_resumable_session_waiting(
    harness: MakeHarness,
) -> None:
    host, phone, laptop, bob = await signed_in(harness, limits={"ping_timeout_seconds": 0.1})
    for client in (phone, laptop):
        host.sessions.end(session_of(client))
    host.send(bob, chat("alice@localhost", "stored"))
    await host.settle()
    tablet = await managed(host, "alice", "tablet")  # gets it, then a ping, and says nothing

    await asyncio.sleep(0.3)
    await host.settle()

    assert tablet.error is not None and tablet.error.condition is StreamCondition.CONNECTION_TIMEOUT
    assert session_of_jid(host, "alice@localhost/tablet").state is SessionState.DETACHED
    assert await stored(host) == ["stored"]


def session_of_jid(host: Harness, jid: str) -> Session:
    session = host.sessions.get(JID.parse(jid))
    assert session is not None
    return session
