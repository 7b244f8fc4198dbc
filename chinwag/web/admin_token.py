"""The operator's credential for the HTTP admin endpoints: a random bearer token.

It lives in ``{data_dir}/admin-token`` (mode 0600), made at start when absent, so
whoever can read the server's data directory is an operator. Requests send it as
``Authorization: Bearer <token>``. ``build_web_app`` keeps it in the
application's state as ``admin_token``; any Starlette application that serves
admin routes (the REST API is mounted as its own) keeps it there too.
"""

from __future__ import annotations

import hmac
import os
import secrets
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request

ADMIN_TOKEN_FILE = "admin-token"
ADMIN_REALM = "chinwag-admin"
_MIN_TOKEN_LENGTH = 32


def ensure_admin_token(data_dir: Path) -> str:
    """The admin token of ``{data_dir}/admin-token``, made (0600) if absent."""
    path = data_dir / ADMIN_TOKEN_FILE
    data_dir.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        token = path.read_text().strip()
        if len(token) < _MIN_TOKEN_LENGTH:
            raise RuntimeError(
                f"{path} is too short to be an admin token; delete it to make a new one"
            ) from None
        return token
    token = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as file:
        file.write(token + "\n")
    return token


def check_admin(request: Request) -> None:
    """Return if the request carries the admin token; else raise a 401 HTTPException.

    The exception carries the RFC 6750 ``WWW-Authenticate`` challenge in its headers
    (with ``error="invalid_token"`` when a wrong token was sent).
    """
    expected: str | None = getattr(request.app.state, "admin_token", None)
    sent = bearer_credential(request)
    if sent is None:
        raise HTTPException(
            401,
            "This endpoint needs the operator's admin token as a bearer token.",
            headers={"WWW-Authenticate": f'Bearer realm="{ADMIN_REALM}"'},
        )
    if expected is None or not hmac.compare_digest(sent.encode(), expected.encode()):
        raise HTTPException(
            401,
            "The admin token is not valid.",
            headers={"WWW-Authenticate": f'Bearer realm="{ADMIN_REALM}", error="invalid_token"'},
        )


def bearer_credential(request: Request) -> str | None:
    """The token of an ``Authorization: Bearer`` header (RFC 6750 2.1), if one was sent.

    Another scheme counts as no token; a Bearer header without a token, as an empty one.
    """
    header = request.headers.get("authorization")
    if header is None:
        return None
    scheme, _, credential = header.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credential.strip()
