"""The counts the XMPP service keeps of its own work: stanzas in and out by kind,
sign-ins and failed sign-ins by SASL mechanism, offline messages stored and delivered.

They are plain integers in plain dictionaries, added to where the work happens (a
stanza costs one dictionary increment) and read only when metrics are scraped
(``server/metrics.py``), so that counting costs the hot path next to nothing.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STANZA_KINDS = ("message", "presence", "iq")


def _by_kind() -> dict[str, int]:
    return dict.fromkeys(STANZA_KINDS, 0)


@dataclass(slots=True)
class ServerStats:
    stanzas_in: dict[str, int] = field(default_factory=_by_kind)
    """Stanzas read from clients, by kind (``message``, ``presence``, ``iq``)."""
    stanzas_out: dict[str, int] = field(default_factory=_by_kind)
    """Stanzas queued to clients' streams, by kind."""
    sign_ins: dict[str, int] = field(default_factory=dict)
    """Successful SASL authentications, by mechanism."""
    sign_in_failures: dict[str, int] = field(default_factory=dict)
    """Failed SASL authentications, by mechanism."""
    offline_stored: int = 0
    offline_delivered: int = 0
    """Stored messages delivered and acknowledged (then deleted from storage)."""

    def signed_in(self, mechanism: str) -> None:
        self.sign_ins[mechanism] = self.sign_ins.get(mechanism, 0) + 1

    def sign_in_failed(self, mechanism: str) -> None:
        self.sign_in_failures[mechanism] = self.sign_in_failures.get(mechanism, 0) + 1
