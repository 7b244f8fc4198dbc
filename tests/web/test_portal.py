"""The developer portal, driven through its forms like a browser without JavaScript."""

from __future__ import annotations

import re

import httpx
import pytest
from oauth.support import Form, form_to, forms, submit

import chinwag.oauth.service

from .conftest import PASSWORDS, Site, client_of

CALLBACK = "https://pocket.example/oauth/callback"
LOOPBACK = "http://127.0.0.1:8765/callback"


async def sign_in(
    browser: httpx.AsyncClient, user: str, path: str = "/developers"
) -> httpx.Response:
    """Open ``path``, be sent to sign in, sign in as ``user``; returns ``path``'s page."""
    redirect = await browser.get(path)
    assert redirect.status_code == 303
    assert redirect.headers["location"].startswith("/account/signin?")
    page = await browser.get(redirect.headers["location"])
    done = await submit(
        browser, form_to(page, "/account/signin"), username=user, password=PASSWORDS[user]
    )
    assert done.status_code == 303
    assert done.headers["location"] == path
    return await browser.get(path)


async def register(
    browser: httpx.AsyncClient,
    portal: httpx.Response,
    *,
    name: str = "Pocket Chat",
    uris: str = f"{CALLBACK}\n{LOOPBACK}\n",
    client_type: str = "confidential",
    implicit: bool = False,
) -> httpx.Response:
    """Submit the registration form: the app's page it redirects to, or the form again."""
    form = form_to(portal, "/developers/apps")
    values = {"name": name, "redirect_uris": uris, "client_type": client_type}
    if implicit:
        values["allow_implicit"] = "yes"
    response = await submit(browser, form, **values)
    return response if response.status_code == 400 else await follow(browser, response)


async def follow(browser: httpx.AsyncClient, response: httpx.Response) -> httpx.Response:
    """The page a form's answer redirects to (POST, redirect, GET)."""
    assert response.status_code == 303, response.text
    return await browser.get(response.headers["location"])


def shown(page: httpx.Response, element_id: str) -> str:
    found = re.search(rf'id="{element_id}">([^<]+)<', page.text)
    assert found, f"no #{element_id} on the page"
    return found.group(1)


async def client_authenticates(browser: httpx.AsyncClient, client_id: str, secret: str) -> bool:
    """Whether the token endpoints accept this client secret (introspection, RFC 7662)."""
    response = await browser.post(
        "/oauth/introspect", data={"token": "no-such-token"}, auth=(client_id, secret)
    )
    assert response.status_code in (200, 401), response.text
    return response.status_code == 200


def app_form(page: httpx.Response, suffix: str) -> Form:
    [found] = [form for form in forms(page.text) if form.action.endswith(suffix)]
    return found


# --- registering ----------------------------------------------------------------------


async def test_register_an_app_through_the_forms(site: Site, browser):
    portal = await sign_in(browser, "alice")
    assert "You have not registered an app yet." in portal.text

    page = await register(browser, portal)

    assert page.status_code == 200
    [app] = await site.oauth.apps_of("alice")
    assert (app.name, app.owner, app.public, app.allow_implicit) == (
        "Pocket Chat",
        "alice",
        False,
        False,
    )
    assert app.redirect_uris == (CALLBACK, LOOPBACK)
    assert shown(page, "client-id") == app.client_id
    secret = shown(page, "client-secret")
    assert await client_authenticates(browser, app.client_id, secret)
    portal = await browser.get("/developers")
    assert app.client_id in portal.text and "Pocket Chat" in portal.text
    details = await browser.get(f"/developers/apps/{app.client_id}")
    assert shown(details, "client-id") == app.client_id
    assert secret not in details.text  # shown only once
    assert CALLBACK in details.text and "active" in details.text


async def test_register_a_public_app_with_the_implicit_grant(site: Site, browser):
    portal = await sign_in(browser, "alice")

    page = await register(browser, portal, client_type="public", implicit=True, uris=LOOPBACK)

    [app] = await site.oauth.apps_of("alice")
    assert app.public and app.allow_implicit
    assert 'id="client-secret"' not in page.text
    assert "/rotate" not in page.text  # nothing to rotate


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"client_type": "confidential", "implicit": True}, "implicit grant is for public apps"),
        ({"uris": "http://app.example/cb"}, "must use https"),
        ({"uris": "  \n"}, "at least one redirect URI"),
        ({"name": "   "}, "name is empty"),
        ({"client_type": "secret"}, "Choose public or confidential"),
    ],
)
async def test_a_bad_registration_shows_the_form_again(site: Site, browser, values, message):
    portal = await sign_in(browser, "alice")

    page = await register(browser, portal, **values)

    assert page.status_code == 400
    assert message in page.text
    assert form_to(page, "/developers/apps")  # the form, with what was entered
    assert await site.oauth.apps_of("alice") == []


async def test_a_developer_owns_a_bounded_number_of_apps(site: Site, browser, monkeypatch):
    monkeypatch.setattr(chinwag.oauth.service, "MAX_APPS_PER_OWNER", 2)
    portal = await sign_in(browser, "alice")
    for name in ("One", "Two"):
        assert (await register(browser, portal, name=name)).status_code == 200

    page = await register(browser, portal, name="Three")

    assert page.status_code == 400
    assert "owns at most 2 apps" in page.text
    assert sorted(app.name for app in await site.oauth.apps_of("alice")) == ["One", "Two"]


async def test_registering_answers_with_a_redirect_that_shows_the_secret_once(site: Site, browser):
    portal = await sign_in(browser, "alice")
    form = form_to(portal, "/developers/apps")

    answer = await submit(
        browser, form, name="Pocket Chat", redirect_uris=CALLBACK, client_type="confidential"
    )

    [app] = await site.oauth.apps_of("alice")
    assert answer.status_code == 303
    assert answer.headers["location"] == f"/developers/apps/{app.client_id}"
    page = await browser.get(answer.headers["location"])
    secret = shown(page, "client-secret")
    assert shown(page, "notice") == "Your app is registered."
    assert secret not in answer.headers["location"]
    assert await client_authenticates(browser, app.client_id, secret)
    reloaded = await browser.get(answer.headers["location"])  # a reload: a GET, not the POST
    assert reloaded.status_code == 200
    assert 'id="client-secret"' not in reloaded.text and 'id="notice"' not in reloaded.text
    assert len(await site.oauth.apps_of("alice")) == 1


async def test_get_developers_apps_leads_to_the_portal(browser):
    await sign_in(browser, "alice")

    response = await browser.get("/developers/apps")

    assert response.status_code == 303 and response.headers["location"] == "/developers"


# --- the app's page -------------------------------------------------------------------


async def test_rotating_answers_with_a_redirect_that_shows_the_new_secret_once(site: Site, browser):
    portal = await sign_in(browser, "alice")
    client_id = shown(await register(browser, portal), "client-id")
    details = await browser.get(f"/developers/apps/{client_id}")

    answer = await submit(browser, app_form(details, "/rotate"))

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/developers/apps/{client_id}"
    page = await browser.get(answer.headers["location"])
    secret = shown(page, "client-secret")
    assert "replaces the old one" in shown(page, "notice")
    assert await client_authenticates(browser, client_id, secret)
    reloaded = await browser.get(answer.headers["location"])
    assert 'id="client-secret"' not in reloaded.text
    assert await client_authenticates(browser, client_id, secret)  # not rotated again


async def test_deleting_answers_with_a_redirect_that_says_so_once(site: Site, browser):
    portal = await sign_in(browser, "alice")
    client_id = shown(await register(browser, portal), "client-id")
    confirm = await browser.get(f"/developers/apps/{client_id}/delete")

    answer = await submit(browser, app_form(confirm, "/delete"))

    assert answer.status_code == 303 and answer.headers["location"] == "/developers"
    assert shown(await browser.get("/developers"), "notice") == "Pocket Chat is deleted."
    assert 'id="notice"' not in (await browser.get("/developers")).text


async def test_edit_an_app_through_the_forms(site: Site, browser):
    portal = await sign_in(browser, "alice")
    client_id = shown(await register(browser, portal), "client-id")
    details = await browser.get(f"/developers/apps/{client_id}")
    assert f'href="/developers/apps/{client_id}/edit"' in details.text
    edit = await browser.get(f"/developers/apps/{client_id}/edit")
    form = form_to(edit, f"/developers/apps/{client_id}/edit")
    assert form.fields["name"] == "Pocket Chat"
    assert f">{CALLBACK}\n{LOOPBACK}</textarea>" in edit.text
    assert "skip_pkce" not in form.fields  # PKCE required: the box is not ticked

    answer = await submit(
        browser,
        form,
        name="Pocket Chat 2",
        redirect_uris=f"\n {LOOPBACK} \ncom.example.pocket:/cb\n",
        skip_pkce="yes",
    )

    assert answer.status_code == 303
    assert answer.headers["location"] == f"/developers/apps/{client_id}"
    app = await site.oauth.get_app(client_id)
    assert (app.name, app.redirect_uris, app.require_pkce) == (
        "Pocket Chat 2",
        (LOOPBACK, "com.example.pocket:/cb"),
        False,
    )
    page = await browser.get(answer.headers["location"])
    assert shown(page, "notice") == "Pocket Chat 2 is saved."
    assert "<th>PKCE</th><td>optional" in page.text

    edit = await browser.get(f"/developers/apps/{client_id}/edit")
    form = form_to(edit, f"/developers/apps/{client_id}/edit")
    assert form.fields["skip_pkce"] == "yes"
    del form.fields["skip_pkce"]  # untick it
    assert (await submit(browser, form, redirect_uris=LOOPBACK)).status_code == 303
    assert (await site.oauth.get_app(client_id)).require_pkce


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"redirect_uris": "http://app.example/cb"}, "must use https"),
        ({"redirect_uris": " \n"}, "at least one redirect URI"),
        ({"name": " "}, "name is empty"),
    ],
)
async def test_a_bad_edit_shows_the_form_again(site: Site, browser, values, message):
    portal = await sign_in(browser, "alice")
    client_id = shown(await register(browser, portal), "client-id")
    before = await site.oauth.get_app(client_id)
    edit = await browser.get(f"/developers/apps/{client_id}/edit")

    form = form_to(edit, f"/developers/apps/{client_id}/edit")

    page = await submit(browser, form, **{"redirect_uris": CALLBACK, **values})

    assert page.status_code == 400
    assert message in page.text and "Nothing was changed" in page.text
    assert form_to(page, f"/developers/apps/{client_id}/edit")
    assert await site.oauth.get_app(client_id) == before


async def test_a_public_app_is_edited_without_the_pkce_choice(site: Site, browser):
    portal = await sign_in(browser, "alice")
    page = await register(browser, portal, client_type="public", uris=LOOPBACK)
    client_id = shown(page, "client-id")
    edit = await browser.get(f"/developers/apps/{client_id}/edit")
    assert 'name="skip_pkce"' not in edit.text
    form = form_to(edit, f"/developers/apps/{client_id}/edit")

    saved = await submit(browser, form, name="Pocket", redirect_uris=LOOPBACK)
    forced = await submit(browser, form, redirect_uris=LOOPBACK, skip_pkce="yes")

    assert saved.status_code == 303
    assert forced.status_code == 400 and "public app always uses PKCE" in forced.text
    app = await site.oauth.get_app(client_id)
    assert app.name == "Pocket" and app.require_pkce


async def test_only_the_owner_edits_an_app(site: Site, browser):
    client_id = (await site.oauth.register_app("Bot", [CALLBACK], owner="bob")).app.client_id
    portal = await sign_in(browser, "admin", "/developers")  # an operator, not the owner
    token = form_to(portal, "/developers/apps").fields["csrf_token"]

    details = await browser.get(f"/developers/apps/{client_id}")
    assert "/edit" not in details.text
    assert (await browser.get(f"/developers/apps/{client_id}/edit")).status_code == 404
    posted = await browser.post(
        f"/developers/apps/{client_id}/edit",
        data={"csrf_token": token, "name": "Mine now", "redirect_uris": CALLBACK},
    )
    forged = await browser.post(
        f"/developers/apps/{client_id}/edit", data={"name": "Mine now", "redirect_uris": CALLBACK}
    )

    assert posted.status_code == 404 and forged.status_code == 403
    assert (await site.oauth.get_app(client_id)).name == "Bot"


async def test_rotate_the_secret(site: Site, browser):
    portal = await sign_in(browser, "alice")
    registered = await register(browser, portal)
    client_id, old = shown(registered, "client-id"), shown(registered, "client-secret")
    details = await browser.get(f"/developers/apps/{client_id}")

    rotated = await follow(browser, await submit(browser, app_form(details, "/rotate")))

    assert rotated.status_code == 200
    new = shown(rotated, "client-secret")
    assert new != old
    assert await client_authenticates(browser, client_id, new)
    assert not await client_authenticates(browser, client_id, old)


async def test_delete_an_app_after_confirming(site: Site, browser):
    portal = await sign_in(browser, "alice")
    client_id = shown(await register(browser, portal), "client-id")
    details = await browser.get(f"/developers/apps/{client_id}")
    assert f'href="/developers/apps/{client_id}/delete"' in details.text

    confirm = await browser.get(f"/developers/apps/{client_id}/delete")
    assert confirm.status_code == 200
    assert await site.oauth.get_app(client_id) is not None  # not before confirming
    done = await submit(browser, app_form(confirm, "/delete"))

    assert done.status_code == 303
    assert done.headers["location"] == "/developers"
    assert await site.oauth.get_app(client_id) is None
    assert (await browser.get(f"/developers/apps/{client_id}")).status_code == 404


async def test_another_developers_app_is_out_of_reach(site: Site, browser):
    portal = await sign_in(browser, "alice")
    client_id = shown(await register(browser, portal), "client-id")
    details = await browser.get(f"/developers/apps/{client_id}")
    rotate, token = app_form(details, "/rotate"), app_form(details, "/rotate").fields["csrf_token"]

    async with client_of(site) as bob:
        bobs_portal = await sign_in(bob, "bob")
        assert client_id not in bobs_portal.text
        bobs_token = form_to(bobs_portal, "/developers/apps").fields["csrf_token"]
        assert (await bob.get(f"/developers/apps/{client_id}")).status_code == 404
        assert (await bob.get(f"/developers/apps/{client_id}/delete")).status_code == 404
        for action in (rotate.action, f"/developers/apps/{client_id}/delete"):
            response = await bob.post(action, data={"csrf_token": bobs_token})
            assert response.status_code == 404
        # Alice's CSRF token is no use in bob's session either.
        assert (await bob.post(rotate.action, data={"csrf_token": token})).status_code == 403
        assert (await bob.get("/developers/admin")).status_code == 403

    assert await site.oauth.get_app(client_id) is not None


# --- operators -------------------------------------------------------------------------


async def test_operators_see_every_app_and_suspend_and_resume_it(site: Site, browser):
    registered = await site.oauth.register_app("Bob's Bot", [CALLBACK], owner="bob")
    client_id = registered.app.client_id
    token = await site.oauth.issue_token(client_id, "alice", "wl.basic")
    admin_page = await sign_in(browser, "admin", "/developers/admin")
    assert "Bob&#39;s Bot" in admin_page.text and ">bob<" in admin_page.text
    assert 'href="/developers/admin"' in admin_page.text  # in the shared navigation

    suspended = await submit(browser, form_to(admin_page, "/developers/admin/suspend"))

    assert suspended.status_code == 303
    assert suspended.headers["location"] == "/developers/admin"
    assert (await site.oauth.get_app(client_id)).status == "suspended"
    assert await site.oauth.check_token(token.access_token) is None

    admin_page = await browser.get(suspended.headers["location"])
    resumed = await submit(browser, form_to(admin_page, "/developers/admin/resume"))

    assert resumed.status_code == 303
    assert (await site.oauth.get_app(client_id)).status == "active"

    details = await browser.get(f"/developers/apps/{client_id}")  # any app, for an operator
    assert details.status_code == 200
    assert "/rotate" not in details.text and "/delete" not in details.text  # not theirs
    again = await submit(browser, form_to(details, "/developers/admin/suspend"))
    assert again.headers["location"] == f"/developers/apps/{client_id}"


async def test_non_operators_cannot_suspend(site: Site, browser):
    client_id = (await site.oauth.register_app("Bot", [CALLBACK], owner="bob")).app.client_id
    portal = await sign_in(browser, "alice")
    assert 'href="/developers/admin"' not in portal.text
    token = form_to(portal, "/developers/apps").fields["csrf_token"]

    for action in ("suspend", "resume"):
        response = await browser.post(
            f"/developers/admin/{action}", data={"csrf_token": token, "client_id": client_id}
        )
        assert response.status_code == 403

    assert (await site.oauth.get_app(client_id)).status == "active"


# --- CSRF and the rest -------------------------------------------------------------------


async def test_every_portal_form_refuses_a_missing_or_forged_csrf_token(site: Site, browser):
    admin_page = await sign_in(browser, "admin", "/developers/admin")
    portal = await browser.get("/developers")
    client_id = shown(await register(browser, portal), "client-id")
    details = await browser.get(f"/developers/apps/{client_id}")
    edit = await browser.get(f"/developers/apps/{client_id}/edit")
    confirm = await browser.get(f"/developers/apps/{client_id}/delete")
    admin_page = await browser.get("/developers/admin")
    portal_forms = [
        (
            form_to(portal, "/developers/apps"),
            {"name": "X", "redirect_uris": CALLBACK, "client_type": "public"},
        ),
        (app_form(edit, "/edit"), {"name": "X", "redirect_uris": CALLBACK}),
        (app_form(details, "/rotate"), {}),
        (app_form(confirm, "/delete"), {}),
        (form_to(admin_page, "/developers/admin/suspend"), {}),
    ]
    await site.oauth.suspend_app(client_id)
    resume = form_to(await browser.get("/developers/admin"), "/developers/admin/resume")
    portal_forms.append((resume, {}))
    registered_id = shown(await browser.get(f"/developers/apps/{client_id}"), "client-id")

    for form, values in portal_forms:
        fields = {**form.fields, **values}
        without = {key: value for key, value in fields.items() if key != "csrf_token"}
        for data in (without, {**without, "csrf_token": "forged"}):
            response = await browser.post(form.action, data=data)
            assert response.status_code == 403, form.action
            assert "did not come from this site" in response.text

    [app] = await site.oauth.apps_of("admin")  # nothing registered, edited, deleted or resumed
    assert app.client_id == registered_id and app.status == "suspended"
    assert app.name == "Pocket Chat"


async def test_signed_out_visitors_are_sent_to_sign_in(browser):
    for path in ("/developers", "/developers/admin", "/developers/apps/abc"):
        response = await browser.get(path)
        assert response.status_code == 303
        assert response.headers["location"].startswith("/account/signin?next=%2Fdevelopers")


async def test_portal_is_next_to_the_connected_apps_page(browser):
    apps = await sign_in(browser, "alice", "/account/apps")

    assert 'href="/developers"' in apps.text
    portal = await browser.get("/developers")
    assert 'href="/account/apps"' in portal.text


async def test_portal_pages_need_no_javascript_or_external_resources(site: Site, browser):
    admin_page = await sign_in(browser, "admin", "/developers/admin")
    portal = await browser.get("/developers")
    details = await register(browser, portal)
    client_id = shown(details, "client-id")
    edit = await browser.get(f"/developers/apps/{client_id}/edit")
    confirm = await browser.get(f"/developers/apps/{client_id}/delete")

    for page in (admin_page, portal, details, edit, confirm):
        assert all(form.method == "post" for form in forms(page.text))
        for external in ("<script", "<link", "src=", "url("):
            assert external not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
