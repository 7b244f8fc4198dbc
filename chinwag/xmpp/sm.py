"""XEP-0198 stream management on the wire: its elements, and the counts they carry.

A count (``h``) is the number of stanzas one side has handled since stream management
was enabled, modulo 2**32 (XEP-0198 §4): arithmetic on counts goes through ``MASK``.
The elements the server sends declare their own namespace, so the same bytes serve a
TCP stream and a WebSocket one.
"""

from __future__ import annotations

import re

from . import ns
from .element import Element
from .errors import StanzaCondition, StanzaError, StreamCondition, StreamError

MASK = 2**32 - 1
"""Counts wrap from 2**32 - 1 back to 0: ``(count + n) & MASK``."""

REQUEST = f"<r xmlns='{ns.SM}'/>".encode()
_ACK = f"<a xmlns='{ns.SM}' h='%d'/>".encode()

NS_BYTES = ns.SM.encode()
_SPACE = rb"[ \t\r\n]"
_XMLNS = rb"%s+xmlns=(?:'%s'|\"%s\")" % (_SPACE, NS_BYTES, NS_BYTES)
_COUNT = rb"([0-9]{1,10})"
SHORT_FORM = re.compile(
    rb"<(?:r%s|a%s%s+h=(?:'%s'|\"%s\"))%s*/>" % (_XMLNS, _XMLNS, _SPACE, _COUNT, _COUNT, _SPACE)
)
"""<r/> and <a h/> written as clients write them: the namespace declared first, either
quote, whitespace where XML allows it before ``/>``; groups 1 and 2 hold an <a/>'s h.
These mean the same wherever they begin between top-level elements, so a stream may read
them there without its XML parser. Any other spelling is parsed as usual."""

SHORT_FORM_MAX_BYTES = len(b"<a xmlns='%s'  h='4294967295' />" % NS_BYTES)
"""The longest short form a stream looks for at the end of a read: longer spellings
(more whitespace) are parsed."""

SHORT_FORM_AT_END = re.compile(SHORT_FORM.pattern + rb"\Z")
"""A short form that ends the bytes searched (``search(data, pos, endpos)``): one search
of the last ``SHORT_FORM_MAX_BYTES`` finds it, the only '<' it can begin at being its own."""


def ack(handled: int) -> bytes:
    """<a h='…'/>: the stanzas handled of those the peer sent."""
    return _ACK % handled


def parse_count(text: str | None) -> int | None:
    """An ``h`` attribute, an xs:unsignedInt; None when missing or not one."""
    if text is None or not text.isascii() or not text.isdigit():
        return None
    value = int(text)
    return value if value <= MASK else None


def enabled(sm_id: str | None, max_seconds: int | None) -> Element:
    """<enabled/>, resumable (with its id and window) when ``sm_id`` is given."""
    element = Element("enabled", ns.SM)
    if sm_id is not None:
        element.attrs.update({"id": sm_id, "resume": "true"})
        if max_seconds is not None:
            element.attrs["max"] = str(max_seconds)
    return element


def resumed(previd: str, handled: int) -> Element:
    return Element("resumed", ns.SM, {"previd": previd, "h": str(handled)})


def failed(condition: StanzaCondition, text: str = "", handled: int | None = None) -> Element:
    """<failed/> with a stanza error condition (XEP-0198 §6), and the count of the client's
    stanzas the server handled when it knows it (a resumption refused, §5)."""
    element = Element("failed", ns.SM)
    if handled is not None:
        element.attrs["h"] = str(handled)
    error = StanzaError(condition, text).to_element()
    element.children.extend(error.children)
    return element


class HandledCountTooHigh(StreamError):
    """The peer acknowledged more stanzas than were sent to it (XEP-0198 §4): the stream
    ends with <undefined-condition/> and <handled-count-too-high/>, which says both counts."""

    def __init__(self, handled: int, sent: int) -> None:
        super().__init__(
            StreamCondition.UNDEFINED_CONDITION,
            f"you acknowledged {handled} stanzas, but {sent} were sent",
        )
        self.handled = handled
        self.sent = sent

    def to_element(self) -> Element:
        error = super().to_element()
        error.children.insert(
            1,
            Element(
                "handled-count-too-high",
                ns.SM,
                {"h": str(self.handled), "send-count": str(self.sent)},
            ),
        )
        return error
