"""The REST API's block list (``/api/v1/me/blocked``, scope ``wl.blocking``): real access
tokens in process, then a whole chinwag whose online clients see an app's change at once
(a block list push, presence gone both ways, messages refused) and see it undone."""

from __future__ import annotations

import asyncio
import xml.etree.ElementTree as ET

import httpx
import pytest
from integration.support import NewClient, ServerHandle, StartServer

from chinwag.network import blocking as blocking_domain
from chinwag.network.blocking import BLOCKLIST_CHANGED

from .conftest import Site
from .live_support import NS_CLIENT, Online, go_online
from .test_api import bearer, http_base, token_for

NS_BLOCKING = "urn:xmpp:blocking"
NS_STANZAS = "urn:ietf:params:xml:ns:xmpp-stanzas"
INSUFFICIENT_SCOPE = 'Bearer realm="chinwag", error="insufficient_scope", scope="wl.blocking"'
DEADLINE = 1.0
"""An app's change reaches online sessions within this (the event pump polls at 0.2 s)."""


async def blocking_token(site: Site, user: str = "alice") -> dict[str, str]:
    return bearer(await token_for(site.oauth, user, "wl.blocking"))


# --- in process ----------------------------------------------------------------------------


async def test_the_block_list_needs_a_token_with_wl_blocking(site, api):
    basic = bearer(await token_for(site.oauth, "alice", "wl.basic wl.messenger"))

    for method, path in (
        ("GET", "/api/v1/me/blocked"),
        ("PUT", "/api/v1/me/blocked/bob@localhost"),
        ("DELETE", "/api/v1/me/blocked/bob@localhost"),
    ):
        missing = await api.request(method, path)
        lacking = await api.request(method, path, headers=basic)

        assert missing.status_code == 401
        assert missing.headers["www-authenticate"] == 'Bearer realm="chinwag"'
        assert "wl.blocking" in missing.json()["message"]
        assert lacking.status_code == 403
        assert lacking.headers["www-authenticate"] == INSUFFICIENT_SCOPE
        assert lacking.json()["error"] == "insufficient_scope"
    assert await site.blocking.blocked("alice") == []
    only_blocking = await blocking_token(site)
    assert (await api.get("/api/v1/me", headers=only_blocking)).status_code == 403


async def test_an_app_lists_blocks_and_unblocks(site, api):
    headers = await blocking_token(site)

    assert (await api.get("/api/v1/me/blocked", headers=headers)).json() == {"blocked": []}

    added = await api.put("/api/v1/me/blocked/Romeo@Montague.NET", headers=headers)
    again = await api.put("/api/v1/me/blocked/romeo@montague.net", headers=headers)
    full = await api.put("/api/v1/me/blocked/bob@localhost/Phone", headers=headers)
    encoded = await api.put("/api/v1/me/blocked/iago.lit%2Fcave", headers=headers)

    assert added.status_code == again.status_code == full.status_code == 200
    assert added.headers["cache-control"] == "no-store"
    assert added.json() == {"jid": "romeo@montague.net", "blocked": True}
    assert full.json() == {"jid": "bob@localhost/Phone", "blocked": True}
    assert encoded.json() == {"jid": "iago.lit/cave", "blocked": True}
    listed = await api.get("/api/v1/me/blocked", headers=headers)
    assert listed.json() == {
        "blocked": ["bob@localhost/Phone", "iago.lit/cave", "romeo@montague.net"]
    }
    assert await site.blocking.blocked("alice") == listed.json()["blocked"]

    removed = await api.delete("/api/v1/me/blocked/ROMEO@montague.net", headers=headers)
    gone = await api.delete("/api/v1/me/blocked/romeo@montague.net", headers=headers)

    assert removed.status_code == 200
    assert removed.json() == {"jid": "romeo@montague.net", "blocked": False}
    assert gone.status_code == 404
    assert gone.json() == {
        "error": "not_blocked",
        "message": "'romeo@montague.net' is not blocked.",
    }
    assert [(e.kind, e.subject) for e in await site.events()] == [(BLOCKLIST_CHANGED, "alice")] * 4
    assert await site.blocking.blocked("bob") == []  # alice's list only


@pytest.mark.parametrize("jid", ["a@b@c", "@localhost", "bob@localhost/", "%20", "", "a%0Ab"])
async def test_what_is_not_a_jid_is_a_400(site, api, jid):
    headers = await blocking_token(site)

    for method in ("PUT", "DELETE"):
        response = await api.request(method, f"/api/v1/me/blocked/{jid}", headers=headers)

        assert response.status_code == 400, jid
        assert response.json()["error"] == "invalid_jid"
    assert await site.events() == []


async def test_a_full_block_list_is_a_409(site, api, monkeypatch):
    monkeypatch.setattr(blocking_domain, "MAX_BLOCKED", 1)
    headers = await blocking_token(site)
    assert (await api.put("/api/v1/me/blocked/a.example", headers=headers)).status_code == 200

    response = await api.put("/api/v1/me/blocked/b.example", headers=headers)

    assert response.status_code == 409
    assert response.json() == {
        "error": "block_list_full",
        "message": "The block list holds at most 1 JIDs.",
    }
    assert await site.blocking.blocked("alice") == ["a.example"]


# --- with a running chinwag and real clients ---------------------------------------------------


def block_push(element: ET.Element) -> bool:
    return (
        element.tag == f"{{{NS_CLIENT}}}iq"
        and element.get("type") == "set"
        and any(
            child.tag in (f"{{{NS_BLOCKING}}}block", f"{{{NS_BLOCKING}}}unblock")
            for child in element
        )
    )


def presence_from(jid: str, kind: str | None):
    def match(element: ET.Element) -> bool:
        return (
            element.tag == f"{{{NS_CLIENT}}}presence"
            and element.get("from") == jid
            and element.get("type") == kind
        )

    return match


def pushed(push: ET.Element) -> tuple[str, list[str]]:
    [command] = list(push)
    return command.tag.partition("}")[2], [
        item.get("jid", "") for item in command.findall(f"{{{NS_BLOCKING}}}item")
    ]


async def blocklist_asked(online: Online) -> None:
    reply = await online.iq(f"<iq type='get'><blocklist xmlns='{NS_BLOCKING}'/></iq>")
    assert reply.get("type") == "result", ET.tostring(reply)


async def test_an_apps_change_takes_effect_on_live_sessions(
    start_server: StartServer, new_client: NewClient
):
    server: ServerHandle = await start_server()
    assert server.app is not None
    alice = await go_online(new_client, server, "alice", "desk")
    await blocklist_asked(alice)
    bob = await go_online(new_client, server, "bob", "phone")
    await alice.next(presence_from(bob.jid, None))
    headers = bearer(await token_for(server.app.oauth, "alice", "wl.blocking"))
    clock = asyncio.get_running_loop().time

    async with httpx.AsyncClient(base_url=http_base(server)) as client:
        since = clock()
        response = await client.put("/api/v1/me/blocked/bob@localhost", headers=headers)
        assert response.status_code == 200
        assert pushed(await alice.next(block_push, DEADLINE)) == ("block", ["bob@localhost"])
        await alice.next(presence_from(bob.jid, "unavailable"), DEADLINE)
        await bob.next(presence_from(alice.jid, "unavailable"), DEADLINE)
        assert clock() - since < DEADLINE

        bob.send("<message to='alice@localhost' type='chat' id='m1'><body>hi</body></message>")
        refused = await bob.next(lambda e: e.get("id") == "m1")
        assert refused.get("type") == "error"
        assert refused.find(f"{{{NS_CLIENT}}}error/{{{NS_STANZAS}}}service-unavailable") is not None

        since = clock()
        response = await client.delete("/api/v1/me/blocked/bob@localhost", headers=headers)
        assert response.status_code == 200
        assert pushed(await alice.next(block_push, DEADLINE)) == ("unblock", ["bob@localhost"])
        await alice.next(presence_from(bob.jid, None), DEADLINE)
        await bob.next(presence_from(alice.jid, None), DEADLINE)
        assert clock() - since < DEADLINE

    bob.send("<message to='alice@localhost' type='chat' id='m2'><body>back</body></message>")
    delivered = await alice.next(lambda e: e.get("id") == "m2")
    assert delivered.get("type") == "chat"
