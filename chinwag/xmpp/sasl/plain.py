"""SASL PLAIN (RFC 4616): parse the single message into its three parts."""

from __future__ import annotations

from dataclasses import dataclass

from . import MAX_MESSAGE_BYTES, MAX_NAME_BYTES, SaslCondition, SaslFailure, check_length

NAME = "PLAIN"


@dataclass(frozen=True, slots=True)
class PlainMessage:
    authzid: str
    authcid: str
    password: str


def parse_plain(message: bytes | None) -> PlainMessage:
    """Split ``authzid NUL authcid NUL passwd``; raises SaslFailure(malformed-request),
    also for a message or name longer than chinwag takes (checked before decoding)."""
    if not message:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "PLAIN needs an initial response")
    check_length(message, MAX_MESSAGE_BYTES, "the PLAIN message")
    parts = message.split(b"\x00")
    if len(parts) != 3 or not parts[1] or not parts[2]:
        raise SaslFailure(
            SaslCondition.MALFORMED_REQUEST, "PLAIN message is not authzid\\0authcid\\0passwd"
        )
    check_length(parts[0], MAX_NAME_BYTES, "the authzid")
    check_length(parts[1], MAX_NAME_BYTES, "the username")
    try:
        authzid, authcid, password = (part.decode() for part in parts)
    except UnicodeDecodeError:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "PLAIN message is not UTF-8") from None
    return PlainMessage(authzid, authcid, password)
