"""SASL SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, on scramp.

The exchange is split so that the caller can look credentials up in between:
``receive_client_first`` names the user, ``server_first`` takes that user's
stored credentials (or, for an unknown user, ``stand_in_credentials``, with
which the exchange fails at the end exactly like a wrong password),
``receive_client_final`` checks the proof. Messages and names are measured
before scramp parses them (it SASLpreps the name, at a cost that grows with it).
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from scramp import ScramException, ScramMechanism
from scramp.core import ScramServer

from . import MAX_MESSAGE_BYTES, MAX_NAME_BYTES, SaslCondition, SaslFailure, check_length

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")

ScramCredentials = tuple[bytes, bytes, bytes, int]
"""(salt, stored_key, server_key, iteration_count), as scramp stores them."""

_PARSE_ONLY: ScramCredentials = (bytes(16), b"", b"", 4096)
"""What scramp is given while it only parses the client-first message."""


def stand_in_credentials(
    key: bytes, mechanism: str, username: str, *, salt_bytes: int, iterations: int
) -> ScramCredentials:
    """Credentials for a name that has none, shaped like a real account's (``salt_bytes``
    of salt, ``iterations``) and never verifying (random keys). The salt is an HMAC of
    the mechanism and name under ``key``, so it stays the same from one try to the next
    and, with a key kept across restarts, from one start to the next: the challenge does
    not tell whether the name exists."""
    digest = hmac.digest(key, f"{mechanism}\0{username}".encode(), hashlib.sha512)
    if salt_bytes > len(digest):
        raise ValueError(f"a stand-in salt is at most {len(digest)} bytes")
    return digest[:salt_bytes], os.urandom(32), os.urandom(32), iterations


def _measured(message: bytes | None, step: str) -> bytes:
    if not message:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"SCRAM needs a {step} message")
    check_length(message, MAX_MESSAGE_BYTES, f"the SCRAM {step} message")
    return message


def _decode(message: bytes, step: str) -> str:
    try:
        return message.decode()
    except UnicodeDecodeError:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"SCRAM {step} is not UTF-8") from None


def _check_names(client_first: bytes) -> None:
    """RFC 5802 7: ``gs2-cbind-flag "," [ "a=" saslname ] "," "n=" saslname "," ...``.
    The authzid and the username, unescaped, must fit MAX_NAME_BYTES; the rest of the
    syntax is scramp's to check."""
    fields = client_first.split(b",", 3)
    if len(fields) < 3:
        return
    for field, prefix, what in (
        (fields[1], b"a=", "the authzid"),
        (fields[2], b"n=", "the username"),
    ):
        if field.startswith(prefix):
            saslname = field[2:].replace(b"=2C", b",").replace(b"=3D", b"=")
            check_length(saslname, MAX_NAME_BYTES, what)


class ScramExchange:
    """One server-side SCRAM exchange, checked against one or more candidate credentials.

    Candidates (an account password and its app passwords, say) share one salt and
    iteration count, so the client sees a single challenge; its proof tells which
    one it knows.
    """

    def __init__(self, mechanism_name: str) -> None:
        self._mechanism = ScramMechanism(mechanism_name)
        self._client_first = ""
        self._servers: list[ScramServer | None] = []
        self.username = ""

    def receive_client_first(self, message: bytes | None) -> str:
        """Parse the client-first message and return the SCRAM username."""
        measured = _measured(message, "client-first")
        _check_names(measured)
        self._client_first = _decode(measured, "client-first")
        names: list[str] = []

        def record(username: str) -> ScramCredentials:
            names.append(username)
            return _PARSE_ONLY

        try:
            self._mechanism.make_server(record).set_client_first(self._client_first)
        except ScramException as error:
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, str(error)) from None
        # SASLprep may lengthen a name (NFKC expands some characters many times over).
        check_length(names[0].encode(), MAX_NAME_BYTES, "the username")
        self.username = names[0]
        return self.username

    def server_first(self, candidates: Sequence[ScramCredentials]) -> bytes:
        """The server-first challenge, for at least one candidate (a stand-in for an
        unknown user). Candidates whose salt or iteration count differ from the first
        one's cannot share the challenge and are left out."""
        if not candidates:
            raise ValueError("server_first needs credentials, a stand-in for an unknown user")
        salt, _stored, _server, iterations = candidates[0]
        nonce = secrets.token_urlsafe(18)
        challenge = ""
        for credentials in candidates:
            if (credentials[0], credentials[3]) != (salt, iterations):
                self._servers.append(None)
                continue
            server = self._mechanism.make_server(lambda _username, c=credentials: c, s_nonce=nonce)
            try:
                server.set_client_first(self._client_first)
                challenge = server.get_server_first()
            except ScramException as error:
                raise SaslFailure(SaslCondition.MALFORMED_REQUEST, str(error)) from None
            self._servers.append(server)
        return challenge.encode()

    def receive_client_final(self, message: bytes | None) -> tuple[int, bytes]:
        """Check the client's proof; returns which candidate it matched and the
        server-final message (the success data)."""
        if not self._servers:
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "SCRAM messages out of order")
        text = _decode(_measured(message, "client-final"), "client-final")
        for index, server in enumerate(self._servers):
            if server is None:
                continue
            try:
                server.set_client_final(text)
            except ScramException:
                continue
            return index, server.get_server_final().encode()
        raise SaslFailure(SaslCondition.NOT_AUTHORIZED, "wrong username or password")
