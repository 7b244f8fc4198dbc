"""The counts the XMPP service keeps of its own work: stanzas in and out by kind,
sign-ins and failed sign-ins by SASL mechanism, offline messages stored and delivered.

They are plain integers in plain dictionaries, added to where the work happens and
read only when metrics are scraped (``server/metrics.py``). A stanza costs less still:
its tag is appended to a list (a fifth of the instructions of a dictionary increment),
and the lists are tallied into the counts by kind (:meth:`ServerStats.settle`) at each
scrape and every few seconds, which keeps them short.
"""

from __future__ import annotations

from dataclasses import dataclass, field

STANZA_KINDS = ("message", "presence", "iq")
OTHER_KIND = "other"


def _by_kind() -> dict[str, int]:
    return dict.fromkeys(STANZA_KINDS, 0)


@dataclass(slots=True)
class ServerStats:
    received: list[str] = field(default_factory=list)
    """The tags of the stanzas read from clients since the last :meth:`settle`. Streams
    keep this very list: it is emptied in place, never replaced."""
    sent: list[str] = field(default_factory=list)
    """The tags of the stanzas queued to clients since the last :meth:`settle`."""
    stanzas_in: dict[str, int] = field(default_factory=_by_kind)
    """Stanzas read from clients, by kind (``message``, ``presence``, ``iq``), as of the
    last :meth:`settle`."""
    stanzas_out: dict[str, int] = field(default_factory=_by_kind)
    """Stanzas queued to clients, by kind, as of the last :meth:`settle`."""
    sign_ins: dict[str, int] = field(default_factory=dict)
    """Successful SASL authentications, by mechanism."""
    sign_in_failures: dict[str, int] = field(default_factory=dict)
    """Failed SASL authentications, by mechanism."""
    offline_stored: int = 0
    offline_delivered: int = 0
    """Stored messages delivered and acknowledged (then deleted from storage)."""

    def settle(self) -> None:
        """Tally the stanzas of ``received`` and ``sent`` into the counts by kind."""
        _tally(self.received, self.stanzas_in)
        _tally(self.sent, self.stanzas_out)

    def signed_in(self, mechanism: str) -> None:
        self.sign_ins[mechanism] = self.sign_ins.get(mechanism, 0) + 1

    def sign_in_failed(self, mechanism: str) -> None:
        self.sign_in_failures[mechanism] = self.sign_in_failures.get(mechanism, 0) + 1


def _tally(tags: list[str], counts: dict[str, int]) -> None:
    uncounted = len(tags)
    # A pass in C per kind, the commonest first, until every tag is counted: with only
    # messages, one comparison a tag, of two addresses (the parser interns the tags it
    # caches, and a literal is interned).
    for kind in STANZA_KINDS:
        if not uncounted:
            break
        found = tags.count(kind)
        counts[kind] += found
        uncounted -= found
    else:
        if uncounted:
            counts[OTHER_KIND] = counts.get(OTHER_KIND, 0) + uncounted
    tags.clear()
