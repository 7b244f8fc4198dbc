"""XEP-0352 client state indication (modules/csi.py) against the in-memory host: what an
inactive session is not sent yet, how it is collapsed, and what releases it, in order."""

from __future__ import annotations

import re

import pytest
from module_harness import Harness, MakeHarness, MemoryConnection

from chinwag.modules.csi import CSI, standalone_chat_state, urgent_message
from chinwag.xmpp.xml import parse_stanza

MODULES = ("presence", "message", "ping", "offline", "chatstates", "csi")
INACTIVE = f"<inactive xmlns='{CSI}'/>"
ACTIVE = f"<active xmlns='{CSI}'/>"
STATES = "http://jabber.org/protocol/chatstates"


def show(value: str) -> str:
    return f"<presence><show>{value}</show></presence>"


def state(value: str, to: str = "alice@localhost/phone") -> str:
    return f"<message to='{to}' type='chat'><{value} xmlns='{STATES}'/></message>"


def chat(body: str, to: str = "alice@localhost/phone", extra: str = "") -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body>{extra}</message>"


def receipt(number: int, to: str = "alice@localhost/phone") -> str:
    return (
        f"<message to='{to}' type='chat'>"
        f"<received xmlns='urn:xmpp:receipts' id='m{number}'/></message>"
    )


def summary(received: list[str]) -> list[str]:
    """Each stanza as kind, sender's resource and what it says: "presence desk dnd",
    "message desk body:hi", "message desk state:paused", "iq desk get"."""
    out = []
    for text in received:
        kind = text[1 : text.index(" ")]
        sender = re.search(r'from="([^"]*)"', text)
        who = sender.group(1).rpartition("/")[2] if sender else "-"  # localhost: the server
        if kind == "presence":
            said = re.search(r"<show>(\w+)</show>", text)
            typed = re.search(r'type="(\w+)"', text)
            what = said.group(1) if said else typed.group(1) if typed else "available"
        elif kind == "message":
            body = re.search(r"<body>([^<]*)</body>", text)
            chat_state = re.search(rf'<(\w+) xmlns="{STATES}"/>', text)
            what = (
                f"body:{body.group(1)}"
                if body
                else f"state:{chat_state.group(1)}"
                if chat_state
                else "other"
            )
        else:
            typed = re.search(r'type="(\w+)"', text)
            what = typed.group(1) if typed else "?"
        out.append(f"{kind} {who} {what}")
    return out


async def online(
    harness: MakeHarness, **settings: object
) -> tuple[Harness, MemoryConnection, MemoryConnection]:
    """alice/phone and bob/desk, mutual contacts, both available, nothing received yet."""
    host = await harness(MODULES, **settings)
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    host.send(alice, "<presence/>")
    host.send(bob, "<presence/>")
    await host.settle()
    host.received(alice), host.received(bob)
    return host, alice, bob


async def test_csi_is_a_stream_feature_and_costs_an_active_session_nothing(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await online(harness)

    assert (CSI, "csi") in host.host.stream_features
    assert alice.session is not None and alice.session.filters == ()
    host.send(bob, show("away"))
    assert summary(host.received(alice)) == ["presence desk away"]


async def test_presence_waits_collapsed_until_a_message_with_a_body(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await online(harness)
    host.send_element(alice, INACTIVE)

    for value in ("away", "xa", "dnd"):
        host.send(bob, show(value))
    assert host.received(alice) == []

    host.send(bob, chat("wake up"))

    assert summary(host.received(alice)) == ["presence desk dnd", "message desk body:wake up"]


async def test_chat_states_collapse_and_a_message_with_its_own_state_supersedes_them(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await online(harness)
    host.send_element(alice, INACTIVE)

    host.send(bob, state("composing"))
    host.send(bob, state("paused"))
    assert host.received(alice) == []
    host.send(bob, chat("done", extra=f"<active xmlns='{STATES}'/>"))
    assert summary(host.received(alice)) == ["message desk body:done"]

    host.send(bob, state("composing"))
    host.send(bob, state("paused"))
    host.send(bob, chat("no state"))
    assert summary(host.received(alice)) == [
        "message desk state:paused",
        "message desk body:no state",
    ]


async def test_what_is_released_keeps_the_order_it_was_routed_in(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness)
    phone = await host.bind("bob", "phone")
    host.send(phone, "<presence/>")
    host.send_element(alice, INACTIVE)

    host.send(bob, show("away"))
    host.send(phone, state("composing"))
    host.send(bob, receipt(1))
    host.send(bob, show("dnd"))  # replaces "away", and comes after what came since
    host.send(phone, chat("hi"))

    assert summary(host.received(alice)) == [
        "presence phone available",
        "message phone state:composing",
        "message desk other",
        "presence desk dnd",
        "message phone body:hi",
    ]


async def test_active_releases_everything_and_stops_holding(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness)
    host.send_element(alice, INACTIVE)
    host.send_element(alice, INACTIVE)  # again: no second filter
    host.send(bob, show("away"))
    host.send(bob, state("composing"))
    assert alice.session is not None and len(alice.session.filters) == 1

    host.send_element(alice, ACTIVE)

    assert summary(host.received(alice)) == ["presence desk away", "message desk state:composing"]
    assert alice.session.filters == ()
    host.send(bob, show("xa"))
    assert summary(host.received(alice)) == ["presence desk xa"]
    host.send_element(alice, ACTIVE)  # already active: nothing happens
    assert host.received(alice) == []


async def test_iqs_are_never_held_and_release_what_waits_ahead_of_them(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await online(harness)
    host.send_element(alice, INACTIVE)
    host.send(bob, show("away"))

    host.send(
        bob, "<iq type='get' id='p1' to='alice@localhost/phone'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    assert summary(host.received(alice)) == ["presence desk away", "iq desk get"]

    host.send(alice, "<iq type='get' id='p2' to='localhost'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert summary(host.received(alice)) == ["iq localhost result"]


@pytest.mark.parametrize(
    "urgent",
    [
        "<message to='alice@localhost/phone' type='chat'>"
        "<encrypted xmlns='eu.siacs.conversations.axolotl'/><store xmlns='urn:xmpp:hints'/>"
        "</message>",
        "<message to='alice@localhost/phone' type='chat'>"
        "<encrypted xmlns='urn:xmpp:omemo:2'/></message>",
        "<message to='alice@localhost/phone' type='chat'>"
        "<store xmlns='urn:xmpp:hints'/><displayed xmlns='urn:xmpp:chat-markers:0' id='1'/>"
        "</message>",
        "<message to='alice@localhost/phone'>"
        "<propose xmlns='urn:xmpp:jingle-message:0' id='call'/></message>",
        "<message to='alice@localhost/phone' type='groupchat'><subject>topic</subject></message>",
    ],
    ids=["omemo", "omemo2", "store-hint", "call", "subject"],
)
async def test_messages_with_important_payloads_and_no_body_are_urgent(
    harness: MakeHarness, urgent: str
) -> None:
    host, alice, bob = await online(harness, messages={"from_strangers": True})
    host.send_element(alice, INACTIVE)
    host.send(bob, show("away"))

    host.send(bob, urgent)

    [presence, message] = host.received(alice)
    assert summary([presence]) == ["presence desk away"]
    assert message.startswith("<message") and 'from="bob@localhost/desk"' in message


async def test_an_error_is_urgent(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness)
    host.send_element(alice, INACTIVE)
    host.send(bob, show("away"))

    host.send(alice, chat("anyone?", to="nobody@localhost"))

    received = host.received(alice)
    assert summary(received[:1]) == ["presence desk away"]
    [error] = received[1:]
    assert 'type="error"' in error and "service-unavailable" in error


async def test_a_full_queue_is_released_at_once(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness, messages={"csi_queue_size": 3})
    host.send_element(alice, INACTIVE)

    host.send(bob, receipt(1))
    host.send(bob, show("away"))
    host.send(bob, show("xa"))  # replaces "away": two are held
    assert host.received(alice) == []
    host.send(bob, receipt(2))

    assert summary(host.received(alice)) == [
        "message desk other",
        "presence desk xa",
        "message desk other",
    ]
    host.send(bob, show("dnd"))  # still inactive: the next one waits again
    assert host.received(alice) == []


async def test_a_queue_size_of_zero_holds_nothing(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness, messages={"csi_queue_size": 0})

    host.send_element(alice, INACTIVE)
    host.send(bob, show("away"))

    assert alice.session is not None and alice.session.filters == ()
    assert summary(host.received(alice)) == ["presence desk away"]


async def test_stored_messages_still_come_first_when_inactive_before_initial_presence(
    harness: MakeHarness,
) -> None:
    host = await harness(MODULES)
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    bob = await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    host.send(bob, chat("stored", to="alice@localhost"))
    await host.settle()
    alice = await host.bind("alice", "phone")
    host.send_element(alice, INACTIVE)

    host.send(alice, "<presence/>")  # the stored message is being fetched meanwhile
    host.send(bob, show("away"))
    host.send(bob, chat("live"))
    received = await host.arrived(alice, 5)
    alice.heard()  # the answer to the ping

    assert summary(received) == [
        "message desk body:stored",
        "iq localhost get",  # the offline module's ping after what was stored
        "presence phone available",  # alice's own, echoed
        "presence desk away",
        "message desk body:live",
    ]


async def test_a_resumed_stream_starts_active(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness)
    session = alice.session
    assert session is not None
    host.send_element(alice, INACTIVE)
    host.send(bob, show("away"))

    host.sessions.detach(session, hold_seconds=60)
    resumed = host.connect()
    host.sessions.reattach(session, resumed)
    host.send(bob, show("dnd"))

    assert summary(host.received(resumed)) == ["presence desk away", "presence desk dnd"]
    assert session.filters == ()


async def test_held_messages_move_on_when_the_session_ends(harness: MakeHarness) -> None:
    host, alice, bob = await online(harness)
    desk = await host.bind("alice", "desk")
    host.send(desk, "<presence/>")
    await host.settle()
    host.send_element(alice, INACTIVE)
    host.send(bob, show("away"))
    host.send(bob, state("composing"))
    host.send(bob, receipt(1))
    host.send(  # as a carbon copy comes: for this resource alone
        bob,
        "<message to='alice@localhost/phone' type='chat'><received xmlns='urn:xmpp:carbons:2'>"
        "<forwarded xmlns='urn:xmpp:forward:0'><message xmlns='jabber:client' type='chat'>"
        "<received xmlns='urn:xmpp:receipts' id='m2'/></message></forwarded></received></message>",
    )
    host.received(desk)

    alice.close_stream()

    assert summary(host.received(desk)) == ["presence phone unavailable", "message desk other"]


@pytest.mark.parametrize(
    ("xml", "urgent", "standalone"),
    [
        (state("gone"), False, True),
        (
            "<message><thread>t</thread><no-store xmlns='urn:xmpp:hints'/>"
            f"<paused xmlns='{STATES}'/></message>",
            False,
            True,
        ),
        (f"<message><paused xmlns='{STATES}'/><x xmlns='y'/></message>", False, False),
        (f"<message type='error'><paused xmlns='{STATES}'/></message>", True, True),
        (
            "<message><received xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            "<message xmlns='jabber:client'><body>hi</body></message></forwarded></received>"
            "</message>",
            True,
            False,
        ),
        (
            "<message><sent xmlns='urn:xmpp:carbons:2'><forwarded xmlns='urn:xmpp:forward:0'>"
            f"<message xmlns='jabber:client'><composing xmlns='{STATES}'/></message>"
            "</forwarded></sent></message>",
            False,
            False,
        ),
    ],
    ids=[
        "state",
        "state-with-thread-and-hint",
        "state-with-payload",
        "error",
        "carbon",
        "carbon-state",
    ],
)
def test_classification(xml: str, urgent: bool, standalone: bool) -> None:
    message = parse_stanza(xml)

    assert urgent_message(message) is urgent
    assert standalone_chat_state(message) is standalone
