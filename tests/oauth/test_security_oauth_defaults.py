"""OAuth defaults that follow RFC 9700: no implicit grant unless the operator allows it, and
PKCE of confidential apps too, unless one is registered without it."""

import asyncio
import json

import pytest
from typer.testing import CliRunner

from chinwag.oauth.service import InvalidRegistration
from oauth.support import (
    CALLBACK,
    OTHER_CALLBACK,
    authorize_path,
    code_for,
    commands,
    exchange,
    pkce,
    redirect_params,
    shared_loop,
    sign_in_and_consent,
)

pytestmark = [pytest.mark.security, shared_loop]


async def test_the_implicit_grant_is_off_even_for_an_app_registered_for_it(platform, browser):
    app = await platform.oauth.register_app(
        "Web Messenger", [CALLBACK], public=True, allow_implicit=True
    )
    path = authorize_path(
        app.app.client_id, response_type="token", scope="wl.messenger", state="abc"
    )

    refused = await sign_in_and_consent(browser, path)

    # RFC 6749 4.2.2.1: in the fragment, where an implicit client looks.
    assert refused.headers["location"].startswith(CALLBACK + "#")
    error = redirect_params(refused, "fragment")
    assert error["error"] == "unsupported_response_type"
    assert error["state"] == "abc"
    assert "access_token" not in error


async def test_the_metadata_offers_no_implicit_grant(browser):
    metadata = (await browser.get("/.well-known/oauth-authorization-server")).json()

    assert metadata["response_types_supported"] == ["code"]
    assert metadata["response_modes_supported"] == ["query"]
    assert "implicit" not in metadata["grant_types_supported"]


async def test_a_confidential_app_must_use_pkce_by_default(browser, confidential_app):
    client_id, secret = confidential_app.app.client_id, confidential_app.client_secret
    path = authorize_path(client_id, scope="wl.basic", state="s1", redirect_uri=OTHER_CALLBACK)

    refused = await browser.get(path)

    error = redirect_params(refused)
    assert error["error"] == "invalid_request"
    assert "code_challenge" in error["error_description"]
    assert error["state"] == "s1"
    # With a challenge, it must send the verifier as well as its secret.
    challenge = pkce()
    code = await code_for(browser, client_id, "wl.basic", challenge, redirect_uri=OTHER_CALLBACK)
    without = await exchange(
        browser, client_id, code, None, secret=secret, redirect_uri=OTHER_CALLBACK
    )
    assert without.status_code == 400
    assert without.json()["error"] == "invalid_request"


async def test_only_a_confidential_app_may_be_registered_without_pkce(platform):
    relaxed = await platform.oauth.register_app("Bridge", [OTHER_CALLBACK], require_pkce=False)

    assert not relaxed.app.require_pkce
    assert (await platform.oauth.register_app("Strict", [OTHER_CALLBACK])).app.require_pkce
    with pytest.raises(InvalidRegistration, match="public app always uses PKCE"):
        await platform.oauth.register_app("Pocket", [CALLBACK], public=True, require_pkce=False)


async def test_the_command_line_registers_with_pkce_unless_told_otherwise(platform, tmp_path):
    config = tmp_path / "chinwag.toml"
    config.write_text(f"data_dir = '{platform.settings.data_dir}'\n")

    def register(*options: str) -> dict[str, object]:
        arguments = ["app", "register", "Bridge", "--redirect-uri", OTHER_CALLBACK, *options]
        result = CliRunner().invoke(commands, [*arguments, "--json", "--config", str(config)])
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)

    assert (await asyncio.to_thread(register))["require_pkce"] is True
    assert (await asyncio.to_thread(register, "--pkce-optional"))["require_pkce"] is False
