"""Settings: defaults, the documented example, one-line errors, $CHINWAG_CONFIG."""

from pathlib import Path

import pytest

from chinwag.config import CONFIG_ENV_VAR, ConfigError, Settings, load_settings

DOCUMENTED_EXAMPLE = """\
domain = "localhost"
data_dir = "./chinwag-data"
[c2s]
host = "127.0.0.1"
port = 5222
direct_tls_port = 5223
require_tls = true
[http]
host = "127.0.0.1"
port = 5280
[database]
url = "sqlite+aiosqlite:///./chinwag-data/chinwag.db"
[tls]
cert = "./chinwag-data/tls/localhost.crt"
key = "./chinwag-data/tls/localhost.key"
[limits]
max_stanza_bytes = 262144
"""


@pytest.fixture(autouse=True)
def no_config_from_the_environment(monkeypatch):
    monkeypatch.delenv(CONFIG_ENV_VAR, raising=False)


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "chinwag.toml"
    path.write_text(text)
    return path


def test_defaults_without_any_file():
    settings = load_settings()

    assert settings == Settings()
    assert settings.domain == "localhost"
    assert (settings.c2s.port, settings.c2s.direct_tls_port, settings.http.port) == (
        5222,
        5223,
        5280,
    )
    assert settings.c2s.require_tls is True
    assert settings.database_url == "sqlite+aiosqlite:///chinwag-data/chinwag.db"
    assert settings.tls_cert_path == Path("chinwag-data/tls/localhost.crt")
    assert settings.tls_key_path == Path("chinwag-data/tls/localhost.key")
    assert settings.limits.max_stanza_bytes == 262144


def test_the_documented_example_loads_every_key(tmp_path):
    settings = load_settings(write(tmp_path, DOCUMENTED_EXAMPLE))

    assert settings.domain == "localhost"
    assert settings.data_path == tmp_path / "chinwag-data"
    assert (settings.c2s.host, settings.c2s.port, settings.c2s.direct_tls_port) == (
        "127.0.0.1",
        5222,
        5223,
    )
    assert settings.c2s.require_tls is True
    assert (settings.http.host, settings.http.port) == ("127.0.0.1", 5280)
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/chinwag-data/chinwag.db"
    assert settings.tls_cert_path == tmp_path / "chinwag-data/tls/localhost.crt"
    assert settings.tls_key_path == tmp_path / "chinwag-data/tls/localhost.key"
    assert settings.limits.max_stanza_bytes == 262144


def test_relative_paths_start_from_the_settings_file_s_directory(tmp_path, monkeypatch):
    config_dir, elsewhere = tmp_path / "etc", tmp_path / "elsewhere"
    config_dir.mkdir()
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    config = write(
        config_dir,
        'data_dir = "data"\n'
        '[database]\nurl = "sqlite+aiosqlite:///db/chat.db?timeout=5"\n'
        '[tls]\ncert = "tls/fullchain.pem"\nkey = "../keys/privkey.pem"\n'
        '[log]\nfile = "log/chinwag.log"\n',
    )

    settings = load_settings(Path("..") / "etc" / config.name)

    assert settings.data_path == config_dir / "data"
    assert settings.database_url == f"sqlite+aiosqlite:///{config_dir}/db/chat.db?timeout=5"
    assert settings.tls_cert_path == config_dir / "tls/fullchain.pem"
    assert settings.tls_key_path == config_dir / "../keys/privkey.pem"
    assert settings.log.file == str(config_dir / "log/chinwag.log")


def test_with_a_settings_file_the_default_data_dir_is_beside_it(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path.parent)

    settings = load_settings(write(tmp_path, 'domain = "chat.example"\n'))

    assert settings.data_path == tmp_path / "chinwag-data"
    assert settings.database_url == f"sqlite+aiosqlite:///{tmp_path}/chinwag-data/chinwag.db"
    assert settings.tls_cert_path == tmp_path / "chinwag-data/tls/chat.example.crt"


@pytest.mark.parametrize(
    "url",
    [
        "sqlite+aiosqlite:////srv/chinwag/chinwag.db",
        "sqlite+aiosqlite://",
        "sqlite+aiosqlite:///:memory:",
        "postgresql+asyncpg://chinwag@db.internal/chinwag",
    ],
)
def test_absolute_in_memory_and_server_database_urls_stay_as_written(tmp_path, url):
    settings = load_settings(write(tmp_path, f'[database]\nurl = "{url}"\n'))

    assert settings.database_url == url


def test_derived_paths_follow_data_dir_and_domain(tmp_path):
    settings = load_settings(write(tmp_path, 'domain = "chat.example"\ndata_dir = "/srv/cw"\n'))

    assert settings.database_url == "sqlite+aiosqlite:////srv/cw/chinwag.db"
    assert settings.tls_cert_path == Path("/srv/cw/tls/chat.example.crt")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("colour = 1\n", "unknown config key 'colour'"),
        ("[c2s]\nprot = 5222\n", "unknown config key 'c2s.prot'"),
        ('[c2s]\nport = "5222"\n', "bad config value for 'c2s.port'"),
        ("[c2s]\nport = 70000\n", "bad config value for 'c2s.port'"),
        ('[database]\nurl = "mysql://x"\n', "bad config value for 'database.url'"),
        ('domain = "a@b"\n', "bad config value for 'domain'"),
        ("[limits]\nmax_stanza_bytes = 10\n", "bad config value for 'limits.max_stanza_bytes'"),
        ("domain = \n", "is not valid TOML"),
        ('[tls]\ncert = "fullchain.pem"\n', "'tls': cert and key go together"),
    ],
)
def test_bad_files_give_one_line_naming_the_problem(tmp_path, text, message):
    with pytest.raises(ConfigError) as raised:
        load_settings(write(tmp_path, text))

    assert message in str(raised.value)
    assert "\n" not in str(raised.value)


def test_a_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_settings(tmp_path / "absent.toml")


def test_the_environment_variable_names_the_file(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV_VAR, str(write(tmp_path, 'domain = "env.example"\n')))

    assert load_settings().domain == "env.example"


def test_an_explicit_path_beats_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(CONFIG_ENV_VAR, str(tmp_path / "absent.toml"))

    assert load_settings(write(tmp_path, 'domain = "file.example"\n')).domain == "file.example"


def test_http_operators_are_a_list_of_usernames(tmp_path):
    assert load_settings().http.operators == ()
    settings = load_settings(write(tmp_path, '[http]\noperators = ["admin", "Ops"]\n'))
    assert settings.http.operators == ("admin", "Ops")
    with pytest.raises(ConfigError, match=r"'http\.operators': must be a list of usernames"):
        load_settings(write(tmp_path, '[http]\noperators = "admin"\n'))


def test_the_readme_configuration_example_is_valid_and_complete() -> None:
    """Every key the README documents loads, and every section of Settings is documented."""
    import re
    import tomllib
    from pathlib import Path

    from chinwag.config import Settings, settings_from_mapping

    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    block = re.search(r"```toml\n(.*?)```", readme, re.S)
    assert block is not None
    data = tomllib.loads(block.group(1))
    settings_from_mapping(data)
    sections = {
        name
        for name, field in Settings.model_fields.items()
        if hasattr(field.annotation, "model_fields")
    }
    assert sections <= data.keys()


def test_c2s_proxy_trusted_is_a_list_of_addresses_or_networks(tmp_path):
    assert load_settings().c2s.proxy_protocol is False
    settings = load_settings(
        write(tmp_path, '[c2s]\nproxy_protocol = true\nproxy_trusted = ["10.0.0.0/8", "::1"]\n')
    )
    assert settings.c2s.proxy_trusted == ("10.0.0.0/8", "::1")
    for bad in ('"10.0.0.2"', '["lb.example.com"]', '["10.0.0.2/8"]'):
        with pytest.raises(ConfigError, match=r"'c2s\.proxy_trusted': must be a list of IP"):
            load_settings(write(tmp_path, f"[c2s]\nproxy_trusted = {bad}\n"))
