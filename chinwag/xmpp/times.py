"""XEP-0082 dates and times as XMPP extensions (and the REST API) exchange them."""

from __future__ import annotations

from datetime import UTC, datetime


def parse_datetime(text: str) -> datetime | None:
    """``text`` as a UTC datetime if it is a date and time with a zone (``Z`` or an
    offset), else None: a time without a zone names no one instant."""
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        return None
    return when.astimezone(UTC) if when.tzinfo is not None else None


def format_datetime(when: datetime) -> str:
    """``when`` as a XEP-0082 DateTime in UTC to the millisecond, e.g.
    2026-11-22T07:15:00.123Z."""
    return when.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")
