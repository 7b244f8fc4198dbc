"""XEP-0054 vcard-temp from the network's profiles, with real clients: fetch, who may
fetch, and — only with ``vcard.updates = true`` — updates.
"""

from __future__ import annotations

import base64
import xml.etree.ElementTree as ET

from .im_support import (
    NS_VCARD,
    Peer,
    add_user,
    error_condition,
    login,
    q,
    roster_items,
    roster_push,
    roster_version,
)
from .support import NewClient, ServerHandle, StartServer

PHOTO = bytes(range(256)) * 4


def vcard_get(to: str | None) -> str:
    to_attr = "" if to is None else f" to='{to}'"
    return f"<iq type='get'{to_attr}><vCard xmlns='{NS_VCARD}'/></iq>"


async def fetch(peer: Peer, to: str | None) -> ET.Element:
    """The <vCard/> of a successful get."""
    reply = await peer.iq(vcard_get(to))
    assert reply.get("type") == "result", ET.tostring(reply)
    card = reply.find(q("vCard", NS_VCARD))
    assert card is not None, ET.tostring(reply)
    return card


def fields(card: ET.Element) -> dict[str, object]:
    def text(*path: str) -> str | None:
        found = card.find("/".join(q(tag, NS_VCARD) for tag in path))
        return None if found is None else (found.text or "")

    binval = text("PHOTO", "BINVAL")
    return {
        "FN": text("FN"),
        "NICKNAME": text("NICKNAME"),
        "EMAIL": text("EMAIL", "USERID"),
        "INTERNET": card.find(f"{q('EMAIL', NS_VCARD)}/{q('INTERNET', NS_VCARD)}") is not None,
        "TYPE": text("PHOTO", "TYPE"),
        "PHOTO": None if binval is None else base64.b64decode("".join(binval.split())),
    }


ALICE = {
    "FN": "Alice Liddell",
    "NICKNAME": "ali",
    "EMAIL": "alice@example.org",
    "INTERNET": True,
    "TYPE": "image/png",
    "PHOTO": PHOTO,
}


async def give_alice_a_profile(server: ServerHandle) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields(
        "alice",
        fn="Alice Liddell",
        nickname="ali",
        email="alice@example.org",
        photo_type="image/png",
        photo=PHOTO,
    )


async def test_own_and_a_contacts_vcard_come_from_the_profile(
    server: ServerHandle, new_client: NewClient
) -> None:
    await give_alice_a_profile(server)
    alice = await login(new_client, server, "alice", available=False)
    bob = await login(new_client, server, "bob", available=False)

    assert fields(await fetch(alice, None)) == ALICE
    assert fields(await fetch(alice, "alice@localhost")) == ALICE
    assert fields(await fetch(bob, "alice@localhost")) == ALICE


async def test_a_user_without_profile_data_has_an_empty_vcard(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", available=False)

    card = await fetch(alice, "bob@localhost")

    assert len(card) == 0 and not (card.text or "").strip(), ET.tostring(card)


async def test_vcard_of_a_user_that_does_not_exist_is_service_unavailable(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", available=False)

    reply = await alice.iq(vcard_get("nobody@localhost"))

    assert error_condition(reply) == "service-unavailable", ET.tostring(reply)


async def test_a_non_contacts_vcard_is_service_unavailable_unless_public(
    start_server: StartServer, new_client: NewClient
) -> None:
    private = await start_server()
    public = await start_server(vcard={"public": True})
    cards = {}
    for server in (private, public):
        await give_alice_a_profile(server)
        await add_user(server, "carol")
        carol = await login(new_client, server, "carol", available=False)
        cards[server is public] = await carol.iq(vcard_get("alice@localhost"))

    assert error_condition(cards[False]) == "service-unavailable", ET.tostring(cards[False])
    card = cards[True].find(q("vCard", NS_VCARD))
    assert card is not None, ET.tostring(cards[True])
    assert fields(card) == ALICE


UPDATE = (
    f"<iq type='set'><vCard xmlns='{NS_VCARD}'><FN>Alice Pleasance</FN><NICKNAME>pleasance</NICKNAME>"
    "<EMAIL><INTERNET/><USERID>ap@example.org</USERID></EMAIL>"
    f"<PHOTO><TYPE>image/jpeg</TYPE><BINVAL>{base64.b64encode(b'jpeg!').decode()}</BINVAL></PHOTO>"
    "</vCard></iq>"
)


async def test_vcard_set_is_not_allowed_by_default(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    await give_alice_a_profile(server)
    alice = await login(new_client, server, "alice", available=False)

    reply = await alice.iq(UPDATE)

    assert error_condition(reply) == "not-allowed", ET.tostring(reply)
    profile = await server.app.services.profiles.get("alice")
    assert profile is not None and profile.fn == "Alice Liddell"


async def test_vcard_updates_change_the_profile_and_what_contacts_see(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(vcard={"updates": True})
    assert server.app is not None
    await give_alice_a_profile(server)
    alice = await login(new_client, server, "alice", available=False)
    bob = await login(new_client, server, "bob", available=False)

    reply = await alice.iq(UPDATE)

    assert reply.get("type") == "result", ET.tostring(reply)
    profile = await server.app.services.profiles.get("alice")
    assert profile is not None
    assert (profile.fn, profile.nickname, profile.email, profile.photo_type, profile.photo) == (
        "Alice Pleasance",
        "pleasance",
        "ap@example.org",
        "image/jpeg",
        b"jpeg!",
    )
    assert fields(await fetch(bob, "alice@localhost")) == {
        "FN": "Alice Pleasance",
        "NICKNAME": "pleasance",
        "EMAIL": "ap@example.org",
        "INTERNET": True,
        "TYPE": "image/jpeg",
        "PHOTO": b"jpeg!",
    }

    # A set replaces the card: what it leaves out is cleared.
    reply = await alice.iq(f"<iq type='set'><vCard xmlns='{NS_VCARD}'><FN>Alice</FN></vCard></iq>")
    assert reply.get("type") == "result"
    assert fields(await fetch(bob, "alice@localhost")) == {
        "FN": "Alice",
        "NICKNAME": None,
        "EMAIL": None,
        "INTERNET": False,
        "TYPE": None,
        "PHOTO": None,
    }

    # Only one's own card.
    reply = await alice.iq(UPDATE.replace("<iq type='set'>", "<iq type='set' to='bob@localhost'>"))
    assert error_condition(reply) == "forbidden", ET.tostring(reply)


async def test_a_vcard_the_profile_cannot_hold_is_refused_with_a_stanza_error(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(vcard={"updates": True})
    assert server.app is not None
    alice = await login(new_client, server, "alice", available=False)

    for card in (
        f"<FN>{'x' * 2000}</FN>",  # longer than a profile field may be
        "<PHOTO><TYPE>image/png</TYPE><BINVAL>not base64!</BINVAL></PHOTO>",
    ):
        reply = await alice.iq(f"<iq type='set'><vCard xmlns='{NS_VCARD}'>{card}</vCard></iq>")
        assert error_condition(reply) in ("bad-request", "not-acceptable"), ET.tostring(reply)
    profile = await server.app.services.profiles.get("alice")
    assert profile is not None and profile.fn is None
    await alice.sync()


async def test_a_new_full_name_reaches_the_contacts_rosters(
    start_server: StartServer, new_client: NewClient
) -> None:
    """A roster item without a name of its own shows the contact's full name, so a
    vCard update changes it: pushed at once, and versioned."""
    server = await start_server(vcard={"updates": True})
    await give_alice_a_profile(server)
    alice = await login(new_client, server, "alice", available=False)
    bob = await login(new_client, server, "bob", available=False)
    before = await bob.roster()
    assert roster_items(before)["alice@localhost"].name == "Alice Liddell"

    reply = await alice.iq(
        f"<iq type='set'><vCard xmlns='{NS_VCARD}'><FN>Alice P.</FN></vCard></iq>"
    )
    assert reply.get("type") == "result"

    push = await bob.next(roster_push(), timeout=1.0)
    assert roster_items(push)["alice@localhost"].name == "Alice P."
    after = await bob.roster(roster_version(before))
    assert roster_items(after)["alice@localhost"].name == "Alice P."
