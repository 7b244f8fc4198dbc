"""The client-to-server stream's state machine, as one table.

``TRANSITIONS[state][input]`` is the state that ``input`` leads to. An input is a
top-level element, by ``(namespace, tag)``, or a ``Signal``: the stream header, the
stream's end, our own close, or the driver's answer to a question the stream asked
(TLS, SASL, binding). An element a module handles (``StreamConfig.bound_elements``)
is the input ``Signal.EXTENSION``, which only a bound stream accepts. What a state does not list it refuses with the stream error
``REFUSALS[state]`` names for that kind of input (RFC 6120 4.9.3).

``ServerStream._transition`` is the only place the state changes: it looks the input
up here, moves to the state given, and then runs the input's handler. A handler that
refuses its input does so through the table too: it raises a stream error (the stream
ends) or makes a further transition (an <auth/> the stream refuses itself is a
``SASL_FAILURE``, as if the driver had answered so).

A new stream feature is a line here plus a handler in ``stream.py``.
"""

from __future__ import annotations

from enum import Enum, auto
from typing import NamedTuple, TypeAlias

from . import ns
from .errors import StreamCondition, StreamError


class State(Enum):
    AWAIT_HEADER = auto()
    """Waiting for the client's stream header, at the start and after TLS."""
    NEGOTIATING = auto()
    """Features sent before authentication: STARTTLS or SASL <auth/> expected."""
    TLS_PENDING = auto()
    """<proceed/> sent; the transport is doing the TLS handshake."""
    AUTHENTICATING = auto()
    """A SASL exchange is under way."""
    AWAIT_HEADER_AUTHENTICATED = auto()
    """SASL succeeded: waiting for the client to restart the stream."""
    AUTHENTICATED = auto()
    """Authenticated and restarted: resource binding expected."""
    BOUND = auto()
    """A resource is bound: stanzas flow."""
    MANAGED = auto()
    """Bound, with XEP-0198 stream management: stanzas flow, counted and acknowledged.
    A stream gets here from BOUND by <enable/>, or from AUTHENTICATED by resuming a
    former stream's session in place of binding."""
    CLOSED = auto()
    """Nothing more is read or answered: the stream drops any input before the table."""

    # Members are singletons, so identity is equality: hash by identity in C rather than
    # by Enum's own hash, a Python call, paid on every element the stream handles.
    __hash__ = object.__hash__


class Signal(Enum):
    """The inputs that are not top-level elements."""

    HEADER = auto()
    """The client's stream header (over WebSocket, its <open/>)."""
    STREAM_END = auto()
    """The client's </stream:stream> (over WebSocket, its <close/>)."""
    CLOSE = auto()
    """We end the stream (``ServerStream.close``), with a stream error or not."""
    TLS_ESTABLISHED = auto()
    SASL_CHALLENGE = auto()
    SASL_SUCCESS = auto()
    SASL_FAILURE = auto()
    """The driver's ``sasl_failure``, or the stream's own refusal of a SASL message."""
    BIND_RESULT = auto()
    BIND_ERROR = auto()
    SM_ENABLED = auto()
    SM_RESUMED = auto()
    SM_RESUME_FAILED = auto()
    EXTENSION = auto()
    """A top-level element that is not a stanza and that the stream's config names in
    ``bound_elements`` (a module's, say XEP-0352's <inactive/>): handed to the driver."""

    __hash__ = object.__hash__


Input: TypeAlias = tuple[str, str] | Signal
"""What the table is keyed by: a top-level element's (namespace, tag), or a signal."""

STARTTLS = (ns.TLS, "starttls")
AUTH = (ns.SASL, "auth")
RESPONSE = (ns.SASL, "response")
ABORT = (ns.SASL, "abort")
MESSAGE = (ns.CLIENT, "message")
PRESENCE = (ns.CLIENT, "presence")
IQ = (ns.CLIENT, "iq")
STANZAS = frozenset({MESSAGE, PRESENCE, IQ})
SM_ENABLE = (ns.SM, "enable")
SM_RESUME = (ns.SM, "resume")
SM_REQUEST = (ns.SM, "r")
SM_ACK = (ns.SM, "a")

_ENDS: dict[Input, State] = {Signal.STREAM_END: State.CLOSED, Signal.CLOSE: State.CLOSED}
"""Either side may end the stream in any state."""

TRANSITIONS: dict[State, dict[Input, State]] = {
    State.AWAIT_HEADER: {
        Signal.HEADER: State.NEGOTIATING,
        **_ENDS,
    },
    State.NEGOTIATING: {
        STARTTLS: State.TLS_PENDING,
        AUTH: State.AUTHENTICATING,
        **_ENDS,
    },
    State.TLS_PENDING: {
        Signal.TLS_ESTABLISHED: State.AWAIT_HEADER,
        **_ENDS,
    },
    State.AUTHENTICATING: {
        RESPONSE: State.AUTHENTICATING,
        ABORT: State.NEGOTIATING,
        Signal.SASL_CHALLENGE: State.AUTHENTICATING,
        Signal.SASL_FAILURE: State.NEGOTIATING,
        Signal.SASL_SUCCESS: State.AWAIT_HEADER_AUTHENTICATED,
        **_ENDS,
    },
    State.AWAIT_HEADER_AUTHENTICATED: {
        Signal.HEADER: State.AUTHENTICATED,
        **_ENDS,
    },
    State.AUTHENTICATED: {
        IQ: State.AUTHENTICATED,  # the bind request; the driver answers it
        Signal.BIND_RESULT: State.BOUND,
        Signal.BIND_ERROR: State.AUTHENTICATED,
        SM_ENABLE: State.AUTHENTICATED,  # <failed/>: bind first
        SM_RESUME: State.AUTHENTICATED,  # the driver looks for the session
        Signal.SM_RESUMED: State.MANAGED,
        Signal.SM_RESUME_FAILED: State.AUTHENTICATED,  # the client may bind instead
        **_ENDS,
    },
    State.BOUND: {
        MESSAGE: State.BOUND,
        PRESENCE: State.BOUND,
        IQ: State.BOUND,
        Signal.EXTENSION: State.BOUND,
        SM_ENABLE: State.BOUND,  # the driver sets it up
        SM_RESUME: State.BOUND,  # <failed/>: too late
        Signal.SM_ENABLED: State.MANAGED,
        **_ENDS,
    },
    State.MANAGED: {
        MESSAGE: State.MANAGED,
        PRESENCE: State.MANAGED,
        IQ: State.MANAGED,
        Signal.EXTENSION: State.MANAGED,
        SM_REQUEST: State.MANAGED,
        SM_ACK: State.MANAGED,
        SM_ENABLE: State.MANAGED,  # <failed/>: enabled once already
        SM_RESUME: State.MANAGED,  # <failed/>: too late
        **_ENDS,
    },
    State.CLOSED: {},
}


class Kind(Enum):
    """Inputs a state does not accept, sorted by the error they get."""

    STANZA = auto()
    """A <message/>, <presence/> or <iq/> in jabber:client."""
    ELEMENT = auto()
    """Any other top-level element."""
    HEADER = auto()
    ANSWER = auto()
    """An answer from the driver to a question the stream did not ask: its mistake."""


def kind_of(key: Input) -> Kind:
    if key is Signal.HEADER:
        return Kind.HEADER
    if key is Signal.EXTENSION:
        return Kind.ELEMENT
    if isinstance(key, Signal):
        return Kind.ANSWER  # the ends are accepted in every state but CLOSED, which drops all

    return Kind.STANZA if key in STANZAS else Kind.ELEMENT


class Refusal(NamedTuple):
    condition: StreamCondition
    text: str
    """May name the refused element as ``{tag}`` and ``{ns}``."""

    def error(self, key: Input) -> StreamError:
        if isinstance(key, Signal):
            return StreamError(self.condition, self.text)
        namespace, tag = key
        return StreamError(self.condition, self.text.format(ns=namespace, tag=tag))


_NOT_OPENED = Refusal(
    StreamCondition.INVALID_NAMESPACE,
    f"a stream over WebSocket opens with <open xmlns='{ns.FRAMING}'/>",
)
"""Only over WebSocket: on TCP the parser reads a header before any element."""
_NOT_BOUND = Refusal(StreamCondition.NOT_AUTHORIZED, "authenticate and bind a resource first")
_NOT_EXPECTED = Refusal(
    StreamCondition.UNSUPPORTED_STANZA_TYPE, "<{tag} xmlns='{ns}'> is not expected here"
)
_HEADER_AGAIN = Refusal(StreamCondition.BAD_FORMAT, "unexpected stream header")
_OUT_OF_TURN = Refusal(
    StreamCondition.INTERNAL_SERVER_ERROR, "the server answered a question not asked"
)

_BEFORE_HEADER = {Kind.STANZA: _NOT_OPENED, Kind.ELEMENT: _NOT_OPENED, Kind.ANSWER: _OUT_OF_TURN}
_UNBOUND = {
    Kind.STANZA: _NOT_BOUND,
    Kind.ELEMENT: _NOT_EXPECTED,
    Kind.HEADER: _HEADER_AGAIN,
    Kind.ANSWER: _OUT_OF_TURN,
}

_BOUND = {Kind.ELEMENT: _NOT_EXPECTED, Kind.HEADER: _HEADER_AGAIN, Kind.ANSWER: _OUT_OF_TURN}
"""<r/> and <a/> before <enable/> are elements not expected, like any unknown one."""

REFUSALS: dict[State, dict[Kind, Refusal]] = {
    State.AWAIT_HEADER: _BEFORE_HEADER,
    State.NEGOTIATING: _UNBOUND,
    State.TLS_PENDING: _UNBOUND,
    State.AUTHENTICATING: _UNBOUND,
    State.AWAIT_HEADER_AUTHENTICATED: _BEFORE_HEADER,
    State.AUTHENTICATED: _UNBOUND,
    State.BOUND: _BOUND,
    State.MANAGED: _BOUND,
    State.CLOSED: {},
}
