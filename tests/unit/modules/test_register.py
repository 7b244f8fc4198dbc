"""XEP-0077 password changes against the in-memory host: who may change what, the
XEP's errors (with their legacy codes, never echoing the password), and the event that
tells the XMPP side which streams end."""

from __future__ import annotations

import pytest
from module_harness import PASSWORD, MakeHarness

from chinwag.network.events import ACCOUNT_PASSWORD_CHANGED, resource_mark
from chinwag.server.auth import Grant
from chinwag.store.events import SqlEventRepository

NEW_PASSWORD = "a new password"
REGISTER = "jabber:iq:register"


def change(username: str = "alice", password: str = NEW_PASSWORD, to: str | None = None) -> str:
    addressed = f" to='{to}'" if to is not None else ""
    return (
        f"<iq type='set' id='c1'{addressed}><query xmlns='{REGISTER}'>"
        f"<username>{username}</username><password>{password}</password></query></iq>"
    )


def error(
    condition: str, code: str, kind: str, text: str, to: str = "alice@localhost/phone"
) -> str:
    return (
        f'<iq type="error" to="{to}" id="c1"><error type="{kind}" code="{code}">'
        f'<{condition} xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>'
        f'<text xmlns="urn:ietf:params:xml:ns:xmpp-stanzas" xml:lang="en">{text}</text>'
        "</error></iq>"
    )


@pytest.mark.parametrize("to", [None, "localhost", "alice@localhost"])
async def test_a_user_changes_their_password(harness: MakeHarness, to: str | None) -> None:
    host = await harness(("register",))
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(alice, change(to=to))
    await host.settle()

    replied_from = "" if to is None else f' from="{to}"'
    assert host.received(alice) == [
        f'<iq type="result" to="alice@localhost/phone"{replied_from} id="c1"/>'
    ]
    accounts = host.services.accounts
    assert await accounts.verify_password("alice", NEW_PASSWORD)
    assert not await accounts.verify_password("alice", PASSWORD)
    [event] = [
        e
        for e in await SqlEventRepository(host.database).since(0)
        if e.kind == ACCOUNT_PASSWORD_CHANGED
    ]
    assert (event.subject, event.detail) == ("alice", resource_mark("phone"))


async def test_the_username_may_be_the_bare_jid_in_any_case(harness: MakeHarness) -> None:
    host = await harness(("register",))
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(alice, change(username="ALICE@localhost", to="localhost"))
    await host.settle()

    assert host.received(alice)[0].startswith('<iq type="result"')
    assert await host.services.accounts.verify_password("alice", NEW_PASSWORD)


async def test_a_get_says_the_user_is_registered_and_never_sends_a_password(
    harness: MakeHarness,
) -> None:
    host = await harness(("register",))
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(alice, f"<iq type='get' id='g1' to='localhost'><query xmlns='{REGISTER}'/></iq>")
    await host.settle()

    assert host.received(alice) == [
        '<iq type="result" to="alice@localhost/phone" from="localhost" id="g1">'
        f'<query xmlns="{REGISTER}"><registered/><username>alice</username><password/></query>'
        "</iq>"
    ]


@pytest.mark.parametrize(
    ("request_xml", "condition", "code", "kind", "text"),
    [
        (
            change(username="bob"),
            "not-allowed",
            "405",
            "cancel",
            "only the signed-in account's own password can be changed; "
            "new accounts are not registered in-band",
        ),
        (
            change(username="alice@elsewhere.example"),
            "not-allowed",
            "405",
            "cancel",
            "only the signed-in account's own password can be changed; "
            "new accounts are not registered in-band",
        ),
        (
            change(password=""),
            "bad-request",
            "400",
            "modify",
            "send both &lt;username/&gt; and a new &lt;password/&gt;",
        ),
        (
            f"<iq type='set' id='c1'><query xmlns='{REGISTER}'><password>{NEW_PASSWORD}"
            "</password></query></iq>",
            "bad-request",
            "400",
            "modify",
            "send both &lt;username/&gt; and a new &lt;password/&gt;",
        ),
        (
            change(password="short"),
            "not-acceptable",
            "406",
            "modify",
            "the password is shorter than 8 characters",
        ),
        (
            f"<iq type='set' id='c1'><query xmlns='{REGISTER}'><remove/></query></iq>",
            "not-allowed",
            "405",
            "cancel",
            "accounts are not cancelled in-band here",
        ),
    ],
    ids=["another-user", "another-domain", "empty", "no-username", "too-short", "remove"],
)
async def test_refused_changes_keep_the_password_and_never_echo_the_request(
    harness: MakeHarness, request_xml: str, condition: str, code: str, kind: str, text: str
) -> None:
    host = await harness(("register",))
    await host.add_users("alice", "bob")
    alice = await host.bind("alice", "phone")

    host.send(alice, request_xml)
    await host.settle()

    assert host.received(alice) == [error(condition, code, kind, text)]
    assert await host.services.accounts.verify_password("alice", PASSWORD)
    assert await host.services.accounts.verify_password("bob", PASSWORD)


async def test_a_session_of_an_app_may_not_change_the_account_password(
    harness: MakeHarness,
) -> None:
    host = await harness(("register",))
    await host.add_users("alice")
    app = host.connect()
    app.session = await host.sessions.bind(
        app, "alice", "phone", Grant("alice", app="pocket-chat", app_password=1)
    )

    host.send(app, change())
    await host.settle()

    [answer] = host.received(app)
    assert '<not-authorized xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>' in answer
    assert 'code="401"' in answer and "an app's session cannot change" in answer
    assert await host.services.accounts.verify_password("alice", PASSWORD)


async def test_without_account_passwords_over_xmpp_nothing_changes_and_nothing_is_announced(
    harness: MakeHarness,
) -> None:
    host = await harness(("register", "disco"), auth={"account_passwords": False})
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(alice, change(to="localhost"))
    host.send(alice, f"<iq type='get' id='c1'><query xmlns='{REGISTER}'/></iq>")
    host.send(
        alice,
        "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    await host.settle()

    refused, got, disco = host.received(alice)
    assert refused == error(
        "not-allowed", "405", "cancel", "the account's password is changed on the web only"
    ).replace('to="alice@localhost/phone"', 'to="alice@localhost/phone" from="localhost"')
    assert "<not-allowed" in got
    assert REGISTER not in disco
    assert await host.services.accounts.verify_password("alice", PASSWORD)


async def test_the_server_announces_the_feature(harness: MakeHarness) -> None:
    host = await harness(("register", "disco"))
    await host.add_users("alice")
    alice = await host.bind("alice", "phone")

    host.send(
        alice,
        "<iq type='get' id='d1' to='localhost'><query xmlns='http://jabber.org/protocol/disco#info'/></iq>",
    )
    await host.settle()

    assert f'<feature var="{REGISTER}"/>' in host.received(alice)[0]


async def test_a_request_to_another_account_is_not_taken(harness: MakeHarness) -> None:
    host = await harness(("register",), messages={"from_strangers": True})
    await host.add_users("alice", "bob")
    alice = await host.bind("alice", "phone")

    host.send(alice, change(username="bob", to="bob@localhost"))
    await host.settle()

    [answer] = host.received(alice)
    assert '<service-unavailable xmlns="urn:ietf:params:xml:ns:xmpp-stanzas"/>' in answer
    assert await host.services.accounts.verify_password("bob", PASSWORD)
