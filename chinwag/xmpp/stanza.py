"""Small stanza helpers shared by the stream and the server: replies, error bounces and
XEP-0203 delays."""

from __future__ import annotations

from . import ns
from .element import Element
from .errors import StanzaError


def make_reply(stanza: Element, stanza_type: str = "result") -> Element:
    """An empty reply to ``stanza`` with from/to swapped and the same id."""
    attrs = {"type": stanza_type}
    for ours, theirs in (("to", "from"), ("from", "to"), ("id", "id")):
        value = stanza.attrs.get(theirs)
        if value is not None:
            attrs[ours] = value
    return Element(stanza.tag, stanza.ns, attrs)


def make_error(stanza: Element, error: StanzaError) -> Element:
    """The error bounce for ``stanza`` (RFC 6120 8.3.1), keeping its payload for non-IQs."""
    reply = make_reply(stanza, "error")
    if stanza.tag != "iq":
        reply.children.extend(child for child in stanza.children if isinstance(child, Element))
    reply.children.append(error.to_element())
    return reply


def is_error(stanza: Element) -> bool:
    return stanza.attrs.get("type") == "error"


def delayed_by(stanza: Element, domain: str) -> bool:
    """Whether ``stanza`` carries a XEP-0203 delay from ``domain``."""
    return any(
        child.tag == "delay" and child.ns == ns.DELAY and child.attrs.get("from") == domain
        for child in stanza.elements()
    )
