"""XEP-0280 Message Carbons against the in-memory host.

alice is signed in three times: ``laptop`` and ``phone`` enable carbons, ``tablet``
does not; all three are available at priority 0 unless a test says otherwise. bob,
her contact, is at ``desk``.
"""

from __future__ import annotations

import pytest
from module_harness import Harness, MakeHarness, MemoryConnection

from chinwag.modules.carbons import REMEMBERED_IDS, Account
from chinwag.server.hooks import DELIVER_MESSAGE
from chinwag.xmpp.element import Element

CARBONS = "urn:xmpp:carbons:2"
ENABLE = f"<iq type='set' id='on'><enable xmlns='{CARBONS}'/></iq>"
DISABLE = f"<iq type='set' id='off'><disable xmlns='{CARBONS}'/></iq>"
PRIVATE = f"<private xmlns='{CARBONS}'/>"
NO_COPY = "<no-copy xmlns='urn:xmpp:hints'/>"
RECEIPT_REQUEST = "<request xmlns='urn:xmpp:receipts'/>"
COMPOSING = "<composing xmlns='http://jabber.org/protocol/chatstates'/>"
MUC_USER = "http://jabber.org/protocol/muc#user"
MEDIATED_INVITE = f"<x xmlns='{MUC_USER}'><invite from='carol@localhost'/></x>"
OCCUPANT = f"<x xmlns='{MUC_USER}'/>"

Alice = dict[str, MemoryConnection]


def chat(to: str, message_id: str, extra: str = "", kind: str = "chat") -> str:
    return f"<message to='{to}' type='{kind}' id='{message_id}'><body>hi</body>{extra}</message>"


def copy(wrapper: str, to: str, forwarded: str, kind: str | None = "chat") -> str:
    """The copy of ``forwarded`` (as its recipient got it) that alice's resource ``to`` gets."""
    type_attr = "" if kind is None else f' type="{kind}"'
    inner = forwarded.replace("<message ", '<message xmlns="jabber:client" ', 1)
    return (
        f'<message from="alice@localhost" to="alice@localhost/{to}"{type_attr}>'
        f'<{wrapper} xmlns="{CARBONS}"><forwarded xmlns="urn:xmpp:forward:0">'
        f"{inner}</forwarded></{wrapper}></message>"
    )


async def signed_in(
    harness: MakeHarness, priorities: dict[str, int] | None = None, **settings: object
) -> tuple[Harness, Alice, MemoryConnection]:
    host = await harness(("presence", "message", "offline", "carbons"), **settings)
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice = {name: await host.bind("alice", name) for name in ("laptop", "phone", "tablet")}
    bob = await host.bind("bob", "desk")
    for name, client in alice.items():
        priority = (priorities or {}).get(name, 0)
        host.send(client, f"<presence><priority>{priority}</priority></presence>")
        await host.settle()  # each session's offline delivery done before the next begins
    host.send(bob, "<presence/>")
    for name in ("laptop", "phone"):
        host.send(alice[name], ENABLE)
    await host.settle()
    for client in (*alice.values(), bob):
        host.received(client)
    return host, alice, bob


# --- enabling and disabling -----------------------------------------------------------


async def test_enabling_and_disabling_are_answered_and_announced(harness: MakeHarness) -> None:
    host = await harness(("message", "carbons"))
    await host.add_users("alice")
    alice = await host.bind("alice", "laptop")

    for request in (
        ENABLE,
        ENABLE,  # again: still a result (§9.1)
        ENABLE.replace("<iq ", "<iq to='alice@localhost' ").replace("'on'", "'bare'"),
        ENABLE.replace("<iq ", "<iq to='localhost' ").replace("'on'", "'host'"),
        DISABLE,
        DISABLE,
    ):
        host.send(alice, request)

    assert host.received(alice) == [
        f'<iq type="result" to="alice@localhost/laptop"{sender} id="{answer}"/>'
        for answer, sender in (
            ("on", ""),
            ("on", ""),
            ("bare", ' from="alice@localhost"'),
            ("host", ' from="localhost"'),
            ("off", ""),
            ("off", ""),
        )
    ]
    assert {CARBONS, "urn:xmpp:carbons:rules:0"} <= host.modules["carbons"].features()


async def test_carbons_cannot_be_enabled_through_another_account(harness: MakeHarness) -> None:
    host = await harness(("message", "carbons"))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    alice = await host.bind("alice", "laptop")

    host.send(alice, ENABLE.replace("<iq ", "<iq to='bob@localhost' "))

    [answer] = host.received(alice)
    assert 'type="error"' in answer and "<not-allowed " in answer


# --- received and sent copies ---------------------------------------------------------


async def test_a_message_to_one_resource_is_copied_to_the_others_with_carbons(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness)

    host.send(bob, chat("alice@localhost/laptop", "m1"))

    [original] = host.received(alice["laptop"])
    assert original == (
        '<message to="alice@localhost/laptop" type="chat" id="m1" from="bob@localhost/desk">'
        "<body>hi</body></message>"
    )
    assert host.received(alice["phone"]) == [copy("received", "phone", original)]
    assert host.received(alice["tablet"]) == []  # no carbons there


async def test_what_one_resource_sends_is_copied_to_the_others_with_carbons(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness)

    host.send(alice["tablet"], chat("bob@localhost", "m2"))  # tablet has no carbons itself

    [original] = host.received(bob)
    assert host.received(alice["laptop"]) == [copy("sent", "laptop", original)]
    assert host.received(alice["phone"]) == [copy("sent", "phone", original)]
    assert host.received(alice["tablet"]) == []


async def test_the_sender_gets_no_copy_of_its_own_message(harness: MakeHarness) -> None:
    host, alice, bob = await signed_in(harness)

    host.send(alice["laptop"], chat("bob@localhost/desk", "m3"))

    [original] = host.received(bob)
    assert host.received(alice["laptop"]) == []
    assert host.received(alice["phone"]) == [copy("sent", "phone", original)]


async def test_a_message_to_the_bare_jid_is_not_copied_to_the_resources_that_got_it(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness, {"phone": -1})

    host.send(bob, chat("alice@localhost", "m4"))

    [original] = host.received(alice["laptop"])
    assert host.received(alice["tablet"]) == [original]  # a tie at priority 0: both get it
    assert host.received(alice["phone"]) == [copy("received", "phone", original)]


async def test_a_message_every_enabled_resource_got_is_copied_nowhere(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness)

    host.send(bob, chat("alice@localhost", "m5"))

    for name in ("laptop", "phone", "tablet"):
        assert [("carbons" in text) for text in host.received(alice[name])] == [False]


async def test_a_message_stored_offline_is_still_copied_to_the_senders_resources(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness)
    bob.close_stream()
    host.received(alice["phone"])  # bob's unavailable presence

    host.send(alice["laptop"], chat("bob@localhost", "m6"))
    await host.settle()

    [stored] = await host.services.offline.fetch("bob")
    assert host.received(alice["phone"]) == [copy("sent", "phone", stored.stanza)]


async def test_a_message_between_two_resources_is_copied_once_to_the_third(
    harness: MakeHarness,
) -> None:
    host, alice, _bob = await signed_in(harness)
    host.send(alice["tablet"], ENABLE)
    host.received(alice["tablet"])

    host.send(alice["laptop"], chat("alice@localhost/tablet", "m7"))

    [original] = host.received(alice["tablet"])
    assert host.received(alice["laptop"]) == []
    assert host.received(alice["phone"]) == [copy("sent", "phone", original)]


# --- which messages ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("message", "copied"),
    [
        (chat("alice@localhost/laptop", "n1", kind="normal"), True),
        ("<message to='alice@localhost/laptop' id='n2'><body>hi</body></message>", True),
        (f"<message to='alice@localhost/laptop' id='n3'>{RECEIPT_REQUEST}</message>", True),
        (f"<message to='alice@localhost/laptop' type='normal' id='n4'>{COMPOSING}</message>", True),
        ("<message to='alice@localhost/laptop' type='chat' id='n5'/>", True),
        ("<message to='alice@localhost/laptop' id='n6'><subject>s</subject></message>", False),
        (chat("alice@localhost/laptop", "n7", kind="headline"), False),
        (chat("alice@localhost/laptop", "p1", PRIVATE), False),
        (chat("alice@localhost/laptop", "p2", NO_COPY), False),
        (chat("alice@localhost/laptop", "p3", PRIVATE + NO_COPY), False),
        # §6.1's MUC rules: a mediated invitation is copied; a MUC's private message
        # (received from a full JID, with a muc#user <x/> and no invitation) is not.
        (f"<message to='alice@localhost/laptop' id='m1'>{MEDIATED_INVITE}</message>", True),
        (chat("alice@localhost/laptop", "m2", OCCUPANT), False),
        (chat("alice@localhost/laptop", "m3", OCCUPANT, kind="groupchat"), False),
        (
            chat(
                "alice@localhost/laptop",
                "c1",
                f"<received xmlns='{CARBONS}'><forwarded xmlns='urn:xmpp:forward:0'/></received>",
            ),
            False,
        ),
    ],
)
async def test_which_messages_are_copied(harness: MakeHarness, message: str, copied: bool) -> None:
    host, alice, bob = await signed_in(harness)
    kind = message.split("type='")[1].split("'")[0] if " type='" in message else None

    host.send(bob, message)

    [original] = host.received(alice["laptop"])
    expected = [copy("received", "phone", original, kind)] if copied else []
    assert host.received(alice["phone"]) == expected


async def test_a_private_message_to_a_muc_occupant_is_copied_as_sent(
    harness: MakeHarness,
) -> None:
    """§6.1: what a user sends to an occupant's full JID is copied; only what it receives
    from one is left to the MUC."""
    host, alice, _bob = await signed_in(harness)

    host.send(alice["laptop"], chat("bob@localhost/desk", "m4", OCCUPANT))

    [copied] = host.received(alice["phone"])
    assert "<sent " in copied and 'id="m4"' in copied


async def test_private_and_no_copy_messages_are_copied_on_neither_side(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness)
    host.send(bob, ENABLE)
    bob_phone = await host.bind("bob", "phone")
    host.send(bob_phone, ENABLE)
    host.received(bob)
    host.received(bob_phone)

    host.send(alice["laptop"], chat("bob@localhost/desk", "p4", PRIVATE + NO_COPY))

    [original] = host.received(bob)
    assert PRIVATE.replace("'", '"') in original  # delivered as it was sent
    assert host.received(alice["phone"]) == []
    assert host.received(bob_phone) == []


async def test_an_error_answering_a_copied_message_is_copied_too(harness: MakeHarness) -> None:
    host, alice, bob = await signed_in(harness)
    host.send(alice["laptop"], chat("bob@localhost/desk", "q1"))
    host.received(alice["phone"])

    for message_id in ("q1", "unknown"):
        host.send(
            bob,
            f"<message to='alice@localhost/laptop' type='error' id='{message_id}'>"
            "<error type='cancel'><item-not-found xmlns='urn:ietf:params:xml:ns:xmpp-stanzas'/>"
            "</error></message>",
        )

    [answer, _unknown] = host.received(alice["laptop"])
    assert host.received(alice["phone"]) == [copy("received", "phone", answer, "error")]


async def test_the_servers_bounce_of_a_copied_message_is_copied(harness: MakeHarness) -> None:
    host, alice, _bob = await signed_in(harness, messages={"from_strangers": True})

    host.send(alice["laptop"], chat("nobody@localhost", "q2"))
    await host.settle()

    [bounce] = host.received(alice["laptop"])
    assert 'type="error"' in bounce and "service-unavailable" in bounce
    [sent, received] = host.received(alice["phone"])
    assert "<sent " in sent and 'id="q2"' in sent
    assert received == copy("received", "phone", bounce, "error")


# --- the life of carbons -------------------------------------------------------------------


async def test_disabling_stops_the_copies(harness: MakeHarness) -> None:
    host, alice, bob = await signed_in(harness)
    host.send(alice["phone"], DISABLE)
    host.received(alice["phone"])

    host.send(bob, chat("alice@localhost/laptop", "d1"))
    host.send(alice["laptop"], chat("bob@localhost/desk", "d2"))

    assert host.received(alice["phone"]) == []


async def test_carbons_end_with_the_session(harness: MakeHarness) -> None:
    host, alice, bob = await signed_in(harness)
    alice["phone"].close_stream()
    phone = await host.bind("alice", "phone")  # the same resource, carbons not asked for

    host.send(bob, chat("alice@localhost/laptop", "e1"))

    assert host.received(phone) == []


async def test_a_copy_for_a_session_that_expired_goes_nowhere_else(
    harness: MakeHarness,
) -> None:
    """A copy parked for a detached session is not routed again to another resource, nor
    stored offline, when that session ends."""
    host, alice, bob = await signed_in(harness)
    phone = alice["phone"].session
    assert phone is not None
    host.sessions.detach(phone, hold_seconds=60)

    host.send(bob, chat("alice@localhost/laptop", "f1"))
    host.received(alice["laptop"])
    host.sessions.end(phone)
    await host.settle()

    for name in ("laptop", "tablet"):
        assert [text for text in host.received(alice[name]) if "<message" in text] == []
    assert await host.services.offline.fetch("alice") == []


async def test_the_message_path_calls_carbons_only_while_someone_has_them_on(
    harness: MakeHarness,
) -> None:
    host, alice, bob = await signed_in(harness)
    delivered = host.hooks.channel(DELIVER_MESSAGE)
    assert len(delivered.handlers) == 1
    host.send(alice["laptop"], DISABLE)
    assert len(delivered.handlers) == 1  # the phone still has them on
    alice["phone"].close_stream()
    assert delivered.handlers == ()
    bob_phone = await host.bind("bob", "phone")
    host.send(bob_phone, ENABLE)
    host.send(bob_phone, ENABLE)
    assert len(delivered.handlers) == 1
    for client in (alice["laptop"], bob_phone):
        host.received(client)

    host.send(alice["laptop"], chat("bob@localhost/desk", "g1"))
    host.send(bob, chat("alice@localhost/laptop", "g2"))

    [g2] = host.received(alice["laptop"])  # no copy of g1: alice has carbons nowhere now
    assert 'id="g2"' in g2 and "<sent " not in g2
    assert [text.split(" xmlns=")[0] for text in host.received(bob_phone)] == [
        '<message from="bob@localhost" to="bob@localhost/phone" type="chat"><received',
        '<message from="bob@localhost" to="bob@localhost/phone" type="chat"><sent',
    ]


def test_an_account_remembers_a_bounded_number_of_message_ids() -> None:
    account = Account()
    for number in range(REMEMBERED_IDS + 1):
        account.remember("bob@localhost", f"m{number}")

    def answers(message_id: str) -> bool:
        return account.answers(Element("message", attrs={"id": message_id}), "bob@localhost")

    assert len(account.exchanged) == REMEMBERED_IDS
    assert not answers("m0") and answers("m1") and answers(f"m{REMEMBERED_IDS}")
    assert not account.answers(Element("message", attrs={"id": "m1"}), "carol@localhost")
