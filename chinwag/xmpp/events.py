"""What a stream tells its driver: events returned by ``ServerStream``, never changed.

Events that ask a question (TLS, SASL, bind) leave the stream waiting until the
driver answers through the matching ``ServerStream`` method.
"""

from __future__ import annotations

from dataclasses import dataclass

from .element import Element
from .errors import StreamError
from .jid import JID
from .sasl import SaslCondition


@dataclass(frozen=True, slots=True)
class StartTLSRequested:
    """<proceed/> is queued: flush it, upgrade the transport, then call ``tls_established``."""


@dataclass(frozen=True, slots=True)
class AuthRequested:
    """The client chose a SASL mechanism; ``initial_response`` is None when it sent none."""

    mechanism: str
    initial_response: bytes | None


@dataclass(frozen=True, slots=True)
class AuthResponse:
    """The client answered the last challenge."""

    data: bytes


@dataclass(frozen=True, slots=True)
class AuthAborted:
    """The client aborted the SASL exchange; the stream already answered <aborted/>."""


@dataclass(frozen=True, slots=True)
class AuthMalformed:
    """The stream refused a SASL message itself (too long, or not base64) and answered
    <failure/> with ``condition``: the exchange is over, and counts as a failed sign-in."""

    condition: SaslCondition


@dataclass(frozen=True, slots=True)
class BindRequested:
    """Resource binding (RFC 6120 7); ``resource`` is prepared, or None for the server to pick."""

    iq_id: str
    resource: str | None


@dataclass(slots=True)
class StanzaReceived:
    """A stanza from the bound client, ``from`` stamped, ``to`` parsed (None: the account).

    Not frozen, though nothing changes it either: one is made for every stanza, and a
    frozen dataclass builds at half the speed, a named tuple through a Python-level
    ``__new__`` (2 % of a routed message's instructions). Nor are ``AckRequested`` and
    ``Acked``, which clients send every few stanzas."""

    stanza: Element
    to: JID | None


@dataclass(frozen=True, slots=True)
class ElementReceived:
    """A top-level element of a bound stream that is not a stanza, one of those named in
    ``StreamConfig.bound_elements``: the driver hands it to whoever registered it."""

    element: Element


@dataclass(frozen=True, slots=True)
class EnableRequested:
    """XEP-0198 <enable/> on a bound stream: answer with ``sm_enabled``. ``max_seconds`` is
    the resumption window the client prefers, if it said one."""

    resume: bool
    max_seconds: int | None


@dataclass(frozen=True, slots=True)
class ResumeRequested:
    """XEP-0198 <resume/> in place of binding: answer with ``sm_resumed`` or
    ``sm_resume_failed``. ``handled`` counts the stanzas of the former stream that the
    client handled."""

    previd: str
    handled: int


@dataclass(slots=True)
class AckRequested:
    """XEP-0198 <r/>: send <a/> with ``handled``, the client's stanzas the stream had
    counted when the request came, once those stanzas are dispatched."""

    handled: int


@dataclass(slots=True)
class Acked:
    """XEP-0198 <a/>: the client has handled ``handled`` of the stanzas sent to it."""

    handled: int


@dataclass(frozen=True, slots=True)
class StreamClosed:
    """The stream is over; ``error`` is the stream error sent, if any. Flush, then close."""

    error: StreamError | None


Event = (
    StartTLSRequested
    | AuthRequested
    | AuthResponse
    | AuthAborted
    | AuthMalformed
    | BindRequested
    | StanzaReceived
    | ElementReceived
    | EnableRequested
    | ResumeRequested
    | AckRequested
    | Acked
    | StreamClosed
)
