"""Random secrets kept in the data directory, read if present, made (mode 0600) if not:
the web's cookie key and admin token, the key of the SCRAM stand-ins for unknown names."""

from __future__ import annotations

import os
import secrets
from pathlib import Path

MIN_LENGTH = 32
PRIVATE_DIRECTORY_MODE = 0o700
"""What chinwag creates the directories of its data with: the server's user's alone."""


def secret_file(path: Path, purpose: str) -> str:
    """The secret in ``path``; a new one is written there first when it is absent."""
    path.parent.mkdir(mode=PRIVATE_DIRECTORY_MODE, parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_text().strip()
        if len(secret) < MIN_LENGTH:
            raise RuntimeError(
                f"{path} is too short to {purpose}; delete it to make a new one"
            ) from None
        return secret
    secret = secrets.token_urlsafe(32)
    with os.fdopen(fd, "w") as file:
        file.write(secret + "\n")
    return secret
