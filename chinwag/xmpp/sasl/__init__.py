"""SASL for XMPP (RFC 6120 6): failure conditions and the sans-IO mechanisms.

Each mechanism family lives in its own module and only parses and computes;
looking up credentials is the caller's job, so nothing here waits on I/O.
"""

from __future__ import annotations

from enum import StrEnum


class SaslCondition(StrEnum):
    """RFC 6120 6.5: the children of <failure/>."""

    ABORTED = "aborted"
    ACCOUNT_DISABLED = "account-disabled"
    CREDENTIALS_EXPIRED = "credentials-expired"
    ENCRYPTION_REQUIRED = "encryption-required"
    INCORRECT_ENCODING = "incorrect-encoding"
    INVALID_AUTHZID = "invalid-authzid"
    INVALID_MECHANISM = "invalid-mechanism"
    MALFORMED_REQUEST = "malformed-request"
    MECHANISM_TOO_WEAK = "mechanism-too-weak"
    NOT_AUTHORIZED = "not-authorized"
    TEMPORARY_AUTH_FAILURE = "temporary-auth-failure"


class SaslFailure(Exception):
    """An authentication exchange that ends in <failure/> with ``condition``."""

    def __init__(self, condition: SaslCondition, text: str = "") -> None:
        super().__init__(f"{condition}: {text}" if text else str(condition))
        self.condition = condition
        self.text = text
