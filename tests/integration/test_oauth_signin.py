"""Signing in over XMPP with OAuth tokens and app passwords, with real clients.

The SASL mechanisms are those of the modelled service and its clients:
``X-MESSENGER-OAUTH2`` (the ``<auth/>`` text is the token itself, one step, no
username), ``OAUTHBEARER`` (RFC 7628) and ``X-OAUTH2`` (the Google Talk form).
slixmpp speaks the first and the last itself and ``OAUTHBEARER`` through the
small mechanism of ``signin_support``; raw streams send what no client does.

Tokens are checked at sign-in. Revoking an app (on the connected-apps page, with
``chinwag token revoke``) or suspending it (in this process or with ``chinwag app
suspend`` in another) ends its live sessions within a second, with a stream error
that says access was revoked. Revoking one credential of an app (one app password,
or one grant's tokens) ends only the sessions that signed in with it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import sys
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path

import pytest
from oauth.support import CALLBACK, form_to, refresh, submit
from slixmpp import ClientXMPP
from sqlalchemy import update

from chinwag.oauth.tokens import digest
from chinwag.server.tcp import C2SProtocol
from chinwag.store.events import UNAPPLIED, NewEvent, record_events
from chinwag.store.models import utc_now
from chinwag.store.oauth import OAUTH_REVOKED
from chinwag.store.oauth_models import OAuthToken

from .signin_support import (
    END_WITHIN,
    END_WITHIN_ELSEWHERE,
    MESSENGER,
    Finished,
    RawSasl,
    browser,
    chats,
    cli_config,
    condition,
    ends_within,
    refusal,
    revoke_on_the_apps_page,
    run_chinwag,
    session_app,
    session_end,
    sign_in_on_the_web,
    still_served,
    token_client,
    token_from_flow,
)
from .support import (
    TIMEOUT,
    Connect,
    NewClient,
    ServerHandle,
    StartServer,
    close_client,
    make_client,
    sign_in,
    stream_error_condition,
)
from .test_serve import clean_env

TOKEN_MECHANISMS = ("X-MESSENGER-OAUTH2", "OAUTHBEARER", "X-OAUTH2")


@dataclass
class Platform:
    """A running chinwag with alice and bob, and one app registered on it."""

    server: ServerHandle
    client_id: str

    @property
    def running(self):
        assert self.server.app is not None
        return self.server.app

    async def token(self, user: str = "alice", scope: str = MESSENGER, **kwargs) -> str:
        issued = await self.running.oauth.issue_token(self.client_id, user, scope, **kwargs)
        return issued.access_token

    async def other_app(self, name: str = "Other Chat") -> str:
        registered = await self.running.oauth.register_app(name, [CALLBACK], public=True)
        return registered.app.client_id


async def _platform(server: ServerHandle) -> Platform:
    assert server.app is not None
    registered = await server.app.oauth.register_app("Pocket Chat", [CALLBACK], public=True)
    return Platform(server, registered.app.client_id)


@pytest.fixture
async def platform(server: ServerHandle) -> Platform:
    return await _platform(server)


@pytest.fixture
async def strict(start_server: StartServer) -> Platform:
    """A chinwag where account passwords do not sign in over XMPP."""
    return await _platform(await start_server(auth={"account_passwords": False}))


# --- tokens from the flow, with real clients ---------------------------------------------


async def test_token_from_the_code_flow_signs_in_with_x_messenger_oauth2_and_oauthbearer(
    platform: Platform, new_client: NewClient
) -> None:
    server = platform.server
    tokens = await token_from_flow(server, platform.client_id, "alice")

    messenger = token_client(new_client, server, tokens["access_token"], "X-MESSENGER-OAUTH2")
    await sign_in(messenger, server.host, server.port)
    bearer = token_client(
        new_client, server, tokens["access_token"], "OAUTHBEARER", resource="tablet"
    )
    await sign_in(bearer, server.host, server.port)

    # Signed in as the token's user, not as the someone-else@localhost they assumed.
    assert str(messenger.boundjid) == "alice@localhost/phone"
    assert str(bearer.boundjid) == "alice@localhost/tablet"
    assert messenger.plugin["feature_mechanisms"].mech.name == "X-MESSENGER-OAUTH2"
    assert bearer.plugin["feature_mechanisms"].mech.name == "OAUTHBEARER"
    assert session_app(server, messenger) == platform.client_id
    assert session_app(server, bearer) == platform.client_id
    await still_served(messenger, server)
    await still_served(bearer, server)


async def test_a_client_that_assumes_no_username_gets_the_tokens_jid(
    platform: Platform,
) -> None:
    server = platform.server
    client = make_client(server.domain, "", sasl_mech="X-MESSENGER-OAUTH2")
    client.credentials["access_token"] = await platform.token("bob")
    try:
        await sign_in(client, server.host, server.port)

        assert client.boundjid.bare == "bob@localhost"
        assert client.boundjid.resource.startswith("chinwag-")
    finally:
        await close_client(client)


async def test_x_oauth2_sends_the_username_with_the_token(
    platform: Platform, new_client: NewClient
) -> None:
    server = platform.server
    client = token_client(new_client, server, await platform.token(), "X-OAUTH2", user="alice")

    await sign_in(client, server.host, server.port)

    assert str(client.boundjid) == "alice@localhost/phone"
    assert session_app(server, client) == platform.client_id


async def test_oauthbearer_with_the_users_authzid(
    platform: Platform, new_client: NewClient
) -> None:
    server = platform.server
    token = await platform.token()
    client = token_client(new_client, server, token, "OAUTHBEARER", authzid="alice@localhost")
    await sign_in(client, server.host, server.port)
    assert client.boundjid.bare == "alice@localhost"

    another = token_client(
        new_client, server, token, "OAUTHBEARER", resource="b", authzid="bob@localhost"
    )
    assert await refusal(another, server) == "not-authorized"


# --- tokens that must not sign in ----------------------------------------------------------


async def _expired(platform: Platform) -> str:
    token = await platform.token()
    async with platform.running.database.sessions.begin() as session:
        await session.execute(
            update(OAuthToken)
            .where(OAuthToken.access_hash == digest(token))
            .values(expires_at=utc_now() - timedelta(seconds=1))
        )
    return token


async def _revoked(platform: Platform) -> str:
    token = await platform.token()
    assert await platform.running.oauth.revoke_token(token)
    return token


async def _garbage(platform: Platform) -> str:
    return "not-a-token-at-all"


async def _under_scoped(platform: Platform) -> str:
    return await platform.token(scope="wl.basic wl.offline_access")


async def _suspended_app(platform: Platform) -> str:
    token = await platform.token()
    await platform.running.oauth.suspend_app(platform.client_id)
    return token


async def _deleted_app(platform: Platform) -> str:
    other = await platform.other_app()
    issued = await platform.running.oauth.issue_token(other, "alice", MESSENGER)
    await platform.running.oauth.delete_app(other)
    return issued.access_token


UNUSABLE = {
    "expired": _expired,
    "revoked": _revoked,
    "garbage": _garbage,
    "under-scoped": _under_scoped,
    "suspended-app": _suspended_app,
    "deleted-app": _deleted_app,
}


@pytest.mark.parametrize("mechanism", TOKEN_MECHANISMS)
@pytest.mark.parametrize("kind", UNUSABLE)
async def test_unusable_token_is_not_authorized(
    platform: Platform, new_client: NewClient, kind: str, mechanism: str
) -> None:
    server = platform.server
    token = await UNUSABLE[kind](platform)
    client = token_client(new_client, server, token, mechanism, user="alice")

    assert await refusal(client, server) == "not-authorized"
    assert server.app is not None and not server.app.xmpp.router.all_sessions()


async def test_a_token_that_expires_during_a_session_does_not_end_it(
    platform: Platform, new_client: NewClient
) -> None:
    server = platform.server
    token = await platform.token(ttl=3)  # long enough to sign in on a busy machine
    client = token_client(new_client, server, token, "X-MESSENGER-OAUTH2")
    ended = session_end(client)
    await sign_in(client, server.host, server.port)
    grant = await platform.running.oauth.check_token(token)
    assert grant is not None

    await asyncio.sleep(max(0.0, (grant.expires_at - utc_now()).total_seconds()) + 0.5)

    assert await platform.running.oauth.check_token(token) is None
    await still_served(client, server)
    assert not ended.done()
    late = token_client(new_client, server, token, "X-MESSENGER-OAUTH2", resource="late")
    assert await refusal(late, server) == "not-authorized"


# --- the wire forms, on raw streams ----------------------------------------------------------


async def test_x_messenger_oauth2_token_as_is_or_base64_encoded(platform: Platform) -> None:
    server = platform.server
    token = await platform.token()
    for text, resource in ((token, "plain"), (base64.b64encode(token.encode()).decode(), "b64")):
        stream = await RawSasl.open(server)
        try:
            assert condition(await stream.auth("X-MESSENGER-OAUTH2", text)) == "success"
            features = await stream.restart()
            assert b"urn:ietf:params:xml:ns:xmpp-bind" in features
            assert await stream.bind(resource) == f"alice@localhost/{resource}"
        finally:
            await stream.close()


async def test_x_messenger_oauth2_garbage_fails_without_a_challenge(platform: Platform) -> None:
    stream = await RawSasl.open(platform.server)
    try:
        for text in ("not-a-token", base64.b64encode(b"not-a-token").decode()):
            answer = await stream.auth("X-MESSENGER-OAUTH2", text)
            assert condition(answer) == "not-authorized"
    finally:
        await stream.close()


async def test_oauthbearer_error_challenge_then_not_authorized(platform: Platform) -> None:
    stream = await RawSasl.open(platform.server)
    try:
        message = b"n,,\x01auth=Bearer not-a-token\x01\x01"
        challenge = await stream.auth("OAUTHBEARER", base64.b64encode(message).decode())
        assert condition(challenge) == "challenge"
        error = json.loads(base64.b64decode(challenge.text or ""))
        assert error["status"] == "invalid_token"
        assert error["scope"] == MESSENGER

        assert condition(await stream.respond(b"\x01")) == "not-authorized"
    finally:
        await stream.close()


@pytest.mark.parametrize("mechanism", ["OAUTHBEARER", "X-OAUTH2"])
async def test_token_mechanism_without_initial_response_gets_an_empty_challenge(
    platform: Platform, mechanism: str
) -> None:
    """RFC 6120 6.4.2: no initial response in ``<auth/>``, so the server asks for it."""
    token = await platform.token()
    message = {
        "OAUTHBEARER": f"n,,\x01auth=Bearer {token}\x01\x01",
        "X-OAUTH2": f"\0alice\0{token}",
    }[mechanism]
    stream = await RawSasl.open(platform.server)
    try:
        challenge = await stream.auth(mechanism, "")
        assert condition(challenge) == "challenge"
        assert (challenge.text or "").strip() in ("", "=")
        assert condition(await stream.respond(message.encode())) == "success"
    finally:
        await stream.close()


@pytest.mark.parametrize(
    ("authzid", "authcid"),
    [("", "alice"), ("", "alice@localhost"), ("alice@localhost", "alice"), ("", "Alice")],
)
async def test_x_oauth2_google_talk_form(platform: Platform, authzid: str, authcid: str) -> None:
    token = await platform.token()
    stream = await RawSasl.open(platform.server)
    try:
        message = f"{authzid}\0{authcid}\0{token}".encode()
        answer = await stream.auth("X-OAUTH2", base64.b64encode(message).decode())
        assert condition(answer) == "success"
        await stream.restart()
        assert await stream.bind() == "alice@localhost/raw"
    finally:
        await stream.close()


@pytest.mark.parametrize(
    ("authzid", "authcid"),
    [("", "bob"), ("", "bob@localhost"), ("", "alice@elsewhere.example"), ("bob", "alice")],
)
async def test_x_oauth2_for_another_account_is_not_authorized(
    platform: Platform, authzid: str, authcid: str
) -> None:
    token = await platform.token()
    stream = await RawSasl.open(platform.server)
    try:
        message = f"{authzid}\0{authcid}\0{token}".encode()
        answer = await stream.auth("X-OAUTH2", base64.b64encode(message).decode())
        assert condition(answer) == "not-authorized"
    finally:
        await stream.close()


# --- revocation and suspension end live sessions ---------------------------------------------


async def test_revoking_on_the_connected_apps_page_ends_the_apps_sessions(
    platform: Platform, new_client: NewClient, connect: Connect
) -> None:
    server = platform.server
    other = await platform.other_app()
    revoked = token_client(new_client, server, await platform.token(), "X-MESSENGER-OAUTH2")
    bearer = token_client(
        new_client, server, await platform.token(), "OAUTHBEARER", resource="tablet"
    )
    other_app = token_client(
        new_client,
        server,
        (await platform.running.oauth.issue_token(other, "alice", MESSENGER)).access_token,
        "X-MESSENGER-OAUTH2",
        resource="other",
    )
    bobs = token_client(new_client, server, await platform.token("bob"), "OAUTHBEARER")
    for client in (revoked, bearer, other_app, bobs):
        await sign_in(client, server.host, server.port)
    own_password = await connect(server, "alice", "desktop")
    ends = [session_end(client) for client in (revoked, bearer)]
    survivors = [(client, session_end(client)) for client in (other_app, bobs, own_password)]

    async with browser(server) as web:
        await sign_in_on_the_web(web, "alice", server.users["alice"])
        await revoke_on_the_apps_page(web, platform.client_id)
        since = asyncio.get_running_loop().time()

    for ended in ends:
        await ends_within(ended, since, END_WITHIN)
    for client, ended in survivors:
        await still_served(client, server)
        assert not ended.done()


async def test_suspending_the_app_ends_every_users_sessions_of_it(
    platform: Platform, new_client: NewClient, connect: Connect
) -> None:
    server = platform.server
    alices = token_client(new_client, server, await platform.token(), "X-MESSENGER-OAUTH2")
    bobs = token_client(new_client, server, await platform.token("bob"), "OAUTHBEARER")
    for client in (alices, bobs):
        await sign_in(client, server.host, server.port)
    own_password = await connect(server, "alice", "desktop")
    ends = [session_end(client) for client in (alices, bobs)]
    unaffected = session_end(own_password)

    await platform.running.oauth.suspend_app(platform.client_id)
    since = asyncio.get_running_loop().time()

    for ended in ends:
        end = await ends_within(ended, since, END_WITHIN)
        assert "suspended" in end.text
    await still_served(own_password, server)
    assert not unaffected.done()


async def test_revocation_reaches_a_stream_signed_in_but_not_yet_bound(
    platform: Platform,
) -> None:
    server = platform.server
    token = await platform.token()
    stream = await RawSasl.open(server)
    try:
        assert condition(await stream.auth("X-MESSENGER-OAUTH2", token)) == "success"
        features = await stream.restart()

        assert await platform.running.oauth.revoke_app_for_user("alice", platform.client_id)
        data = await stream.raw.read_until_closed(END_WITHIN + 1)
        assert stream_error_condition(features + data) == "not-authorized"
        assert b">access was revoked</text>" in data
    finally:
        await stream.close()


async def test_console_script_in_another_process_ends_sessions(
    platform: Platform, new_client: NewClient, tmp_path
) -> None:
    """``chinwag token revoke`` and ``chinwag app suspend``, on the same store, elsewhere."""
    server = platform.server
    config = cli_config(tmp_path, server)
    token = await platform.token()
    by_token = token_client(new_client, server, token, "X-MESSENGER-OAUTH2")
    by_app = token_client(new_client, server, await platform.token("bob"), "OAUTHBEARER")
    for client in (by_token, by_app):
        await sign_in(client, server.host, server.port)
    token_ended, app_ended = session_end(by_token), session_end(by_app)

    revoked = await run_chinwag(config, "token", "revoke", token)
    assert revoked.returncode == 0, revoked.stderr
    await ends_within(token_ended, revoked.at, END_WITHIN_ELSEWHERE)
    await still_served(by_app, server)

    suspended = await run_chinwag(config, "app", "suspend", platform.client_id)
    assert suspended.returncode == 0, suspended.stderr
    await ends_within(app_ended, suspended.at, END_WITHIN_ELSEWHERE)


# --- revoking one credential ends only the sessions it signed in --------------------------------


async def _app_password_client(
    platform: Platform, new_client: NewClient, resource: str, mechanism: str
) -> tuple[int, ClientXMPP]:
    """A client of alice's signed in with a new app password of the platform's app; its id."""
    server = platform.server
    password_id, password = await platform.running.oauth.create_app_password(
        "alice", platform.client_id, resource
    )
    client = new_client(server, "alice", resource, password=password, sasl_mech=mechanism)
    await sign_in(client, server.host, server.port)
    assert session_app(server, client) == platform.client_id
    return password_id, client


async def _revoke_app_password(
    platform: Platform, password_id: int, where: str, tmp_path: Path
) -> tuple[float, float]:
    """Revoke it in this process or with ``chinwag`` in another: (when, how soon it acts)."""
    if where == "here":
        assert await platform.running.oauth.revoke_app_password("alice", password_id)
        return asyncio.get_running_loop().time(), END_WITHIN
    revoked = await run_chinwag(
        cli_config(tmp_path, platform.server),
        "app-password",
        "revoke",
        str(password_id),
        "--user",
        "alice",
    )
    assert revoked.returncode == 0, revoked.stderr
    return revoked.at, END_WITHIN_ELSEWHERE


@pytest.mark.parametrize("where", ["here", "elsewhere"])
async def test_revoking_one_app_password_ends_only_the_session_it_signed_in(
    platform: Platform, new_client: NewClient, connect: Connect, tmp_path: Path, where: str
) -> None:
    """Two app passwords and a token of the same app, for the same user: revoking one app
    password ends its session alone, and the others go on chatting."""
    server = platform.server
    revoked_id, revoked = await _app_password_client(platform, new_client, "gajim", "SCRAM-SHA-256")
    _, other_password = await _app_password_client(platform, new_client, "dino", "PLAIN")
    by_token = token_client(
        new_client, server, await platform.token(), "X-MESSENGER-OAUTH2", resource="phone"
    )
    await sign_in(by_token, server.host, server.port)
    bob = await connect(server, "bob", "desk")
    ended = session_end(revoked)
    survivors = [(client, session_end(client)) for client in (other_password, by_token)]

    since, within = await _revoke_app_password(platform, revoked_id, where, tmp_path)

    await ends_within(ended, since, within)
    for client, survivor_ended in survivors:
        await chats(client, bob)
        assert not survivor_ended.done()


async def test_revoking_one_grant_ends_only_the_sessions_its_tokens_signed_in(
    platform: Platform, new_client: NewClient, connect: Connect
) -> None:
    """A session signed in with a token and one signed in with the token refreshed from it
    end together when the app revokes the grant (RFC 7009); the same app's other grant to
    the same user, and its app password, go on chatting."""
    server = platform.server
    issued = await platform.running.oauth.issue_token(
        platform.client_id, "alice", f"{MESSENGER} wl.offline_access"
    )
    assert issued.refresh_token is not None
    first = token_client(new_client, server, issued.access_token, "X-MESSENGER-OAUTH2")
    await sign_in(first, server.host, server.port)
    async with browser(server) as web:
        response = await refresh(web, platform.client_id, issued.refresh_token)
    assert response.status_code == 200, response.text
    refreshed = response.json()
    second = token_client(
        new_client, server, refreshed["access_token"], "OAUTHBEARER", resource="tablet"
    )
    other_grant = token_client(
        new_client, server, await platform.token(), "X-OAUTH2", user="alice", resource="laptop"
    )
    for client in (second, other_grant):
        await sign_in(client, server.host, server.port)
    _, by_password = await _app_password_client(platform, new_client, "gajim", "SCRAM-SHA-1")
    bob = await connect(server, "bob", "desk")
    ends = [session_end(client) for client in (first, second)]
    survivors = [(client, session_end(client)) for client in (other_grant, by_password)]

    async with browser(server) as web:
        revoked = await web.post(
            "/oauth/revoke",
            data={"token": refreshed["refresh_token"], "client_id": platform.client_id},
        )
        since = asyncio.get_running_loop().time()
    assert revoked.status_code == 200, revoked.text

    for ended in ends:
        await ends_within(ended, since, END_WITHIN)
    for client, survivor_ended in survivors:
        await chats(client, bob)
        assert not survivor_ended.done()


async def test_revoking_one_grant_reaches_only_its_streams_not_yet_bound(
    platform: Platform,
) -> None:
    server = platform.server
    revoked_token, kept_token = await platform.token(), await platform.token()
    revoked, kept = await RawSasl.open(server), await RawSasl.open(server)
    try:
        for stream, token in ((revoked, revoked_token), (kept, kept_token)):
            assert condition(await stream.auth("X-MESSENGER-OAUTH2", token)) == "success"
        features = await revoked.restart()
        await kept.restart()

        assert await platform.running.oauth.revoke_token(revoked_token)
        data = await revoked.raw.read_until_closed(END_WITHIN + 1)
        assert stream_error_condition(features + data) == "not-authorized"
        assert b">access was revoked</text>" in data
        assert await kept.bind("kept") == "alice@localhost/kept"
    finally:
        await revoked.close()
        await kept.close()


async def test_a_revocation_written_without_a_credential_ends_the_whole_grant(
    platform: Platform, new_client: NewClient, connect: Connect
) -> None:
    """An ``oauth.revoked`` event in the outbox from a process that names no credential
    (one not yet upgraded, during a rolling upgrade) ends every session of the user's
    grant to the app, as it always did."""
    server = platform.server
    _, by_password = await _app_password_client(platform, new_client, "gajim", "PLAIN")
    by_token = token_client(
        new_client, server, await platform.token(), "X-MESSENGER-OAUTH2", resource="phone"
    )
    bobs = token_client(new_client, server, await platform.token("bob"), "OAUTHBEARER")
    for client in (by_token, bobs):
        await sign_in(client, server.host, server.port)
    own_password = await connect(server, "alice", "desktop")
    ends = [session_end(client) for client in (by_password, by_token)]
    survivors = [session_end(client) for client in (own_password, bobs)]

    async with platform.running.database.sessions.begin() as session:
        await record_events(
            session, [NewEvent(OAUTH_REVOKED, "alice", platform.client_id, UNAPPLIED)]
        )
    since = asyncio.get_running_loop().time()

    for ended in ends:
        await ends_within(ended, since, END_WITHIN_ELSEWHERE)
    await chats(own_password, bobs)
    assert not any(survivor_ended.done() for survivor_ended in survivors)


# --- strict mode: app passwords only ------------------------------------------------------------


@pytest.mark.parametrize("mechanism", ["SCRAM-SHA-256", "PLAIN"])
async def test_strict_mode_app_password_signs_in_and_account_password_does_not(
    strict: Platform, new_client: NewClient, mechanism: str
) -> None:
    server = strict.server
    _, app_password = await strict.running.oauth.create_app_password(
        "alice", strict.client_id, "Gajim"
    )

    refused = new_client(server, "alice", "own", sasl_mech=mechanism)
    assert await refusal(refused, server) == "not-authorized"

    client = new_client(server, "alice", "gajim", password=app_password, sasl_mech=mechanism)
    await sign_in(client, server.host, server.port)
    assert client.plugin["feature_mechanisms"].mech.name == mechanism
    assert str(client.boundjid) == "alice@localhost/gajim"
    assert session_app(server, client) == strict.client_id

    token = token_client(new_client, server, await strict.token(), "X-MESSENGER-OAUTH2")
    await sign_in(token, server.host, server.port)


async def test_strict_mode_revoking_the_app_password_ends_its_session(
    strict: Platform, new_client: NewClient
) -> None:
    server = strict.server
    oauth = strict.running.oauth
    password_id, app_password = await oauth.create_app_password("alice", strict.client_id, "G")
    client = new_client(server, "alice", "gajim", password=app_password, sasl_mech="SCRAM-SHA-256")
    await sign_in(client, server.host, server.port)
    ended = session_end(client)

    assert await oauth.revoke_app_password("alice", password_id)
    since = asyncio.get_running_loop().time()

    await ends_within(ended, since, END_WITHIN)
    again = new_client(server, "alice", "again", password=app_password, sasl_mech="SCRAM-SHA-256")
    assert await refusal(again, server) == "not-authorized"


async def test_strict_mode_suspending_the_app_ends_app_password_sessions(
    strict: Platform, new_client: NewClient
) -> None:
    server = strict.server
    oauth = strict.running.oauth
    _, app_password = await oauth.create_app_password("alice", strict.client_id, "Gajim")
    plain = new_client(server, "alice", "plain", password=app_password, sasl_mech="PLAIN")
    scram = new_client(server, "alice", "scram", password=app_password, sasl_mech="SCRAM-SHA-1")
    for client in (plain, scram):
        await sign_in(client, server.host, server.port)
    ends = [session_end(client) for client in (plain, scram)]

    await oauth.suspend_app(strict.client_id)
    since = asyncio.get_running_loop().time()

    for ended in ends:
        await ends_within(ended, since, END_WITHIN)
    again = new_client(server, "alice", "again", password=app_password, sasl_mech="PLAIN")
    assert await refusal(again, server) == "not-authorized"


async def test_strict_mode_app_password_made_on_the_page_and_revoked_there(
    strict: Platform, new_client: NewClient
) -> None:
    """The user makes an app password on the connected-apps page; revoking the app there
    ends the session it opened."""
    server = strict.server
    async with browser(server) as web:
        await sign_in_on_the_web(web, "alice", server.users["alice"])
        page = await web.get("/account/apps")
        made = await submit(
            web,
            form_to(page, "/account/app-passwords"),
            client_id=strict.client_id,
            label="Dino",
        )
        assert made.status_code == 200, made.text
        [app_password] = re.findall(r'<p class="secret">([^<]+)</p>', made.text)
        client = new_client(
            server, "alice", "dino", password=app_password, sasl_mech="SCRAM-SHA-256"
        )
        await sign_in(client, server.host, server.port)
        ended = session_end(client)

        await revoke_on_the_apps_page(web, strict.client_id)
        since = asyncio.get_running_loop().time()

    await ends_within(ended, since, END_WITHIN)


# --- the developer guide's XMPP examples, run as written ---------------------------------------

DOC = Path(__file__).resolve().parents[2] / "docs" / "oauth.md"
FENCE = re.compile(r"^```(\w+)\n(.*?)^```$", re.MULTILINE | re.DOTALL)
DOC_ADDRESS = 'XMPP_HOST, XMPP_PORT = "127.0.0.1", 5222'
EXAMPLE_TIMEOUT = 60.0
"""Starting Python and slixmpp in another process: allow for a slow machine."""


def doc_xmpp_examples(server: ServerHandle) -> str:
    """The XMPP examples of docs/oauth.md, in order, aimed at ``server``."""
    blocks = [
        body
        for kind, body in FENCE.findall(DOC.read_text())
        if kind == "python" and "slixmpp" in body
    ]
    assert len(blocks) == 2, "expected the X-MESSENGER-OAUTH2 and OAUTHBEARER examples"
    assert DOC_ADDRESS in blocks[0]
    return "\n".join(blocks).replace(
        DOC_ADDRESS, f"XMPP_HOST, XMPP_PORT = {server.host!r}, {server.port}"
    )


async def run_python(source: str, directory: Path) -> Finished:
    """Run ``source`` with this interpreter in another process, its output kept in files."""
    out, err = directory / "stdout.txt", directory / "stderr.txt"
    with out.open("wb") as stdout, err.open("wb") as stderr:
        process = await asyncio.create_subprocess_exec(
            sys.executable, "-c", source, stdout=stdout, stderr=stderr, env=clean_env()
        )
        try:
            await asyncio.wait_for(process.wait(), EXAMPLE_TIMEOUT)
        except TimeoutError:
            process.kill()
            await process.wait()
            raise AssertionError(
                f"the example ran for more than {EXAMPLE_TIMEOUT}s: {out.read_text()}{err.read_text()}"
            ) from None
    loop = asyncio.get_running_loop()
    return Finished(process.returncode or 0, out.read_text(), err.read_text(), loop.time())


async def test_the_developer_guides_xmpp_examples_sign_in_with_a_token_from_the_flow(
    platform: Platform, connect: Connect, tmp_path: Path
) -> None:
    server = platform.server
    source = doc_xmpp_examples(server)
    tokens = await token_from_flow(server, platform.client_id, "alice")
    bob = await connect(server, "bob", "desk")
    received: list[str] = []
    two = asyncio.get_running_loop().create_future()

    def on_message(message) -> None:
        received.append(f"{message['from'].bare}: {message['body']}")
        if len(received) == 2 and not two.done():
            two.set_result(None)

    bob.add_event_handler("message", on_message)
    bob.send_presence()  # available, so that messages to bob@localhost reach this resource
    await still_served(bob, server)

    ran = await run_python(f"access_token = {tokens['access_token']!r}\n{source}", tmp_path)

    assert ran.returncode == 0, ran.stderr
    lines = ran.stdout.splitlines()
    assert len(lines) == 2, ran.stdout
    for line in lines:
        assert re.fullmatch(r"Signed in as alice@localhost/chinwag-[0-9a-f]+", line), line
    await asyncio.wait_for(two, TIMEOUT)
    assert received == ["alice@localhost: Hello from Pocket Chat!"] * 2


async def test_the_developer_guides_xmpp_example_reports_a_refused_token(
    platform: Platform, tmp_path: Path
) -> None:
    source = doc_xmpp_examples(platform.server)
    first_example = source[: source.index("from slixmpp.util.sasl.client")]

    ran = await run_python(f"access_token = 'not-a-token'\n{first_example}", tmp_path)

    assert ran.returncode != 0
    assert "PermissionError: the token was refused: not-authorized" in ran.stderr, ran.stderr


# --- found while running the guide's example: data right after the TLS handshake -----------


async def test_a_header_sent_right_after_the_tls_handshake_is_not_lost(
    server: ServerHandle, connect: Connect, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The client's first bytes over TLS may be decrypted before the server has seen its
    handshake end; they are the restarted stream's header and must be answered."""
    handshake = C2SProtocol.start_tls

    async def slow_to_notice(self: C2SProtocol) -> None:
        await handshake(self)
        await asyncio.sleep(0.3)  # meanwhile the client's header arrives

    monkeypatch.setattr(C2SProtocol, "start_tls", slow_to_notice)

    client = await connect(server, "alice", "laptop")

    assert str(client.boundjid) == "alice@localhost/laptop"
