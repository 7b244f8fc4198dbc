"""``chinwag check``: one line per finding about the settings, the certificate, DNS, the
database and the ports, and exit status 1 when any is an error.

DNS is asked of a server on the loopback (``--dns-server``, see ``fake_dns.py``), or
not at all for a local domain: the tests never reach the internet.
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import tomllib
from pathlib import Path

import pytest
from cert_support import make_ca, write_certificate
from cli_support import CHINWAG, Chinwag
from fake_dns import FakeDNS

from chinwag.config import CONFIG_ENV_VAR
from tests.integration.support import free_port

HOST = "127.0.0.1"


@pytest.fixture
def chinwag(tmp_path) -> Chinwag:
    """The command, before any ``chinwag serve`` made a database: check makes none."""
    return Chinwag(tmp_path, database=False)


def write_config(
    path: Path,
    *,
    domain: str = "localhost",
    c2s_port: int | None = None,
    direct_tls_port: int | None = None,
    http_port: int | None = None,
    top: str = "",
    extra: str = "",
) -> Path:
    """A config on free loopback ports (unless given), its data in ``{path.parent}/data``."""
    ports = (c2s_port or free_port(), direct_tls_port or free_port(), http_port or free_port())
    path.write_text(
        f'domain = "{domain}"\ndata_dir = "{path.parent / "data"}"\n{top}\n'
        f'[c2s]\nhost = "{HOST}"\nport = {ports[0]}\ndirect_tls_port = {ports[1]}\n'
        f'[http]\nhost = "{HOST}"\nport = {ports[2]}\n{extra}'
    )
    return path


def check(chinwag: Chinwag, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return chinwag.run(["check", *args, "--config", str(config)])


def lines_of(result: subprocess.CompletedProcess[str], area: str) -> list[str]:
    return [line for line in result.stdout.splitlines() if line.split()[1] == f"{area}:"]


def with_certificate(config: Path, cert: Path, key: Path, domain: str = "localhost") -> Path:
    return write_config(config, domain=domain, extra=f'[tls]\ncert = "{cert}"\nkey = "{key}"\n')


def port_of(config: Path, section: str, key: str = "port") -> int:
    port: int = tomllib.loads(config.read_text())[section][key]
    return port


def test_a_fresh_localhost_setup_is_all_ok_and_nothing_is_made(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")
    data = tmp_path / "data"
    c2s, tls = port_of(config, "c2s"), port_of(config, "c2s", "direct_tls_port")
    http = port_of(config, "http")

    result = check(chinwag, config)

    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines() == [
        f"ok      config: read {config}",
        f"ok      tls: no certificate at {data}/tls/localhost.crt yet: chinwag serve makes a "
        "self-signed one for localhost",
        "ok      dns: localhost is a local name: no SRV records are expected, nor looked up",
        f"ok      database: sqlite+aiosqlite:///{data}/chinwag.db is not made yet: chinwag "
        "serve creates it",
        f"ok      ports: c2s {HOST}:{c2s}: free",
        f"ok      ports: direct_tls {HOST}:{tls}: free",
        f"ok      ports: http {HOST}:{http}: free",
    ]
    assert not data.exists()

    as_json = check(chinwag, config, "--json")
    assert as_json.returncode == 0, as_json.stderr
    findings = json.loads(as_json.stdout)
    assert {finding["level"] for finding in findings} == {"ok"}
    assert [finding["area"] for finding in findings] == [
        "config",
        "tls",
        "dns",
        "database",
        "ports",
        "ports",
        "ports",
    ]


def test_check_reads_the_global_config_option_or_the_environment_s(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")

    before = chinwag.run(["--config", str(config), "check"])
    from_environment = subprocess.run(
        [str(CHINWAG), "check"],
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, CONFIG_ENV_VAR: str(config)},
        timeout=120,
        check=False,
    )

    for result in (before, from_environment):
        assert result.returncode == 0, result.stdout + result.stderr
        assert result.stdout.splitlines()[0] == f"ok      config: read {config}"


def test_a_bad_setting_is_an_error_finding_and_exit_2(chinwag: Chinwag, tmp_path):
    config = tmp_path / "chinwag.toml"
    config.write_text("[c2s]\nport = 70000\n")

    result = check(chinwag, config)

    assert result.returncode == 2
    [line] = result.stdout.splitlines()
    assert line.startswith("error   config: bad config value for 'c2s.port'")


def test_plaintext_sign_in_beyond_the_loopback_is_a_warning(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")
    config.write_text(
        config.read_text().replace(
            f'[c2s]\nhost = "{HOST}"', '[c2s]\nhost = ""\nrequire_tls = false'
        )
    )

    result = check(chinwag, config)

    assert lines_of(result, "config")[1] == (
        "warning config: c2s.require_tls = false lets clients on every address send passwords "
        "unencrypted"
    )


@pytest.mark.parametrize(
    ("names", "days", "level", "message"),
    [
        (["localhost"], (-1, 365), "ok", "the certificate is valid until "),
        (["localhost"], (-30, -1), "error", "the certificate expired on "),
        (["localhost"], (-1, 10), "warning", "the certificate expires on "),
        (["localhost"], (2, 30), "error", "the certificate is not valid before "),
    ],
    ids=["valid", "expired", "expires-soon", "not-yet-valid"],
)
def test_the_certificate_s_validity(chinwag: Chinwag, tmp_path, names, days, level, message):
    cert, key = write_certificate(tmp_path, names, days=days)
    config = with_certificate(tmp_path / "chinwag.toml", cert, key)

    result = check(chinwag, config)

    tls = lines_of(result, "tls")
    assert tls[0] == f"ok      tls: {cert} and its key {key} load"
    assert tls[1].startswith(f"{level:<8}tls: {message}"), tls
    assert result.returncode == (1 if level == "error" else 0), result.stdout


def test_a_certificate_for_another_name_is_an_error(chinwag: Chinwag, tmp_path):
    cert, key = write_certificate(tmp_path, ["chat.example", "www.chat.example"])
    config = with_certificate(tmp_path / "chinwag.toml", cert, key)

    result = check(chinwag, config)

    assert result.returncode == 1
    assert lines_of(result, "tls")[-1] == (
        "error   tls: the certificate is for chat.example, www.chat.example, not localhost: "
        "clients refuse it"
    )


def test_a_wildcard_names_a_subdomain_and_a_local_self_signed_one_is_fine(
    chinwag: Chinwag, tmp_path
):
    cert, key = write_certificate(tmp_path, ["*.chat.localhost"])
    config = with_certificate(tmp_path / "chinwag.toml", cert, key, domain="xmpp.chat.localhost")

    result = check(chinwag, config)

    assert result.returncode == 0, result.stdout
    assert lines_of(result, "tls")[2:] == [
        "ok      tls: the certificate names xmpp.chat.localhost",
        "ok      tls: the certificate is self-signed, as a local domain's may be",
    ]


def test_a_key_of_another_certificate_is_an_error(chinwag: Chinwag, tmp_path):
    cert, _key = write_certificate(tmp_path, ["localhost"], stem="one")
    _cert, other_key = write_certificate(tmp_path, ["localhost"], stem="two")
    config = with_certificate(tmp_path / "chinwag.toml", cert, other_key)

    result = check(chinwag, config)

    assert result.returncode == 1
    [line] = lines_of(result, "tls")
    assert line == (
        f"error   tls: cannot use {cert} with {other_key}: the key is not the certificate's: "
        "chinwag serve will not start"
    )


def test_a_missing_key_or_a_file_without_pem_is_an_error(chinwag: Chinwag, tmp_path):
    cert, key = write_certificate(tmp_path, ["localhost"])
    key.unlink()
    config = with_certificate(tmp_path / "chinwag.toml", cert, key)

    missing = check(chinwag, config)

    assert missing.returncode == 1
    assert lines_of(missing, "tls") == [
        f"error   tls: cannot read {key}: No such file or directory: chinwag serve will not start"
    ]
    key.write_text("not a key")
    cert.write_text("not a certificate")
    assert lines_of(check(chinwag, config), "tls") == [
        f"error   tls: {cert} holds no PEM certificate: chinwag serve will not start"
    ]


def test_the_self_signed_pair_of_the_data_directory_missing_its_key(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")
    (tmp_path / "data" / "tls").mkdir(parents=True)
    cert, key = write_certificate(tmp_path / "data" / "tls", ["localhost"], stem="localhost")
    key.unlink()

    result = check(chinwag, config)

    assert result.returncode == 1
    assert lines_of(result, "tls") == [
        f"error   tls: {key} is missing, so chinwag serve would replace {cert} with a "
        "self-signed certificate"
    ]


def test_a_certificate_is_trusted_when_it_chains_to_a_ca_of_this_machine(
    chinwag: Chinwag, tmp_path, monkeypatch
):
    issuer, bundle = make_ca(tmp_path)
    cert, key = write_certificate(tmp_path, ["chat.example"], issuer=issuer)
    config = with_certificate(tmp_path / "chinwag.toml", cert, key, domain="chat.example")

    with FakeDNS({}) as dns:
        untrusted = check(chinwag, config, "--dns-server", dns.address)
        monkeypatch.setenv("SSL_CERT_FILE", str(bundle))
        trusted = check(chinwag, config, "--dns-server", dns.address)

    assert lines_of(untrusted, "tls")[-1].startswith(
        "error   tls: the certificate does not chain to a CA this machine trusts: "
    )
    assert untrusted.returncode == 1
    assert lines_of(trusted, "tls")[-1] == (
        "ok      tls: the certificate chains to CN=Check Test CA"
    )


def test_a_self_signed_certificate_of_a_public_domain_is_a_warning(chinwag: Chinwag, tmp_path):
    cert, key = write_certificate(tmp_path, ["chat.example"])
    config = with_certificate(tmp_path / "chinwag.toml", cert, key, domain="chat.example")

    with FakeDNS({}) as dns:
        result = check(chinwag, config, "--dns-server", dns.address)

    assert lines_of(result, "tls")[-1] == (
        "warning tls: the certificate is self-signed: clients refuse it unless told to trust "
        "it; get one from a CA (such as Let's Encrypt)"
    )


# --- dns -------------------------------------------------------------------------------


def test_srv_records_that_match_the_ports_are_ok(chinwag: Chinwag, tmp_path):
    c2s, tls = free_port(), free_port()
    config = write_config(
        tmp_path / "chinwag.toml", domain="chat.example", c2s_port=c2s, direct_tls_port=tls
    )
    records = {
        ("_xmpp-client._tcp.chat.example.", "SRV"): [f"0 5 {c2s} xmpp.chat.example."],
        ("_xmpps-client._tcp.chat.example.", "SRV"): [
            f"10 5 {tls} xmpp.chat.example.",
            f"5 5 {tls} tls.chat.example.",
        ],
        ("xmpp.chat.example.", "A"): ["192.0.2.10"],
        ("tls.chat.example.", "AAAA"): ["2001:db8::10"],
    }

    with FakeDNS(records) as dns:
        result = check(chinwag, config, "--dns-server", dns.address)

    assert lines_of(result, "dns") == [
        f"ok      dns: _xmpp-client._tcp.chat.example SRV 0 5 {c2s} xmpp.chat.example.",
        "ok      dns: xmpp.chat.example. is at 192.0.2.10",
        f"ok      dns: _xmpps-client._tcp.chat.example SRV 5 5 {tls} tls.chat.example.; "
        f"10 5 {tls} xmpp.chat.example.",
        "ok      dns: tls.chat.example. is at 2001:db8::10",
        "ok      dns: xmpp.chat.example. is at 192.0.2.10",
    ]
    assert ("_xmpps-client._tcp.chat.example.", "SRV") in dns.asked


def test_srv_records_on_other_ports_or_targets_without_address_are_reported(
    chinwag: Chinwag, tmp_path
):
    c2s, tls = free_port(), free_port()
    config = write_config(
        tmp_path / "chinwag.toml", domain="chat.example", c2s_port=c2s, direct_tls_port=tls
    )
    records = {("_xmpp-client._tcp.chat.example.", "SRV"): ["0 5 5269 gone.chat.example."]}

    with FakeDNS(records) as dns:
        result = check(chinwag, config, "--dns-server", dns.address)

    assert result.returncode == 1
    assert lines_of(result, "dns") == [
        "ok      dns: _xmpp-client._tcp.chat.example SRV 0 5 5269 gone.chat.example.",
        f"warning dns: _xmpp-client._tcp.chat.example points at port 5269, and chinwag serves "
        f"STARTTLS on {c2s}: fine only if something forwards it",
        "error   dns: gone.chat.example. (named by _xmpp-client._tcp.chat.example) has no "
        "address: clients cannot connect",
        f"warning dns: no _xmpps-client._tcp.chat.example SRV record: clients will not find "
        f"direct TLS on port {tls}; expected: _xmpps-client._tcp.chat.example. SRV 0 5 {tls} "
        "<this server's host name>.",
    ]


def test_without_srv_records_clients_find_only_port_5222(chinwag: Chinwag, tmp_path):
    c2s = free_port()
    config = write_config(tmp_path / "chinwag.toml", domain="chat.example", c2s_port=c2s)
    no_service = {("_xmpps-client._tcp.chat.example.", "SRV"): ["0 0 0 ."]}

    with FakeDNS(no_service) as dns:
        result = check(chinwag, config, "--dns-server", dns.address)

    assert result.returncode == 1
    assert lines_of(result, "dns") == [
        f"error   dns: no _xmpp-client._tcp.chat.example SRV record: clients try port 5222 of "
        f"chat.example, and chinwag listens on {c2s}; expected: _xmpp-client._tcp.chat.example. "
        f"SRV 0 5 {c2s} <this server's host name>.",
        "error   dns: _xmpps-client._tcp.chat.example says no such service is offered "
        "(target '.'); expected: _xmpps-client._tcp.chat.example. SRV 0 5 "
        f"{port_of(config, 'c2s', 'direct_tls_port')} <this server's host name>.",
    ]


def test_without_srv_records_port_5222_falls_back_to_the_domain(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml", domain="chat.example", c2s_port=5222)

    with FakeDNS({("chat.example.", "A"): ["192.0.2.1"]}) as dns:
        result = check(chinwag, config, "--dns-server", dns.address)

    assert lines_of(result, "dns")[0] == (
        "warning dns: no _xmpp-client._tcp.chat.example SRV record: clients fall back to "
        "chat.example (192.0.2.1) port 5222; expected: _xmpp-client._tcp.chat.example. SRV 0 5 "
        "5222 <this server's host name>."
    )


def test_a_local_domain_is_not_looked_up(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")

    with FakeDNS({}) as dns:
        result = check(chinwag, config, "--dns-server", dns.address)

    assert result.returncode == 0, result.stdout
    assert dns.asked == []


def test_a_dns_server_that_is_not_an_address_is_refused(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")

    result = check(chinwag, config, "--dns-server", "dns.example")

    assert result.returncode == 1
    assert result.stderr.strip() == (
        "error: dns.example is not ADDRESS or ADDRESS:PORT of a DNS server"
    )


# --- database --------------------------------------------------------------------------


def test_a_migrated_database_is_ok(chinwag: Chinwag, tmp_path):
    config = write_config(tmp_path / "chinwag.toml")
    assert chinwag.run(["db", "migrate", "--config", str(config)]).returncode == 0

    result = check(chinwag, config)

    [line] = lines_of(result, "database")
    assert line.startswith(
        f"ok      database: sqlite+aiosqlite:///{tmp_path / 'data'}/chinwag.db is reachable, "
        "its schema at the newest revision ("
    )


@pytest.mark.parametrize(
    ("revision", "level", "says"),
    [
        ("0001", "warning", "is at revision 0001, older than this chinwag's "),
        ("ffff", "error", "is at revision ffff, which this chinwag does not know"),
    ],
    ids=["older", "unknown"],
)
def test_a_database_at_another_revision(chinwag: Chinwag, tmp_path, revision, level, says):
    config = write_config(tmp_path / "chinwag.toml")
    (tmp_path / "data").mkdir()
    with sqlite3.connect(tmp_path / "data" / "chinwag.db") as db:
        db.execute("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)")
        db.execute("INSERT INTO alembic_version VALUES (?)", (revision,))

    result = check(chinwag, config)

    [line] = lines_of(result, "database")
    assert line.startswith(f"{level:<8}database: sqlite+aiosqlite:///"), line
    assert says in line
    assert result.returncode == (1 if level == "error" else 0)


def test_a_database_that_cannot_be_reached_is_an_error(chinwag: Chinwag, tmp_path):
    port = free_port()
    url = f"postgresql+asyncpg://chinwag:secret@{HOST}:{port}/chinwag"
    config = write_config(tmp_path / "chinwag.toml", extra=f'[database]\nurl = "{url}"\n')

    result = check(chinwag, config)

    assert result.returncode == 1
    [line] = lines_of(result, "database")
    assert line.startswith(
        f"error   database: cannot reach postgresql+asyncpg://chinwag:***@{HOST}:{port}/chinwag: "
    ), line
    assert "secret" not in result.stdout


# --- ports -----------------------------------------------------------------------------


def test_ports_in_use_shared_or_not_of_this_machine_are_errors(chinwag: Chinwag, tmp_path):
    with socket.socket() as busy:
        busy.bind((HOST, 0))
        busy.listen()
        taken = busy.getsockname()[1]
        config = write_config(tmp_path / "chinwag.toml", c2s_port=taken)
        in_use = check(chinwag, config)
    shared = free_port()
    config = write_config(tmp_path / "chinwag.toml", c2s_port=shared, http_port=shared)
    twice = check(chinwag, config)

    assert in_use.returncode == twice.returncode == 1
    assert lines_of(in_use, "ports")[0] == (
        f"error   ports: c2s {HOST}:{taken}: in use by another program (or a chinwag of "
        "another configuration)"
    )
    assert lines_of(twice, "ports")[2] == f"error   ports: http and c2s both use port {shared}"


def test_a_host_that_is_not_this_machine_s_is_an_error(chinwag: Chinwag, tmp_path):
    config = tmp_path / "chinwag.toml"
    config.write_text(
        f'data_dir = "{tmp_path / "data"}"\n[http]\nhost = "192.0.2.1"\nport = 5280\n'
    )

    result = check(chinwag, config)

    assert result.returncode == 1
    assert lines_of(result, "ports")[-1] == (
        "error   ports: http 192.0.2.1:5280: 192.0.2.1 is not an address of this machine"
    )
