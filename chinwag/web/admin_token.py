"""The operator's credential for the HTTP admin endpoints: a random bearer token.

It lives in ``{data_dir}/admin-token`` (mode 0600), made at start when absent, so
whoever can read the server's data directory is an operator. Requests send it as
``Authorization: Bearer <token>``. ``build_web_app`` keeps it in the
application's state as ``admin_token``; any Starlette application that serves
admin routes (the REST API is mounted as its own) keeps it there too.
"""

from __future__ import annotations

import hmac
from pathlib import Path

from starlette.exceptions import HTTPException
from starlette.requests import Request

from chinwag.store.secret_files import secret_file

ADMIN_TOKEN_FILE = "admin-token"
ADMIN_REALM = "chinwag-admin"


def ensure_admin_token(data_dir: Path) -> str:
    """The admin token of ``{data_dir}/admin-token``, made (0600) if absent."""
    return secret_file(data_dir / ADMIN_TOKEN_FILE, "be an admin token")


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
