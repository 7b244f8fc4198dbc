"""Token mechanisms, sans-IO: OAUTHBEARER (RFC 7628), X-OAUTH2 (the Google Talk form)
and X-MESSENGER-OAUTH2 (the modelled service's: the <auth> text is the token itself)."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from . import (
    MAX_MESSAGE_BYTES,
    MAX_NAME_BYTES,
    MAX_TOKEN_BYTES,
    SaslCondition,
    SaslFailure,
    check_length,
    encoded_length,
)
from .plain import PlainMessage, parse_plain

OAUTHBEARER = "OAUTHBEARER"
X_OAUTH2 = "X-OAUTH2"
X_MESSENGER_OAUTH2 = "X-MESSENGER-OAUTH2"

RAW_MECHANISMS = frozenset({X_MESSENGER_OAUTH2})
"""Mechanisms whose <auth> text is sent as is, without a base64 layer."""

_KVSEP = b"\x01"


@dataclass(frozen=True, slots=True)
class BearerMessage:
    authzid: str
    token: str


def parse_oauthbearer(message: bytes | None) -> BearerMessage:
    """RFC 7628 3.1: ``gs2-header kvsep *(key=value kvsep) kvsep`` with ``auth=Bearer <token>``."""
    if not message:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "OAUTHBEARER needs an initial response")
    check_length(message, MAX_MESSAGE_BYTES, "the OAUTHBEARER message")
    header, sep, rest = message.partition(_KVSEP)
    gs2 = header.split(b",")
    if not sep or len(gs2) != 3 or gs2[0] not in (b"n", b"y") or gs2[2]:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "not an OAUTHBEARER message")
    authzid = gs2[1][2:] if gs2[1].startswith(b"a=") else b""
    check_length(authzid, MAX_NAME_BYTES, "the authzid")
    fields = dict(pair.partition(b"=")[::2] for pair in rest.split(_KVSEP) if pair)
    scheme, _, token = fields.get(b"auth", b"").partition(b" ")
    if scheme.lower() != b"bearer" or not token:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "OAUTHBEARER needs auth=Bearer <token>")
    check_length(token, MAX_TOKEN_BYTES, "the token")
    return BearerMessage(authzid.decode(errors="replace"), token.decode(errors="replace").strip())


def parse_x_oauth2(message: bytes | None) -> PlainMessage:
    """X-OAUTH2: ``authzid NUL user NUL token``, as PLAIN lays it out."""
    plain = parse_plain(message)
    check_length(plain.password.encode(), MAX_TOKEN_BYTES, "the token")
    return plain


def oauthbearer_error(scope: str) -> bytes:
    """RFC 7628 3.2.2: the JSON challenge that tells the client why its token failed."""
    return json.dumps({"status": "invalid_token", "scope": scope}).encode()


def is_oauthbearer_abort(message: bytes) -> bool:
    """The client's answer to the error challenge (RFC 7628 3.2.3)."""
    return message == _KVSEP


def messenger_token_candidates(message: bytes | None) -> list[str]:
    """X-MESSENGER-OAUTH2: the token as sent, then its base64 decoding, if it has one."""
    if not message:
        raise SaslFailure(SaslCondition.MALFORMED_REQUEST, "X-MESSENGER-OAUTH2 needs the token")
    check_length(message, encoded_length(MAX_TOKEN_BYTES), "the token")
    text = message.decode(errors="replace").strip()
    candidates = [text]
    try:
        decoded = base64.b64decode(text, validate=True).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError):
        return candidates
    if decoded and decoded.isprintable():
        candidates.append(decoded)
    return candidates
