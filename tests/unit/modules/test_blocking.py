"""XEP-0191 blocking (modules/blocking.py) against the in-memory host: the block list and
its pushes, what a list keeps from the user and refuses to send for them, presence both
ways, offline storage, and changes made elsewhere through the network.

alice and bob are contacts (subscription both); carol is nobody's contact.
"""

from __future__ import annotations

import asyncio

import pytest
from module_harness import Harness, MakeHarness, MemoryConnection

from chinwag.network import blocking as blocking_domain
from chinwag.network.blocking import BLOCKLIST_CHANGED
from chinwag.network.events import NetworkEvent
from chinwag.xmpp.element import Element
from chinwag.xmpp.xml import parse_stanza

BLOCKING = "urn:xmpp:blocking"
BLOCKING_ERRORS = "urn:xmpp:blocking:errors"
STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
DISCO_INFO = "http://jabber.org/protocol/disco#info"
MODULES = ("disco", "roster", "presence", "message", "offline", "vcard", "blocking")


async def network(harness: MakeHarness, **settings: object) -> Harness:
    host = await harness(MODULES, **settings)
    await host.add_users("alice", "bob", "carol")
    await host.add_contacts("alice", "bob")
    return host


async def online(
    host: Harness, user: str, resource: str, *, available: bool = True, asks: bool = True
) -> MemoryConnection:
    """A bound client that asked for its block list (unless ``asks`` is false) and sent
    initial presence (unless ``available`` is false); what it got so far is cleared."""
    client = await host.bind(user, resource)
    if asks:
        host.send(client, f"<iq type='get' id='list'><blocklist xmlns='{BLOCKING}'/></iq>")
    if available:
        host.send(client, "<presence/>")
    await host.settle()
    host.received(client)
    return client


def got(host: Harness, client: MemoryConnection) -> list[Element]:
    return [parse_stanza(xml) for xml in host.received(client)]


async def command(host: Harness, client: MemoryConnection, payload: str) -> Element:
    """Send an IQ set (id 'cmd') with ``payload``; its answer. What else came stays."""
    host.send(client, f"<iq type='set' id='cmd'>{payload}</iq>")
    await host.settle()
    answers = [s for s in client.sent if s.tag == "iq" and s.attrs.get("id") == "cmd"]
    assert len(answers) == 1, [s.encoded() for s in client.sent]
    client.sent.remove(answers[0])
    return parse_stanza(answers[0].encoded().decode())


def block(*jids: str) -> str:
    items = "".join(f"<item jid='{jid}'/>" for jid in jids)
    return f"<block xmlns='{BLOCKING}'>{items}</block>"


def unblock(*jids: str) -> str:
    items = "".join(f"<item jid='{jid}'/>" for jid in jids)
    return f"<unblock xmlns='{BLOCKING}'>{items}</unblock>"


def condition(stanza: Element) -> str | None:
    error = stanza.find("error")
    if error is None:
        return None
    return next(child.tag for child in error.elements() if child.ns == STANZAS)


def items(stanza: Element, tag: str) -> list[str]:
    payload = stanza.find(tag, BLOCKING)
    assert payload is not None, stanza.encoded()
    return [item.attrs["jid"] for item in payload.find_all("item", BLOCKING)]


def presence_from(stanzas: list[Element], sender: str) -> list[str | None]:
    """The types of the presence stanzas from ``sender`` (None: available)."""
    return [
        s.attrs.get("type") for s in stanzas if s.tag == "presence" and s.attrs["from"] == sender
    ]


# --- the block list and its pushes (§3.1-3.5) ------------------------------------------------


async def test_disco_lists_the_feature(harness: MakeHarness) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")

    host.send(alice, f"<iq type='get' id='d' to='localhost'><query xmlns='{DISCO_INFO}'/></iq>")

    assert f'<feature var="{BLOCKING}"/>' in host.received(alice)[0]


async def test_block_get_and_unblock_with_pushes_to_the_resources_that_asked(
    harness: MakeHarness,
) -> None:
    host = await network(harness)
    phone = await online(host, "alice", "phone")
    desk = await online(host, "alice", "desk")
    quiet = await online(host, "alice", "quiet", asks=False)
    host.received(phone), host.received(desk)  # one another's presence

    host.send(phone, f"<iq type='get' id='l1'><blocklist xmlns='{BLOCKING}'/></iq>")
    await host.settle()
    assert host.received(phone) == [
        f'<iq type="result" to="alice@localhost/phone" id="l1"><blocklist xmlns="{BLOCKING}"/></iq>'
    ]

    result = await command(host, phone, block("Romeo@Montague.net", "carol@localhost/desk"))

    assert result.attrs["type"] == "result" and not result.children
    for client in (phone, desk):
        [push] = got(host, client)
        assert push.attrs["type"] == "set" and push.attrs["to"] == client.session.jid.text
        assert items(push, "block") == ["romeo@montague.net", "carol@localhost/desk"]
    assert got(host, quiet) == []
    host.send(desk, f"<iq type='get' id='l2'><blocklist xmlns='{BLOCKING}'/></iq>")
    await host.settle()
    [listed] = got(host, desk)
    assert items(listed, "blocklist") == ["carol@localhost/desk", "romeo@montague.net"]

    result = await command(host, desk, unblock("romeo@montague.net"))

    assert result.attrs["type"] == "result"
    for client in (phone, desk):
        [push] = got(host, client)
        assert items(push, "unblock") == ["romeo@montague.net"]
    assert await host.services.blocking.blocked("alice") == ["carol@localhost/desk"]

    result = await command(host, phone, f"<unblock xmlns='{BLOCKING}'/>")

    assert result.attrs["type"] == "result"
    for client in (phone, desk):
        [push] = got(host, client)
        assert items(push, "unblock") == []  # everything
    assert await host.services.blocking.blocked("alice") == []


@pytest.mark.parametrize(
    ("payload", "error"),
    [
        (f"<block xmlns='{BLOCKING}'/>", "bad-request"),
        (block("a@b@c"), "jid-malformed"),
        (block("bob@localhost", "@localhost"), "jid-malformed"),
        (unblock("bob@localhost/"), "jid-malformed"),
        (f"<block xmlns='{BLOCKING}'><item/></block>", "bad-request"),
    ],
)
async def test_bad_commands_are_refused_and_change_nothing(
    harness: MakeHarness, payload: str, error: str
) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")

    answer = await command(host, alice, payload)

    assert answer.attrs["type"] == "error"
    assert condition(answer) == error
    assert got(host, alice) == []  # no push
    assert await host.services.blocking.blocked("alice") == []


async def test_only_ones_own_block_list(harness: MakeHarness) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")

    host.send(
        alice, f"<iq type='get' id='x' to='bob@localhost'><blocklist xmlns='{BLOCKING}'/></iq>"
    )
    await host.settle()

    [answer] = got(host, alice)
    assert condition(answer) == "forbidden"


async def test_the_list_holds_at_most_max_blocked(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(blocking_domain, "MAX_BLOCKED", 2)
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    assert (await command(host, alice, block("a.example", "b.example"))).attrs["type"] == "result"
    host.received(alice)

    answer = await command(host, alice, block("a.example", "c.example"))

    assert condition(answer) == "policy-violation"
    assert await host.services.blocking.blocked("alice") == ["a.example", "b.example"]
    assert (await command(host, alice, block("a.example"))).attrs["type"] == "result"  # no change


async def test_new_non_ascii_jids_draw_on_an_allowance(harness: MakeHarness) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    long_names = [f"{'é' * 500}{n}@example.org" for n in range(9)]  # past 4096 at once

    answer = await command(host, alice, block(*long_names))

    assert condition(answer) == "resource-constraint"
    assert await host.services.blocking.blocked("alice") == []


# --- what a list keeps apart (§3.3) ---------------------------------------------------------


async def test_messages_and_iqs_from_a_blocked_jid_get_service_unavailable(
    harness: MakeHarness,
) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    bob = await online(host, "bob", "desk")
    await command(host, alice, block("bob@localhost"))
    host.received(alice), host.received(bob)

    host.send(bob, "<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
    host.send(bob, "<message to='alice@localhost/phone' id='m2'><body>hi</body></message>")
    host.send(
        bob, "<iq to='alice@localhost/phone' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    host.send(bob, "<iq to='alice@localhost' type='get' id='i2'><vCard xmlns='vcard-temp'/></iq>")
    host.send(bob, "<iq to='alice@localhost/phone' type='result' id='i3'/>")
    host.send(bob, "<presence to='alice@localhost'/>")
    host.send(bob, "<presence to='alice@localhost' type='probe'/>")
    await host.settle()

    assert got(host, alice) == []
    answers = got(host, bob)
    assert [(s.tag, s.attrs["id"], condition(s)) for s in answers] == [
        ("message", "m1", "service-unavailable"),
        ("message", "m2", "service-unavailable"),
        ("iq", "i1", "service-unavailable"),
        ("iq", "i2", "service-unavailable"),
    ]
    assert all(s.attrs["from"].startswith("alice@localhost") for s in answers)


async def test_what_the_user_sends_to_a_blocked_jid_is_not_acceptable_blocked(
    harness: MakeHarness,
) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    bob = await online(host, "bob", "desk")
    await command(host, alice, block("bob@localhost"))
    host.received(alice), host.received(bob)

    host.send(alice, "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
    host.send(
        alice, "<iq to='bob@localhost/desk' type='get' id='i1'><ping xmlns='urn:xmpp:ping'/></iq>"
    )
    host.send(alice, "<presence to='bob@localhost/desk' id='p1'/>")
    await host.settle()

    assert got(host, bob) == []
    answers = got(host, alice)
    assert [(s.tag, s.attrs["id"], s.attrs["from"]) for s in answers] == [
        ("message", "m1", "bob@localhost"),
        ("iq", "i1", "bob@localhost/desk"),
        ("presence", "p1", "bob@localhost/desk"),
    ]
    for answer in answers:
        error = answer.find("error")
        assert error is not None and error.attrs["type"] == "modify"
        assert condition(answer) == "not-acceptable"
        assert error.find("blocked", BLOCKING_ERRORS) is not None
    assert answers[0].find("body") is not None  # the message comes back with its payload


async def test_own_resources_and_the_server_are_never_blocked(harness: MakeHarness) -> None:
    host = await network(harness)
    phone = await online(host, "alice", "phone")
    desk = await online(host, "alice", "desk")
    await command(host, phone, block("localhost", "alice@localhost"))
    host.received(phone), host.received(desk)

    host.send(phone, "<message to='alice@localhost/desk' id='m1'><body>note</body></message>")
    host.send(phone, f"<iq to='localhost' type='get' id='p1'><query xmlns='{DISCO_INFO}'/></iq>")
    await host.settle()

    assert [s.attrs["id"] for s in got(host, desk)] == ["m1"]
    assert [(s.attrs["id"], s.attrs["type"]) for s in got(host, phone)] == [("p1", "result")]


async def desk_blocked(host: Harness) -> tuple[MemoryConnection, ...]:
    """alice/phone, bob/desk and bob/laptop online, with alice blocking bob's desk only."""
    alice = await online(host, "alice", "phone")
    desk = await online(host, "bob", "desk")
    laptop = await online(host, "bob", "laptop")
    await command(host, alice, block("bob@localhost/desk"))
    for client in (alice, desk, laptop):
        host.received(client)
    return alice, desk, laptop


async def test_a_domain_blocks_every_address_on_it_and_a_full_jid_only_that_resource(
    harness: MakeHarness,
) -> None:
    host = await network(harness, messages={"from_strangers": True})
    alice, desk, laptop = await desk_blocked(host)

    host.send(desk, "<message to='alice@localhost' id='from-desk'><body>1</body></message>")
    host.send(laptop, "<message to='alice@localhost' id='from-laptop'><body>2</body></message>")
    await host.settle()

    assert [s.attrs["id"] for s in got(host, alice)] == ["from-laptop"]
    assert condition(got(host, desk)[0]) == "service-unavailable"

    await command(host, alice, block("localhost"))
    carol = await online(host, "carol", "home")
    host.received(alice)
    host.send(carol, "<message to='alice@localhost' id='from-carol'><body>3</body></message>")
    await host.settle()

    assert got(host, alice) == []
    assert condition(got(host, carol)[0]) == "service-unavailable"


async def test_presence_stops_both_ways_and_comes_back_on_unblock(harness: MakeHarness) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    bob = await online(host, "bob", "desk")
    host.received(alice)

    await command(host, alice, block("bob@localhost"))

    # §3.3: each side sees the other go away.
    assert presence_from(got(host, bob), "alice@localhost/phone") == ["unavailable"]
    alice_got = got(host, alice)
    assert presence_from(alice_got, "bob@localhost/desk") == ["unavailable"]

    host.send(bob, "<presence><show>away</show></presence>")
    host.send(alice, "<presence><show>dnd</show></presence>")
    await host.settle()
    assert presence_from(got(host, alice), "bob@localhost/desk") == []
    assert presence_from(got(host, bob), "alice@localhost/phone") == []

    laptop = await host.bind("bob", "laptop")  # initial presence: probes and broadcast
    host.send(laptop, "<presence/>")
    await host.settle()
    assert presence_from(got(host, laptop), "alice@localhost/phone") == []
    assert presence_from(got(host, alice), "bob@localhost/laptop") == []

    await command(host, alice, unblock("bob@localhost"))

    shown_to_bob = got(host, bob)
    assert presence_from(shown_to_bob, "alice@localhost/phone") == [None]
    assert b"<show>dnd</show>" in next(
        s.encoded() for s in shown_to_bob if s.attrs.get("from") == "alice@localhost/phone"
    )
    assert sorted(s.attrs["from"] for s in got(host, alice) if s.tag == "presence") == [
        "bob@localhost/desk",
        "bob@localhost/laptop",
    ]

    host.send(bob, "<presence><show>chat</show></presence>")
    await host.settle()
    assert presence_from(got(host, alice), "bob@localhost/desk") == [None]


async def test_presence_stops_when_the_contact_is_the_one_who_blocks(harness: MakeHarness) -> None:
    host = await network(harness)
    bob = await online(host, "bob", "desk")
    alice = await online(host, "alice", "phone")
    host.received(bob)

    await command(host, bob, block("alice@localhost"))
    host.received(alice), host.received(bob)
    alice.close_stream()
    again = await host.bind("alice", "tablet")
    host.send(again, "<presence/>")
    await host.settle()

    assert presence_from(got(host, again), "bob@localhost/desk") == []
    assert presence_from(got(host, bob), "alice@localhost/tablet") == []


async def test_directed_presence_is_withdrawn_from_a_blocked_stranger(
    harness: MakeHarness,
) -> None:
    host = await network(harness, messages={"from_strangers": True})
    alice = await online(host, "alice", "phone")
    carol = await online(host, "carol", "home")
    host.send(alice, "<presence to='carol@localhost/home'/>")
    await host.settle()
    assert presence_from(got(host, carol), "alice@localhost/phone") == [None]

    await command(host, alice, block("carol@localhost"))
    assert presence_from(got(host, carol), "alice@localhost/phone") == ["unavailable"]

    alice.close_stream()  # leaving says nothing more to carol
    await host.settle()
    assert got(host, carol) == []


# --- offline users ----------------------------------------------------------------------------


async def test_messages_from_a_blocked_jid_are_not_stored_offline(harness: MakeHarness) -> None:
    host = await network(harness)
    await host.services.blocking.block("alice", ["bob@localhost"])
    await host.add_contacts("alice", "carol")
    bob = await online(host, "bob", "desk")
    carol = await online(host, "carol", "home")

    host.send(bob, "<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
    host.send(carol, "<message to='alice@localhost' type='chat' id='m2'><body>hi</body></message>")
    await host.settle()

    [refused] = got(host, bob)
    assert (refused.attrs["id"], condition(refused)) == ("m1", "service-unavailable")
    assert got(host, carol) == []
    stored = await host.services.offline.fetch("alice")
    assert [parse_stanza(m.stanza).attrs["id"] for m in stored] == ["m2"]


async def test_an_iq_to_an_offline_users_bare_jid_is_screened_by_their_stored_list(
    harness: MakeHarness,
) -> None:
    host = await network(harness)
    await host.services.blocking.block("alice", ["bob@localhost"])
    bob = await online(host, "bob", "desk")

    host.send(bob, "<iq to='alice@localhost' type='get' id='v1'><vCard xmlns='vcard-temp'/></iq>")
    await host.settle()

    [answer] = got(host, bob)
    assert (answer.attrs["id"], condition(answer)) == ("v1", "service-unavailable")


async def test_stanzas_sent_before_the_list_is_read_wait_for_it(harness: MakeHarness) -> None:
    host = await network(harness)
    await host.services.blocking.block("alice", ["bob@localhost"])
    bob = await online(host, "bob", "desk")

    alice = await host.bind("alice", "phone")  # its list is being read
    host.send(alice, "<message to='bob@localhost' id='early'><body>hi</body></message>")
    host.send(bob, "<message to='alice@localhost/phone' id='also'><body>hi</body></message>")
    await host.settle()

    [refused] = got(host, bob)
    assert (refused.attrs["id"], condition(refused)) == ("also", "service-unavailable")
    [refused] = got(host, alice)
    assert (refused.attrs["id"], condition(refused)) == ("early", "not-acceptable")


# --- changes made elsewhere ---------------------------------------------------------------------


async def test_a_change_made_elsewhere_is_pushed_and_applied(harness: MakeHarness) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    bob = await online(host, "bob", "desk")
    host.received(alice)

    await host.services.blocking.block("alice", ["bob@localhost"])  # as the REST API does
    event = NetworkEvent(1, BLOCKLIST_CHANGED, "alice", None, "elsewhere")
    host.hooks.notify(f"network/{BLOCKLIST_CHANGED}", event)
    await host.settle()

    alice_got = got(host, alice)
    [push] = [s for s in alice_got if s.tag == "iq"]
    assert items(push, "block") == ["bob@localhost"]
    assert presence_from(alice_got, "bob@localhost/desk") == ["unavailable"]
    assert presence_from(got(host, bob), "alice@localhost/phone") == ["unavailable"]
    host.send(bob, "<message to='alice@localhost' id='m1'><body>hi</body></message>")
    await host.settle()
    assert condition(got(host, bob)[0]) == "service-unavailable"

    host.hooks.notify(f"network/{BLOCKLIST_CHANGED}", event)  # again: nothing new
    await host.settle()
    assert got(host, alice) == []

    await host.services.blocking.unblock("alice")
    host.hooks.notify(f"network/{BLOCKLIST_CHANGED}", event)
    await host.settle()
    [push] = [s for s in got(host, alice) if s.tag == "iq"]
    assert items(push, "unblock") == ["bob@localhost"]


# --- what it costs ------------------------------------------------------------------------------


async def test_the_screens_are_hooked_only_while_someone_online_blocks_anyone(
    harness: MakeHarness,
) -> None:
    host = await network(harness)

    def hooked() -> tuple[int, int]:
        return (
            len(host.hooks.channel("route/before").handlers),
            len(host.hooks.channel("presence/screen").handlers),
        )

    alice = await online(host, "alice", "phone")
    await online(host, "bob", "desk")
    assert hooked() == (0, 0)  # nobody blocks anyone: not a call on the message path

    await command(host, alice, block("carol@localhost"))
    assert hooked() == (1, 1)
    await command(host, alice, block("iago.lit"))
    assert hooked() == (1, 1)

    await command(host, alice, f"<unblock xmlns='{BLOCKING}'/>")
    assert hooked() == (0, 0)

    await command(host, alice, block("carol@localhost"))
    alice.close_stream()  # the only one who blocks anyone leaves
    await host.settle()
    assert hooked() == (0, 0)


# --- one resource blocked; directed presence; probes of an offline user ------------------------


async def test_what_the_user_sends_to_a_bare_jid_skips_the_resource_it_blocks(
    harness: MakeHarness,
) -> None:
    """XEP-0191 JID matching: an entry naming a full JID matches that resource only, so a
    message or presence to the bare JID reaches every other resource and not that one."""
    host = await network(harness)
    alice, desk, laptop = await desk_blocked(host)

    host.send(alice, "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
    host.send(alice, "<presence to='bob@localhost'><show>chat</show></presence>")
    await host.settle()

    assert got(host, desk) == []
    assert [(s.tag, s.attrs.get("id")) for s in got(host, laptop)] == [
        ("message", "m1"),
        ("presence", None),
    ]
    assert got(host, alice) == []  # nothing refused: bob's bare JID is not blocked


async def test_a_message_stored_for_a_blocked_resource_is_not_written_to_it(
    harness: MakeHarness,
) -> None:
    host = await network(harness)
    alice = await online(host, "alice", "phone")
    desk = await online(host, "bob", "desk")
    await command(host, alice, block("bob@localhost/desk"))
    desk.close_stream()  # now no resource but the blocked one may take it: stored
    host.send(alice, "<message to='bob@localhost' type='chat' id='m1'><body>hi</body></message>")
    await host.settle()
    assert len(await host.services.offline.fetch("bob")) == 1

    again = await host.bind("bob", "desk")
    host.send(again, "<presence/>")
    await asyncio.sleep(0.05)
    again.heard()
    await host.settle()

    assert [s.tag for s in got(host, again) if s.tag == "message"] == []
    assert await host.services.offline.fetch("bob") == []


async def test_directed_presence_comes_back_on_unblock(harness: MakeHarness) -> None:
    host = await network(harness, messages={"from_strangers": True})
    alice = await online(host, "alice", "phone")
    carol = await online(host, "carol", "home")
    host.send(alice, "<presence to='carol@localhost/home'><show>dnd</show></presence>")
    await command(host, alice, block("carol@localhost"))
    assert presence_from(got(host, carol), "alice@localhost/phone") == [None, "unavailable"]

    await command(host, alice, unblock("carol@localhost"))

    shown = got(host, carol)
    assert presence_from(shown, "alice@localhost/phone") == [None]
    # the session's broadcast presence, which is what it is now to those it reaches
    assert shown[0].attrs["to"] == "carol@localhost/home"


async def test_a_probe_of_an_offline_user_who_blocks_the_prober_gets_no_answer(
    harness: MakeHarness,
) -> None:
    host = await network(harness)
    await host.add_contacts("alice", "carol")
    await host.services.blocking.block("alice", ["bob@localhost"])
    bob = await online(host, "bob", "desk")
    carol = await online(host, "carol", "home")

    for client in (bob, carol):
        host.send(client, "<presence type='probe' to='alice@localhost'/>")
    await host.settle()

    assert got(host, bob) == []  # as when alice is online: nothing (§3.3)
    assert presence_from(got(host, carol), "alice@localhost") == ["unavailable"]
