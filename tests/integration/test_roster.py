"""RFC 6121 rosters with real clients: the network's contact list read over XMPP,
changes made anywhere (in this process or by the ``chinwag`` command) pushed to the
online sessions within a second, and — with ``roster.management = true`` — roster
sets and the subscription handshake.
"""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET
from pathlib import Path

from chinwag.server.events import POLL_SECONDS

from .im_support import (
    NS_ROSTER,
    Item,
    Peer,
    add_user,
    cli_config,
    error_condition,
    login,
    presence,
    roster_items,
    roster_push,
    roster_version,
    run_cli,
    settle,
)
from .support import NewClient, ServerHandle, StartServer

MANAGED = {"roster": {"management": True}}
PUSH_DEADLINE = 1.0
"""A contact change made while users are online reaches their sessions within this."""


def item(jid: str, subscription: str = "both", name: str | None = None, **extra: object) -> Item:
    fields = {"ask": None, "approved": None, "groups": ()} | extra
    return Item(jid, subscription, name, **fields)  # type: ignore[arg-type]


async def roster_of(peer: Peer) -> dict[str, Item]:
    reply = await peer.roster()
    assert reply.get("type") == "result", ET.tostring(reply)
    return roster_items(reply)


def roster_set(
    jid: str, *, name: str | None = None, groups: tuple[str, ...] = (), remove: bool = False
) -> str:
    attrs = f"jid='{jid}'"
    if name is not None:
        attrs += f" name='{name}'"
    if remove:
        attrs += " subscription='remove'"
    children = "".join(f"<group>{group}</group>" for group in groups)
    return f"<iq type='set'><query xmlns='{NS_ROSTER}'><item {attrs}>{children}</item></query></iq>"


async def no_late_pushes(*peers: Peer) -> None:
    """The change events of the module's own changes, read back by the event pump a
    moment later, push nothing twice."""
    await asyncio.sleep(3 * POLL_SECONDS)
    await settle(*peers)
    for peer in peers:
        peer.assert_none(roster_push())


# --- reading the network's contact list ------------------------------------------------


async def test_roster_get_lists_contacts_as_both_with_their_display_names(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    await server.app.services.profiles.set_fields("bob", fn="Bob Builder")
    await add_user(server, "carol")  # an account, but nobody's contact
    alice = await login(new_client, server, "alice", available=False)

    reply = await alice.roster()

    assert reply.get("type") == "result"
    assert roster_items(reply) == {"bob@localhost": item("bob@localhost", name="Bob Builder")}
    assert roster_version(reply)
    assert "rosterver" in alice.client.features  # XEP-0237 stream feature


async def test_roster_versioning_returns_nothing_when_nothing_changed(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", available=False)
    first = roster_version(await alice.roster())
    assert first is not None

    unchanged = await alice.roster(first)
    assert unchanged.get("type") == "result"
    assert len(unchanged) == 0, ET.tostring(unchanged)  # an empty result: no <query/>

    await server.app.services.contacts.add_mutual("alice", "carol")
    push = await alice.next(roster_push())
    second = roster_version(push)
    assert second not in (None, first)

    stale = await alice.roster(first)  # an old version: the whole roster, at the new version
    assert roster_version(stale) == second
    assert set(roster_items(stale)) == {"bob@localhost", "carol@localhost"}
    assert len(await alice.roster(second)) == 0


# --- changes made by the network reach online sessions -------------------------------------


async def expect_linked(
    alice: list[Peer], carol: Peer, since: float, carol_name: str | None
) -> None:
    """Every interested resource of alice got a push for carol, and every available one
    her presence; carol got a push for alice and alice's presence."""
    for peer in alice[:2]:
        push = await peer.next(roster_push())
        assert roster_items(push) == {"carol@localhost": item("carol@localhost", name=carol_name)}
    for peer in alice:
        await peer.next(presence(from_=carol.jid, type=None))
    push = await carol.next(roster_push())
    assert roster_items(push) == {"alice@localhost": item("alice@localhost")}
    for peer in alice:
        await carol.next(presence(from_=peer.jid, type=None))
    elapsed = asyncio.get_running_loop().time() - since
    assert elapsed < PUSH_DEADLINE, f"the change took {elapsed:.2f}s to reach the sessions"
    await settle(*alice)
    alice[2].assert_none(roster_push())  # never asked for the roster: no pushes


async def expect_unlinked(alice: list[Peer], carol: Peer, since: float) -> None:
    for peer in alice[:2]:
        push = await peer.next(roster_push())
        assert roster_items(push) == {"carol@localhost": item("carol@localhost", "remove")}
    for peer in alice:
        await peer.next(presence(from_=carol.jid, type="unavailable"))
    push = await carol.next(roster_push())
    assert roster_items(push) == {"alice@localhost": item("alice@localhost", "remove")}
    for peer in alice:
        await carol.next(presence(from_=peer.jid, type="unavailable"))
    elapsed = asyncio.get_running_loop().time() - since
    assert elapsed < PUSH_DEADLINE, f"the change took {elapsed:.2f}s to reach the sessions"


async def alice_three_ways_and_carol(
    server: ServerHandle, new_client: NewClient
) -> tuple[list[Peer], Peer]:
    """alice on a desk and a phone that asked for the roster, and on a watch that did not;
    carol online and interested."""
    alice = [
        await login(new_client, server, "alice", "desk", roster=True),
        await login(new_client, server, "alice", "phone", roster=True),
        await login(new_client, server, "alice", "watch"),
    ]
    carol = await login(new_client, server, "carol", "phone", roster=True)
    await settle(*alice, carol)
    for peer in (*alice, carol):
        peer.inbox.clear()
    return alice, carol


async def test_contacts_changed_in_process_reach_online_sessions_within_a_second(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    contacts = server.app.services.contacts
    await add_user(server, "carol", "Carol Jones")
    alice, carol = await alice_three_ways_and_carol(server, new_client)
    loop = asyncio.get_running_loop()

    await contacts.add_mutual("alice", "carol")
    await expect_linked(alice, carol, loop.time(), "Carol Jones")
    assert (await roster_of(alice[0]))["carol@localhost"] == item(
        "carol@localhost", name="Carol Jones"
    )

    await contacts.remove_mutual("alice", "carol")
    await expect_unlinked(alice, carol, loop.time())
    assert "carol@localhost" not in await roster_of(alice[0])


async def test_chinwag_contacts_command_reaches_online_sessions_within_a_second(
    server: ServerHandle, new_client: NewClient, tmp_path: Path
) -> None:
    config = cli_config(server, tmp_path)
    added = await run_cli(
        config, "user", "add", "carol", "--password", "carol-secret", "--name", "Carol Jones"
    )
    assert added.returncode == 0, added.stderr
    server.users["carol"] = "carol-secret"
    alice, carol = await alice_three_ways_and_carol(server, new_client)
    loop = asyncio.get_running_loop()

    linked = await run_cli(config, "contacts", "add", "alice", "carol")
    assert linked.returncode == 0, linked.stderr
    # The name given to `chinwag user add --name` is the profile's full name.
    await expect_linked(alice, carol, loop.time(), "Carol Jones")

    unlinked = await run_cli(config, "contacts", "remove", "alice", "carol")
    assert unlinked.returncode == 0, unlinked.stderr
    await expect_unlinked(alice, carol, loop.time())


# --- read-only by default ---------------------------------------------------------------------


async def test_roster_set_is_not_allowed_by_default(
    server: ServerHandle, new_client: NewClient
) -> None:
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", roster=True)

    for request in (
        roster_set("carol@localhost", name="Carol"),
        roster_set("bob@localhost", name="Bobby", groups=("Friends",)),
        roster_set("bob@localhost", remove=True),
    ):
        reply = await alice.iq(request)
        assert error_condition(reply) == "not-allowed", ET.tostring(reply)

    await settle(alice)
    alice.assert_none(roster_push())
    assert await roster_of(alice) == {"bob@localhost": item("bob@localhost")}


async def test_subscription_requests_are_not_allowed_by_default(
    server: ServerHandle, new_client: NewClient
) -> None:
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", roster=True)
    bob = await login(new_client, server, "bob", roster=True)
    carol = await login(new_client, server, "carol", roster=True)
    kinds = ("subscribe", "subscribed", "unsubscribe", "unsubscribed")

    for kind in kinds:
        for to in ("bob@localhost", "carol@localhost", "bob@localhost/test"):
            alice.send(f"<presence to='{to}' type='{kind}'/>")
            error = await alice.next(presence(type="error", from_=to))
            assert error_condition(error) == "not-allowed", ET.tostring(error)

    await settle(alice, bob, carol)
    for peer in (alice, bob, carol):
        peer.assert_none(roster_push())
    for peer in (bob, carol):
        peer.assert_none(lambda e: e.get("type") in kinds)
    assert await roster_of(alice) == {"bob@localhost": item("bob@localhost")}


# --- roster.management = true ---------------------------------------------------------------


async def test_managed_roster_set_and_remove_push_to_every_interested_resource(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**MANAGED)
    await add_user(server, "carol")
    desk = await login(new_client, server, "alice", "desk", roster=True)
    phone = await login(new_client, server, "alice", "phone", roster=True)
    watch = await login(new_client, server, "alice", "watch")  # not interested

    reply = await desk.iq(roster_set("carol@localhost", name="Caz", groups=("Friends", "Work")))
    assert reply.get("type") == "result", ET.tostring(reply)
    expected = item("carol@localhost", "none", "Caz", groups=("Friends", "Work"))
    versions = set()
    for peer in (desk, phone):
        push = await peer.next(roster_push())
        assert roster_items(push) == {"carol@localhost": expected}
        versions.add(roster_version(push))
    assert (await roster_of(phone))["carol@localhost"] == expected
    assert len(versions) == 1 and None not in versions

    reply = await phone.iq(roster_set("carol@localhost", name="Carol"))
    assert reply.get("type") == "result"
    for peer in (desk, phone):
        push = await peer.next(roster_push())
        assert roster_items(push) == {"carol@localhost": item("carol@localhost", "none", "Carol")}

    reply = await desk.iq(roster_set("carol@localhost", remove=True))
    assert reply.get("type") == "result"
    for peer in (desk, phone):
        push = await peer.next(roster_push())
        assert roster_items(push) == {"carol@localhost": item("carol@localhost", "remove")}
    assert "carol@localhost" not in await roster_of(desk)

    missing = await desk.iq(roster_set("carol@localhost", remove=True))
    assert error_condition(missing) == "item-not-found"
    nobody = await desk.iq(roster_set("nobody@localhost", name="Nobody"))
    assert error_condition(nobody) == "item-not-found"
    await settle(desk, watch)
    watch.assert_none(roster_push())
    await no_late_pushes(desk, phone)


async def test_managed_subscription_handshake_both_ways(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**MANAGED)
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", "desk", roster=True)
    carol = await login(new_client, server, "carol", "phone", roster=True)

    # alice asks: her item shows the pending request, carol is asked.
    alice.send("<presence to='carol@localhost' type='subscribe'/>")
    push = await alice.next(roster_push())
    assert roster_items(push) == {
        "carol@localhost": item("carol@localhost", "none", ask="subscribe")
    }
    await carol.next(presence(type="subscribe", from_="alice@localhost"))
    await settle(alice, carol)
    carol.assert_none(roster_push())  # RFC 6121 3.1.3: no item for a pending request alone
    assert await roster_of(carol) == {}

    # carol approves: alice now sees carol (to), carol has alice (from).
    carol.send("<presence to='alice@localhost' type='subscribed'/>")
    push = await carol.next(roster_push())
    assert roster_items(push) == {"alice@localhost": item("alice@localhost", "from")}
    push = await alice.next(roster_push())
    assert roster_items(push) == {"carol@localhost": item("carol@localhost", "to")}
    await alice.next(presence(type="subscribed", from_="carol@localhost"))
    await alice.next(presence(type=None, from_=carol.jid))

    # and the other way round: both.
    carol.send("<presence to='alice@localhost' type='subscribe'/>")
    push = await carol.next(roster_push())
    assert roster_items(push) == {
        "alice@localhost": item("alice@localhost", "from", ask="subscribe")
    }
    await alice.next(presence(type="subscribe", from_="carol@localhost"))
    alice.send("<presence to='carol@localhost' type='subscribed'/>")
    push = await alice.next(roster_push())
    assert roster_items(push) == {"carol@localhost": item("carol@localhost", "both")}
    push = await carol.next(roster_push())
    assert roster_items(push) == {"alice@localhost": item("alice@localhost", "both")}
    await carol.next(presence(type="subscribed", from_="alice@localhost"))
    await carol.next(presence(type=None, from_=alice.jid))
    assert (await roster_of(alice))["carol@localhost"] == item("carol@localhost", "both")

    # alice unsubscribes: she stops seeing carol, carol keeps seeing her.
    alice.send("<presence to='carol@localhost' type='unsubscribe'/>")
    push = await alice.next(roster_push())
    assert roster_items(push) == {"carol@localhost": item("carol@localhost", "from")}
    await alice.next(presence(type="unavailable", from_=carol.jid))
    await carol.next(presence(type="unsubscribe", from_="alice@localhost"))
    push = await carol.next(roster_push())
    assert roster_items(push) == {"alice@localhost": item("alice@localhost", "to")}

    # and cancels carol's subscription to her: neither sees the other any more.
    alice.send("<presence to='carol@localhost' type='unsubscribed'/>")
    await carol.next(presence(type="unsubscribed", from_="alice@localhost"))
    await carol.next(presence(type="unavailable", from_=alice.jid))
    for peer, other in ((alice, "carol@localhost"), (carol, "alice@localhost")):
        push = await peer.next(roster_push())
        assert roster_items(push)[other].subscription in ("none", "remove")
    await settle(alice, carol)
    alice.send("<presence><show>away</show></presence>")
    await settle(alice, carol)
    carol.assert_none(presence(from_=alice.jid))
    await no_late_pushes(alice, carol)


async def test_managed_item_with_subscription_none_stays_on_the_roster(
    start_server: StartServer, new_client: NewClient
) -> None:
    """RFC 6121 2.1.2.5, 3.3.2: an item without subscriptions is still on the roster."""
    server = await start_server(**MANAGED)
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", roster=True)

    reply = await alice.iq(roster_set("carol@localhost"))  # a jid, nothing else

    assert reply.get("type") == "result"
    push = await alice.next(roster_push())
    assert roster_items(push) == {"carol@localhost": item("carol@localhost", "none")}
    assert "carol@localhost" in await roster_of(alice)


async def test_managed_request_from_someone_with_a_full_name_adds_no_item(
    start_server: StartServer, new_client: NewClient
) -> None:
    """RFC 6121 3.1.3: a pending inbound request alone puts nobody on the roster."""
    server = await start_server(**MANAGED)
    assert server.app is not None
    await server.app.services.profiles.set_fields("alice", fn="Alice Liddell")
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", roster=True)
    alice.send("<presence to='carol@localhost' type='subscribe'/>")
    await alice.next(roster_push())

    carol = await login(new_client, server, "carol", roster=True)  # loaded from storage

    await carol.next(presence(type="subscribe", from_="alice@localhost"))
    assert await roster_of(carol) == {}


async def test_managed_pending_request_is_delivered_at_login(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(**MANAGED)
    await add_user(server, "carol")
    alice = await login(new_client, server, "alice", roster=True)

    alice.send("<presence to='carol@localhost' type='subscribe'/>")
    await alice.next(roster_push())
    await alice.sync()
    carol = await login(new_client, server, "carol", "phone", available=False)
    await settle(carol)
    carol.assert_none(presence(type="subscribe"))  # not before initial presence

    carol.send("<presence/>")
    request = await carol.next(presence(type="subscribe", from_="alice@localhost"))
    assert request.get("to") == carol.jid

    # Still pending (unanswered): the next login is asked again.
    tablet = await login(new_client, server, "carol", "tablet")
    await tablet.next(presence(type="subscribe", from_="alice@localhost"))


async def test_managed_pre_approval(start_server: StartServer, new_client: NewClient) -> None:
    server = await start_server(**MANAGED)
    await add_user(server, "carol")
    carol = await login(new_client, server, "carol", "phone", roster=True)
    assert "preapproval" in carol.client.features  # RFC 6121 3.4.1 stream feature

    carol.send("<presence to='alice@localhost' type='subscribed'/>")
    push = await carol.next(roster_push())
    assert roster_items(push) == {
        "alice@localhost": item("alice@localhost", "none", approved="true")
    }

    alice = await login(new_client, server, "alice", "desk", roster=True)
    alice.send("<presence to='carol@localhost' type='subscribe'/>")
    await alice.next(presence(type="subscribed", from_="carol@localhost"))
    push = await alice.next(roster_push())
    assert roster_items(push) == {"carol@localhost": item("carol@localhost", "to")}
    await alice.next(presence(type=None, from_=carol.jid))
    push = await carol.next(roster_push())
    assert roster_items(push) == {"alice@localhost": item("alice@localhost", "from")}
    await settle(alice, carol)
    carol.assert_none(presence(type="subscribe"))  # approved in advance: never asked


async def test_default_server_does_not_announce_pre_approval(
    server: ServerHandle, new_client: NewClient
) -> None:
    alice = await login(new_client, server, "alice", available=False)
    assert "preapproval" not in alice.client.features
