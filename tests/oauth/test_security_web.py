"""The web pages' session and addresses: sign-out ends a session even for a copied cookie,
cookies are Secure over TLS (a trusted proxy's word included), the consent page remembers
nothing unless asked, and no Host header changes the issuer or the WebSocket address."""

import httpx
import pytest

from chinwag.config import HTTPSettings, settings_from_mapping
from chinwag.web.app import SESSION_COOKIE, build_web_app
from chinwag.web.server import HTTPServer
from oauth.support import (
    ALICE,
    ALICE_PASSWORD,
    authorize_path,
    form_to,
    pkce,
    shared_loop,
    submit,
)

pytestmark = [pytest.mark.security, shared_loop]

APPS = "/account/apps"
METADATA = "/.well-known/oauth-authorization-server"


async def sign_in(browser: httpx.AsyncClient) -> None:
    page = await browser.get("/account/signin")
    done = await submit(
        browser, form_to(page, "/account/signin"), username=ALICE, password=ALICE_PASSWORD
    )
    assert done.status_code == 303
    assert (await browser.get(APPS)).status_code == 200


async def apps_page_status(base: str, cookies: httpx.Cookies) -> int:
    """What another browser holding a copy of ``cookies`` gets at the connected-apps page."""
    async with httpx.AsyncClient(base_url=base, cookies=cookies) as copy:
        return (await copy.get(APPS)).status_code


async def test_a_cookie_copied_before_sign_out_is_useless_after_it(platform, browser):
    await sign_in(browser)
    copied = httpx.Cookies(browser.cookies)
    assert await apps_page_status(platform.base, copied) == 200

    done = await submit(browser, form_to(await browser.get(APPS), "/account/signout"))

    assert done.status_code == 303
    assert await apps_page_status(platform.base, copied) == 303  # sent to sign in


@pytest.mark.parametrize("change", ["password", "deletion"])
async def test_a_new_password_or_a_deleted_account_ends_the_web_sessions(platform, browser, change):
    await sign_in(browser)
    copied = httpx.Cookies(browser.cookies)

    if change == "password":
        await platform.accounts.change_password(ALICE, "through the looking-glass")
    else:
        await platform.accounts.delete_user(ALICE)

    assert (await browser.get(APPS)).status_code == 303
    assert await apps_page_status(platform.base, copied) == 303


async def session_cookie(base: str, **headers: str) -> list[str]:
    """The attributes of the session cookie that a new browser is given, lower-cased."""
    async with httpx.AsyncClient(base_url=base) as new_browser:
        response = await new_browser.get("/account/signin", headers=headers)
    [cookie] = [
        value
        for value in response.headers.get_list("set-cookie")
        if value.startswith(SESSION_COOKIE + "=")
    ]
    return [attribute.strip().lower() for attribute in cookie.split(";")[1:]]


async def test_cookies_are_secure_over_tls_and_behind_trusted_proxies_only(platform, listener):
    proxied = {"X-Forwarded-Proto": "https"}

    plain = await session_cookie(platform.base)
    trusted = await session_cookie(platform.base, **proxied)  # the loopback is trusted

    assert "secure" not in plain
    assert "secure" in trusted
    untrusting = HTTPServer(listener[0], HTTPSettings(port=0, trusted_proxies=[]))
    await untrusting.start()
    try:
        untrusted = await session_cookie(f"http://127.0.0.1:{untrusting.port}", **proxied)
    finally:
        await untrusting.stop()
    assert "secure" not in untrusted
    for attributes in (plain, trusted, untrusted):
        assert "httponly" in attributes and "samesite=lax" in attributes


async def test_the_consent_page_does_not_remember_unless_asked(browser, public_app):
    await sign_in(browser)
    challenge = pkce()
    path = authorize_path(
        public_app.app.client_id,
        scope="wl.messenger",
        code_challenge=challenge.challenge,
        code_challenge_method="S256",
    )

    consent = form_to(await browser.get(path), "/oauth/authorize")

    assert "remember" not in consent.fields  # the box is there, not ticked
    assert 'name="remember"' in (await browser.get(path)).text


async def test_the_issuer_and_host_meta_ignore_the_host_header(platform, browser):
    evil = {"Host": "evil.example", "X-Forwarded-Host": "evil.example"}

    metadata = (await browser.get(METADATA, headers=evil)).json()
    links = (await browser.get("/.well-known/host-meta.json", headers=evil)).json()["links"]
    xrd = (await browser.get("/.well-known/host-meta", headers=evil)).text

    assert metadata["issuer"] == platform.base
    assert metadata["authorization_endpoint"] == platform.base + "/oauth/authorize"
    websocket = "ws://" + platform.base.removeprefix("http://") + "/xmpp-websocket"
    assert [link["href"] for link in links] == [websocket]
    assert f'href="{websocket}"' in xrd and "evil" not in xrd


async def test_the_configured_public_url_is_the_issuer_and_the_websocket_address(platform):
    settings = settings_from_mapping(
        {
            "data_dir": platform.settings.data_dir,
            "http": {"public_url": "https://chat.example.com/"},
        }
    )
    app = build_web_app(settings, platform.accounts, platform.oauth)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://evil.example") as client:
        metadata = (await client.get(METADATA)).json()
        links = (await client.get("/.well-known/host-meta.json")).json()["links"]

    assert metadata["issuer"] == "https://chat.example.com"
    assert metadata["token_endpoint"] == "https://chat.example.com/oauth/token"
    assert [link["href"] for link in links] == ["wss://chat.example.com/xmpp-websocket"]
