"""[http] websocket_origins: the browser origins allowed at /xmpp-websocket."""

import pytest

from chinwag.config import ConfigError, settings_from_mapping


def test_any_origin_by_default():
    assert settings_from_mapping({}).http.websocket_origins == ()


def test_origins_are_compared_without_case_or_trailing_slash():
    origins = ["https://Chat.Example/", " http://localhost:8080 "]
    settings = settings_from_mapping({"http": {"websocket_origins": origins}})
    assert settings.http.websocket_origins == ("https://chat.example", "http://localhost:8080")


@pytest.mark.parametrize("value", ["https://chat.example", ["chat.example"], [1], {"a": "b"}])
def test_a_bad_list_names_the_key(value):
    with pytest.raises(ConfigError, match=r"'http\.websocket_origins'.*list of origins"):
        settings_from_mapping({"http": {"websocket_origins": value}})
