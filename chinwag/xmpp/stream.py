"""The server side of an RFC 6120 client-to-server stream, sans-IO.

Bytes go in with ``receive_data(data, now)`` and come back out of
``data_to_send()``; what needs a decision from outside (TLS, SASL credentials,
binding a resource) is returned as an event, and the answer comes back through
a method (``tls_established``, ``sasl_success``, ``bind_result`` ...). While an
answer is outstanding, further elements wait in order. Time is passed in:
``get_timer()`` says when ``handle_timer(now)`` must next be called.

The same stream runs over two framings. On TCP (RFC 6120) the client's bytes
are one XML document fed in any chunks with ``receive_data``. Over WebSocket
(RFC 7395) each message is fed whole with ``receive_frame``: the client's
``<open/>`` element takes the place of the stream header and ``<close/>`` that
of ``</stream:stream>``, and everything in between goes through the same state
table and handlers. In both framings ``frames_to_send()`` gives the output one
element per item (one WebSocket message each), and ``data_to_send()`` joins it.

XEP-0198 stream management is negotiated here (<enable/>, <resume/>, <failed/>), and
the stream counts the client's stanzas for <a/> and <resumed/> (``sm_handled``). The
stanzas the driver writes, and the sessions that outlive a stream, are the driver's to
keep: ``take_stanzas_sent()`` hands it the few the stream writes itself (errors, the
session reply) so that it keeps those too.
"""

from __future__ import annotations

import base64
import binascii
import functools
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Concatenate, Literal, ParamSpec, TypeVar

from . import ns, sm
from .element import Element, escape_attr, escape_text
from .errors import StanzaCondition, StanzaError, StreamCondition, StreamError
from .events import (
    Acked,
    AckRequested,
    AuthAborted,
    AuthMalformed,
    AuthRequested,
    AuthResponse,
    BindRequested,
    ElementReceived,
    EnableRequested,
    Event,
    ResumeRequested,
    StanzaReceived,
    StartTLSRequested,
    StreamClosed,
)
from .ids import random_hex
from .jid import JID, InvalidJID, prep_resourcepart, split_jid
from .sasl import MAX_MESSAGE_BYTES, SaslCondition, encoded_length
from .stanza import is_error, make_error, make_reply
from .states import (
    ABORT,
    AUTH,
    IQ,
    MESSAGE,
    PRESENCE,
    REFUSALS,
    RESPONSE,
    SM_ACK,
    SM_ENABLE,
    SM_REQUEST,
    SM_RESUME,
    STARTTLS,
    TRANSITIONS,
    Input,
    Signal,
    State,
    kind_of,
)
from .xml import StreamEnd, StreamHeader, XMLFrameParser, XMLStreamParser

_IQ_TYPES = frozenset({"get", "set", "result", "error"})

Framing = Literal["tcp", "websocket"]
_MAX_SASL_TEXT = encoded_length(MAX_MESSAGE_BYTES)
"""The longest text of an <auth/> or <response/>, measured before it is decoded."""
_CLOSE_FRAME = f"<close xmlns='{ns.FRAMING}'/>".encode()
PREAUTH_MAX_ELEMENT_BYTES = 16384
"""Before authentication, a larger top-level element is refused (policy-violation): the
largest legitimate ones, <auth/> and <response/> with a SASL message, take a few KiB."""
PREAUTH_MAX_TOKEN_BYTES = 4096
"""Before authentication, so is a longer tag or reference (a feed leaves unfinished)."""
NEW_JID_CHARS_PER_SECOND = 1024
"""Characters of new non-ASCII addresses whose preparation a stream may ask for, on
average: PRECIS takes microseconds a character for them, where an ordinary stanza takes
nanoseconds a byte. Addresses seen lately, and ASCII ones, cost nothing of it."""
NEW_JID_CHARS_BURST = 4096


@dataclass(frozen=True, slots=True)
class StreamConfig:
    """What a stream offers; fixed for the life of a listener."""

    domain: str
    tls_available: bool = True
    tls_required: bool = True
    mechanisms: tuple[str, ...] = ("SCRAM-SHA-256", "SCRAM-SHA-1", "PLAIN")
    """SASL mechanisms offered on a secure stream (or on any stream when TLS is not required)."""
    max_stanza_bytes: int = 262144
    auth_timeout: float = 30.0
    max_auth_failures: int = 3
    raw_mechanisms: frozenset[str] = frozenset()
    """Mechanisms whose <auth> text is taken as is rather than base64-decoded."""
    bound_features: tuple[tuple[str, str], ...] = ()
    """(namespace, tag) of further empty features announced after authentication."""
    caps_ver: str = ""
    """XEP-0115 §6.3: the SHA-1 ``ver`` of the server's disco#info, announced as
    ``<c/>`` in the features after authentication (empty: none)."""
    bound_elements: frozenset[tuple[str, str]] = frozenset()
    """(namespace, tag) of top-level elements besides stanzas that a bound stream accepts
    and hands to the driver as ``ElementReceived``."""


def _b64decode(text: str) -> bytes:
    """RFC 6120 6.4.2: '=' is an empty response; anything else must be strict base64."""
    text = text.strip()
    if text == "=":
        return b""
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise _SaslEncodingError from None


def _b64encode(data: bytes) -> str:
    return base64.b64encode(data).decode() if data else "="


class _SaslEncodingError(Exception):
    pass


class _AllowanceSpent(Exception):
    """The stream asked for more new non-ASCII addresses than its allowance."""


_TOO_MANY_NEW_JIDS = StanzaError(
    StanzaCondition.RESOURCE_CONSTRAINT,
    "too many new non-ASCII addresses at once: send this again in a few seconds",
)


_Handler = Callable[["ServerStream", Any], None]


_WHITESPACE = b" \t\r\n"


def _bad_count() -> StreamError:
    return StreamError(StreamCondition.BAD_FORMAT, "<a/> needs h, a count of stanzas")


_H = TypeVar("_H", bound=Callable[..., None])
_HANDLERS: dict[tuple[Input, State | None], _Handler] = {}
"""Filled by ``_handles`` as the class is made, read once into ``_STEPS`` after it."""


def _handles(*keys: Input, state: State | None = None) -> Callable[[_H], _H]:
    """Make the method the handler of ``keys`` in ``state``, or in every state whose row
    of the table has them; it runs with the element (or header) after the transition."""

    def register(handler: _H) -> _H:
        for key in keys:
            _HANDLERS[key, state] = handler
        return handler

    return register


_P = ParamSpec("_P")


def _answers(
    signal: Signal,
) -> Callable[
    [Callable[Concatenate[ServerStream, _P], None]],
    Callable[Concatenate[ServerStream, _P], list[Event]],
]:
    """The driver's answer: ``signal`` through the table, then the method's body; returns
    the events of what arrived while the driver was deciding. An answer that arrives after
    the stream closed (say, timed out) changes nothing."""

    def decorate(
        body: Callable[Concatenate[ServerStream, _P], None],
    ) -> Callable[Concatenate[ServerStream, _P], list[Event]]:
        @functools.wraps(body)
        def answer(self: ServerStream, /, *args: _P.args, **kwargs: _P.kwargs) -> list[Event]:
            if self.state is State.CLOSED:
                return []
            try:
                self._transition(signal)
                body(self, *args, **kwargs)
            except StreamError as error:
                self._fail(error)
            return self._resume()

        return answer

    return decorate


class ServerStream:
    """One client connection's stream, from the first header to the closing tag."""

    def __init__(
        self,
        config: StreamConfig,
        now: float,
        *,
        secure: bool = False,
        framing: Framing = "tcp",
    ) -> None:
        self.config = config
        self.secure = secure
        self.framing: Framing = framing
        websocket = framing == "websocket"
        self.stanza_parent_ns = "" if websocket else ns.CLIENT
        """The namespace in scope where a stanza is written: ``jabber:client`` on TCP (the
        stream header declares it), none over WebSocket (each message declares its own)."""
        self._tls_available = config.tls_available and not websocket
        """Never STARTTLS over WebSocket: the WebSocket itself is secure or it is not."""
        self.state = State.AWAIT_HEADER
        self._loops = _LOOPS[self.state]
        """The current state's row of ``_LOOPS``, kept by ``_transition`` with the state."""
        self.username: str | None = None
        """The authenticated account's localpart, once SASL succeeded."""
        self.jid: JID | None = None
        """The bound full JID."""
        self._jid_text = ""
        self.stream_id = ""
        self.auth_deadline: float | None = now + config.auth_timeout
        self._domain_jid = JID.parse(config.domain)
        self._parser = self._new_parser()
        self._out: list[bytes] = []
        self._header_sent = False
        self._auth_failures = 0
        self._waiting = False
        self._backlog: list[StreamHeader | Element | StreamEnd] = []
        self._events: list[Event] = []
        self._now = now
        self._jid_allowance = float(NEW_JID_CHARS_BURST)
        """What is left of ``NEW_JID_CHARS_BURST`` as of ``_jid_allowance_at``."""
        self._jid_allowance_at = now
        self._stanzas_in = 0
        """The client's stanzas the stream has handled, whatever became of them, counted
        whether stream management is on or not: one addition per stanza costs less than
        a handler of its own for the managed state."""
        self._sm_base = 0
        """``_stanzas_in`` when the count of stream management (XEP-0198's h) was 0."""
        self._sm_sent: list[bytes] | None = None
        """With stream management, the stanzas the stream wrote itself (errors, replies)
        since the driver last took them, as written: the driver keeps them until
        acknowledged."""

    # --- input -------------------------------------------------------------

    def receive_data(self, data: bytes, now: float) -> list[Event]:
        """Feed bytes from the client; returns the events they caused."""
        if self.state is State.CLOSED:
            return []
        self._now = now
        if self.state is State.MANAGED and data.endswith(b"/>"):
            self._receive_managed(data)
        else:
            self._receive(data)
        return self._take_events()

    def _receive(self, data: bytes) -> None:
        try:
            parsed = self._parser.feed(data)
        except StreamError as error:
            # What the same read completed before the error is handled first, as if it
            # had arrived on its own: a client's last stanzas are not lost to its bad input.
            self._backlog.extend(self._parser.completed_before_failure())
            self._drain()
            if self.state is not State.CLOSED:
                self._fail(error)
            return
        if self._backlog:
            self._backlog.extend(parsed)
        else:
            self._backlog = parsed  # the parser's own list, fresh on every feed
        self._drain()

    def _receive_managed(self, data: bytes) -> None:
        """``data`` with the <r/> and <a/> that end it, in their usual spelling
        (``sm.SHORT_FORM``), read without the parser if they stand between top-level
        elements: clients write them after their stanzas, many times a second, and each
        would cost as much to parse as a short stanza. Looking only at the end of a read
        costs one search of its last bytes; one elsewhere in a read goes through the
        parser."""
        shorts = []
        end = stop = len(data)
        while True:  # data[:stop] ends with "/>"
            window = stop - sm.SHORT_FORM_MAX_BYTES
            short = sm.SHORT_FORM_AT_END.search(data, window if window > 0 else 0, stop)
            if short is None:
                break
            shorts.append(short)
            end = stop = short.start()
            while stop and data[stop - 1] in _WHITESPACE:
                stop -= 1
            if not data.endswith(b"/>", 0, stop):
                break
        if not shorts:
            self._receive(data)
            return
        if end:
            self._receive(data[:end])
        if self.state is not State.MANAGED or self._backlog or not self._parser.at_rest():
            if self.state is not State.CLOSED:
                self._receive(data[end:])  # in a stanza, or after one the stream waits on
            return
        for short in reversed(shorts):
            self._on_short_form(short[1] or short[2])
            if self.state is State.CLOSED:
                return

    def _on_short_form(self, handled: bytes | None) -> None:
        """An <r/> (``handled`` None) or an <a h/> read in its usual spelling, whose h the
        pattern has checked to be digits."""
        if handled is None:  # sm_handled, without the property's call
            self._events.append(AckRequested((self._stanzas_in - self._sm_base) & sm.MASK))
            return
        count = int(handled)
        if count > sm.MASK:
            self._fail(_bad_count())
            return
        self._events.append(Acked(count))

    def receive_frame(self, data: bytes, now: float) -> list[Event]:
        """Feed one whole WebSocket message (websocket framing); returns the events it caused."""
        if self.state is State.CLOSED:
            return []
        self._now = now
        if len(data) > self.config.max_stanza_bytes:
            self._fail(
                StreamError(
                    StreamCondition.POLICY_VIOLATION,
                    f"message larger than the limit of {self.config.max_stanza_bytes} bytes",
                )
            )
            return self._take_events()
        if self.state is State.MANAGED and (short := sm.SHORT_FORM.fullmatch(data)) is not None:
            self._on_short_form(short.group(1) or short.group(2))  # each message is whole
            return self._take_events()
        parser = self._parser
        if not isinstance(parser, XMLFrameParser):
            raise TypeError("receive_frame is for websocket framing; TCP uses receive_data")
        try:
            element = parser.feed_frame(data)
        except StreamError as error:
            self._fail(error)
            return self._take_events()
        if element is not None:
            self._backlog.append(_unframed(element))
            self._drain()
        return self._take_events()

    def data_to_send(self) -> bytes:
        out = b"".join(self._out)
        self._out.clear()
        return out

    def frames_to_send(self) -> Sequence[bytes]:
        """What to send, one element (or stream header, or closing tag) per item."""
        out = self._out
        if not out:
            return ()  # the common case on a bound stream: no list made for nothing
        self._out = []
        return out

    def release_parser(self) -> bool:
        """Give up the XML parser while the client is between stanzas (say, silent for a
        while); the next bytes make a new one. Returns whether it was released."""
        return self.state is not State.CLOSED and not self._backlog and self._parser.release()

    def get_timer(self) -> float | None:
        return self.auth_deadline if self.state is not State.CLOSED else None

    def handle_timer(self, now: float) -> list[Event]:
        if (
            self.auth_deadline is not None
            and now >= self.auth_deadline
            and self.state is not State.CLOSED
        ):
            self._fail(StreamError(StreamCondition.CONNECTION_TIMEOUT, "not authenticated in time"))
        return self._take_events()

    # --- answers from the driver -------------------------------------------
    # Each is a Signal through the table, then its body; the caller gets the events.

    @_answers(Signal.TLS_ESTABLISHED)
    def tls_established(self) -> None:
        """The transport is now TLS: anything received before the handshake is discarded."""
        self.secure = True
        self._restart()

    @_answers(Signal.SASL_CHALLENGE)
    def sasl_challenge(self, data: bytes) -> None:
        self._send_element(Element("challenge", ns.SASL, children=[_b64encode(data)]))

    @_answers(Signal.SASL_SUCCESS)
    def sasl_success(self, username: str, additional_data: bytes | None = None) -> None:
        """Authentication succeeded as ``username`` (a prepared localpart)."""
        children: list[Element | str] = [_b64encode(additional_data)] if additional_data else []
        self._send_element(Element("success", ns.SASL, children=children))
        self.username = username
        self._restart()

    @_answers(Signal.SASL_FAILURE)
    def sasl_failure(self, condition: SaslCondition, text: str = "") -> None:
        self._send_sasl_failure(condition, text)

    @_answers(Signal.BIND_RESULT)
    def bind_result(self, iq_id: str, jid: JID) -> None:
        reply = Element("iq", attrs={"type": "result", "id": iq_id})
        reply.add("bind", ns.BIND).add("jid").children.append(str(jid))
        self._send_element(reply)
        self._bound(jid)

    @_answers(Signal.BIND_ERROR)
    def bind_error(self, iq_id: str, error: StanzaError) -> None:
        self._send_element(make_error(Element("iq", attrs={"id": iq_id}), error))

    @_answers(Signal.SM_ENABLED)
    def sm_enabled(self, sm_id: str | None, max_seconds: int | None = None) -> None:
        """Stream management is on (XEP-0198 §3), resumable as ``sm_id`` for ``max_seconds``
        when given; the client's stanzas are counted from here."""
        self._send_element(sm.enabled(sm_id, max_seconds))
        self._sm_base = self._stanzas_in
        self._sm_sent = []

    @_answers(Signal.SM_RESUMED)
    def sm_resumed(self, previd: str, handled: int, jid: JID) -> None:
        """The session of ``previd`` goes on here as ``jid`` (XEP-0198 §5), the count of the
        client's stanzas going on from ``handled``, those its former stream handled."""
        self._send_element(sm.resumed(previd, handled))
        self._bound(jid)
        self._sm_base = self._stanzas_in - handled
        self._sm_sent = []

    @_answers(Signal.SM_RESUME_FAILED)
    def sm_resume_failed(self, handled: int | None = None) -> None:
        """No session to resume (XEP-0198 §5): the client may bind a resource instead.
        ``handled``: the count of the client's stanzas that the expired session had."""
        self._send_element(sm.failed(StanzaCondition.ITEM_NOT_FOUND, handled=handled))

    @property
    def sm_handled(self) -> int:
        """The client's stanzas handled under stream management so far (XEP-0198's h)."""
        return (self._stanzas_in - self._sm_base) & sm.MASK

    def take_stanzas_sent(self) -> list[bytes]:
        """With stream management, the stanzas the stream wrote since the last call."""
        sent = self._sm_sent
        if not sent:
            return []
        self._sm_sent = []
        return sent

    def close(self, error: StreamError | None = None) -> None:
        """End the stream from our side, with ``error`` if given (RFC 6120 4.4, 4.9)."""
        if self.state is not State.CLOSED:
            self._transition(Signal.CLOSE, error)

    # --- internals ---------------------------------------------------------

    def _take_events(self) -> list[Event]:
        events, self._events = self._events, []
        return events

    def _resume(self) -> list[Event]:
        """Continue with what arrived while the driver was deciding."""
        self._waiting = False
        self._drain()
        return self._take_events()

    def _wait(self) -> None:
        self._waiting = True

    def _drain(self) -> None:
        backlog = self._backlog
        while backlog and not self._waiting and self.state is not State.CLOSED:
            item = backlog.pop(0)
            try:
                if type(item) is Element:
                    handler = self._loops.get((item.ns, item.tag))
                    if handler is None:
                        self._transition((item.ns, item.tag), item)
                    else:
                        handler(self, item)
                elif isinstance(item, StreamHeader):
                    self._transition(Signal.HEADER, item)
                else:
                    self._transition(Signal.STREAM_END)
            except StreamError as error:
                self._fail(error)

    def _transition(self, key: Input, item: object = None) -> None:
        """The one place the state changes: to where the table leads ``key`` from here, and
        then ``key``'s handler, if it has one, runs with ``item``. Raises the stream error
        the table names for what this state does not accept."""
        steps = _STEPS[self.state]
        step = steps.get(key)
        if step is None and key in self.config.bound_elements:
            step = steps.get(Signal.EXTENSION)
        if step is None:
            raise REFUSALS[self.state][kind_of(key)].error(key)
        handler, self.state = step
        self._loops = _LOOPS[self.state]
        if handler is not None:
            handler(self, item)

    def _fail(self, error: StreamError) -> None:
        self.close(error)
        self._events.append(StreamClosed(error))

    def _new_parser(self) -> XMLStreamParser:
        max_element_bytes, max_token_bytes = self.config.max_stanza_bytes, None
        if self.username is None:
            max_element_bytes = min(max_element_bytes, PREAUTH_MAX_ELEMENT_BYTES)
            max_token_bytes = PREAUTH_MAX_TOKEN_BYTES
        parser = XMLFrameParser if self.framing == "websocket" else XMLStreamParser
        return parser(max_element_bytes, keep_wire=True, max_token_bytes=max_token_bytes)

    def _restart(self) -> None:
        # Over TCP a new document begins. A frame parser holds nothing from one message to
        # the next, but its limits change once the client has authenticated.
        self._parser = self._new_parser()
        self._backlog.clear()

    def _send_element(self, element: Element) -> None:
        self._out.append(element.serialize(self.stanza_parent_ns).encode())

    def _send_stanza(self, stanza: Element) -> None:
        """A stanza the stream answers itself once bound, which stream management counts."""
        data = stanza.serialize(self.stanza_parent_ns).encode()
        self._out.append(data)
        if self._sm_sent is not None:
            self._sm_sent.append(data)

    def _bound(self, jid: JID) -> None:
        self.jid = jid
        self._jid_text = str(jid)
        self._parser.stamp_wire("from", self._jid_text)
        for item in self._backlog:  # parsed before the stamp: serialised from the tree instead
            if type(item) is Element:
                item.wire = None
        self.auth_deadline = None

    def _send_stream_level(self, element: Element) -> None:
        self._out.append(_stream_level(element, self.framing))

    def _send_header(self) -> None:
        self.stream_id = random_hex(8)
        if self.framing == "websocket":
            self._out.append(
                (
                    f"<open xmlns='{ns.FRAMING}' id='{self.stream_id}' "
                    f"from='{escape_attr(self.config.domain)}' version='1.0' xml:lang='en'/>"
                ).encode()
            )
            self._header_sent = True
            return
        self._out.append(
            (
                "<?xml version='1.0'?>"
                f"<stream:stream xmlns='{ns.CLIENT}' xmlns:stream='{ns.STREAMS}' "
                f"id='{self.stream_id}' from='{escape_attr(self.config.domain)}' "
                "version='1.0' xml:lang='en'>"
            ).encode()
        )
        self._header_sent = True

    # --- stream header and features ------------------------------------------

    @_handles(Signal.HEADER)
    def _on_header(self, header: StreamHeader) -> None:
        self._send_header()
        self._check_header(header)
        self._send_features()

    def _check_header(self, header: StreamHeader) -> None:
        if self.framing == "tcp":  # over WebSocket, only an <open/> element is a header
            self._check_root(header)
        version = header.attrs.get("version", "")
        major, _, _minor = version.partition(".")
        if major != "1":
            raise StreamError(
                StreamCondition.UNSUPPORTED_VERSION, "only XMPP version 1.0 is supported"
            )
        to = header.attrs.get("to")
        if to is None:
            raise StreamError(
                StreamCondition.HOST_UNKNOWN, "the stream header needs a 'to' attribute"
            )
        try:
            host = JID.parse(to)
        except InvalidJID:
            host = None
        if host != self._domain_jid:
            raise StreamError(
                StreamCondition.HOST_UNKNOWN, f"this server serves {self.config.domain}"
            )

    @staticmethod
    def _check_root(header: StreamHeader) -> None:
        if header.ns != ns.STREAMS or header.tag != "stream":
            raise StreamError(StreamCondition.INVALID_NAMESPACE, "the root must be <stream:stream>")
        if header.default_ns != ns.CLIENT:
            raise StreamError(
                StreamCondition.INVALID_NAMESPACE, f"the content namespace must be {ns.CLIENT}"
            )

    def _send_features(self) -> None:
        authenticated = self.username is not None
        self._out.append(
            _features(
                self.config,
                self.framing,
                authenticated=authenticated,
                starttls=not authenticated and self._tls_available and not self.secure,
                sasl=not authenticated and self._sasl_allowed(),
            )
        )

    def _sasl_allowed(self) -> bool:
        return self.secure or not self.config.tls_required

    # --- top-level elements ------------------------------------------------

    @_handles(Signal.CLOSE)
    def _on_close(self, error: StreamError | None) -> None:
        if not self._header_sent:
            self._send_header()
        if error is not None:
            self._send_stream_level(error.to_element())
        self._out.append(_CLOSE_FRAME if self.framing == "websocket" else b"</stream:stream>")
        self._backlog.clear()

    @_handles(Signal.STREAM_END)
    def _on_stream_end(self, _nothing: None) -> None:
        self._on_close(None)
        self._events.append(StreamClosed(None))

    @_handles(STARTTLS)
    def _on_starttls(self, _element: Element) -> None:
        if self.secure or not self._tls_available:
            raise StreamError(
                StreamCondition.UNSUPPORTED_STANZA_TYPE, "STARTTLS is not offered here"
            )
        self._out.append(f"<proceed xmlns='{ns.TLS}'/>".encode())
        self._events.append(StartTLSRequested())
        self._wait()

    @_handles(AUTH)
    def _on_auth(self, element: Element) -> None:
        mechanism = element.attrs.get("mechanism", "")
        if not self._sasl_allowed():
            self._refuse_sasl(SaslCondition.ENCRYPTION_REQUIRED, "negotiate TLS first")
            return
        if mechanism not in self.config.mechanisms:
            self._refuse_sasl(SaslCondition.INVALID_MECHANISM, f"{mechanism!r} is not offered")
            return
        text = self._sasl_text(element, "initial response")
        if text is None:
            return
        try:
            if mechanism in self.config.raw_mechanisms:
                initial = text.encode() if text else None
            else:
                initial = _b64decode(text) if text else None
        except _SaslEncodingError:
            self._sasl_malformed(
                SaslCondition.INCORRECT_ENCODING, "the initial response is not base64"
            )
            return
        self._events.append(AuthRequested(mechanism, initial))
        self._wait()

    @_handles(RESPONSE)
    def _on_sasl_response(self, element: Element) -> None:
        text = self._sasl_text(element, "response")
        if text is None:
            return
        try:
            data = _b64decode(text) if text else b""
        except _SaslEncodingError:
            self._sasl_malformed(SaslCondition.INCORRECT_ENCODING, "the response is not base64")
            return
        self._events.append(AuthResponse(data))
        self._wait()

    @_handles(ABORT)
    def _on_sasl_abort(self, _element: Element) -> None:
        self._send_sasl_failure(SaslCondition.ABORTED)
        self._events.append(AuthAborted())

    def _sasl_text(self, element: Element, what: str) -> str | None:
        """The text of an <auth/> or <response/>; None (refused) when too long to decode."""
        text = element.text.strip()
        if len(text) > _MAX_SASL_TEXT:
            self._sasl_malformed(
                SaslCondition.MALFORMED_REQUEST,
                f"the {what} is longer than {_MAX_SASL_TEXT} characters",
            )
            return None
        return text

    def _sasl_malformed(self, condition: SaslCondition, text: str) -> None:
        """Refuse a SASL message without asking the driver, who is told (AuthMalformed)."""
        self._events.append(AuthMalformed(condition))
        self._refuse_sasl(condition, text)

    def _refuse_sasl(self, condition: SaslCondition, text: str) -> None:
        """End the SASL exchange just started (or under way) as the driver's failure would."""
        self._transition(Signal.SASL_FAILURE)
        self._send_sasl_failure(condition, text)

    def _send_sasl_failure(self, condition: SaslCondition, text: str = "") -> None:
        """<failure/>, which counts towards ``max_auth_failures``."""
        failure = Element("failure", ns.SASL)
        failure.add(condition.value)
        if text:
            failure.add("text", attrs={"xml:lang": "en"}).children.append(text)
        self._send_element(failure)
        self._auth_failures += 1
        if self._auth_failures >= self.config.max_auth_failures:
            raise StreamError(
                StreamCondition.POLICY_VIOLATION, "too many failed authentication attempts"
            )

    @_handles(IQ, state=State.AUTHENTICATED)
    def _on_bind(self, iq: Element) -> None:
        bind = iq.find("bind", ns.BIND)
        iq_id = iq.attrs.get("id")
        if bind is None or iq.attrs.get("type") != "set" or not iq_id:
            raise StreamError(
                StreamCondition.NOT_AUTHORIZED, "bind a resource before sending stanzas"
            )
        requested = bind.find("resource")
        resource = None
        if requested is not None and requested.text:
            try:
                resource = prep_resourcepart(requested.text)
            except InvalidJID as error:
                self._send_element(
                    make_error(iq, StanzaError(StanzaCondition.BAD_REQUEST, str(error)))
                )
                return
        self._events.append(BindRequested(iq_id, resource))
        self._wait()

    @_handles(Signal.EXTENSION)
    def _on_extension(self, element: Element) -> None:
        self._events.append(ElementReceived(element))

    # --- XEP-0198 stream management --------------------------------------------------

    @_handles(SM_ENABLE, state=State.AUTHENTICATED)
    def _on_enable_unbound(self, _element: Element) -> None:
        self._send_sm_failure(StanzaCondition.UNEXPECTED_REQUEST, "bind a resource first")

    @_handles(SM_ENABLE, state=State.BOUND)
    def _on_enable(self, element: Element) -> None:
        resume = element.attrs.get("resume") in ("true", "1")
        max_seconds = sm.parse_count(element.attrs.get("max")) or None
        self._events.append(EnableRequested(resume, max_seconds))
        self._wait()

    @_handles(SM_ENABLE, state=State.MANAGED)
    def _on_enable_again(self, _element: Element) -> None:
        self._send_sm_failure(StanzaCondition.UNEXPECTED_REQUEST, "stream management is on")

    @_handles(SM_RESUME, state=State.AUTHENTICATED)
    def _on_resume(self, element: Element) -> None:
        previd = element.attrs.get("previd")
        handled = sm.parse_count(element.attrs.get("h"))
        if not previd or handled is None:
            self._send_sm_failure(StanzaCondition.BAD_REQUEST, "<resume/> needs previd and h")
            return
        self._events.append(ResumeRequested(previd, handled))
        self._wait()

    @_handles(SM_RESUME, state=State.BOUND)
    @_handles(SM_RESUME, state=State.MANAGED)
    def _on_resume_bound(self, _element: Element) -> None:
        self._send_sm_failure(StanzaCondition.UNEXPECTED_REQUEST, "a resource is bound already")

    @_handles(SM_REQUEST, state=State.MANAGED)
    def _on_request(self, _element: Element) -> None:
        self._events.append(AckRequested(self.sm_handled))

    @_handles(SM_ACK, state=State.MANAGED)
    def _on_ack(self, element: Element) -> None:
        self._acked(element.attrs.get("h"))

    def _acked(self, text: str | None) -> None:
        handled = sm.parse_count(text)
        if handled is None:
            raise _bad_count()
        self._events.append(Acked(handled))

    def _send_sm_failure(self, condition: StanzaCondition, text: str) -> None:
        self._send_element(sm.failed(condition, text))

    # --- stanzas -------------------------------------------------------------------

    @_handles(MESSAGE, PRESENCE, IQ, state=State.BOUND)
    @_handles(MESSAGE, PRESENCE, IQ, state=State.MANAGED)
    def _on_stanza(self, stanza: Element) -> None:
        self._stanzas_in += 1  # with stream management, every stanza counts
        attrs = stanza.attrs
        to_text = attrs.get("to")
        to: JID | None = None
        if to_text is not None:
            to = JID.cached(to_text)
            if to is None:
                try:
                    to = self._parse_new_jid(to_text)
                except InvalidJID as error:
                    self._bounce(stanza, StanzaError(StanzaCondition.JID_MALFORMED, str(error)))
                    return
                except _AllowanceSpent:
                    self._bounce(stanza, _TOO_MANY_NEW_JIDS)
                    return
        # RFC 6120 8.1.2.1: the server sets ``from`` to the sender's full JID. The parser
        # has written it into the wire form (and left none where the client wrote one).
        attrs["from"] = self._jid_text
        wire = stanza.wire
        # A tag name cannot be escaped: a wire form without "delay" holds no <delay/>.
        if wire is None or b"delay" in wire:
            self._drop_server_delays(stanza)
        if stanza.tag == "iq" and not self._valid_iq(stanza):
            return
        self._events.append(StanzaReceived(stanza, to))

    def _drop_server_delays(self, stanza: Element) -> None:
        """Remove the XEP-0203 delays that claim to come from this server: only the server
        stamps those (stored or resent stanzas), and it trusts the ones it finds."""
        domain = self.config.domain.lower()
        kept = [
            child
            for child in stanza.children
            if not (
                type(child) is Element
                and child.tag == "delay"
                and child.ns == ns.DELAY
                and (child.attrs.get("from") or "").lower() == domain
            )
        ]
        if len(kept) != len(stanza.children):
            stanza.children = kept
            stanza.wire = None

    def _parse_new_jid(self, text: str) -> JID:
        """Parse an address that is not cached; a non-ASCII one draws on the stream's
        allowance of ``NEW_JID_CHARS_PER_SECOND`` (raises _AllowanceSpent when it is out)."""
        if not text.isascii():
            split_jid(text)  # what is refused for its length costs nothing
            now = self._now
            allowance = (
                self._jid_allowance + (now - self._jid_allowance_at) * NEW_JID_CHARS_PER_SECOND
            )
            self._jid_allowance_at = now
            if allowance > NEW_JID_CHARS_BURST:
                allowance = NEW_JID_CHARS_BURST
            if len(text) > allowance:
                self._jid_allowance = allowance
                raise _AllowanceSpent
            self._jid_allowance = allowance - len(text)
        return JID.parse(text)

    def _valid_iq(self, iq: Element) -> bool:
        """RFC 6120 8.2.3; answers the RFC 3921 session request itself."""
        iq_type = iq.attrs.get("type")
        if iq_type not in _IQ_TYPES or not iq.attrs.get("id"):
            self._bounce(
                iq, StanzaError(StanzaCondition.BAD_REQUEST, "an IQ needs an id and a valid type")
            )
            return False
        if iq_type in ("get", "set"):
            payload = [child for child in iq.children if isinstance(child, Element)]
            if len(payload) != 1:
                self._bounce(
                    iq, StanzaError(StanzaCondition.BAD_REQUEST, "an IQ get or set has one payload")
                )
                return False
            if payload[0].ns == ns.SESSION and iq.attrs.get("to") in (None, self.config.domain):
                self._send_stanza(make_reply(iq))
                return False
        return True

    def _bounce(self, stanza: Element, error: StanzaError) -> None:
        if is_error(stanza):
            return
        stanza.wire = None
        stanza.attrs["from"] = str(self.jid)
        stanza.attrs.pop("to", None)
        reply = make_error(stanza, error)
        reply.attrs.pop("from", None)
        self._send_stanza(reply)


def _stream_level(element: Element, framing: Framing) -> bytes:
    """A child of the stream root in the streams namespace, with its usual prefix
    (declared in the element itself over WebSocket, where each message stands alone)."""
    parent_ns = "" if framing == "websocket" else ns.CLIENT
    inner = "".join(
        child.serialize(parent_ns) if isinstance(child, Element) else escape_text(child)
        for child in element.children
    )
    tag = element.tag
    declaration = f" xmlns:stream='{ns.STREAMS}'" if framing == "websocket" else ""
    return f"<stream:{tag}{declaration}>{inner}</stream:{tag}>".encode()


CAPS_NODE = "https://chinwag.invalid/caps"
"""The XEP-0115 ``node`` naming the software (the server's caps are its own)."""


@functools.lru_cache(maxsize=64)
def _features(
    config: StreamConfig, framing: Framing, *, authenticated: bool, starttls: bool, sasl: bool
) -> bytes:
    """<stream:features/>: the same few variants for every stream, so made once each."""
    features = Element("features", ns.STREAMS)
    if authenticated:
        features.add("bind", ns.BIND)
        features.add("session", ns.SESSION).add("optional")
        features.add("sm", ns.SM)
        for xmlns, tag in config.bound_features:
            features.add(tag, xmlns)
        if config.caps_ver:
            attrs = {"hash": "sha-1", "node": CAPS_NODE, "ver": config.caps_ver}
            features.add("c", ns.CAPS, attrs)
    if starttls:
        starttls_element = features.add("starttls", ns.TLS)
        if config.tls_required:
            starttls_element.add("required")
    if sasl:
        mechanisms = features.add("mechanisms", ns.SASL)
        for name in config.mechanisms:
            mechanisms.add("mechanism").children.append(name)
    return _stream_level(features, framing)


def _unframed(element: Element) -> Element | StreamHeader | StreamEnd:
    """RFC 7395 3.4, 3.6: over WebSocket, <open/> is the stream header and <close/> its end."""
    if element.ns == ns.FRAMING:
        if element.tag == "open":
            return StreamHeader(ns.FRAMING, "open", element.attrs, None)
        if element.tag == "close":
            return StreamEnd()
    return element


def _steps() -> dict[State, dict[Input, tuple[_Handler | None, State]]]:
    """The table with each input's handler: every input but the driver's answers has one
    (an answer's work is the body of its public method, see ``_answers``)."""
    unused = set(_HANDLERS)
    steps: dict[State, dict[Input, tuple[_Handler | None, State]]] = {}
    for state, row in TRANSITIONS.items():
        steps[state] = {}
        for key, next_state in row.items():
            registered = (key, state) if (key, state) in _HANDLERS else (key, None)
            unused.discard(registered)
            handler = _HANDLERS.get(registered)
            if handler is None and key not in _ANSWERED:
                raise LookupError(f"no handler for {key} in {state}")
            steps[state][key] = (handler, next_state)
    if unused:
        raise LookupError(
            f"handlers for inputs the table does not have: {sorted(map(str, unused))}"
        )
    return steps


_ANSWERED = frozenset(Signal) - {
    Signal.HEADER,
    Signal.STREAM_END,
    Signal.CLOSE,
    Signal.EXTENSION,
}
_STEPS = _steps()
_LOOPS: dict[State, dict[Input, _Handler]] = {
    state: {key: handler for key, (handler, then) in row.items() if then is state and handler}
    for state, row in _STEPS.items()
}
"""The inputs that leave a state as it is, with their handlers: ``_drain`` runs these
elements without ``_transition``, which would change nothing (a stanza on a bound stream
costs one dict lookup, in the row ``_transition`` keeps on the stream)."""
