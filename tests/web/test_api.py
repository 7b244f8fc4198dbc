"""The REST API: bearer tokens per RFC 6750, /me and /me/contacts, the operators' writes.

Most tests drive the web application in process (``site``, with presence the test
sets); the last ones run a whole chinwag with real slixmpp clients, to see live
presence in the API and the operators' changes pushed to online rosters.
"""

from __future__ import annotations

import asyncio
import base64
from datetime import timedelta
from pathlib import Path

import httpx
import pytest
from integration.support import NewClient, ServerHandle, StartServer
from sqlalchemy import update

from chinwag.oauth.service import OAuthService
from chinwag.store.models import utc_now
from chinwag.store.oauth_models import OAuthToken
from chinwag.web.admin_token import ADMIN_TOKEN_FILE, ensure_admin_token
from chinwag.web.openapi import OPENAPI
from chinwag.web.presence import ResourcePresence

from .conftest import Site
from .live_support import available_from, go_online, pushed_items, roster_push

REALM = 'Bearer realm="chinwag"'
INVALID_TOKEN = 'Bearer realm="chinwag", error="invalid_token"'
INSUFFICIENT_SCOPE = 'Bearer realm="chinwag", error="insufficient_scope", scope="wl.basic"'
ADMIN_REALM = 'Bearer realm="chinwag-admin"'
PUSH_DEADLINE = 1.0


async def token_for(oauth: OAuthService, user: str, scope: str = "wl.basic") -> str:
    """An access token of a new app of carol's, for ``user``."""
    registered = await oauth.register_app("Reader", ["https://reader.example/cb"], owner="carol")
    issued = await oauth.issue_token(registered.app.client_id, user, scope)
    return issued.access_token


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def admin(site: Site) -> dict[str, str]:
    return bearer(site.admin_token)


# --- bearer tokens (RFC 6750 3) ---------------------------------------------------------


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/me/contacts"])
async def test_no_token_gets_a_challenge_without_an_error_code(api, path):
    for headers in ({}, {"Authorization": "Basic YWxpY2U6d29uZGVybGFuZA=="}):
        response = await api.get(path, headers=headers)

        assert response.status_code == 401
        assert response.headers["www-authenticate"] == REALM
        assert response.json()["error"] == "unauthorized"


async def test_invalid_expired_and_revoked_tokens_are_invalid_token(site, api):
    token = await token_for(site.oauth, "alice")
    assert (await api.get("/api/v1/me", headers=bearer(token))).status_code == 200
    await site.oauth.revoke_token(token)
    expiring = await token_for(site.oauth, "alice")
    async with site.database.sessions.begin() as session:
        await session.execute(
            update(OAuthToken)
            .where(OAuthToken.revoked.is_(False))
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )

    for sent in ("not-a-token", "", token, expiring):
        response = await api.get("/api/v1/me", headers={"Authorization": f"Bearer {sent}"})

        assert response.status_code == 401, sent
        assert response.headers["www-authenticate"] == INVALID_TOKEN
        assert response.json() == {
            "error": "invalid_token",
            "message": "The access token is invalid, expired or revoked.",
        }


async def test_a_suspended_apps_token_is_invalid(site, api):
    token = await token_for(site.oauth, "alice")
    [app] = await site.oauth.apps_of("carol")
    await site.oauth.suspend_app(app.client_id)

    response = await api.get("/api/v1/me/contacts", headers=bearer(token))

    assert response.status_code == 401
    assert response.headers["www-authenticate"] == INVALID_TOKEN


async def test_a_token_without_wl_basic_is_insufficient_scope(site, api):
    token = await token_for(site.oauth, "alice", "wl.messenger")

    for path in ("/api/v1/me", "/api/v1/me/contacts"):
        response = await api.get(path, headers=bearer(token))

        assert response.status_code == 403
        assert response.headers["www-authenticate"] == INSUFFICIENT_SCOPE
        assert response.json()["error"] == "insufficient_scope"


# --- reading ------------------------------------------------------------------------------


async def test_me_is_the_tokens_users_profile(site, api):
    await site.profiles.set_fields(
        "alice", fn="Alice Liddell", email="alice@example.org", photo_type="image/png", photo=b"P"
    )
    token = await token_for(site.oauth, "Alice", "wl.basic wl.messenger")

    response = await api.get("/api/v1/me", headers=bearer(token))

    assert response.status_code == 200
    assert response.headers["content-type"] == "application/json"
    assert response.headers["cache-control"] == "no-store"
    assert response.json() == {
        "username": "alice",
        "jid": "alice@localhost",
        "fn": "Alice Liddell",
        "nickname": None,
        "email": "alice@example.org",
        "photo": {"type": "image/png", "data": base64.b64encode(b"P").decode()},
    }


async def test_my_contacts_with_their_current_presence(site, api):
    await site.contacts.add_mutual("alice", "bob")
    await site.contacts.add_mutual("alice", "carol")
    await site.profiles.set_fields("bob", fn="Bob Builder")
    site.online["bob"] = [
        ResourcePresence("phone", "away", "on the road", 0),
        ResourcePresence("desk", "dnd", "in a meeting", 5),
    ]
    token = await token_for(site.oauth, "alice")

    response = await api.get("/api/v1/me/contacts", headers=bearer(token))

    assert response.status_code == 200
    assert response.json() == {
        "contacts": [
            {
                "username": "bob",
                "jid": "bob@localhost",
                "name": "Bob Builder",
                "subscription": "both",
                "groups": [],
                "presence": {
                    "available": True,
                    "show": "dnd",  # the highest priority speaks for bob
                    "status": "in a meeting",
                    "resources": [
                        {
                            "resource": "desk",
                            "show": "dnd",
                            "status": "in a meeting",
                            "priority": 5,
                        },
                        {
                            "resource": "phone",
                            "show": "away",
                            "status": "on the road",
                            "priority": 0,
                        },
                    ],
                },
            },
            {
                "username": "carol",
                "jid": "carol@localhost",
                "name": None,
                "subscription": "both",
                "groups": [],
                "presence": {
                    "available": False,
                    "show": "offline",
                    "status": None,
                    "resources": [],
                },
            },
        ]
    }


async def test_no_contacts(site, api):
    token = await token_for(site.oauth, "bob")

    response = await api.get("/api/v1/me/contacts", headers=bearer(token))

    assert response.json() == {"contacts": []}


# --- operators' writes --------------------------------------------------------------------


async def test_admin_token_file_is_private_and_kept(site):
    path = site.settings.data_path / ADMIN_TOKEN_FILE
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.read_text().strip() == site.admin_token
    assert ensure_admin_token(site.settings.data_path) == site.admin_token


def test_a_short_admin_token_file_is_refused(tmp_path: Path):
    (tmp_path / ADMIN_TOKEN_FILE).write_text("short\n")
    with pytest.raises(RuntimeError, match="too short"):
        ensure_admin_token(tmp_path)


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("PUT", "/api/v1/admin/contacts/alice/bob"),
        ("DELETE", "/api/v1/admin/contacts/alice/bob"),
        ("PATCH", "/api/v1/admin/users/alice/profile"),
    ],
)
async def test_operator_endpoints_need_the_admin_token(site, api, method, path):
    user_token = await token_for(site.oauth, "alice")

    missing = await api.request(method, path, json={})
    wrong = await api.request(method, path, json={}, headers=bearer(user_token))

    assert missing.status_code == wrong.status_code == 401
    assert missing.headers["www-authenticate"] == ADMIN_REALM
    assert missing.json()["error"] == "unauthorized"
    assert wrong.headers["www-authenticate"] == f'{ADMIN_REALM}, error="invalid_token"'
    assert wrong.json()["error"] == "invalid_token"
    assert await site.events() == []


async def test_operator_links_and_unlinks_contacts(site, api):
    added = await api.put("/api/v1/admin/contacts/Alice/bob", headers=admin(site))
    again = await api.put("/api/v1/admin/contacts/alice/bob", headers=admin(site))

    assert added.status_code == again.status_code == 200
    assert added.json() == {"users": ["alice", "bob"], "contacts": True}
    assert [c.username for c in await site.contacts.list_contacts("alice")] == ["bob"]

    removed = await api.delete("/api/v1/admin/contacts/bob/alice", headers=admin(site))
    gone = await api.delete("/api/v1/admin/contacts/bob/alice", headers=admin(site))

    assert removed.status_code == 200
    assert removed.json() == {"users": ["bob", "alice"], "contacts": False}
    assert gone.status_code == 404
    assert gone.json() == {
        "error": "not_contacts",
        "message": "'bob' and 'alice' are not contacts.",
    }
    assert await site.contacts.list_contacts("alice") == []


@pytest.mark.parametrize(
    ("path", "status", "error"),
    [
        ("/api/v1/admin/contacts/alice/nobody", 404, "no_such_user"),
        ("/api/v1/admin/contacts/alice/ALICE", 409, "same_account"),
        ("/api/v1/admin/contacts/alice/a%20b", 404, "no_such_user"),
        ("/api/v1/admin/contacts/al%40ce/bob", 404, "no_such_user"),
    ],
)
async def test_operator_contact_errors(site, api, path, status, error):
    for method in ("PUT", "DELETE"):
        response = await api.request(method, path, headers=admin(site))

        assert response.status_code == status
        assert response.json()["error"] == error
        assert response.json()["message"]


async def test_operator_sets_profile_fields(site, api):
    await site.profiles.set_fields("bob", nickname="bobby", email="bob@example.org")

    response = await api.patch(
        "/api/v1/admin/users/Bob/profile",
        headers=admin(site),
        json={"fn": "  Bob Builder ", "email": None},
    )

    assert response.status_code == 200
    assert response.json() == {
        "username": "bob",
        "jid": "bob@localhost",
        "fn": "Bob Builder",
        "nickname": "bobby",
        "email": None,
        "photo": None,
    }
    unchanged = await api.patch("/api/v1/admin/users/bob/profile", headers=admin(site), json={})
    assert unchanged.json() == response.json()


@pytest.mark.parametrize(
    ("body", "error"),
    [
        (b"{", "invalid_json"),
        (b"[]", "invalid_profile"),
        (b'{"photo": "x"}', "invalid_profile"),
        (b'{"fn": 3}', "invalid_profile"),
        (b'{"fn": "a\\u0001b"}', "invalid_profile"),
        (b'{"fn": "\\ud800"}', "invalid_profile"),
        (('{"fn": "' + "x" * 1025 + '"}').encode(), "invalid_profile"),
    ],
)
async def test_operator_profile_bad_input(site, api, body, error):
    response = await api.patch(
        "/api/v1/admin/users/bob/profile",
        headers={**admin(site), "Content-Type": "application/json"},
        content=body,
    )

    assert response.status_code == 400
    assert response.json()["error"] == error
    assert await site.events() == []


async def test_operator_profile_of_nobody(site, api):
    for body in ({}, {"fn": "Nemo"}):
        response = await api.patch(
            "/api/v1/admin/users/nobody/profile", headers=admin(site), json=body
        )

        assert response.status_code == 404
        assert response.json() == {"error": "no_such_user", "message": "There is no user 'nobody'."}


# --- the document and the rest of the path space --------------------------------------------


async def test_openapi_document_is_served(api):
    response = await api.get("/api/v1/openapi.json")

    assert response.status_code == 200
    assert response.json() == OPENAPI
    assert response.json()["openapi"] == "3.1.0"


async def test_errors_under_the_api_are_json(api):
    unknown = await api.get("/api/v1/nothing-here")
    wrong_method = await api.post("/api/v1/me")

    assert unknown.status_code == 404
    assert unknown.json()["error"] == "not_found"
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"] == "method_not_allowed"
    assert set(wrong_method.headers["allow"].split(", ")) == {"GET", "HEAD"}
    on_pair = await api.post("/api/v1/admin/contacts/alice/bob")
    assert on_pair.status_code == 405
    assert set(on_pair.headers["allow"].split(", ")) == {"PUT", "DELETE"}


async def test_bodies_over_64_kib_are_refused(site, api):
    response = await api.patch(
        "/api/v1/admin/users/bob/profile",
        headers={**admin(site), "Content-Type": "application/json"},
        content=b'{"fn": "' + b"x" * (64 * 1024) + b'"}',
    )

    assert response.status_code == 413
    assert response.json()["error"] == "too_large"
    assert await site.events() == []


# --- with a running chinwag and real clients ----------------------------------------------


async def started(start_server: StartServer) -> ServerHandle:
    """A chinwag with alice, bob (contacts) and carol (nobody's contact)."""
    server = await start_server()
    assert server.app is not None
    await server.app.accounts.add_user("carol", "carol-secret")
    server.users["carol"] = "carol-secret"
    return server


def http_base(server: ServerHandle) -> str:
    assert server.app is not None
    return f"http://{server.host}:{server.app.http.port}"


def live_admin(server: ServerHandle) -> dict[str, str]:
    assert server.app is not None
    return bearer(ensure_admin_token(server.app.settings.data_path))


async def test_contacts_show_live_presence_from_the_xmpp_server(
    start_server: StartServer, new_client: NewClient
):
    server = await started(start_server)
    assert server.app is not None
    await server.app.services.contacts.add_mutual("alice", "carol")
    token = await token_for(server.app.oauth, "alice")
    await go_online(
        new_client,
        server,
        "bob",
        "laptop",
        "<show>away</show><status>out for lunch</status><priority>3</priority>",
    )

    async with httpx.AsyncClient(base_url=http_base(server)) as client:
        response = await client.get("/api/v1/me/contacts", headers=bearer(token))

    assert response.status_code == 200
    by_name = {contact["username"]: contact["presence"] for contact in response.json()["contacts"]}
    assert by_name == {
        "bob": {
            "available": True,
            "show": "away",
            "status": "out for lunch",
            "resources": [
                {"resource": "laptop", "show": "away", "status": "out for lunch", "priority": 3}
            ],
        },
        "carol": {"available": False, "show": "offline", "status": None, "resources": []},
    }


async def test_operator_contact_changes_reach_online_rosters_within_a_second(
    start_server: StartServer, new_client: NewClient
):
    server = await started(start_server)
    alice = await go_online(new_client, server, "alice", "test")
    carol = await go_online(new_client, server, "carol", "test")
    clock = asyncio.get_running_loop().time

    async with httpx.AsyncClient(base_url=http_base(server)) as client:
        since = clock()
        added = await client.put("/api/v1/admin/contacts/alice/carol", headers=live_admin(server))
        assert added.status_code == 200
        push = await alice.next(roster_push, timeout=PUSH_DEADLINE)
        assert pushed_items(push)["carol@localhost"]["subscription"] == "both"
        push = await carol.next(roster_push, timeout=PUSH_DEADLINE)
        assert pushed_items(push)["alice@localhost"]["subscription"] == "both"
        await alice.next(available_from(carol.jid), timeout=PUSH_DEADLINE)
        assert clock() - since < PUSH_DEADLINE

        since = clock()
        removed = await client.delete(
            "/api/v1/admin/contacts/carol/alice", headers=live_admin(server)
        )
        assert removed.status_code == 200
        push = await alice.next(roster_push, timeout=PUSH_DEADLINE)
        assert pushed_items(push)["carol@localhost"]["subscription"] == "remove"
        assert clock() - since < PUSH_DEADLINE


async def test_operator_profile_change_reaches_contacts_rosters(
    start_server: StartServer, new_client: NewClient
):
    server = await started(start_server)
    alice = await go_online(new_client, server, "alice", "test")
    clock = asyncio.get_running_loop().time

    async with httpx.AsyncClient(base_url=http_base(server)) as client:
        since = clock()
        response = await client.patch(
            "/api/v1/admin/users/bob/profile",
            headers=live_admin(server),
            json={"fn": "Bob Builder"},
        )
        assert response.status_code == 200
        push = await alice.next(roster_push, timeout=PUSH_DEADLINE)

    assert pushed_items(push)["bob@localhost"]["name"] == "Bob Builder"
    assert clock() - since < PUSH_DEADLINE
