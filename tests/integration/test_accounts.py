"""Users look after their own accounts, with real clients: slixmpp's own XEP-0077 plugin
changes the password (the old one is refused after, the new one signs in), the other
streams of the old password end, and an invitation link signs a new user up, who then
signs in over XMPP."""

from __future__ import annotations

import asyncio
from datetime import timedelta

import pytest
from oauth.support import form_to, submit
from slixmpp import ClientXMPP
from slixmpp.exceptions import IqError

from chinwag.network.invitations import InvitationService
from chinwag.store.invitations import SqlInvitationRepository

from .signin_support import (
    END_WITHIN_ELSEWHERE,
    browser,
    chats,
    session_app,
    session_end,
    still_served,
)
from .support import (
    TIMEOUT,
    Connect,
    NewClient,
    ServerHandle,
    SignInFailed,
    StartServer,
    sign_in,
)

NEW_PASSWORD = "a much better password"


async def with_xep_0077(new_client: NewClient, server: ServerHandle, resource: str) -> ClientXMPP:
    client = new_client(server, "alice", resource)
    client.register_plugin("xep_0077")
    await sign_in(client, server.host, server.port)
    return client


@pytest.mark.parametrize("to", [None, "localhost"], ids=["to-own-account", "to-server"])
async def test_slixmpp_changes_the_password_with_xep_0077(
    server: ServerHandle, new_client: NewClient, connect: Connect, to: str | None
) -> None:
    assert server.app is not None
    app = await server.app.oauth.register_app("Pocket Chat", ["http://127.0.0.1:1/cb"], public=True)
    _, app_password = await server.app.oauth.create_app_password(
        "alice", app.app.client_id, "phone"
    )
    changer = await with_xep_0077(new_client, server, "laptop")
    other = await connect(server, "alice", "desk")
    by_app = new_client(server, "alice", "phone", password=app_password, sasl_mech="SCRAM-SHA-256")
    await sign_in(by_app, server.host, server.port)
    assert session_app(server, by_app) == app.app.client_id
    bob = await connect(server, "bob", "desk")
    other_ended, changer_ended, app_ended = map(session_end, (other, changer, by_app))

    await changer.plugin["xep_0077"].change_password(NEW_PASSWORD, jid=to, timeout=TIMEOUT)

    ended = await asyncio.wait_for(other_ended, TIMEOUT)
    assert ended.condition == "reset" and "password was changed" in ended.text
    await asyncio.sleep(END_WITHIN_ELSEWHERE)  # the event has reached every stream
    await still_served(changer, server)
    await chats(changer, bob)
    await chats(by_app, bob)  # an app password is a credential of its own
    assert not changer_ended.done() and not app_ended.done()

    with pytest.raises(SignInFailed, match="authentication failed"):
        await sign_in(new_client(server, "alice", "again"), server.host, server.port)
    again = new_client(server, "alice", "again", password=NEW_PASSWORD)
    await sign_in(again, server.host, server.port)
    await still_served(again, server)
    plain = new_client(server, "alice", "plain", password=NEW_PASSWORD, sasl_mech="PLAIN")
    await sign_in(plain, server.host, server.port)
    by_app_again = new_client(
        server, "alice", "phone-2", password=app_password, sasl_mech="SCRAM-SHA-1"
    )
    await sign_in(by_app_again, server.host, server.port)


async def test_an_app_password_session_cannot_change_the_account_password(
    server: ServerHandle, new_client: NewClient
) -> None:
    assert server.app is not None
    app = await server.app.oauth.register_app("Pocket Chat", ["http://127.0.0.1:1/cb"], public=True)
    _, app_password = await server.app.oauth.create_app_password(
        "alice", app.app.client_id, "phone"
    )
    client = new_client(server, "alice", "phone", password=app_password)
    client.register_plugin("xep_0077")
    await sign_in(client, server.host, server.port)

    with pytest.raises(IqError) as refused:
        await client.plugin["xep_0077"].change_password(NEW_PASSWORD, timeout=TIMEOUT)

    assert refused.value.condition == "not-authorized"
    assert await server.app.accounts.verify_password("alice", server.users["alice"])


async def test_without_account_passwords_over_xmpp_the_change_is_not_allowed(
    start_server: StartServer, new_client: NewClient
) -> None:
    server = await start_server(auth={"account_passwords": False})
    assert server.app is not None
    app = await server.app.oauth.register_app("Pocket Chat", ["http://127.0.0.1:1/cb"], public=True)
    _, app_password = await server.app.oauth.create_app_password(
        "alice", app.app.client_id, "phone"
    )
    client = new_client(server, "alice", "phone", password=app_password)
    client.register_plugin("xep_0077")
    await sign_in(client, server.host, server.port)

    with pytest.raises(IqError) as refused:
        await client.plugin["xep_0077"].change_password(NEW_PASSWORD, timeout=TIMEOUT)

    assert refused.value.condition == "not-allowed"
    info = await client.plugin["xep_0030"].get_info(jid=server.domain, timeout=TIMEOUT)
    assert "jabber:iq:register" not in info["disco_info"]["features"]


async def test_a_new_user_signs_up_with_an_invitation_and_signs_in_over_xmpp(
    start_server: StartServer, new_client: NewClient, connect: Connect
) -> None:
    server = await start_server(auth={"invitations": True})
    assert server.app is not None
    invitations = InvitationService(SqlInvitationRepository(server.app.database))
    link = f"/invite/{(await invitations.create('the operator', timedelta(days=1))).token}"

    async with browser(server) as web:
        page = await web.get(link)
        assert page.status_code == 200, page.text
        done = await submit(
            web,
            form_to(page, link),
            username="Dinah",
            password="a cat's password",
            password_again="a cat's password",
        )
        assert done.status_code == 303 and done.headers["location"] == "/account/welcome"
        assert "dinah@localhost" in (await web.get("/account/welcome")).text
        assert (await web.get(link)).status_code == 410

    server.users["dinah"] = "a cat's password"
    await server.app.services.contacts.add_mutual("dinah", "bob")
    dinah = new_client(server, "dinah", "basket")
    await sign_in(dinah, server.host, server.port)
    await chats(dinah, await connect(server, "bob", "desk"))


async def test_without_the_setting_an_invitation_link_is_no_page(server: ServerHandle) -> None:
    assert server.app is not None
    invitations = InvitationService(SqlInvitationRepository(server.app.database))
    made = await invitations.create("the operator", timedelta(days=1))

    async with browser(server) as web:
        assert (await web.get(f"/invite/{made.token}")).status_code == 404
