"""Bookmarks and private storage with slixmpp's own plugins: XEP-0049 private XML
storage (xep_0049), XEP-0048 bookmarks kept there and in PEP through XEP-0223
(xep_0048, xep_0223), and XEP-0402 bookmarks in their PEP node (xep_0402's stanzas),
whitelisted and notified to the user's own resources, and kept in step with the
XEP-0048 ones in both places (``#compat``, ``#compat-pep``)."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form
from slixmpp.plugins.xep_0048.stanza import Bookmarks
from slixmpp.plugins.xep_0402.stanza import Conference

from .im_support import login, q
from .support import TIMEOUT, NewClient, ServerHandle, StartServer
from .test_pep import pep_client

BOOKMARKS2 = "urn:xmpp:bookmarks:1"
LEGACY = "storage:bookmarks"
PUBSUB_EVENT = "http://jabber.org/protocol/pubsub#event"
PUBSUB = "http://jabber.org/protocol/pubsub"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"


def stored_bookmarks() -> Bookmarks:
    bookmarks = Bookmarks()
    bookmarks.add_conference("room@conference.example", "alice", name="Room", autojoin=True)
    return bookmarks


async def test_private_storage_round_trip_and_errors(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    bob, _ = await pep_client(new_client, server, "bob")
    for client in (alice, bob):
        client.register_plugin("xep_0048")
    await alice.plugin["xep_0049"].store(stored_bookmarks(), timeout=TIMEOUT)

    got = await alice.plugin["xep_0049"].retrieve("bookmarks", timeout=TIMEOUT)
    conference = got["private"]["bookmarks"]["conferences"][0]
    assert conference["jid"] == "room@conference.example"
    assert conference["autojoin"] is True
    theirs = await bob.plugin["xep_0049"].retrieve("bookmarks", timeout=TIMEOUT)
    assert len(theirs["private"]["bookmarks"]["conferences"]) == 0  # empty, not alice's

    for payload in (
        "<query xmlns='jabber:iq:private'/>",
        "<query xmlns='jabber:iq:private'><vCard xmlns='vcard-temp'/></query>",
        "<query xmlns='jabber:iq:private'><q xmlns='jabber:iq:roster'/></query>",
    ):
        assert await private_error(alice, payload) == "not-acceptable"
    two = "<a xmlns='urn:example:a'/><b xmlns='urn:example:b'/>"
    get = f"<query xmlns='jabber:iq:private'>{two}</query>"
    assert await private_error(alice, get, "get") == "not-acceptable"  # one namespace a get
    iq = bob.make_iq_get(ito=server.jid("alice"))
    iq.append(
        ET.fromstring(
            "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"
        )
    )
    with pytest.raises(IqError) as raised:
        await iq.send(timeout=TIMEOUT)
    assert raised.value.condition == "forbidden"


async def private_error(client: ClientXMPP, query: str, kind: str = "set") -> str:
    """The condition of the error a private storage request, written raw, gets."""
    iq = client.make_iq_set() if kind == "set" else client.make_iq_get()
    iq.append(ET.fromstring(query))
    with pytest.raises(IqError) as raised:
        await iq.send(timeout=TIMEOUT)
    return str(raised.value.condition)


async def test_private_storage_keeps_to_the_payload_bound(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(pep={"max_payload_bytes": 300})
    alice, _ = await pep_client(new_client, server, "alice")
    big = f"<big xmlns='urn:example:big'>{'x' * 400}</big>"
    query = f"<query xmlns='jabber:iq:private'>{big}</query>"
    assert await private_error(alice, query) == "not-acceptable"


async def test_xep_0048_bookmarks_in_private_storage_and_pep(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    alice.register_plugin("xep_0223")
    alice.register_plugin("xep_0048")
    bookmarks = alice.plugin["xep_0048"]
    for method in ("xep_0049", "xep_0223"):
        await bookmarks.set_bookmarks(stored_bookmarks(), method=method, timeout=TIMEOUT)
        got = await bookmarks.get_bookmarks(method=method, timeout=TIMEOUT)
        assert "room@conference.example" in str(got)


async def test_xep_0402_bookmarks_whitelisted_and_notified_to_own_resources(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice", interests=(BOOKMARKS2,))
    _phone, phone_events = await pep_client(
        new_client, server, "alice", "phone", interests=(BOOKMARKS2,)
    )
    bob, bob_events = await pep_client(new_client, server, "bob", interests=(BOOKMARKS2,))
    alice.register_plugin("xep_0402")
    conference = Conference()
    conference["name"] = "Room"
    conference["autojoin"] = True
    conference["nick"] = "alice"
    options = Form()
    options["type"] = "submit"
    options.add_field(
        "FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options"
    )
    for var, value in (
        ("persist_items", "true"),
        ("max_items", "max"),
        ("send_last_published_item", "never"),
        ("access_model", "whitelist"),
    ):
        options.add_field(f"pubsub#{var}", value=value)

    await alice.plugin["xep_0060"].publish(
        None,
        BOOKMARKS2,
        id="room@conference.example",
        payload=conference.xml,
        options=options,
        timeout=TIMEOUT,
    )

    event = await phone_events.next(BOOKMARKS2, server.jid("alice"))
    assert event.find(f".//{{{BOOKMARKS2}}}conference").get("name") == "Room"
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].get_items(server.jid("alice"), BOOKMARKS2, timeout=TIMEOUT)
    assert raised.value.condition == "not-allowed"
    assert bob_events.queue.empty()


async def test_xep_0402_compat_keeps_private_storage_bookmarks_in_step(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    alice.register_plugin("xep_0048")
    alice.register_plugin("xep_0402")
    info = await alice.plugin["xep_0030"].get_info(jid=server.jid("alice"), timeout=TIMEOUT)
    assert f"{BOOKMARKS2}#compat" in info["disco_info"]["features"]

    await alice.plugin["xep_0049"].store(stored_bookmarks(), timeout=TIMEOUT)

    me = server.jid("alice")
    items = await alice.plugin["xep_0060"].get_items(me, BOOKMARKS2, timeout=TIMEOUT)
    [item] = items.xml.iter("{http://jabber.org/protocol/pubsub}item")
    assert item.get("id") == "room@conference.example"
    conference = item.find(f"{{{BOOKMARKS2}}}conference")
    assert conference is not None and conference.get("name") == "Room"
    assert conference.get("autojoin") == "true"
    assert conference.findtext(f"{{{BOOKMARKS2}}}nick") == "alice"

    other = Conference()
    other["name"] = "Other"
    await alice.plugin["xep_0060"].publish(
        None, BOOKMARKS2, id="other@conference.example", payload=other.xml, timeout=TIMEOUT
    )
    got = await alice.plugin["xep_0049"].retrieve("bookmarks", timeout=TIMEOUT)
    rooms = {str(c["jid"]): c["name"] for c in got["private"]["bookmarks"]["conferences"]}
    assert rooms == {"room@conference.example": "Room", "other@conference.example": "Other"}


async def test_xep_0402_compat_pep_keeps_pep_bookmarks_in_step(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0402 §5.3 ``#compat-pep``: XEP-0048 bookmarks in the ``storage:bookmarks`` PEP
    node (XEP-0223) and the XEP-0402 node are one list, read and notified either way."""
    alice, _ = await pep_client(new_client, server, "alice")
    _phone, phone_events = await pep_client(
        new_client, server, "alice", "phone", interests=(LEGACY,)
    )
    bob, _ = await pep_client(new_client, server, "bob")
    for plugin in ("xep_0223", "xep_0048", "xep_0402"):
        alice.register_plugin(plugin)
    me, pubsub, bookmarks = server.jid("alice"), alice.plugin["xep_0060"], alice.plugin["xep_0048"]
    info = await alice.plugin["xep_0030"].get_info(jid=me, timeout=TIMEOUT)
    assert f"{BOOKMARKS2}#compat-pep" in info["disco_info"]["features"]

    await bookmarks.set_bookmarks(stored_bookmarks(), method="xep_0223", timeout=TIMEOUT)

    items = await pubsub.get_items(me, BOOKMARKS2, timeout=TIMEOUT)
    [item] = items.xml.iter("{http://jabber.org/protocol/pubsub}item")
    assert item.get("id") == "room@conference.example"
    assert item.find(f"{{{BOOKMARKS2}}}conference").get("name") == "Room"

    other = Conference()
    other["name"] = "Other"
    await pubsub.publish(
        None, BOOKMARKS2, id="other@conference.example", payload=other.xml, timeout=TIMEOUT
    )

    def rooms(storage: ET.Element) -> set[str]:
        return {c.get("jid") for c in storage.iter(f"{{{LEGACY}}}conference")}

    both = {"room@conference.example", "other@conference.example"}
    event = await phone_events.next(LEGACY, me)
    while rooms(event) != both:  # the notification of the XEP-0048 publish comes first
        event = await phone_events.next(LEGACY, me)
    got = await bookmarks.get_bookmarks(method="xep_0223", timeout=TIMEOUT)
    assert rooms(got.xml) == both
    await pubsub.retract(me, BOOKMARKS2, "room@conference.example", notify=True, timeout=TIMEOUT)
    got = await bookmarks.get_bookmarks(method="xep_0223", timeout=TIMEOUT)
    assert rooms(got.xml) == {"other@conference.example"}
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].get_items(me, LEGACY, timeout=TIMEOUT)
    assert raised.value.condition == "not-allowed"


def changes(event: ET.Element) -> list[tuple[str, str, str | None]]:
    """What an XEP-0402 notification says: (``item`` or ``retract``, room, name)."""
    said = []
    for element in event.iter():
        if element.tag == f"{{{PUBSUB_EVENT}}}item":
            conference = Conference(xml=element.find(f"{{{BOOKMARKS2}}}conference"))
            said.append(("item", element.get("id", ""), conference["name"]))
        elif element.tag == f"{{{PUBSUB_EVENT}}}retract":
            said.append(("retract", element.get("id", ""), None))
    return said


async def test_xep_0048_changes_are_heard_by_xep_0402_resources_and_the_other_way(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0402 §5.3: a resource that asks for ``urn:xmpp:bookmarks:1+notify`` hears of
    XEP-0048 bookmarks published to ``storage:bookmarks`` (``#compat-pep``) or stored in
    private storage (``#compat``) as publications and retractions on the XEP-0402
    node, and one that asks for ``storage:bookmarks+notify`` hears of XEP-0402
    publications as XEP-0048 storage."""
    me = server.jid("alice")
    legacy, legacy_events = await pep_client(new_client, server, "alice", interests=(LEGACY,))
    modern, modern_events = await pep_client(
        new_client, server, "alice", "phone", interests=(BOOKMARKS2,)
    )
    for plugin in ("xep_0223", "xep_0048"):
        legacy.register_plugin(plugin)
    modern.register_plugin("xep_0402")
    bookmarks = legacy.plugin["xep_0048"]

    async def heard(count: int) -> set[tuple[str, str, str | None]]:
        return {
            change
            for _ in range(count)
            for change in changes(await modern_events.next(BOOKMARKS2, me))
        }

    storage = stored_bookmarks()
    storage.add_conference("old@conference.example", "alice", name="Old")
    await bookmarks.set_bookmarks(storage, method="xep_0223", timeout=TIMEOUT)
    assert await heard(2) == {
        ("item", "room@conference.example", "Room"),
        ("item", "old@conference.example", "Old"),
    }

    storage = Bookmarks()
    storage.add_conference("room@conference.example", "alice", name="Renamed")
    await bookmarks.set_bookmarks(storage, method="xep_0223", timeout=TIMEOUT)
    assert await heard(2) == {
        ("item", "room@conference.example", "Renamed"),
        ("retract", "old@conference.example", None),
    }

    conference = Conference()
    conference["name"] = "New"
    await modern.plugin["xep_0060"].publish(
        None, BOOKMARKS2, id="new@conference.example", payload=conference.xml, timeout=TIMEOUT
    )
    assert await heard(1) == {("item", "new@conference.example", "New")}
    both = {"room@conference.example", "new@conference.example"}
    event = await legacy_events.next(LEGACY, me)
    while {c.get("jid") for c in event.iter(f"{{{LEGACY}}}conference")} != both:
        event = await legacy_events.next(LEGACY, me)  # its own XEP-0048 publishes first

    storage = Bookmarks()
    storage.add_conference("private@conference.example", "alice", name="Private")
    await legacy.plugin["xep_0049"].store(storage, timeout=TIMEOUT)
    assert await heard(3) == {
        ("item", "private@conference.example", "Private"),
        ("retract", "room@conference.example", None),
        ("retract", "new@conference.example", None),
    }
    event = await legacy_events.next(LEGACY, me)
    while {c.get("jid") for c in event.iter(f"{{{LEGACY}}}conference")} != {
        "private@conference.example"
    }:
        event = await legacy_events.next(LEGACY, me)


async def test_an_account_keeps_a_bounded_amount_of_pep_and_private_data(
    start_server: StartServer, new_client: NewClient
) -> None:
    """``[pep] max_nodes`` and ``max_account_bytes``: a client that fills its storage
    gets ``<policy-violation/>`` and keeps what it had. Raw IQs: slixmpp's error stanza
    does not know RFC 6120's ``policy-violation`` and fails to parse it."""
    server = await start_server(pep={"max_nodes": 2, "max_account_bytes": 262_144})
    alice = await login(new_client, server, "alice", "desk")

    def publish(node: str, size: int) -> str:
        return (
            f"<iq type='set'><pubsub xmlns='{PUBSUB}'><publish node='{node}'><item id='i'>"
            f"<blob xmlns='{node}'>{'x' * size}</blob></item></publish></pubsub></iq>"
        )

    def store(namespace: str, size: int) -> str:
        return (
            f"<iq type='set'><query xmlns='jabber:iq:private'><blob xmlns='{namespace}'>"
            f"{'x' * size}</blob></query></iq>"
        )

    for request in (publish("urn:a", 10), publish("urn:b", 10), store("urn:p", 200_000)):
        assert (await alice.iq(request)).get("type") == "result"
    for request in (publish("urn:c", 10), publish("urn:a", 100_000), store("urn:q", 100_000)):
        error = (await alice.iq(request)).find(q("error"))
        assert error is not None and error.find(q("policy-violation", NS_STANZAS)) is not None

    items = await alice.iq(
        f"<iq type='get' to='alice@localhost'><pubsub xmlns='{PUBSUB}'>"
        "<items node='urn:a'/></pubsub></iq>"
    )
    assert [len(b.text or "") for b in items.iter("{urn:a}blob")] == [10]
    kept = await alice.iq(
        "<iq type='get'><query xmlns='jabber:iq:private'><blob xmlns='urn:q'/></query></iq>"
    )
    assert [len(b.text or "") for b in kept.iter("{urn:q}blob")] == [0]
