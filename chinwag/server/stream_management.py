"""A session's XEP-0198 stream management: what its client has not acknowledged, and
the counts that outlive a stream, so that a resumed session resends exactly what the
client missed.

The stream (``xmpp/stream.py``) speaks the protocol and counts the client's stanzas.
The connection (``c2s.py``) puts each stanza it writes in ``unacked``, asks for
acknowledgements and hands over the client's count when its transport goes. The
session manager (``sessions.py``) makes this state, keeps a resumable session waiting,
and resends or reroutes what is left in ``unacked`` (``late``), stamped with when it was
first sent.

``unacked`` keeps each stanza as the bytes written, which the connection has at hand:
bytes cost the garbage collector nothing, where element trees kept for a round trip
would have it walk them, and they take less memory. The few taken back (a
resumption, a session's end) are parsed again, and written anew for whatever framing
the next stream has. When each was written is kept once per write (``written``), not
once per stanza: the stanzas queued in one event-loop turn go out together.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from time import time
from typing import Protocol

from chinwag.config import StreamManagementSettings
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.sm import MASK
from chinwag.xmpp.stanza import delayed_by
from chinwag.xmpp.times import format_datetime
from chinwag.xmpp.xml import parse_stanza

Sent = tuple[Element, float]
"""A stanza sent (or routed) to a session, and when (seconds since the epoch)."""

REQUEST_SPACING_SECONDS = 1.0
"""Fewer than ``request_ack_after`` unacknowledged stanzas are asked about with a write
only this long after the last request. A stream that is sent a stanza now and then asks
with each write, so that a dead connection is noticed soon, while a busy one asks once
per ``request_ack_after`` stanzas: each request and its answer cost as much to handle
as a short stanza. What a burst leaves unasked about is asked about by the ping sweep."""


class Mirror(Protocol):
    """Where a cluster node keeps, in Redis, a copy of a resumable session's output that
    its client has not acknowledged, so that any node can resume it should this one die
    (``chinwag.server.clustering``). What the client is sent waits (``unrecorded``)
    until the copy is written."""

    def written(self, sm: StreamManagement, data: bytes) -> None:
        """``data`` is queued for the client as stanza number ``sm.sent``."""
        ...

    def parked(self, sm: StreamManagement, stanza: Element, since: float) -> None:
        """``stanza``, routed at ``since``, waits for the detached session (it has no
        number yet); it counts in ``sm.unrecorded`` until written."""
        ...

    def acknowledged(self, sm: StreamManagement, count: int) -> None:
        """The client acknowledged the ``count`` oldest stanzas it had not."""
        ...

    def handled(self, sm: StreamManagement, handled: int) -> None:
        """The server has handled ``handled`` of the client's stanzas."""
        ...


class StreamManagement:
    __slots__ = (
        "_asked_at",
        "_dropped",
        "_request_after",
        "_stamped",
        "_stamps",
        "acked",
        "awaiting",
        "handled",
        "held_flush",
        "id",
        "max_unacked",
        "mirror",
        "request_after",
        "resume_seconds",
        "unacked",
        "undispatched",
        "unrecorded",
    )

    def __init__(
        self, sm_id: str | None, resume_seconds: int, settings: StreamManagementSettings
    ) -> None:
        self.id = sm_id
        """What the client resumes the session by; None when it may not."""
        self.resume_seconds = resume_seconds
        self.unacked: list[bytes] = []
        """Written to the client (or queued to be) and not acknowledged, oldest first."""
        self._dropped = 0
        """Stanzas ever taken off the front of ``unacked``: the position of its first in
        the session's whole output, which ``_stamps`` counts in."""
        self._stamps: list[tuple[int, float]] = []
        """(position of the first stanza written at a time, that time), oldest first."""
        self._stamped = 0
        """The position after the last stanza stamped."""
        self.acked = 0
        """The client's last count of the stanzas it handled (its h)."""
        self.handled = 0
        """The count of the client's stanzas handled (the server's h), as of the last
        stream to go: what <resumed/> tells the client."""
        self.undispatched = 0
        """The client's stanzas its stream counted but has not dispatched yet (they wait
        for held work or the stanza rate): not handled, should the stream go."""
        self.awaiting = False
        """An <r/> is out and no <a/> has come since."""
        self._asked_at = -REQUEST_SPACING_SECONDS
        """When the last <r/> was written (``time()``)."""
        self.max_unacked = settings.max_unacked_stanzas
        self._request_after = settings.request_ack_after
        self.request_after = self._request_after
        """Unacknowledged stanzas that a write asks about whenever no request is out."""
        self.mirror: Mirror | None = None
        """In a cluster, for a resumable session: where a copy of ``unacked`` is kept."""
        self.unrecorded = 0
        """Stanzas queued for the client, or kept for it while it is away, that ``mirror``
        has not written yet (the last ones: they are written in order). The connection
        writes nothing until it has (``held_flush``)."""
        self.held_flush: Callable[[], None] | None = None
        """The connection's flush, held back while ``unrecorded``."""

    @property
    def sent(self) -> int:
        """The count of stanzas written to the client (modulo 2**32, as the client counts)."""
        return (self.acked + len(self.unacked)) & MASK

    def written(self) -> bool:
        """The stanzas queued since the last call are being written now. Returns whether to
        request an acknowledgement with them (then one is taken to be out): when no request
        is out and ``request_after`` stanzas are unacknowledged, or fewer than that but the
        last request is ``REQUEST_SPACING_SECONDS`` old. One call per write, as this is on
        the path of every message."""
        unacked = len(self.unacked)
        end = self._dropped + unacked
        now = 0.0
        if end > self._stamped:
            now = time()
            self._stamps.append((max(self._stamped, self._dropped), now))
            self._stamped = end
        if self.awaiting or not unacked:
            return False
        now = now or time()
        if unacked < self.request_after and now - self._asked_at < REQUEST_SPACING_SECONDS:
            return False
        self.awaiting = True
        self._asked_at = now
        return True

    def ask_with_every_write(self, every: bool) -> None:
        """While ``every``, each write asks (no request being out), as with
        ``request_ack_after = 1``: the client said it is inactive (XEP-0352), so what it
        is sent is seldom and a request written alone later could wake a phone's radio
        again; otherwise as configured."""
        self.request_after = 1 if every else self._request_after

    def ask(self) -> bool:
        """Whether to request an acknowledgement now, outside a write (the ping sweep asks
        about what a burst left): stanzas are unacknowledged and no request is out. Then
        one is taken to be out."""
        if self.awaiting or not self.unacked:
            return False
        self.awaiting = True
        self._asked_at = time()
        return True

    def acknowledge(self, handled: int) -> bool:
        """The client has handled ``handled`` stanzas: forget those, and the stamps of
        stanzas no longer kept but the one that covers the first. False (and nothing
        changes) when that is more than were sent."""
        count = (handled - self.acked) & MASK
        unacked = self.unacked
        if count > len(unacked):
            return False
        if count:
            del unacked[:count]
            first = self._dropped = self._dropped + count
            stamps = self._stamps
            gone = 0
            while gone + 1 < len(stamps) and stamps[gone + 1][0] <= first:
                gone += 1
            if gone:
                del stamps[:gone]
            if self.mirror is not None:
                self.mirror.acknowledged(self, count)
        self.acked = handled
        self.awaiting = False
        return True

    def recorded(self) -> None:
        """``mirror`` has written a stanza queued or kept: once all are, the connection may
        write."""
        self.unrecorded -= 1
        if self.unrecorded:
            return
        flush, self.held_flush = self.held_flush, None
        if flush is not None:
            flush()

    def take_unacked(self) -> list[Sent]:
        """What the client has not acknowledged, to resend or reroute, each with when it was
        written (now, for what never was); the counts stay, so whatever is written from
        here is counted after what was acknowledged."""
        now, stamps, stamped = time(), self._stamps, self._stamped
        unacked: list[Sent] = []
        stamp = 0  # the stamp that covers ``position``, if any
        for position, data in enumerate(self.unacked, self._dropped):
            while stamp + 1 < len(stamps) and stamps[stamp + 1][0] <= position:
                stamp += 1
            covered = stamps and stamps[stamp][0] <= position < stamped
            unacked.append((parse_stanza(data.decode()), stamps[stamp][1] if covered else now))
        self._dropped += len(self.unacked)
        self._stamped = self._dropped
        self.unacked.clear()
        stamps.clear()
        return unacked


def late(stanza: Element, since: float, domain: str) -> Element:
    """``stanza`` as it goes out again after waiting since ``since``: a message or
    presence gets a XEP-0203 delay from ``domain`` (a copy, as the original may be shared
    with other sessions), unless it has one from ``domain`` already (a delay from anyone
    else, such as the sending client, says nothing of this wait). IQs go as they are."""
    if stanza.tag == "iq" or delayed_by(stanza, domain):
        return stanza
    stamp = format_datetime(datetime.fromtimestamp(since, UTC))
    delay = Element("delay", ns.DELAY, {"from": domain, "stamp": stamp})
    return Element(stanza.tag, stanza.ns, dict(stanza.attrs), [*stanza.children, delay])
