"""SASL SCRAM-SHA-1 and SCRAM-SHA-256 (RFC 5802, RFC 7677), server side, on scramp.

The exchange is split so that the caller can look credentials up in between:
``receive_client_first`` names the user, ``server_first`` takes that user's
stored credentials (or None for an unknown user, who then fails at the end
exactly like a wrong password), ``receive_client_final`` checks the proof.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from collections.abc import Sequence

from scramp import ScramException, ScramMechanism
from scramp.core import ScramServer

from . import SaslCondition, SaslFailure

MECHANISMS = ("SCRAM-SHA-256", "SCRAM-SHA-1")

ScramCredentials = tuple[bytes, bytes, bytes, int]
"""(salt, stored_key, server_key, iteration_count), as scramp stores them."""

_UNKNOWN_USER_SECRET = os.urandom(32)
# Matches the iteration count accounts are created with, so unknown users look alike.
STAND_IN_ITERATIONS = 4096


def _decode(message: bytes | None, step: str) -> str:
    if not message:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"SCRAM needs a {step} message")
    try:
        return message.decode()
    except UnicodeDecodeError:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"SCRAM {step} is not UTF-8") from None


def _stand_in_credentials(username: str) -> ScramCredentials:
    """Credentials that never verify, stable per username so the salt reveals nothing."""
    salt = hmac.new(_UNKNOWN_USER_SECRET, username.encode(), hashlib.sha256).digest()
    return salt, os.urandom(32), os.urandom(32), STAND_IN_ITERATIONS


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
        self._client_first = _decode(message, "client-first")
        names: list[str] = []

        def record(username: str) -> ScramCredentials:
            names.append(username)
            return _stand_in_credentials(username)

        try:
            self._mechanism.make_server(record).set_client_first(self._client_first)
        except ScramException as error:
            raise SaslFailure(SaslCondition.MALFORMED_REQUEST, str(error)) from None
        self.username = names[0]
        return self.username

    def server_first(self, candidates: Sequence[ScramCredentials]) -> bytes:
        """The server-first challenge. Candidates whose salt or iteration count differ
        from the first one's cannot share the challenge and are left out."""
        chosen = list(candidates) or [_stand_in_credentials(self.username)]
        salt, _stored, _server, iterations = chosen[0]
        nonce = secrets.token_urlsafe(18)
        challenge = ""
        for credentials in chosen:
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
        text = _decode(message, "client-final")
        for index, server in enumerate(self._servers):
            if server is None:
                continue
            try:
                server.set_client_final(text)
            except ScramException:
                continue
            return index, server.get_server_final().encode()
        raise SaslFailure(SaslCondition.NOT_AUTHORIZED, "authentication failed")
