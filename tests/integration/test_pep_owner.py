"""XEP-0060 owner requests on PEP with slixmpp's own xep_0060 plugin against a real
chinwag: purge, the node's affiliations (members read a whitelisted node and hear of
it, outcasts read nothing), one's own affiliations, the default configuration, and the
exact errors for the subscription options PEP does not serve.

alice and bob are contacts with a subscription both ways (``add_mutual``).
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from .support import TIMEOUT, NewClient, ServerHandle
from .test_pep import NS_PUBSUB_ERRORS, error_of, options, payload, pep_client

NODE = "urn:example:owned"
PUBSUB = "http://jabber.org/protocol/pubsub"


def item_ids(result: Any) -> list[str]:
    return [i.get("id") for i in result.xml.iter(f"{{{PUBSUB}}}item")]


async def test_purge_empties_the_node_and_tells_who_hears_of_it(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice", interests=(NODE,))
    phone, _ = await pep_client(new_client, server, "alice", "phone", interests=(NODE,))
    bob, _ = await pep_client(new_client, server, "bob")
    purged: asyncio.Queue[str] = asyncio.Queue()
    phone.add_event_handler("pubsub_purge", lambda msg: purged.put_nowait(str(msg["from"])))
    pubsub, me = alice.plugin["xep_0060"], server.jid("alice")
    for n in range(2):
        await pubsub.publish(
            None, NODE, id=f"i{n}", payload=payload(f"<n xmlns='{NODE}'>{n}</n>"), timeout=TIMEOUT
        )

    await pubsub.purge(me, NODE, timeout=TIMEOUT)

    assert await asyncio.wait_for(purged.get(), TIMEOUT) == me
    assert item_ids(await pubsub.get_items(me, NODE, timeout=TIMEOUT)) == []  # the node stays
    with pytest.raises(IqError) as raised:
        await pubsub.purge(me, "urn:example:missing", timeout=TIMEOUT)
    assert raised.value.condition == "item-not-found"
    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].purge(me, NODE, timeout=TIMEOUT)
    assert raised.value.condition == "forbidden"


async def test_a_node_is_created_with_its_configuration_in_one_request(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0060 §8.1.3 (create-and-configure): the configuration a client sends with
    ``<create/>`` is the node's; creating it again is a conflict."""
    alice, _ = await pep_client(new_client, server, "alice")
    pubsub, me = alice.plugin["xep_0060"], server.jid("alice")
    config = Form()
    config["type"] = "submit"
    config.add_field("pubsub#access_model", value="whitelist")
    config.add_field("pubsub#max_items", value="3")

    await pubsub.create_node(me, "urn:example:created", config=config, timeout=TIMEOUT)

    shown = await pubsub.get_node_config(me, "urn:example:created", timeout=TIMEOUT)
    values = shown["pubsub_owner"]["configure"]["form"].get_values()
    assert (values["pubsub#access_model"], values["pubsub#max_items"]) == ("whitelist", "3")
    with pytest.raises(IqError) as raised:
        await pubsub.create_node(me, "urn:example:created", timeout=TIMEOUT)
    assert raised.value.condition == "conflict"


async def test_members_read_a_whitelisted_node_and_outcasts_read_nothing(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    bob, bob_events = await pep_client(new_client, server, "bob", interests=(NODE,))
    pubsub, theirs = alice.plugin["xep_0060"], bob.plugin["xep_0060"]
    me, bob_jid = server.jid("alice"), server.jid("bob")
    await pubsub.publish(
        None,
        NODE,
        id="a",
        payload=payload(f"<n xmlns='{NODE}'>a</n>"),
        options=options(access_model="whitelist"),
        timeout=TIMEOUT,
    )
    await pubsub.publish(None, "urn:example:friends", payload=payload(f"<n xmlns='{NODE}'/>"))
    with pytest.raises(IqError) as raised:
        await theirs.get_items(me, NODE, timeout=TIMEOUT)
    assert raised.value.condition == "not-allowed"

    await pubsub.modify_affiliations(me, NODE, [(bob_jid, "member")], timeout=TIMEOUT)

    listed = await pubsub.get_node_affiliations(me, NODE, timeout=TIMEOUT)
    assert [(str(a["jid"]), a["affiliation"]) for a in listed["pubsub_owner"]["affiliations"]] == [
        (me, "owner"),
        (bob_jid, "member"),
    ]
    assert item_ids(await theirs.get_items(me, NODE, timeout=TIMEOUT)) == ["a"]
    await pubsub.publish(None, NODE, id="b", payload=payload(f"<n xmlns='{NODE}'>b</n>"))
    event = await bob_events.next(NODE, me)
    assert event.find(".//{*}item").get("id") == "b"
    own = await theirs.get_affiliations(me, timeout=TIMEOUT)
    assert [(a["node"], a["affiliation"]) for a in own["pubsub"]["affiliations"]] == [
        (NODE, "member")
    ]

    await pubsub.modify_affiliations(
        me, "urn:example:friends", [(bob_jid, "outcast")], timeout=TIMEOUT
    )
    with pytest.raises(IqError) as raised:
        await theirs.get_items(me, "urn:example:friends", timeout=TIMEOUT)
    assert raised.value.condition == "forbidden"
    await pubsub.modify_affiliations(me, NODE, [(bob_jid, "none")], timeout=TIMEOUT)
    with pytest.raises(IqError) as raised:
        await theirs.get_items(me, NODE, timeout=TIMEOUT)
    assert raised.value.condition == "not-allowed"


async def test_affiliations_pep_does_not_give_are_refused(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    pubsub, me = alice.plugin["xep_0060"], server.jid("alice")
    await pubsub.publish(None, NODE, payload=payload(f"<n xmlns='{NODE}'/>"), timeout=TIMEOUT)

    with pytest.raises(IqError) as raised:
        await pubsub.modify_affiliations(
            me, NODE, [(server.jid("bob"), "publisher")], timeout=TIMEOUT
        )
    condition, tags = error_of(raised)
    assert condition == "feature-not-implemented"
    assert f"{{{NS_PUBSUB_ERRORS}}}unsupported" in tags
    feature = raised.value.iq.xml.find(f".//{{{NS_PUBSUB_ERRORS}}}unsupported").get("feature")
    assert feature == "publisher-affiliation"
    with pytest.raises(IqError) as raised:
        await pubsub.modify_affiliations(me, NODE, [(me, "member")], timeout=TIMEOUT)
    assert raised.value.condition == "not-acceptable"


@pytest.mark.parametrize(
    ("user_jid", "feature"),
    [("bob@{domain}", "subscription-options"), (None, "retrieve-default-sub")],
)
async def test_subscription_options_name_the_feature_pep_lacks(
    server: ServerHandle, new_client: NewClient, user_jid: str | None, feature: str
) -> None:
    """A subscription has no options: asking for them, or for their defaults, is
    ``<feature-not-implemented/>`` naming the feature (XEP-0060 §6.3.2, §6.4)."""
    alice, _ = await pep_client(new_client, server, "alice")
    bob, _ = await pep_client(new_client, server, "bob")
    await alice.plugin["xep_0060"].publish(None, NODE, payload=payload(f"<n xmlns='{NODE}'/>"))
    await bob.plugin["xep_0060"].subscribe(server.jid("alice"), NODE, timeout=TIMEOUT)

    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].get_subscription_options(
            server.jid("alice"),
            NODE,
            user_jid and user_jid.format(domain=server.domain),
            timeout=TIMEOUT,
        )

    condition, _tags = error_of(raised)
    assert condition == "feature-not-implemented"
    unsupported = raised.value.iq.xml.find(f".//{{{NS_PUBSUB_ERRORS}}}unsupported")
    assert unsupported is not None and unsupported.get("feature") == feature


async def test_disco_lists_the_owner_features_that_work(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=server.jid("alice"), timeout=TIMEOUT)
    features = set(info["disco_info"]["features"])
    for name in (
        "purge-nodes",
        "modify-affiliations",
        "retrieve-affiliations",
        "subscribe",
        "retrieve-subscriptions",
        "manage-subscriptions",
        "access-roster",
    ):
        assert f"{PUBSUB}#{name}" in features
    for name in ("subscription-options", "retrieve-default-sub"):
        assert f"{PUBSUB}#{name}" not in features


async def test_names_that_storage_cannot_keep_whole_are_refused(
    server: ServerHandle, new_client: NewClient
) -> None:
    """Node names, item ids and private storage namespaces of more than 1,023
    characters get <not-acceptable/> on every engine (PostgreSQL's columns hold no more;
    SQLite's would have kept them)."""
    alice, _ = await pep_client(new_client, server, "alice")
    alice.register_plugin("xep_0049")
    pubsub, long = alice.plugin["xep_0060"], "urn:example:" + "x" * 1012

    for request in (
        pubsub.publish(None, long, payload=payload(f"<n xmlns='{NODE}'/>"), timeout=TIMEOUT),
        pubsub.publish(
            None, NODE, id="i" * 1024, payload=payload(f"<n xmlns='{NODE}'/>"), timeout=TIMEOUT
        ),
        pubsub.create_node(server.jid("alice"), long, timeout=TIMEOUT),
        alice.plugin["xep_0049"].store(payload(f"<n xmlns='{long}'/>"), timeout=TIMEOUT),
    ):
        with pytest.raises(IqError) as raised:
            await request
        assert raised.value.condition == "not-acceptable"

    fitting = long[:1023]
    await pubsub.publish(None, fitting, payload=payload(f"<n xmlns='{NODE}'/>"), timeout=TIMEOUT)
    assert fitting in [
        item["node"]
        for item in (await alice.plugin["xep_0030"].get_items(server.jid("alice")))["disco_items"]
    ]
