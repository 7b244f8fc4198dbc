"""The implicit grant, where the operator allows it: only for apps registered to allow it,
as RFC 9700 advises (test_security_oauth_defaults.py: where the operator does not)."""

import pytest

from chinwag.oauth.service import InvalidRegistration
from oauth.support import (
    CALLBACK,
    authorize_path,
    redirect_params,
    shared_loop,
    sign_in_and_consent,
)

pytestmark = shared_loop


@pytest.fixture
def config():
    return {"oauth": {"allow_implicit": True}}


async def test_an_app_that_allows_it_gets_a_token_in_the_fragment(platform, browser):
    app = await platform.oauth.register_app(
        "Web Messenger", [CALLBACK], public=True, allow_implicit=True
    )
    path = authorize_path(
        app.app.client_id,
        response_type="token",
        scope="wl.messenger wl.offline_access",
        state="abc",
    )

    redirect = await sign_in_and_consent(browser, path)

    assert redirect.headers["location"].startswith(CALLBACK + "#")
    token = redirect_params(redirect, "fragment")
    assert token["state"] == "abc"
    assert token["token_type"] == "Bearer"
    assert token["expires_in"] == "3600"
    assert "refresh_token" not in token
    grant = await platform.oauth.check_token(token["access_token"])
    assert grant.client_id == app.app.client_id


async def test_an_app_that_does_not_is_refused(browser, public_app):
    path = authorize_path(
        public_app.app.client_id, response_type="token", scope="wl.messenger", state="abc"
    )

    redirect = await browser.get(path)

    error = redirect_params(redirect, "fragment")
    assert error["error"] == "unauthorized_client"
    assert error["state"] == "abc"
    assert "access_token" not in error


async def test_a_confidential_app_cannot_allow_it(platform):
    with pytest.raises(InvalidRegistration, match="public apps"):
        await platform.oauth.register_app("Bridge", [CALLBACK], allow_implicit=True)
