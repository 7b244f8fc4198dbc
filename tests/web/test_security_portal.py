"""The developer portal registers apps with PKCE unless told otherwise, shows it, and says
that the implicit grant is turned off while the operator keeps it off."""

from __future__ import annotations

import base64
import re

import httpx
import pytest
from oauth.support import form_to, submit

from chinwag.web.app import SESSION_COOKIE

from .conftest import PASSWORDS, Site

pytestmark = pytest.mark.security

CALLBACK = "https://bridge.example/oauth/callback"


async def portal_of_alice(browser: httpx.AsyncClient) -> httpx.Response:
    page = await browser.get("/account/signin?next=/developers")
    done = await submit(
        browser, form_to(page, "/account/signin"), username="alice", password=PASSWORDS["alice"]
    )
    assert done.headers["location"] == "/developers"
    return await browser.get("/developers")


async def register(browser: httpx.AsyncClient, name: str, **choices: str) -> httpx.Response:
    portal = await portal_of_alice(browser)
    values = {"name": name, "redirect_uris": CALLBACK, "client_type": "confidential", **choices}
    answer = await submit(browser, form_to(portal, "/developers/apps"), **values)
    if answer.status_code != 303:
        return answer
    return await browser.get(answer.headers["location"])  # the app's page


async def test_apps_are_registered_with_pkce_unless_the_developer_relaxes_it(site: Site, browser):
    strict = await register(browser, "Strict bridge")
    relaxed = await register(browser, "Old bridge", skip_pkce="yes")

    apps = {app.name: app for app in await site.oauth.apps_of("alice")}
    assert apps["Strict bridge"].require_pkce and not apps["Old bridge"].require_pkce
    assert "<th>PKCE</th><td>required</td>" in strict.text
    assert "<th>PKCE</th><td>optional" in relaxed.text


async def test_a_public_app_cannot_skip_pkce(site: Site, browser):
    page = await register(browser, "Pocket", client_type="public", skip_pkce="yes")

    assert page.status_code == 400
    assert "public app always uses PKCE" in page.text
    assert await site.oauth.apps_of("alice") == []


async def test_the_portal_says_the_operator_turned_the_implicit_grant_off(site: Site, browser):
    portal = await portal_of_alice(browser)
    assert 'name="allow_implicit"' not in portal.text
    assert "implicit grant is turned off on this server" in portal.text

    page = await register(browser, "Web chat", client_type="public", allow_implicit="yes")

    assert "allowed for this app, but turned off on this server" in page.text


async def test_a_new_secret_waits_for_its_page_encrypted_in_the_cookie(site: Site, browser):
    """Between the POST and the page that shows it, a new client secret rides in the
    session cookie, which is signed but readable: it must be sealed there."""
    portal = await portal_of_alice(browser)
    values = {"name": "Sealed", "redirect_uris": CALLBACK, "client_type": "confidential"}
    answer = await submit(browser, form_to(portal, "/developers/apps"), **values)
    cookie = answer.cookies[SESSION_COOKIE]
    readable = base64.b64decode(cookie.split(".")[0] + "==").decode()

    page = await browser.get(answer.headers["location"])
    secret = re.search(r'id="client-secret">([^<]+)<', page.text)
    assert secret is not None, page.text
    assert secret.group(1) not in readable and "new_secret" in readable
