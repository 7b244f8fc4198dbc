"""TLS material: a self-signed certificate on first run, and the server SSL context.

The same context serves STARTTLS on the c2s port and XEP-0368 direct TLS, where
clients ask for the ALPN protocol ``xmpp-client``. A reload replaces its certificate
for the handshakes that follow (:class:`ServerTLS`). Files that do not load are a
:class:`CertificateError` that names the file and why; only a server whose settings
name no files gets a self-signed pair made for it.
"""

from __future__ import annotations

import os
import re
import ssl
from datetime import UTC, datetime, timedelta
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

from chinwag.store.secret_files import PRIVATE_DIRECTORY_MODE

ALPN_PROTOCOLS = ["xmpp-client"]
CERTIFICATE_LIFETIME = timedelta(days=3650)


def ensure_certificate(cert_path: Path, key_path: Path, domain: str) -> bool:
    """Create a self-signed certificate for ``domain`` unless both files exist.

    Returns True when it generated one. The key file is readable by its owner only.
    """
    if cert_path.exists() and key_path.exists():
        return False
    key = ec.generate_private_key(ec.SECP256R1())
    key_pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write(key_path, key_pem, 0o600)
    _write(cert_path, _self_signed(key, domain).public_bytes(serialization.Encoding.PEM), 0o644)
    return True


class CertificateError(Exception):
    """A certificate and key that cannot serve TLS; the message says why, in one line."""


def loaded_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """:func:`server_ssl_context`, or CertificateError naming the file at fault and why
    (OpenSSL itself says only "PEM lib" for a file that is not what it should be)."""
    for path in (cert_path, key_path):
        try:
            with path.open("rb") as file:
                text = file.read()
        except OSError as error:
            raise CertificateError(f"cannot read {path}: {error.strerror}") from None
        if path == cert_path and b"-----BEGIN CERTIFICATE-----" not in text:
            raise CertificateError(f"{path} holds no PEM certificate")
        if path == key_path and not re.search(rb"-----BEGIN [A-Z ]*PRIVATE KEY-----", text):
            raise CertificateError(f"{path} holds no PEM private key")
    try:
        return server_ssl_context(cert_path, key_path)
    except ssl.SSLError as error:
        reason = (
            "the key is not the certificate's"
            if error.reason == "KEY_VALUES_MISMATCH"
            else error.reason or str(error)
        )
        raise CertificateError(f"cannot use {cert_path} with {key_path}: {reason}") from None


def server_ssl_context(cert_path: Path, key_path: Path) -> ssl.SSLContext:
    """A TLS 1.2+ server context offering ALPN ``xmpp-client``."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert_path, key_path)
    context.set_alpn_protocols(ALPN_PROTOCOLS)
    return context


class ServerTLS:
    """The server's TLS context, whose certificate and key a reload replaces.

    The listeners keep :attr:`context`. Each handshake starts on it and, in its SNI
    callback (which OpenSSL runs at every ClientHello, with a server name or without),
    moves to the context of the files loaded last; connections made before keep theirs.
    """

    def __init__(self, cert_path: Path, key_path: Path) -> None:
        """Raises CertificateError."""
        self.context = loaded_context(cert_path, key_path)
        self.context.sni_callback = self._select
        self._current = self.context

    def use(self, context: ssl.SSLContext) -> None:
        """New handshakes get ``context`` (of :func:`loaded_context`)."""
        self._current = context

    def _select(
        self, connection: ssl.SSLObject, _server_name: str | None, context: ssl.SSLContext
    ) -> None:
        if self._current is not context:
            connection.context = self._current


def certificate_names(certificate: x509.Certificate) -> list[str]:
    """The DNS names ``certificate`` is for: its subjectAltName's, else its common name's."""
    try:
        alternative = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
    except x509.ExtensionNotFound:
        return [
            str(attribute.value)
            for attribute in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)
        ]
    return alternative.value.get_values_for_type(x509.DNSName)


def _self_signed(key: ec.EllipticCurvePrivateKey, domain: str) -> x509.Certificate:
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, domain)])
    now = datetime.now(UTC)
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(minutes=5))
        .not_valid_after(now + CERTIFICATE_LIFETIME)
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(domain)]), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .sign(key, hashes.SHA256())
    )


def _write(path: Path, data: bytes, mode: int) -> None:
    path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    # Created with its final mode, so the key is never readable by others, even briefly.
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(descriptor, "wb") as file:
        os.fchmod(file.fileno(), mode)
        file.write(data)
