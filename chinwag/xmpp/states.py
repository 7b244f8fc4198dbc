"""The client-to-server stream's states and, for each, the top-level elements it accepts.

One table: ``ACCEPTS[state][(namespace, tag)]`` names the ``ServerStream``
handler for that element. Anything not in the table for the current state is
refused by the stream (see ``ServerStream._unexpected``).
"""

from __future__ import annotations

from enum import Enum, auto

from . import ns


class State(Enum):
    AWAIT_HEADER = auto()
    """Waiting for the client's stream header, at the start and after each restart."""
    NEGOTIATING = auto()
    """Features sent before authentication: STARTTLS or SASL <auth/> expected."""
    TLS_PENDING = auto()
    """<proceed/> sent; the transport is doing the TLS handshake."""
    AUTHENTICATING = auto()
    """A SASL exchange is under way."""
    AUTHENTICATED = auto()
    """Authenticated and restarted: resource binding expected."""
    BOUND = auto()
    """A resource is bound: stanzas flow."""
    CLOSED = auto()

    # Members are singletons, so identity is equality: hash by identity in C rather than
    # by Enum's own hash, a Python call, paid on every element the stream handles.
    __hash__ = object.__hash__


ACCEPTS: dict[State, dict[tuple[str, str], str]] = {
    State.AWAIT_HEADER: {},
    State.NEGOTIATING: {
        (ns.TLS, "starttls"): "starttls",
        (ns.SASL, "auth"): "auth",
    },
    State.TLS_PENDING: {},
    State.AUTHENTICATING: {
        (ns.SASL, "response"): "sasl_response",
        (ns.SASL, "abort"): "sasl_abort",
    },
    State.AUTHENTICATED: {
        (ns.CLIENT, "iq"): "bind",
    },
    State.BOUND: {
        (ns.CLIENT, "message"): "stanza",
        (ns.CLIENT, "presence"): "stanza",
        (ns.CLIENT, "iq"): "stanza",
    },
    State.CLOSED: {},
}

STANZA_TAGS = frozenset({"message", "presence", "iq"})
