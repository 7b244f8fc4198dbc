"""Secrets of the platform: how they are made, hashed and turned into token rows.

Client secrets, authorization codes, access and refresh tokens are random strings
of 256 bits, so a plain SHA-256 digest is enough to store them: there is nothing
to guess. App passwords are shorter, to be typed, and are stored as SCRAM
verifiers instead (see ``OAuthService.create_app_password``).
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from datetime import datetime, timedelta
from typing import Any

from chinwag.oauth.scopes import OFFLINE_ACCESS
from chinwag.store.oauth import NewToken

_APP_PASSWORD_ALPHABET = "abcdefghijkmnpqrstuvwxyz"  # no l or o, easily misread
_APP_PASSWORD_GROUPS = 4
_APP_PASSWORD_GROUP_LENGTH = 4


def digest(secret: str) -> bytes:
    """What is stored of a high-entropy secret."""
    return hashlib.sha256(secret.encode()).digest()


def secret_matches(secret: str, stored: bytes) -> bool:
    return hmac.compare_digest(digest(secret), stored)


def new_secret() -> str:
    """A client secret, code or token: 256 random bits in base64url, never beginning
    with '-', which a command line (``chinwag token revoke TOKEN``) would take for an
    option."""
    while (secret := secrets.token_urlsafe(32)).startswith("-"):
        pass
    return secret


def new_client_id() -> str:
    """128 random bits in hex: safe in URLs and never mistaken for a command-line option
    (a base64url ID may start with '-')."""
    return secrets.token_hex(16)


def new_family_id() -> str:
    return uuid.uuid4().hex


def new_app_password() -> str:
    """16 lowercase letters in groups of four (about 73 bits), easy to type on a phone."""
    groups = (
        "".join(secrets.choice(_APP_PASSWORD_ALPHABET) for _ in range(_APP_PASSWORD_GROUP_LENGTH))
        for _ in range(_APP_PASSWORD_GROUPS)
    )
    return "-".join(groups)


def bearer_token(scope: str, expires_in: int, refreshable: bool) -> dict[str, Any]:
    """An RFC 6749 section 5.1 token response; with a refresh token only when
    ``refreshable`` and ``scope`` has ``wl.offline_access``."""
    token: dict[str, Any] = {
        "token_type": "Bearer",
        "access_token": new_secret(),
        "expires_in": expires_in,
        "scope": scope,
    }
    if refreshable and OFFLINE_ACCESS in scope.split():
        token["refresh_token"] = new_secret()
    return token


def token_row(
    token: dict[str, Any],
    *,
    client_id: str,
    username: str,
    family_id: str,
    refresh_ttl: int,
    now: datetime,
) -> NewToken:
    """What is stored of the token response ``token``."""
    refresh = token.get("refresh_token")
    return NewToken(
        access_hash=digest(token["access_token"]),
        refresh_hash=None if refresh is None else digest(refresh),
        family_id=family_id,
        client_id=client_id,
        username=username,
        scope=token["scope"],
        issued_at=now,
        expires_at=now + timedelta(seconds=token["expires_in"]),
        refresh_expires_at=None if refresh is None else now + timedelta(seconds=refresh_ttl),
    )
