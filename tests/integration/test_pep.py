"""XEP-0163 PEP with slixmpp's own plugins (xep_0060, xep_0163, xep_0084, xep_0115)
against a real chinwag: avatars and OMEMO keys between two clients, interest from
entity capabilities, the last item at available presence, publish-options as
preconditions, access models, retraction, configuration and deletion.

alice and bob are contacts with a subscription both ways (``add_mutual``).
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import xml.etree.ElementTree as ET
from typing import Any

import pytest
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError
from slixmpp.plugins.xep_0004 import Form

from .im_support import q
from .support import TIMEOUT, NewClient, ServerHandle, sign_in

NS_PUBSUB_ERRORS = "http://jabber.org/protocol/pubsub#errors"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
AXOLOTL_DEVICES = "eu.siacs.conversations.axolotl.devicelist"
AXOLOTL_BUNDLES = "eu.siacs.conversations.axolotl.bundles"
OMEMO2_DEVICES = "urn:xmpp:omemo:2:devices"
OMEMO2_BUNDLES = "urn:xmpp:omemo:2:bundles"
PNG = b"\x89PNG\r\n\x1a\n" + bytes(range(64))


class Events:
    """Every PEP notification a client gets, as (from, node, element)."""

    def __init__(self, client: ClientXMPP) -> None:
        self.queue: asyncio.Queue[tuple[str, str, ET.Element]] = asyncio.Queue()
        client.add_event_handler("pubsub_publish", self._item)
        client.add_event_handler("pubsub_retract", self._item)

    def _item(self, msg: Any) -> None:
        items = msg["pubsub_event"]["items"]
        self.queue.put_nowait((str(msg["from"]), items["node"], msg.xml))

    async def next(self, node: str, sender: str) -> ET.Element:
        while True:
            got_from, got_node, element = await asyncio.wait_for(self.queue.get(), TIMEOUT)
            if got_node == node and got_from == sender:
                return element


async def pep_client(
    new_client: NewClient,
    server: ServerHandle,
    user: str,
    resource: str = "desk",
    interests: tuple[str, ...] = (),
    password: str | None = None,
) -> tuple[ClientXMPP, Events]:
    """A signed-in client with the PEP plugins, available with caps naming ``interests``
    (and the avatar metadata, which xep_0084 asks for)."""
    client = new_client(server, user, resource, password=password)
    for plugin in ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163", "xep_0084"):
        client.register_plugin(plugin)
    events = Events(client)
    asked = asked_for_caps(client)
    await sign_in(client, server.host, server.port)
    await become_available(client, asked, f"{user}:{resource}", interests, server.domain)
    return client, events


async def become_available(
    client: ClientXMPP,
    asked: asyncio.Future[None],
    tag: str,
    interests: tuple[str, ...],
    domain: str,
) -> None:
    """Send available presence with caps naming ``interests``, and return once the
    server has learnt them: the caps are new (a feature of this client alone, named by
    ``tag``), so the server asks what they stand for."""
    client.plugin["xep_0030"].add_feature(f"urn:example:client:{tag}")
    for interest in interests:
        client.plugin["xep_0030"].add_feature(f"{interest}+notify")
    await client.plugin["xep_0115"].update_caps(broadcast=False)
    client.send_presence()
    await asyncio.wait_for(asked, TIMEOUT)
    await asyncio.wait_for(client.plugin["xep_0030"].get_info(jid=domain), TIMEOUT)


def asked_for_caps(client: ClientXMPP) -> asyncio.Future[None]:
    """Done when the server asks the client what its caps ``ver`` stands for."""
    asked: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def look(received: Any) -> Any:
        query = received.xml.find("{http://jabber.org/protocol/disco#info}query")
        caps_query = query is not None and "#" in query.get("node", "")
        if received.xml.get("type") == "get" and caps_query and not asked.done():
            asked.set_result(None)
        return received

    client.add_filter("in", look)
    return asked


def open_access() -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(
        "FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options"
    )
    form.add_field("pubsub#access_model", value="open")
    return form


def options(**fields: str) -> Form:
    form = Form()
    form["type"] = "submit"
    form.add_field(
        "FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#publish-options"
    )
    for name, value in fields.items():
        form.add_field(f"pubsub#{name}", value=value)
    return form


def payload(xml: str) -> ET.Element:
    return ET.fromstring(xml)


async def publish_device_list(client: ClientXMPP, device_id: str) -> None:
    devices = f"<devices xmlns='urn:xmpp:omemo:2'><device id='{device_id}'/></devices>"
    await client.plugin["xep_0060"].publish(
        None, OMEMO2_DEVICES, id="current", payload=payload(devices), timeout=TIMEOUT
    )


def error_of(raised: pytest.ExceptionInfo[IqError]) -> tuple[str, list[str]]:
    error = raised.value.iq.xml.find(q("error"))
    assert error is not None
    tags = [child.tag for child in error]
    return raised.value.condition, tags


async def test_disco_on_bare_jid_lists_pep(server: ServerHandle, new_client: NewClient) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    info = await alice.plugin["xep_0030"].get_info(jid=server.jid("bob"), timeout=TIMEOUT)
    identities = info["disco_info"]["identities"]
    assert ("pubsub", "pep", None, None) in identities
    features = info["disco_info"]["features"]
    assert "http://jabber.org/protocol/pubsub#publish-options" in features
    assert "urn:xmpp:pep-vcard-conversion:0" in features
    for required in ("auto-create", "auto-subscribe", "filtered-notifications"):  # XEP-0163 §6
        assert f"http://jabber.org/protocol/pubsub#{required}" in features
    assert "http://jabber.org/protocol/pubsub#create-and-configure" in features


async def test_avatar_between_two_clients_and_the_vcard(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, alice_events = await pep_client(new_client, server, "alice")
    bob, bob_events = await pep_client(new_client, server, "bob")
    avatar = bob.plugin["xep_0084"]
    avatar_id = avatar.generate_id(PNG)

    await avatar.publish_avatar(PNG, timeout=TIMEOUT)
    await avatar.publish_avatar_metadata(
        [{"id": avatar_id, "type": "image/png", "bytes": len(PNG)}], timeout=TIMEOUT
    )

    bob_bare = server.jid("bob")
    event = await alice_events.next("urn:xmpp:avatar:metadata", bob_bare)
    assert event.find(".//{urn:xmpp:avatar:metadata}info").get("id") == avatar_id
    await bob_events.next("urn:xmpp:avatar:metadata", bob_bare)  # own resources too
    fetched = await alice.plugin["xep_0084"].retrieve_avatar(bob_bare, avatar_id, timeout=TIMEOUT)
    data = fetched["pubsub"]["items"]["substanzas"][0]["payload"]
    assert base64.b64decode(data.text) == PNG
    # XEP-0398: the avatar is bob's vCard photo now.
    alice.register_plugin("xep_0054")
    card = await alice.plugin["xep_0054"].get_vcard(bob_bare, timeout=TIMEOUT)
    assert card["vcard_temp"]["PHOTO"]["BINVAL"] == PNG
    # Empty metadata, no avatar (XEP-0084 §4.6), clears the vCard photo.
    await avatar.stop(timeout=TIMEOUT)
    card = await alice.plugin["xep_0054"].get_vcard(bob_bare, timeout=TIMEOUT)
    assert not card["vcard_temp"]["PHOTO"]["BINVAL"]


async def publish_avatar_data(client: ClientXMPP, data: bytes, item_id: str, **fields: str) -> None:
    payload_element = ET.fromstring(
        f"<data xmlns='urn:xmpp:avatar:data'>{base64.b64encode(data).decode()}</data>"
    )
    await client.plugin["xep_0060"].publish(
        None,
        "urn:xmpp:avatar:data",
        id=item_id,
        payload=payload_element,
        options=options(**fields) if fields else None,
        timeout=TIMEOUT,
    )


async def vcard_photo(client: ClientXMPP, jid: str) -> bytes:
    client.register_plugin("xep_0054")
    card = await client.plugin["xep_0054"].get_vcard(jid, timeout=TIMEOUT)
    return bytes(card["vcard_temp"]["PHOTO"]["BINVAL"] or b"")


@pytest.mark.parametrize(
    ("case", "copied"),
    [
        ("the local avatar after one at a URL", True),
        ("data that does not hash to its id", False),
        ("a whitelisted data node", False),
    ],
)
async def test_which_published_avatar_becomes_the_vcard_photo(
    server: ServerHandle, new_client: NewClient, case: str, copied: bool
) -> None:
    """XEP-0398 §4: the first <info/> not at a URL (MUST), its data checked against its
    id (SHOULD); §7: not from a data node closer than the vCard."""
    alice, _ = await pep_client(new_client, server, "alice")
    bob, bob_events = await pep_client(new_client, server, "bob")
    avatar_id = hashlib.sha1(PNG).hexdigest()
    if case.startswith("data that"):
        avatar_id = "0" * 40
    fields = {"access_model": "whitelist"} if case.startswith("a whitelisted") else {}
    await publish_avatar_data(bob, PNG, avatar_id, **fields)
    infos = [{"id": avatar_id, "type": "image/png", "bytes": len(PNG)}]
    if case.startswith("the local"):
        elsewhere = {"id": "1" * 40, "type": "image/png", "bytes": 9, "url": "https://x.example/a"}
        infos.insert(0, elsewhere)

    await bob.plugin["xep_0084"].publish_avatar_metadata(infos, timeout=TIMEOUT)

    await bob_events.next("urn:xmpp:avatar:metadata", server.jid("bob"))  # published
    assert await vcard_photo(alice, server.jid("bob")) == (PNG if copied else b"")


async def test_vcard_photo_is_offered_as_avatar(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields("alice", photo=PNG, photo_type="image/png")
    bob, _ = await pep_client(new_client, server, "bob")
    alice_bare = server.jid("alice")
    metadata = await bob.plugin["xep_0060"].get_items(
        alice_bare, "urn:xmpp:avatar:metadata", timeout=TIMEOUT
    )
    info = metadata.xml.find(".//{urn:xmpp:avatar:metadata}info")
    digest = hashlib.sha1(PNG).hexdigest()
    assert info is not None and info.get("id") == digest and info.get("bytes") == str(len(PNG))
    data = await bob.plugin["xep_0084"].retrieve_avatar(alice_bare, digest, timeout=TIMEOUT)
    assert base64.b64decode(data.xml.find(".//{urn:xmpp:avatar:data}data").text) == PNG


@pytest.mark.parametrize(
    ("devices", "bundles", "device_list", "bundle_item"),
    [
        (
            AXOLOTL_DEVICES,
            f"{AXOLOTL_BUNDLES}:4242",
            "<list xmlns='eu.siacs.conversations.axolotl'><device id='4242'/></list>",
            "<bundle xmlns='eu.siacs.conversations.axolotl'><signedPreKeyPublic "
            "signedPreKeyId='1'>AAAA</signedPreKeyPublic><identityKey>BBBB</identityKey>"
            "</bundle>",
        ),
        (
            OMEMO2_DEVICES,
            OMEMO2_BUNDLES,
            "<devices xmlns='urn:xmpp:omemo:2'><device id='4242' label='desk'/></devices>",
            "<bundle xmlns='urn:xmpp:omemo:2'><spk id='1'>AAAA</spk><spks>CCCC</spks>"
            "<ik>BBBB</ik><prekeys><pk id='1'>DDDD</pk></prekeys></bundle>",
        ),
    ],
)
async def test_omemo_device_lists_and_bundles(
    server: ServerHandle,
    new_client: NewClient,
    devices: str,
    bundles: str,
    device_list: str,
    bundle_item: str,
) -> None:
    alice, alice_events = await pep_client(new_client, server, "alice", interests=(devices,))
    bob, bob_events = await pep_client(new_client, server, "bob", interests=(devices,))

    # Each publishes a device list and a bundle; the other hears of the list and
    # fetches the bundle, as an OMEMO client does before its first message.
    for publisher, reader, reader_events, device in (
        (bob, alice, alice_events, "4242"),
        (alice, bob, bob_events, "1111"),
    ):
        pubsub = publisher.plugin["xep_0060"]
        node = bundles.replace("4242", device)
        bundle_id = "current" if node.startswith(AXOLOTL_BUNDLES) else device
        await pubsub.publish(
            None,
            devices,
            id="current",
            payload=payload(device_list.replace("4242", device)),
            options=open_access(),
            timeout=TIMEOUT,
        )
        await pubsub.publish(
            None,
            node,
            id=bundle_id,
            payload=payload(bundle_item),
            options=open_access(),
            timeout=TIMEOUT,
        )

        owner = publisher.boundjid.bare
        event = await reader_events.next(devices, owner)
        assert event.find(".//{*}device").get("id") == device
        found = await reader.plugin["xep_0060"].get_items(
            owner, node, item_ids=[bundle_id], timeout=TIMEOUT
        )
        items = found.xml.findall(".//{http://jabber.org/protocol/pubsub}item")
        assert [item.get("id") for item in items] == [bundle_id]
        assert items[0].find("{*}bundle") is not None
        listed = await reader.plugin["xep_0060"].get_items(owner, devices, timeout=TIMEOUT)
        assert listed.xml.find(".//{*}device").get("id") == device


async def test_last_item_sent_on_available_presence(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob, _ = await pep_client(new_client, server, "bob")
    await publish_device_list(bob, "7")
    _alice, alice_events = await pep_client(
        new_client, server, "alice", interests=(OMEMO2_DEVICES,)
    )
    event = await alice_events.next(OMEMO2_DEVICES, server.jid("bob"))
    assert event.find(".//{*}device").get("id") == "7"


async def test_last_item_sent_when_later_caps_add_notify(
    server: ServerHandle, new_client: NewClient
) -> None:
    """XEP-0163 §4.3.1: a new ``+notify``, announced by a presence with other caps after
    the first, brings the node's last item."""
    bob, _ = await pep_client(new_client, server, "bob")
    await publish_device_list(bob, "8")
    alice, alice_events = await pep_client(new_client, server, "alice")
    asked = asked_for_caps(alice)

    alice.plugin["xep_0030"].add_feature(f"{OMEMO2_DEVICES}+notify")
    await alice.plugin["xep_0115"].update_caps(broadcast=False)
    alice.send_presence()  # the same resource, available already, with new caps
    await asyncio.wait_for(asked, TIMEOUT)

    event = await alice_events.next(OMEMO2_DEVICES, server.jid("bob"))
    assert event.find(".//{*}device").get("id") == "8"


async def test_publish_options_are_preconditions(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    pubsub = alice.plugin["xep_0060"]
    item = payload("<storage xmlns='urn:example:test'/>")
    await pubsub.publish(
        None,
        "urn:example:test",
        payload=item,
        options=options(access_model="open"),
        timeout=TIMEOUT,
    )

    with pytest.raises(IqError) as raised:
        await pubsub.publish(
            None,
            "urn:example:test",
            payload=item,
            options=options(access_model="whitelist"),
            timeout=TIMEOUT,
        )

    condition, tags = error_of(raised)
    assert condition == "conflict"
    assert f"{{{NS_PUBSUB_ERRORS}}}precondition-not-met" in tags


async def test_access_models(server: ServerHandle, new_client: NewClient) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    bob, _ = await pep_client(new_client, server, "bob")
    pubsub = alice.plugin["xep_0060"]
    secret = payload("<conferences xmlns='urn:xmpp:bookmarks:1'/>")
    await pubsub.publish(
        None, "secret", payload=secret, options=options(access_model="whitelist"), timeout=TIMEOUT
    )
    await pubsub.publish(None, "friends", payload=secret, timeout=TIMEOUT)

    with pytest.raises(IqError) as raised:
        await bob.plugin["xep_0060"].get_items(server.jid("alice"), "secret", timeout=TIMEOUT)
    condition, tags = error_of(raised)
    assert condition == "not-allowed"
    assert f"{{{NS_PUBSUB_ERRORS}}}closed-node" in tags
    got = await bob.plugin["xep_0060"].get_items(server.jid("alice"), "friends", timeout=TIMEOUT)
    assert got.xml.find(".//{urn:xmpp:bookmarks:1}conferences") is not None
    own = await pubsub.get_items(server.jid("alice"), "secret", timeout=TIMEOUT)
    assert own.xml.find(".//{urn:xmpp:bookmarks:1}conferences") is not None


async def test_items_retract_configure_delete(server: ServerHandle, new_client: NewClient) -> None:
    alice, _ = await pep_client(new_client, server, "alice", interests=("urn:example:n",))
    phone, phone_events = await pep_client(
        new_client, server, "alice", "phone", interests=("urn:example:n",)
    )
    deleted: asyncio.Queue[str] = asyncio.Queue()
    phone.add_event_handler(
        "pubsub_delete", lambda msg: deleted.put_nowait(msg["pubsub_event"]["delete"]["node"])
    )
    pubsub = alice.plugin["xep_0060"]
    me = server.jid("alice")
    for n in range(3):
        await pubsub.publish(
            None,
            "urn:example:n",
            id=f"i{n}",
            payload=payload(f"<n xmlns='urn:example:n'>{n}</n>"),
            timeout=TIMEOUT,
        )

    newest = await pubsub.get_items(me, "urn:example:n", max_items=2, timeout=TIMEOUT)
    assert [i.get("id") for i in newest.xml.iter("{http://jabber.org/protocol/pubsub}item")] == [
        "i1",
        "i2",
    ]
    one = await pubsub.get_item(me, "urn:example:n", "i0", timeout=TIMEOUT)
    assert [i.get("id") for i in one.xml.iter("{http://jabber.org/protocol/pubsub}item")] == ["i0"]

    await pubsub.retract(me, "urn:example:n", "i2", notify=True, timeout=TIMEOUT)
    retracted = await phone_events.next("urn:example:n", me)
    while retracted.find(".//{*}retract") is None:
        retracted = await phone_events.next("urn:example:n", me)
    assert retracted.find(".//{*}retract").get("id") == "i2"

    config = await pubsub.get_node_config(me, "urn:example:n", timeout=TIMEOUT)
    form = config["pubsub_owner"]["configure"]["form"]
    assert form.get_values()["pubsub#access_model"] == "presence"
    new = Form()
    new["type"] = "submit"
    new.add_field(
        "FORM_TYPE", ftype="hidden", value="http://jabber.org/protocol/pubsub#node_config"
    )
    new.add_field("pubsub#max_items", value="1")
    await pubsub.set_node_config(me, "urn:example:n", new, timeout=TIMEOUT)
    left = await pubsub.get_items(me, "urn:example:n", timeout=TIMEOUT)
    assert [i.get("id") for i in left.xml.iter("{http://jabber.org/protocol/pubsub}item")] == ["i1"]

    await pubsub.delete_node(me, "urn:example:n", timeout=TIMEOUT)
    assert await asyncio.wait_for(deleted.get(), TIMEOUT) == "urn:example:n"
    with pytest.raises(IqError) as raised:
        await pubsub.get_items(me, "urn:example:n", timeout=TIMEOUT)
    assert raised.value.condition == "item-not-found"


async def test_payload_bound(start_server: Any, new_client: NewClient) -> None:
    server = await start_server(pep={"max_payload_bytes": 300})
    alice, _ = await pep_client(new_client, server, "alice")
    with pytest.raises(IqError) as raised:
        await alice.plugin["xep_0060"].publish(
            None,
            "big",
            payload=payload(f"<big xmlns='urn:example:big'>{'x' * 400}</big>"),
            timeout=TIMEOUT,
        )
    assert raised.value.condition == "not-acceptable"


async def test_disco_items_on_a_bare_jid_lists_the_nodes_the_requester_may_read(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice, _ = await pep_client(new_client, server, "alice")
    bob, _ = await pep_client(new_client, server, "bob")
    for node, access_model in (("urn:example:seen", "presence"), ("urn:example:own", "whitelist")):
        await alice.plugin["xep_0060"].publish(
            None,
            node,
            payload=payload(f"<n xmlns='{node}'/>"),
            options=options(access_model=access_model),
            timeout=TIMEOUT,
        )
    me = server.jid("alice")

    async def nodes(client: ClientXMPP) -> set[str]:
        reply = await client.plugin["xep_0030"].get_items(jid=me, local=False, timeout=TIMEOUT)
        assert {jid for jid, _node, _name in reply["disco_items"]["items"]} == {me}
        return {node for _jid, node, _name in reply["disco_items"]["items"]}

    assert await nodes(alice) == {"urn:example:seen", "urn:example:own"}
    assert await nodes(bob) == {"urn:example:seen"}


async def test_caps_whose_hash_does_not_check_out_ask_for_nothing(
    server: ServerHandle, new_client: NewClient
) -> None:
    bob, _ = await pep_client(new_client, server, "bob")
    alice = new_client(server, "alice", "desk")
    for plugin in ("xep_0030", "xep_0004", "xep_0060", "xep_0115", "xep_0163"):
        alice.register_plugin(plugin)
    events = Events(alice)
    asked = asked_for_caps(alice)
    await sign_in(alice, server.host, server.port)
    disco, caps = alice.plugin["xep_0030"], alice.plugin["xep_0115"]
    disco.add_feature(f"{OMEMO2_DEVICES}+notify")
    await caps.update_caps(broadcast=False)
    ver = await caps.get_verstring(alice.boundjid)
    info = await disco.get_info(jid=alice.boundjid, node=f"{caps.caps_node}#{ver}", local=True)
    if not hasattr(info, "get_features"):
        info = info["disco_info"]
    # The same features behind a ver that is not their hash.
    await disco.set_info(jid=alice.boundjid, node=f"{caps.caps_node}#forged", info=info)
    alice.send_raw(
        "<presence><c xmlns='http://jabber.org/protocol/caps' hash='sha-1' "
        f"node='{caps.caps_node}' ver='forged'/></presence>"
    )
    await asyncio.wait_for(asked, TIMEOUT)
    await disco.get_info(jid=server.domain, timeout=TIMEOUT)

    devices = "<devices xmlns='urn:xmpp:omemo:2'><device id='1'/></devices>"
    await bob.plugin["xep_0060"].publish(
        None, OMEMO2_DEVICES, id="current", payload=payload(devices), timeout=TIMEOUT
    )
    await disco.get_info(jid=server.domain, timeout=TIMEOUT)
    assert events.queue.empty()

    asked_again = asked_for_caps(alice)
    alice.send_presence()  # now with the true ver, whose new interest brings the last item
    await asyncio.wait_for(asked_again, TIMEOUT)
    last = await events.next(OMEMO2_DEVICES, server.jid("bob"))
    assert last.find(".//{*}device").get("id") == "1"
    again = "<devices xmlns='urn:xmpp:omemo:2'><device id='2'/></devices>"
    await bob.plugin["xep_0060"].publish(
        None, OMEMO2_DEVICES, id="current", payload=payload(again), timeout=TIMEOUT
    )
    event = await events.next(OMEMO2_DEVICES, server.jid("bob"))
    assert event.find(".//{*}device").get("id") == "2"
