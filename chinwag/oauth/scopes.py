"""The scopes an app can ask for, and what each one means in plain words."""

from __future__ import annotations

from collections.abc import Iterable

MESSENGER = "wl.messenger"
BASIC = "wl.basic"
OFFLINE_ACCESS = "wl.offline_access"
BLOCKING = "wl.blocking"
ARCHIVE = "wl.archive"

SCOPES: dict[str, str] = {
    BASIC: "Read your profile and your contact list.",
    MESSENGER: (
        "Sign in to chat as you: send and receive messages, and see which of your "
        "contacts are online."
    ),
    OFFLINE_ACCESS: "Keep this access when you are not using the app, until you revoke it.",
    BLOCKING: (
        "See and change whom you block: people you block cannot message you or see "
        "when you are online."
    ),
    ARCHIVE: "Read the messages you have sent and received, as your message archive keeps them.",
}
"""Every scope, with the sentence the consent page shows for it."""


class UnknownScope(ValueError):
    pass


def parse_scope(scope: str | Iterable[str]) -> tuple[str, ...]:
    """The scopes of a space-separated list, each once and sorted; raises UnknownScope."""
    words = scope.split() if isinstance(scope, str) else [w for s in scope for w in s.split()]
    names = tuple(sorted(set(words)))
    known = ", ".join(SCOPES)
    if not names:
        raise UnknownScope(f"no scope given: ask for one or more of {known}")
    unknown = [name for name in names if name not in SCOPES]
    if unknown:
        listed = ", ".join(f"'{name}'" for name in unknown)
        raise UnknownScope(f"unknown scope {listed}: the scopes are {known}")
    return names


def describe(scopes: Iterable[str]) -> list[tuple[str, str]]:
    """Each scope with its plain-words meaning, in a stable order."""
    return [(name, SCOPES[name]) for name in sorted(scopes) if name in SCOPES]
