"""SASL for XMPP (RFC 6120 6): failure conditions and the sans-IO mechanisms.

Each mechanism family lives in its own module and only parses and computes;
looking up credentials is the caller's job, so nothing here waits on I/O.

Every message is measured before it is decoded, and every name before it is
normalised (SASLprep and PRECIS take time in proportion to the length): what
is longer than any real client sends is refused at once with <malformed-request/>.
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


MAX_NAME_BYTES = 1023
"""The longest username (authcid) or authzid taken, as UTF-8: RFC 7622's limit for a localpart."""
MAX_MESSAGE_BYTES = 8192
"""The longest SASL message taken: room for two names of MAX_NAME_BYTES, even with
every character escaped, and a long password."""
MAX_TOKEN_BYTES = 4096
"""The longest OAuth token taken: about a hundred times chinwag's own (43 characters)."""


def check_length(data: bytes, limit: int, what: str) -> None:
    """Raise SaslFailure(malformed-request) when ``data`` is longer than ``limit`` bytes."""
    if len(data) > limit:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, f"{what} is longer than {limit} bytes")


def encoded_length(size: int) -> int:
    """How long the base64 form of ``size`` bytes is."""
    return (size + 2) // 3 * 4
