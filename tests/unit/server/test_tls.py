"""Self-signed certificates and the server TLS context."""

import contextlib
import ssl
import stat
from datetime import UTC, datetime, timedelta

import pytest
from cryptography import x509

from chinwag.server.tls import ensure_certificate, server_ssl_context


@pytest.fixture
def paths(tmp_path):
    return tmp_path / "tls" / "chat.example.crt", tmp_path / "tls" / "chat.example.key"


def test_generates_a_certificate_for_the_domain(paths):
    cert_path, key_path = paths

    assert ensure_certificate(cert_path, key_path, "chat.example") is True

    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["chat.example"]
    assert cert.issuer == cert.subject
    lifetime = cert.not_valid_after_utc - datetime.now(UTC)
    assert timedelta(days=3600) < lifetime < timedelta(days=3700)
    assert stat.S_IMODE(key_path.stat().st_mode) == 0o600


def test_keeps_existing_files(paths):
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, "chat.example")
    before = cert_path.read_bytes()

    assert ensure_certificate(cert_path, key_path, "chat.example") is False
    assert cert_path.read_bytes() == before


def test_regenerates_when_the_key_is_missing(paths):
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, "chat.example")
    key_path.unlink()

    assert ensure_certificate(cert_path, key_path, "chat.example") is True
    server_ssl_context(cert_path, key_path)  # the new pair matches


def handshake(server: ssl.SSLContext, client: ssl.SSLContext) -> tuple[ssl.SSLObject, ...]:
    """Complete a TLS handshake in memory; returns (server side, client side)."""
    pipes = [(ssl.MemoryBIO(), ssl.MemoryBIO()) for _ in range(2)]
    server_side = server.wrap_bio(*pipes[0], server_side=True)
    client_side = client.wrap_bio(*pipes[1], server_hostname="chat.example")
    for _ in range(10):
        for side in (client_side, server_side):
            with contextlib.suppress(ssl.SSLWantReadError):
                side.do_handshake()
        pipes[0][0].write(pipes[1][1].read())
        pipes[1][0].write(pipes[0][1].read())
    return server_side, client_side


def test_context_negotiates_xmpp_client_over_modern_tls(paths):
    cert_path, key_path = paths
    ensure_certificate(cert_path, key_path, "chat.example")
    server = server_ssl_context(cert_path, key_path)
    client = ssl.create_default_context(cafile=cert_path)
    client.set_alpn_protocols(["xmpp-client"])

    server_side, client_side = handshake(server, client)

    assert server.minimum_version == ssl.TLSVersion.TLSv1_2
    assert client_side.selected_alpn_protocol() == "xmpp-client"
    assert client_side.getpeercert()["subjectAltName"] == (("DNS", "chat.example"),)
    assert server_side.version() in ("TLSv1.2", "TLSv1.3")
