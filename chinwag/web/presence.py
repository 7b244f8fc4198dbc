"""What the web side knows of who is online: a read-only view given by the composition root.

The REST API shows contacts with their current presence. The web layer does not
reach into the XMPP server for it: ``chinwag.app`` passes a :class:`PresenceSource`
that reads the live router, and the API only ever calls it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

SHOWS = ("chat", "away", "xa", "dnd")
"""The RFC 6121 4.7.2.1 ``<show/>`` values; a resource without one is plainly online."""
ONLINE = "online"
OFFLINE = "offline"


@dataclass(frozen=True, slots=True)
class ResourcePresence:
    """The broadcast presence of one available resource of an account."""

    resource: str
    show: str
    """``online`` (no ``<show/>``), or one of :data:`SHOWS`."""
    status: str | None
    priority: int


class PresenceSource(Protocol):
    def __call__(self, username: str) -> Sequence[ResourcePresence]:
        """The available resources of the (normalised) user, right now; empty if offline."""
        ...


def nobody_online(username: str) -> Sequence[ResourcePresence]:
    """The presence source of a web application without an XMPP server."""
    return ()


def summary(resources: Sequence[ResourcePresence]) -> dict[str, object]:
    """The API's Presence object: the most available resource speaks for the account.

    Highest priority first, then the more available show (RFC 6121 4.7.2.1 order).
    """
    if not resources:
        return {"available": False, "show": OFFLINE, "status": None, "resources": []}
    best = max(resources, key=lambda r: (r.priority, -_SHOW_RANK.get(r.show, len(_SHOW_RANK))))
    return {
        "available": True,
        "show": best.show,
        "status": best.status,
        "resources": [
            {
                "resource": r.resource,
                "show": r.show,
                "status": r.status,
                "priority": r.priority,
            }
            for r in sorted(resources, key=lambda r: r.resource)
        ],
    }


_SHOW_RANK = {name: rank for rank, name in enumerate(("chat", ONLINE, "away", "xa", "dnd"))}
