"""XEP-0313 message archive, XEP-0359 stanza ids and XEP-0059 paging, with slixmpp's own
``xep_0313``, ``xep_0059`` and ``xep_0030`` plugins, and raw stanzas where a test must
see exactly what the server wrote (``<fin/>``, errors, preferences).

alice and bob are contacts; carol, added where needed, is a stranger to both.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from slixmpp import JID

from chinwag.modules import mam
from chinwag.server.xmpp_server import BACKGROUND_WORK_GRACE_SECONDS
from chinwag.store.archive import ArchiveQuery

from .im_support import Peer, add_user, error_condition, login, message, q, settle
from .support import TIMEOUT, NewClient, ServerHandle, StartServer

NS_MAM = "urn:xmpp:mam:2"
NS_SID = "urn:xmpp:sid:0"
NS_RSM = "http://jabber.org/protocol/rsm"
NS_FORWARD = "urn:xmpp:forward:0"
NS_DELAY = "urn:xmpp:delay"


def chat(to: str, text: str, extra: str = "", kind: str = "chat") -> str:
    return f"<message to='{to}' type='{kind}' id='{text}'><body>{text}</body>{extra}</message>"


async def with_mam(peer: Peer) -> Peer:
    peer.client.register_plugin("xep_0313")
    return peer


async def archived(peer: Peer, **rsm: Any) -> list[Any]:
    """The messages of one query through slixmpp's plugin, each forwarded stanza."""
    kwargs: dict[str, Any] = {"rsm": {"max": 50, **rsm}}
    result = await asyncio.wait_for(peer.client.plugin["xep_0313"].retrieve(**kwargs), TIMEOUT)
    return [found["mam_result"]["forwarded"]["stanza"] for found in result["mam"]["results"]]


async def raw_query(
    peer: Peer, form: str = "", rsm: str = "", extra: str = ""
) -> tuple[ET.Element, list[ET.Element]]:
    """A query written raw: the IQ's answer and the result messages that came before it;
    ``extra`` goes into the query after the form and the RSM set."""
    fields = "".join(
        f"<field var='{var}'><value>{value}</value></field>" for var, value in _fields(form)
    )
    x = (
        "<x xmlns='jabber:x:data' type='submit'><field var='FORM_TYPE' type='hidden'>"
        f"<value>{NS_MAM}</value></field>{fields}</x>"
        if fields
        else ""
    )
    page = f"<set xmlns='{NS_RSM}'>{rsm}</set>" if rsm else ""
    query_id = f"q{next(_query_ids)}"
    reply = await peer.iq(
        f"<iq type='set'><query xmlns='{NS_MAM}' queryid='{query_id}'>{x}{page}{extra}</query></iq>"
    )
    results = peer.take_all(
        lambda e: e.find(f"{{{NS_MAM}}}result[@queryid='{query_id}']") is not None
    )
    return reply, results


_query_ids = itertools.count(1)


def _fields(form: str) -> list[tuple[str, str]]:
    return [tuple(pair.split("=", 1)) for pair in form.split("&") if pair]  # type: ignore[misc]


def body_of(result: Any) -> str:
    return str(result["mam_result"]["forwarded"]["stanza"]["body"])


def bodies(results: list[ET.Element]) -> list[str]:
    return [
        r.findtext(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{q('message')}/{q('body')}") or ""
        for r in results
    ]


def result_ids(results: list[ET.Element]) -> list[str]:
    """The archive ids of result messages, in the order they came."""
    return [r.find(f"{{{NS_MAM}}}result").get("id", "") for r in results]  # type: ignore[union-attr]


def rsm_of(reply: ET.Element) -> dict[str, str | None]:
    fin = reply.find(f"{{{NS_MAM}}}fin")
    assert fin is not None, ET.tostring(reply)
    found = fin.find(f"{{{NS_RSM}}}set")
    assert found is not None
    return {
        "complete": fin.get("complete"),
        **{tag: found.findtext(f"{{{NS_RSM}}}{tag}") for tag in ("first", "last", "count")},
    }


def body_of_stanza(stanza: str) -> str:
    return ET.fromstring(stanza).findtext(q("body")) or ""


def stanza_id(element: ET.Element) -> ET.Element | None:
    return element.find(f"{{{NS_SID}}}stanza-id")


async def alice_with_history(new_client: NewClient, server: ServerHandle, count: int) -> Peer:
    """alice on her laptop, once bob on his desk has sent her messages m1 to m``count``."""
    alice = await login(new_client, server, "alice", "laptop")
    bob = await login(new_client, server, "bob", "desk")
    await exchange(bob, alice, count)
    return alice


async def exchange(bob: Peer, alice: Peer, count: int, prefix: str = "m") -> None:
    for n in range(1, count + 1):
        bob.send(chat("alice@localhost", f"{prefix}{n}"))
    await alice.next(message(id=f"{prefix}{count}"))


async def test_disco_on_the_bare_jid_lists_the_archive(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", "laptop")
    bob = await login(new_client, server, "bob", "desk")
    await add_user(server, "carol")
    carol = await login(new_client, server, "carol", "pc")
    disco = alice.client.plugin["xep_0030"]

    own = await asyncio.wait_for(disco.get_info(jid="alice@localhost"), TIMEOUT)
    contacts = await asyncio.wait_for(
        bob.client.plugin["xep_0030"].get_info(jid="alice@localhost"), TIMEOUT
    )

    for info in (own, contacts):
        features = set(info["disco_info"]["features"])
        assert {NS_MAM, NS_SID, f"{NS_MAM}#extended"} <= features
        assert ("account", "registered", None, None) in info["disco_info"]["identities"]
    strangers = await carol.iq(
        "<iq type='get' to='alice@localhost'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    assert error_condition(strangers) == "service-unavailable"
    missing = await alice.iq(
        "<iq type='get' to='nobody@localhost'>"
        "<query xmlns='http://jabber.org/protocol/disco#info'/></iq>"
    )
    assert error_condition(missing) == "service-unavailable"


async def test_a_chat_is_stamped_and_archived_for_both(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await with_mam(await login(new_client, server, "bob", "desk"))
    forged = f"<stanza-id xmlns='{NS_SID}' by='alice@localhost' id='forged'/>"
    foreign = f"<stanza-id xmlns='{NS_SID}' by='elsewhere.example' id='kept'/>"

    bob.send(chat("alice@localhost", "hello", forged + foreign))

    got = await alice.next(message(id="hello"))
    stamps = got.findall(f"{{{NS_SID}}}stanza-id")
    assert [(s.get("by"), s.get("id") == "forged") for s in stamps] == [
        ("elsewhere.example", False),
        ("alice@localhost", False),
    ]
    archive_id = stamps[1].get("id")
    result = await asyncio.wait_for(alice.client.plugin["xep_0313"].retrieve(), TIMEOUT)
    (found,) = result["mam"]["results"]
    assert found["mam_result"]["id"] == archive_id
    forwarded = found["mam_result"]["forwarded"]
    assert forwarded["stanza"]["body"] == "hello"
    assert str(forwarded["stanza"]["from"]) == "bob@localhost/desk"
    assert abs(forwarded["delay"]["stamp"] - datetime.now(UTC)) < timedelta(minutes=1)
    assert [m["body"] for m in await archived(bob)] == ["hello"]  # bob's own archive


async def test_both_archives_know_a_message_by_the_recipients_stanza_id(
    server: ServerHandle, new_client: NewClient
) -> None:
    """The sender can name a message it sent by the id its recipient was given: one id
    for both parties' copies."""
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await with_mam(await login(new_client, server, "bob", "desk"))
    for text in ("one", "two"):
        bob.send(chat("alice@localhost", text))
    got = [await alice.next(message(id=text)) for text in ("one", "two")]
    given = [stanza_id(each) for each in got]
    ids = [element.get("id") for element in given if element is not None]

    reply, results = await raw_query(bob, form=f"ids={ids[1]}")

    assert len(ids) == 2
    assert rsm_of(reply)["complete"] == "true"
    assert bodies(results) == ["two"]


async def test_only_messages_with_a_body_of_chat_or_normal_are_archived(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await login(new_client, server, "bob", "desk")
    state = "<active xmlns='http://jabber.org/protocol/chatstates'/>"

    bob.send(chat("alice@localhost", "normal", kind="normal"))
    bob.send(chat("alice@localhost", "headline", kind="headline"))
    bob.send("<message to='alice@localhost' type='chat' id='state'>" + state + "</message>")
    bob.send(chat("alice@localhost", "hinted", "<no-store xmlns='urn:xmpp:hints'/>"))
    bob.send(chat("alice@localhost", "last"))
    await alice.next(message(id="last"))

    assert [m["body"] for m in await archived(alice)] == ["normal", "last"]
    unstamped = await alice.next(message(id="hinted"))
    assert stanza_id(unstamped) is None


async def test_a_message_to_an_offline_user_is_archived_and_stamped(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob = await login(new_client, server, "bob", "desk")
    bob.send(chat("alice@localhost", "while-away"))
    await settle(bob)

    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    stored = await alice.next(message(id="while-away"))

    sid = stanza_id(stored)
    assert sid is not None and sid.get("by") == "alice@localhost"
    (found,) = (await asyncio.wait_for(alice.client.plugin["xep_0313"].retrieve(), TIMEOUT))["mam"][
        "results"
    ]
    assert found["mam_result"]["id"] == sid.get("id")


async def test_paged_backwards_from_the_end_with_slixmpp(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await login(new_client, server, "bob", "desk")
    await exchange(bob, alice, 7)

    plugin = alice.client.plugin["xep_0313"]
    newest_first = [body_of(m) async for m in plugin.iterate(reverse=True, rsm={"max": 3})]
    oldest_first = [body_of(m) async for m in plugin.iterate(rsm={"max": 3})]

    assert newest_first == [f"m{n}" for n in range(7, 0, -1)]
    assert oldest_first == [f"m{n}" for n in range(1, 8)]


async def test_fin_first_last_count_and_complete(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await alice_with_history(new_client, server, 5)

    last_reply, last = await raw_query(alice, rsm="<max>2</max><before/>")
    last_page = rsm_of(last_reply)
    assert bodies(last) == ["m4", "m5"]
    assert last_page["complete"] is None and last_page["count"] == "5"
    ids = result_ids(last)
    assert (last_page["first"], last_page["last"]) == (ids[0], ids[1])

    earlier_reply, earlier = await raw_query(alice, rsm=f"<max>2</max><before>{ids[0]}</before>")
    first_reply, first = await raw_query(
        alice, rsm=f"<max>2</max><before>{rsm_of(earlier_reply)['first']}</before>"
    )
    assert (bodies(earlier), rsm_of(earlier_reply)["complete"]) == (["m2", "m3"], None)
    assert (bodies(first), rsm_of(first_reply)["complete"]) == (["m1"], "true")
    after_reply, after = await raw_query(alice, rsm=f"<max>5</max><after>{ids[0]}</after>")
    assert (bodies(after), rsm_of(after_reply)["complete"]) == (["m5"], "true")
    exact_reply, exact = await raw_query(alice, rsm="<max>5</max>")
    assert (len(exact), rsm_of(exact_reply)["complete"]) == (5, "true")
    empty_reply, empty = await raw_query(alice, form="with=nobody@localhost")
    assert (empty, rsm_of(empty_reply)) == (
        [],
        {"complete": "true", "first": None, "last": None, "count": "0"},
    )


async def test_filters_with_start_end_and_ids(server: ServerHandle, new_client: NewClient) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await login(new_client, server, "bob", "desk")
    phone = await login(new_client, server, "bob", "phone")
    bob.send(chat("alice@localhost", "desk1"))
    phone.send(chat("alice@localhost", "phone1"))
    await alice.next(message(id="phone1"))
    alice.send(chat("bob@localhost", "reply1"))
    await bob.next(message(id="reply1"))
    _reply, everything = await raw_query(alice)
    ids = result_ids(everything)

    plugin = alice.client.plugin["xep_0313"]
    by_full = await asyncio.wait_for(plugin.retrieve(with_jid=JID("bob@localhost/phone")), TIMEOUT)
    by_bare = await asyncio.wait_for(plugin.retrieve(with_jid=JID("bob@localhost")), TIMEOUT)
    future = datetime.now(UTC) + timedelta(hours=1)
    later = await asyncio.wait_for(plugin.retrieve(start=future), TIMEOUT)
    earlier = await asyncio.wait_for(plugin.retrieve(end=future), TIMEOUT)

    assert [m["mam_result"]["forwarded"]["stanza"]["body"] for m in by_full["mam"]["results"]] == [
        "phone1"
    ]
    assert len(by_bare["mam"]["results"]) == 3
    assert later["mam"]["results"] == [] and len(earlier["mam"]["results"]) == 3
    _r, between = await raw_query(alice, form=f"after-id={ids[0]}&before-id={ids[2]}")
    assert bodies(between) == ["phone1"]
    _r, chosen = await raw_query(alice, form=f"ids={ids[2]}")
    assert bodies(chosen) == ["reply1"]


@pytest.mark.parametrize(
    ("form", "rsm", "condition"),
    [
        ("after-id=unknown", "", "item-not-found"),
        ("", "<after>unknown</after>", "item-not-found"),
        ("", "<before>unknown</before>", "item-not-found"),
        ("start=yesterday", "", "bad-request"),
        ("start=2026-12-01T10:00:00", "", "bad-request"),  # no time zone
        ("colour=blue", "", "bad-request"),
        ("with=@bad", "", "bad-request"),
        ("", "<max>-1</max>", "bad-request"),
        ("", "<max>many</max>", "bad-request"),
        ("", "<index>2</index>", "feature-not-implemented"),
        ("ids=0000000000000001", "", "item-not-found"),
        ("ids=nope", "", "item-not-found"),
        ("ids=", "", "bad-request"),
    ],
)
async def test_bad_queries_get_the_error_named(
    server: ServerHandle, new_client: NewClient, form: str, rsm: str, condition: str
) -> None:
    alice = await login(new_client, server, "alice", "laptop")

    reply, results = await raw_query(alice, form=form, rsm=rsm)

    assert (error_condition(reply), results) == (condition, [])


async def test_a_page_is_capped_at_max_page(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(archive={"max_page": 3})
    alice = await alice_with_history(new_client, server, 4)

    reply, results = await raw_query(alice, rsm="<max>1000000</max>")

    assert bodies(results) == ["m1", "m2", "m3"]
    assert rsm_of(reply)["complete"] is None and rsm_of(reply)["count"] == "4"


async def test_only_the_account_reads_its_archive(
    server: ServerHandle, new_client: NewClient
) -> None:
    await login(new_client, server, "alice", "laptop")
    bob = await login(new_client, server, "bob", "desk")

    reply = await bob.iq(f"<iq type='set' to='alice@localhost'><query xmlns='{NS_MAM}'/></iq>")
    prefs = await bob.iq(f"<iq type='get' to='alice@localhost'><prefs xmlns='{NS_MAM}'/></iq>")

    assert error_condition(reply) == "forbidden" and error_condition(prefs) == "forbidden"


async def test_query_fields_are_offered(server: ServerHandle, new_client: NewClient) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))

    form = await asyncio.wait_for(alice.client.plugin["xep_0313"].get_fields(), TIMEOUT)

    assert {"FORM_TYPE", "with", "start", "end", "before-id", "after-id", "ids"} <= set(
        form.get_fields()
    )
    ids = form.get_fields()["ids"]
    assert ids["type"] == "list-multi" and ids["options"] == []  # any ids (§4.1.5)
    validate = ids.xml.find("{http://jabber.org/protocol/xdata-validate}validate")
    assert (
        validate is not None
        and validate.find("{http://jabber.org/protocol/xdata-validate}open") is not None
    )


async def test_a_flipped_page_is_the_same_page_newest_first(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await alice_with_history(new_client, server, 5)

    plain_reply, plain = await raw_query(alice, rsm="<max>3</max><before/>")
    flipped_reply, flipped = await raw_query(
        alice, rsm="<max>3</max><before/>", extra="<flip-page/>"
    )
    forward_reply, forward = await raw_query(alice, rsm="<max>2</max>", extra="<flip-page/>")

    assert bodies(plain) == ["m3", "m4", "m5"]
    assert bodies(flipped) == ["m5", "m4", "m3"]
    assert rsm_of(flipped_reply) == rsm_of(plain_reply)  # first is still the oldest
    assert bodies(forward) == ["m2", "m1"]
    assert rsm_of(forward_reply)["complete"] is None


async def test_the_archive_metadata_names_its_first_and_last_messages_with_slixmpp(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await login(new_client, server, "bob", "desk")
    plugin = alice.client.plugin["xep_0313"]

    empty = await asyncio.wait_for(plugin.get_archive_metadata(), TIMEOUT)
    await exchange(bob, alice, 3)
    full = await asyncio.wait_for(plugin.get_archive_metadata(), TIMEOUT)
    _reply, everything = await raw_query(alice)

    assert list(empty.xml.find(f"{{{NS_MAM}}}metadata")) == []  # an empty archive
    ids = result_ids(everything)
    stamps = [
        r.find(f"{{{NS_MAM}}}result/{{{NS_FORWARD}}}forwarded/{{{NS_DELAY}}}delay").get("stamp")  # type: ignore[union-attr]
        for r in everything
    ]
    start, end = full["mam_metadata"]["start"], full["mam_metadata"]["end"]
    assert (start["id"], end["id"]) == (ids[0], ids[-1])
    assert start["timestamp"] == datetime.fromisoformat(stamps[0])
    assert end["timestamp"] == datetime.fromisoformat(stamps[-1])


async def test_ids_name_at_most_a_page_of_messages(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(archive={"max_page": 2})
    alice = await alice_with_history(new_client, server, 3)
    _reply, everything = await raw_query(alice, rsm="<max>2</max>")
    ids = result_ids(everything)

    def named(*chosen: str) -> str:
        values = "".join(f"<value>{archive_id}</value>" for archive_id in chosen)
        return (
            f"<iq type='set'><query xmlns='{NS_MAM}'><x xmlns='jabber:x:data' type='submit'>"
            f"<field var='FORM_TYPE' type='hidden'><value>{NS_MAM}</value></field>"
            f"<field var='ids'>{values}</field></x></query></iq>"
        )

    two = await alice.iq(named(*ids))
    three = await alice.iq(named(*ids, ids[0]))

    assert two.get("type") == "result" and rsm_of(two)["count"] == "2"
    assert error_condition(three) == "bad-request"


def prefs_xml(default: str, always: tuple[str, ...] = (), never: tuple[str, ...] = ()) -> str:
    def listed(name: str, jids: tuple[str, ...]) -> str:
        return f"<{name}>" + "".join(f"<jid>{j}</jid>" for j in jids) + f"</{name}>"

    return (
        f"<iq type='set'><prefs xmlns='{NS_MAM}' default='{default}'>"
        f"{listed('always', always)}{listed('never', never)}</prefs></iq>"
    )


async def test_preferences_are_stored_and_honoured(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    bob = await login(new_client, server, "bob", "desk")
    await add_user(server, "carol")
    await server.app.services.contacts.add_mutual("alice", "carol")
    carol = await login(new_client, server, "carol", "pc")
    default = await alice.iq(f"<iq type='get'><prefs xmlns='{NS_MAM}'/></iq>")
    assert default.find(f"{{{NS_MAM}}}prefs").get("default") == "always"  # type: ignore[union-attr]

    stored = await alice.iq(prefs_xml("never", always=("Carol@localhost/pc",)))
    assert stored.get("type") == "result"
    assert stored.findtext(f"{{{NS_MAM}}}prefs/{{{NS_MAM}}}always/{{{NS_MAM}}}jid") == (
        "carol@localhost"
    )
    bob.send(chat("alice@localhost", "from-bob"))
    carol.send(chat("alice@localhost", "from-carol"))
    await alice.next(message(id="from-bob"))
    await alice.next(message(id="from-carol"))
    assert [m["body"] for m in await archived(alice)] == ["from-carol"]

    await alice.iq(prefs_xml("always", never=("bob@localhost",)))
    again = await alice.iq(f"<iq type='get'><prefs xmlns='{NS_MAM}'/></iq>")
    assert again.findtext(f"{{{NS_MAM}}}prefs/{{{NS_MAM}}}never/{{{NS_MAM}}}jid") == "bob@localhost"
    bad = await alice.iq(prefs_xml("sometimes"))
    assert error_condition(bad) == "bad-request"


async def test_preferences_apply_while_the_user_is_offline(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await with_mam(await login(new_client, server, "alice", "laptop"))
    await alice.iq(prefs_xml("never"))
    alice.client.disconnect()
    await asyncio.wait_for(alice.client.disconnected, TIMEOUT)
    bob = await login(new_client, server, "bob", "desk")

    bob.send(chat("alice@localhost", "unkept"))
    await settle(bob)

    again = await with_mam(await login(new_client, server, "alice", "phone"))
    await again.next(message(id="unkept"))
    assert await archived(again) == []
    assert [m["body"] for m in await archived(await with_mam(bob))] == ["unkept"]


async def test_an_archive_can_be_turned_off(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(archive={"enabled": False})
    alice = await login(new_client, server, "alice", "laptop")
    bob = await login(new_client, server, "bob", "desk")

    bob.send(chat("alice@localhost", "plain"))
    got = await alice.next(message(id="plain"))
    reply = await alice.iq(f"<iq type='set'><query xmlns='{NS_MAM}'/></iq>")

    assert stanza_id(got) is None
    assert error_condition(reply) == "service-unavailable"


async def storing_with(
    store: Any, start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> tuple[ServerHandle, Peer, Peer]:
    """A server whose archive stores its batches through ``store``, with alice and bob
    signed in."""
    monkeypatch.setattr(mam.Archive, "store", store)
    server = await start_server()
    alice = await login(new_client, server, "alice", "laptop")
    bob = await login(new_client, server, "bob", "desk")
    return server, alice, bob


async def test_a_clean_stop_stores_every_queued_message(
    start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The writer is slower than the stop's grace for background work (a database under
    load): the stop waits for what it queued all the same, before the database closes."""
    store = mam.Archive.store

    async def slow_store(self: mam.Archive, batch: Any) -> None:
        await asyncio.sleep(BACKGROUND_WORK_GRACE_SECONDS + 1)
        await store(self, batch)

    server, alice, bob = await storing_with(slow_store, start_server, new_client, monkeypatch)
    assert server.app is not None
    await exchange(bob, alice, 3)

    await server.app.xmpp.stop()

    archive = server.app.services.archive
    for owner in ("alice", "bob"):
        page = await archive.query(owner, ArchiveQuery())
        assert [body_of_stanza(item.stanza) for item in page.items] == ["m1", "m2", "m3"]


async def test_past_the_queue_bound_senders_wait_and_nothing_is_dropped(
    start_server: StartServer,
    new_client: NewClient,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    """With a bound of one queued message, every message after the first holds its
    sender's stream until the queue is stored: each is still delivered and archived,
    and the wait is logged."""
    monkeypatch.setattr(mam, "MAX_QUEUED", 1)
    server = await start_server()
    assert server.app is not None
    alice = await login(new_client, server, "alice", "laptop")
    bob = await login(new_client, server, "bob", "desk")

    with caplog.at_level(logging.WARNING, logger=mam.__name__):
        await exchange(bob, alice, 6)
        expected = [f"m{n}" for n in range(1, 7)]
        for _ in range(100):  # the last message may still be in the batch being gathered
            page = await server.app.services.archive.query("alice", ArchiveQuery())
            if len(page.items) >= len(expected):
                break
            await asyncio.sleep(0.05)

    assert [body_of_stanza(item.stanza) for item in page.items] == expected
    assert any("senders' streams waited" in record.getMessage() for record in caplog.records)


async def test_a_held_sender_waits_for_the_batch_under_way_not_for_the_next(
    start_server: StartServer, new_client: NewClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Past the bound, a sender waits until the batch being stored is stored; the queue
    is then stored as the next batch while the sender goes on, so that the event loop
    and the database work side by side instead of in turns. Each message here queues
    two rows (one an archive) against a bound of three."""
    monkeypatch.setattr(mam, "MAX_QUEUED", 3)
    store = mam.Archive.store
    gates: list[asyncio.Event] = []
    opened = False

    async def gated_store(self: mam.Archive, batch: Any) -> None:
        gate = asyncio.Event()
        gates.append(gate)
        if not opened:
            await gate.wait()
        await store(self, batch)

    server, alice, bob = await storing_with(gated_store, start_server, new_client, monkeypatch)
    assert server.app is not None
    try:
        bob.send(chat("alice@localhost", "m1"))
        await alice.next(message(id="m1"))
        for _ in range(100):  # the first batch leaves its window and waits at its gate
            if gates:
                break
            await asyncio.sleep(0.05)
        assert len(gates) == 1
        await exchange(bob, alice, 2, prefix="n")  # n2 goes past the bound: bob waits
        bob.send(chat("alice@localhost", "last"))
        await asyncio.sleep(0.3)
        assert not alice.take_all(message(id="last"))  # not read while batch one is stored

        gates[0].set()
        await alice.next(message(id="last"))  # read while batch two is being stored
        assert len(gates) == 2 and not gates[1].is_set()
    finally:
        opened = True
        for gate in gates:
            gate.set()
    await server.app.xmpp.stop()
    page = await server.app.services.archive.query("alice", ArchiveQuery())
    expected = ["m1", "n1", "n2", "last"]
    assert [body_of_stanza(item.stanza) for item in page.items] == expected
