"""The developer portal, driven through its forms like a browser without JavaScript."""

from __future__ import annotations

import re

import httpx
import pytest
from oauth.support import Form, form_to, forms, submit

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
    form = form_to(portal, "/developers/apps")
    values = {"name": name, "redirect_uris": uris, "client_type": client_type}
    if implicit:
        values["allow_implicit"] = "yes"
    return await submit(browser, form, **values)


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


# --- the app's page -------------------------------------------------------------------


async def test_rotate_the_secret(site: Site, browser):
    portal = await sign_in(browser, "alice")
    registered = await register(browser, portal)
    client_id, old = shown(registered, "client-id"), shown(registered, "client-secret")
    details = await browser.get(f"/developers/apps/{client_id}")

    rotated = await submit(browser, app_form(details, "/rotate"))

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
    confirm = await browser.get(f"/developers/apps/{client_id}/delete")
    admin_page = await browser.get("/developers/admin")
    portal_forms = [
        (
            form_to(portal, "/developers/apps"),
            {"name": "X", "redirect_uris": CALLBACK, "client_type": "public"},
        ),
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

    [app] = await site.oauth.apps_of("admin")  # nothing registered, deleted or resumed
    assert app.client_id == registered_id and app.status == "suspended"


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
    confirm = await browser.get(f"/developers/apps/{client_id}/delete")

    for page in (admin_page, portal, details, confirm):
        assert all(form.method == "post" for form in forms(page.text))
        for external in ("<script", "<link", "src=", "url("):
            assert external not in page.text
        assert "default-src 'none'" in page.headers["content-security-policy"]
        assert page.headers["cache-control"] == "no-store"
