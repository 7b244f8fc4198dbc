"""The settings that keep the web's addresses and cookies honest: ``[http] public_url``,
``[http] trusted_proxies`` and ``[oauth] allow_implicit``, their defaults and their checks."""

import pytest

from chinwag.config import ConfigError, Settings, settings_from_mapping

pytestmark = pytest.mark.security


def test_the_defaults_trust_the_loopback_proxy_only_and_turn_the_implicit_grant_off() -> None:
    settings = Settings()

    assert settings.http.public_url == ""  # then http://{host}:{port} of the listener
    assert settings.http.trusted_proxies == ("127.0.0.1", "::1")
    assert settings.oauth.allow_implicit is False


def test_a_public_url_loses_its_trailing_slash_and_proxies_may_be_networks() -> None:
    settings = settings_from_mapping(
        {
            "http": {
                "public_url": "https://chat.example.com/chinwag/",
                "trusted_proxies": ["10.0.0.0/8", "fd00::1"],
            }
        }
    )

    assert settings.http.public_url == "https://chat.example.com/chinwag"
    assert settings.http.trusted_proxies == ("10.0.0.0/8", "fd00::1")
    assert settings_from_mapping({"http": {"trusted_proxies": []}}).http.trusted_proxies == ()


@pytest.mark.parametrize(
    ("http", "message"),
    [
        ({"public_url": "chat.example.com"}, "'http.public_url': must be an http(s) URL"),
        ({"public_url": "ftp://chat.example.com"}, "'http.public_url': must be an http(s) URL"),
        ({"public_url": "https://chat.example.com/?a=1"}, "'http.public_url': must be"),
        ({"public_url": "https://chat.example.com/#top"}, "'http.public_url': must be"),
        ({"public_url": "https://user@chat.example.com"}, "'http.public_url': must be"),
        ({"trusted_proxies": ["proxy.example"]}, "'http.trusted_proxies': must be a list"),
        ({"trusted_proxies": ["10.0.0.1/8"]}, "'http.trusted_proxies': must be a list"),
        ({"trusted_proxies": "127.0.0.1"}, "'http.trusted_proxies': must be a list"),
    ],
)
def test_bad_public_urls_and_proxy_lists_are_refused_naming_the_key(
    http: dict[str, object], message: str
) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(").replace(")", r"\)")):
        settings_from_mapping({"http": http})
