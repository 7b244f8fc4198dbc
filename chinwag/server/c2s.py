"""Drives one client stream over any transport: feeds bytes to the sans-IO stream,
answers its questions (TLS, SASL, bind) and hands stanzas to the dispatcher.

A connection knows the server only through :class:`C2SHost` (authentication, the
session manager, dispatch, output batching), and a listener makes connections with a
factory: nothing here imports the server that composes it.

Writes are batched: everything queued for a connection during one event-loop
turn is handed to the transport at once, as a list of whole elements. A TCP
transport joins them into one socket write; a WebSocket transport sends each as
a message of its own (RFC 7395 3.3.3). One callback per turn flushes every
connection that has output (``OutputBatch``), rather than one per connection.

Input is metered per stream: its bytes from the first one against
``limits.bytes_per_second``, its stanzas against ``limits.stanzas_per_second``. A
stream more than ``limits.burst_seconds`` ahead of either is not read (nor are the
stanzas it sent already handled) until it is back within it, so a flood slows its
sender and no one else.

With XEP-0198 stream management (``stream_management.py``), every stanza written is
kept until the client acknowledges it, an acknowledgement is asked for with the writes
(at the end of an event-loop turn) that leave enough unacknowledged while no request is
out, never in a write of its own, and <a/> answers <r/> once the stanzas before it are
dispatched. A transport that drops without a closing stream (or
a stream closed for <connection-timeout/>) leaves its session to the session manager
to keep for resumption; a stream that ends otherwise ends its session. In a cluster, a
resumable session's output waits to be written until the node has copied it to Redis
(``StreamManagement.unrecorded``); a stream that ends meanwhile writes its end without
what is not copied yet, which the session keeps. A resumption this node cannot answer
from its own sessions is asked of the cluster (``SessionManager.take_over``).
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Awaitable, Coroutine, MutableSet
from typing import Any, Protocol

from chinwag.config import LimitsSettings
from chinwag.server.auth import Challenge, Grant, Outcome, SaslDriver, counts_against_address
from chinwag.server.auth_failures import AuthFailures, refusal
from chinwag.server.session import Session
from chinwag.server.sessions import (
    EndReason,
    ResumeRefused,
    SessionManager,
    end_reason,
    transport_name,
)
from chinwag.server.stats import ServerStats
from chinwag.server.stream_management import StreamManagement
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaCondition, StanzaError, StreamCondition, StreamError
from chinwag.xmpp.events import (
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
from chinwag.xmpp.jid import JID
from chinwag.xmpp.sasl import SaslCondition, SaslFailure
from chinwag.xmpp.sm import MASK, REQUEST, HandledCountTooHigh, ack
from chinwag.xmpp.states import State
from chinwag.xmpp.stream import ServerStream, StreamConfig

log = logging.getLogger(__name__)

# A peer that stops reading is cut off once this much output waits for it.
MAX_WRITE_BUFFER = 8 * 1024 * 1024


class Transport(Protocol):
    """What carries a stream: a TCP socket (maybe TLS) or a WebSocket."""

    kind: str
    """"tcp", "starttls" or "tls"; "websocket" makes the stream use RFC 7395 framing."""
    secure: bool
    peer_address: str | None
    """The client's IP address, where the transport knows it."""

    def writelines(self, items: list[bytes]) -> int:
        """Send ``items``, each one whole element, in order; keep no reference to the list.
        Returns how many bytes wait to be sent, this call's included."""
        ...

    def close(self) -> None: ...

    def pause_reading(self) -> None: ...

    def resume_reading(self) -> None: ...

    async def start_tls(self) -> None: ...


class C2SHost(Protocol):
    """What a client stream needs from the server that carries it."""

    @property
    def stream_config(self) -> StreamConfig: ...

    @property
    def limits(self) -> LimitsSettings: ...

    @property
    def auth_failures(self) -> AuthFailures: ...

    @property
    def sessions(self) -> SessionManager: ...

    @property
    def output(self) -> OutputBatch: ...

    @property
    def stats(self) -> ServerStats:
        """The service's counts: stanzas in and out, sign-ins and their failures."""
        ...

    @property
    def connections(self) -> MutableSet[C2SConnection]:
        """Every open client stream."""
        ...

    @property
    def unbound(self) -> MutableSet[C2SConnection]:
        """Streams signed in but not bound yet: what ends sessions must end them too."""
        ...

    @property
    def shutting_down(self) -> bool: ...

    def sasl_driver(self, mechanism: str) -> SaslDriver | None:
        """A new exchange of ``mechanism``; None if it is not offered."""
        ...

    def dispatch(self, stanza: Element, to: JID | None, origin: Session | None) -> None: ...

    def handle_element(self, session: Session, element: Element) -> None:
        """A top-level element of ``StreamConfig.bound_elements`` from ``session``'s stream."""
        ...

    def spawn(self, work: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        """Run background work that shutdown waits for; its failure is logged."""
        ...


async def _both(first: asyncio.Task[None], second: asyncio.Task[None]) -> None:
    await asyncio.wait([first, second])  # each one's failure is the server's to log


def _settle(listeners: list[asyncio.Future[bool]], heard: bool) -> None:
    for listener in listeners:
        if not listener.done():  # its waiter may have given up
            listener.set_result(heard)


ANSWER_HOLD_SECONDS = 0.05
"""How long the answer to a client's <r/> (XEP-0198) waits for a write to the client to
ride in, before it is written alone. Clients ask every few stanzas they send, while
what they are sent comes in other turns: written at once, about half the answers cost
a write of their own, and the client a read."""


class OutputBatch:
    """The connections that queued output during this event-loop turn, and those whose
    answer to a request for an acknowledgement waits for their next write."""

    def __init__(self) -> None:
        self._waiting: list[C2SConnection] = []
        self._holding: deque[tuple[float, C2SConnection]] = deque()
        """Connections holding answers, with when each stops waiting, in that order."""

    def add(self, connection: C2SConnection) -> None:
        if not self._waiting:
            asyncio.get_running_loop().call_soon(self._flush)
        self._waiting.append(connection)

    def hold_answer(self, connection: C2SConnection) -> None:
        """``connection`` holds answers: written with its next write, or after
        ``ANSWER_HOLD_SECONDS`` (one timer at a time, for the earliest)."""
        loop = asyncio.get_running_loop()
        if not self._holding:
            loop.call_later(ANSWER_HOLD_SECONDS, self._answer_held)
        self._holding.append((loop.time() + ANSWER_HOLD_SECONDS, connection))

    def _flush(self) -> None:
        waiting, self._waiting = self._waiting, []
        for connection in waiting:
            connection.flush()

    def _answer_held(self) -> None:
        """Write the answers whose time is up; wait again for the others."""
        loop = asyncio.get_running_loop()
        holding, now = self._holding, loop.time()
        while holding and holding[0][0] <= now:
            holding.popleft()[1].answer_held()
        if holding:
            loop.call_at(holding[0][0], self._answer_held)


class C2SConnection:
    __slots__ = (
        "_answers_due",
        "_burst_seconds",
        "_bytes_due",
        "_dispatch",
        "_early_tls",
        "_end_reason",
        "_flush_scheduled",
        "_grant",
        "_held",
        "_input_listeners",
        "_loop",
        "_mechanism",
        "_pending",
        "_received",
        "_refilled_at",
        "_sasl",
        "_seconds_per_byte",
        "_sent",
        "_slowed",
        "_stanza_burst",
        "_stanza_rate",
        "_stanza_tokens",
        "_task",
        "_timer",
        "_timer_deadline",
        "_unflushed_listeners",
        "closed",
        "heard_at",
        "host",
        "parent_ns",
        "read_recently",
        "session",
        "stream",
        "transport",
        "wrote_recently",
    )
    """Slots, not a dict: read on every stanza, these stay fast however many there are."""

    def __init__(self, host: C2SHost, transport: Transport) -> None:
        self._loop = asyncio.get_running_loop()
        self.host = host
        self.transport = transport
        self.stream = ServerStream(
            host.stream_config,
            self._loop.time(),
            secure=transport.secure,
            framing="websocket" if transport.kind == "websocket" else "tcp",
        )
        self.parent_ns = self.stream.stanza_parent_ns
        self.session: Session | None = None
        self._dispatch = host.dispatch
        self._received = host.stats.received
        self._sent = host.stats.sent
        self.closed = False
        self.wrote_recently = False
        self.read_recently = False
        self.heard_at = self._loop.time()
        """When the client was last read from (the event loop's clock): the ping sweep's
        proof that it is alive."""
        self._sasl: SaslDriver | None = None
        self._mechanism: str | None = None
        self._grant: Grant | None = None
        self._end_reason = EndReason.CONNECTION_LOST
        """Why the stream ends, for the log of its session's end; set when it closes."""
        self._pending: list[bytes] = []
        self._flush_scheduled = False
        self._answers_due: list[bytes] | None = None
        """The <a h/> answering each of the client's requests since the last write, held
        for the next one."""
        self._timer: asyncio.TimerHandle | None = None
        self._timer_deadline: float | None = None
        self._task: asyncio.Task[None] | None = None
        self._held: asyncio.Task[None] | None = None
        self._early_tls: list[bytes] | None = None
        """While STARTTLS completes: what the client sent over TLS before we noticed the end
        of the handshake (the restarted header, typically), to feed to the new stream."""
        self._unflushed_listeners: list[asyncio.Future[bool]] | None = None
        self._input_listeners: list[asyncio.Future[bool]] | None = None
        """``heard_after_output`` futures: waiting for the flush, then for the next input."""
        limits = host.limits
        self._burst_seconds = limits.burst_seconds
        self._seconds_per_byte = 1 / limits.bytes_per_second if limits.bytes_per_second else 0.0
        self._bytes_due = 0.0
        """When the bytes read so far are paid for at ``bytes_per_second`` (GCRA): reading
        pauses while that is more than ``burst_seconds`` ahead of now."""
        self._slowed: asyncio.TimerHandle | None = None
        self._stanza_rate = limits.stanzas_per_second
        self._stanza_burst = (
            max(1.0, self._stanza_rate * limits.burst_seconds) if self._stanza_rate else math.inf
        )
        self._stanza_tokens = self._stanza_burst
        """Stanzas that may be handled now (a token bucket): refilled at each read and when
        they run out, so a stanza costs one subtraction."""
        self._refilled_at = self._loop.time()
        host.connections.add(self)
        self._schedule_timer()

    @property
    def transport_kind(self) -> str:
        return self.transport.kind

    @property
    def grant(self) -> Grant | None:
        """Who signed in on this stream, once SASL succeeded."""
        return self._grant

    # --- from the transport ---------------------------------------------------

    def data_received(self, data: bytes) -> None:
        self.read_recently = True
        if self._input_listeners is not None:
            self._heard()
        if self._early_tls is not None:
            self._early_tls.append(data)
            return
        now = self.heard_at = self._loop.time()
        self._meter(now, len(data))
        self._handle(self.stream.receive_data(data, now))

    def frame_received(self, data: bytes) -> None:
        """One whole WebSocket message (websocket framing)."""
        self.read_recently = True
        if self._input_listeners is not None:
            self._heard()
        now = self.heard_at = self._loop.time()
        self._meter(now, len(data))
        self._handle(self.stream.receive_frame(data, now))

    def _meter(self, now: float, size: int) -> None:
        """Charge a read to the byte rate, and give the stanza bucket what it has earned."""
        due = (self._bytes_due if self._bytes_due > now else now) + size * self._seconds_per_byte
        self._bytes_due = due
        if due > now + self._burst_seconds:
            self._slow_down(due - self._burst_seconds)
        self._refill_stanzas(now)

    def _refill_stanzas(self, now: float) -> None:
        tokens = self._stanza_tokens + (now - self._refilled_at) * self._stanza_rate
        self._stanza_tokens = tokens if tokens < self._stanza_burst else self._stanza_burst
        self._refilled_at = now

    def _out_of_stanzas(self) -> float | None:
        """With the stanza tokens spent: None if time has earned one more, else the
        seconds until half the burst is back."""
        self._refill_stanzas(self._loop.time())
        if self._stanza_tokens >= 1:
            return None
        return (max(1.0, self._stanza_burst / 2) - self._stanza_tokens) / self._stanza_rate

    def _slow_down(self, until: float) -> None:
        """Read nothing more until ``until``: the client's data waits in the kernel, and TCP
        holds the client back, as Prosody's mod_limits and ejabberd's shapers do."""
        if self._slowed is None:
            self.transport.pause_reading()
        else:
            self._slowed.cancel()
        self._slowed = self._loop.call_at(until, self._speed_up)

    def _speed_up(self) -> None:
        self._slowed = None
        if self._task is None and not self.closed:  # else reading resumes with its answer
            self.transport.resume_reading()

    def heard_after_output(self) -> asyncio.Future[bool]:
        """Becomes True when the client sends anything after the output queued so far has
        been handed to the transport, which shows the connection outlived that write; False
        when the stream ends first."""
        heard: asyncio.Future[bool] = self._loop.create_future()
        if self.closed:
            heard.set_result(False)
        elif self._pending:
            self._unflushed_listeners = [*(self._unflushed_listeners or ()), heard]
        else:
            self._input_listeners = [*(self._input_listeners or ()), heard]
        return heard

    def _heard(self) -> None:
        listeners, self._input_listeners = self._input_listeners or [], None
        _settle(listeners, True)

    def connection_lost(self, ends_session: bool = False) -> None:
        """The transport is gone. Its session waits to be resumed, if its client enabled
        that, unless the stream ``ends_session`` (a closing tag, most stream errors)."""
        if self.closed:
            return
        self.closed = True
        self._pending.clear()
        if self._timer is not None:
            self._timer.cancel()
        if self._slowed is not None:
            self._slowed.cancel()
        listeners = [*(self._unflushed_listeners or ()), *(self._input_listeners or ())]
        self._unflushed_listeners = self._input_listeners = None
        _settle(listeners, False)
        if self._task is not None:
            self._task.cancel()
        self.host.connections.discard(self)
        self.host.unbound.discard(self)
        session, self.session = self.session, None
        if session is None:
            return
        sm = session.stream_management
        if sm is not None:
            # What the client sent that was read but never dispatched is not handled: on
            # resumption the client sends it again.
            sm.handled = (self.stream.sm_handled - sm.undispatched) & MASK
            sm.undispatched = 0
        if session.connection is not self:  # resumed on another stream
            return
        if ends_session:
            self.host.sessions.end(session, reason=self._end_reason)
        else:
            self.host.sessions.detach(session, reason=self._end_reason)

    # --- output -----------------------------------------------------------------

    def send(self, stanza: Element) -> None:
        """Queue a stanza for the client, encoded for this stream."""
        if self.closed:
            return
        data = stanza.encoded(self.parent_ns)
        self._pending.append(data)
        self._sent.append(stanza.tag)
        session = self.session
        if session is not None and (sm := session.stream_management) is not None:
            sm.unacked.append(data)
            if sm.mirror is not None:
                sm.mirror.written(sm, data)
            if len(sm.unacked) > sm.max_unacked:
                self._unacked_overflow(sm)
                return
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.output.add(self)

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        self._pending.append(data)
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.output.add(self)

    def flush(self) -> None:
        """Hand what is queued to the transport (the output batch calls this)."""
        self._flush_scheduled = False
        if self.closed or not self._pending:
            return
        if self._answers_due is not None:
            if self.stream.state is not State.CLOSED:  # else its end is what is pending
                self._pending.extend(self._answers_due)
            self._answers_due = None
        session = self.session
        sm = session.stream_management if session is not None else None
        if sm is not None:
            if sm.unrecorded:  # a cluster keeps a copy in Redis before the client gets it
                if self.stream.state is not State.CLOSED:
                    sm.held_flush = self._flush_soon
                    return
                self._drop_unrecorded(sm)  # the stream's last words go out without it
            if sm.written() and self.stream.state is not State.CLOSED:
                self._pending.append(REQUEST)
        waiting = self.transport.writelines(self._pending)
        self._pending.clear()
        self.wrote_recently = True
        if self._unflushed_listeners is not None:
            flushed, self._unflushed_listeners = self._unflushed_listeners, None
            self._input_listeners = [*(self._input_listeners or ()), *flushed]
        if waiting > MAX_WRITE_BUFFER:
            self.close_stream(
                StreamError(StreamCondition.POLICY_VIOLATION, "the client is not reading")
            )

    def _drop_unrecorded(self, sm: StreamManagement) -> None:
        """Take out of what is pending the stanzas whose copies Redis does not hold yet:
        the session keeps them, to be sent again on resumption or routed again."""
        unrecorded = {id(data) for data in sm.unacked[-sm.unrecorded :]}
        self._pending = [data for data in self._pending if id(data) not in unrecorded]

    def answer_held(self) -> None:
        """Write the answers held for the client's requests, if no write has carried them."""
        due, self._answers_due = self._answers_due, None
        if due is not None and not self.closed:
            self.write(b"".join(due))

    def _flush_soon(self) -> None:
        if not self._flush_scheduled:
            self._flush_scheduled = True
            self.host.output.add(self)

    def keepalive(self) -> None:
        """RFC 6120 4.6.1 whitespace on TCP. Over WebSocket, where only whole elements may be
        sent (RFC 7395 3.3.3), the WebSocket server's own ping frames do this work."""
        if self.stream.framing == "tcp":
            self.write(b" ")

    def hold(self, work: Coroutine[Any, Any, None]) -> None:
        """Process nothing more from this client until ``work`` is done (say, a message
        committed to storage before the sender's stream moves on). The work runs as the
        server's task, so neither a dropped connection nor shutdown cuts it short. Work
        held already for the same stanza is waited for too."""
        held = self.host.spawn(work)
        if self._held is not None:
            held = self.host.spawn(_both(self._held, held))
        self._held = held

    def close_stream(self, error: StreamError | None = None, *, keep_session: bool = False) -> None:
        """End the stream from the server's side and close the transport. Its session waits
        to be resumed, if its client enabled that, after <connection-timeout/> or when
        ``keep_session`` (a drained cluster node's client resumes on another node)."""
        if self.closed:
            return
        self._end_reason = end_reason(error)
        self.stream.close(error)
        timed_out = error is not None and error.condition is StreamCondition.CONNECTION_TIMEOUT
        self._finish(not (timed_out or keep_session))

    def _finish(self, ends_session: bool) -> None:
        self._write_stream_output()
        self.flush()
        self.transport.close()
        self.connection_lost(ends_session)

    def _write_stream_output(self) -> None:
        frames = self.stream.frames_to_send()
        if frames and not self.closed:
            self._pending.extend(frames)
            session = self.session
            sm = session.stream_management if session is not None else None
            if sm is not None and (answered := self.stream.take_stanzas_sent()):
                if sm.mirror is None:
                    sm.unacked.extend(answered)
                else:
                    for data in answered:
                        sm.unacked.append(data)
                        sm.mirror.written(sm, data)
                if len(sm.unacked) > sm.max_unacked:
                    self._unacked_overflow(sm)
                    return
            if not self._flush_scheduled:
                self._flush_scheduled = True
                self.host.output.add(self)

    # --- stream events ------------------------------------------------------------

    def _handle(self, events: list[Event]) -> None:
        self._write_stream_output()
        for index, event in enumerate(events):
            if type(event) is StanzaReceived:
                self._received.append(event.stanza.tag)
                self._dispatch(event.stanza, event.to, self.session)
                self._stanza_tokens -= 1
                if self._held is not None:
                    work, self._held = self._held, None
                    self._run(self._continue_after(work, self._defer(events[index + 1 :])))
                    return
                if self._stanza_tokens < 1 and (wait := self._out_of_stanzas()) is not None:
                    self._run(self._continue_later(wait, self._defer(events[index + 1 :])))
                    return
            elif type(event) is ElementReceived:
                if self.session is not None:
                    self.host.handle_element(self.session, event.element)
            elif type(event) is AckRequested:
                if self._answers_due is None:
                    self._answers_due = [ack(event.handled)]
                    self.host.output.hold_answer(self)
                else:
                    self._answers_due.append(ack(event.handled))
            elif type(event) is Acked:
                if not self._acked(event.handled):
                    return
            elif isinstance(event, StreamClosed):
                self._end_reason = (
                    EndReason.CLOSED_BY_CLIENT if event.error is None else end_reason(event.error)
                )
                self._finish(ends_session=True)
                return
            elif isinstance(event, AuthRequested):
                self._run(self._authenticate(event))
            elif isinstance(event, AuthResponse):
                self._run(self._continue_authentication(event))
            elif isinstance(event, AuthAborted):
                self._sasl = None
            elif isinstance(event, AuthMalformed):
                driver, self._sasl = self._sasl, None
                self._log_failure(driver, event.condition, "")
                self._run(self._malformed())
            elif isinstance(event, BindRequested):
                self._run(self._bind(event))
            elif isinstance(event, EnableRequested):
                self._enable(event)
            elif isinstance(event, ResumeRequested):
                self._resume(event)
            elif isinstance(event, StartTLSRequested):
                self._run(self._start_tls())
        sm = self.session.stream_management if self.session is not None else None
        if sm is not None and sm.mirror is not None:
            sm.mirror.handled(sm, (self.stream.sm_handled - sm.undispatched) & MASK)
        self._schedule_timer()

    def _defer(self, events: list[Event]) -> list[Event]:
        """``events`` wait (for held work, or the stanza rate): with stream management, the
        stanzas among them are not counted as handled until they are dispatched."""
        sm = self.session.stream_management if self.session is not None else None
        if sm is not None:
            sm.undispatched = sum(type(event) is StanzaReceived for event in events)
        return events

    async def _continue_after(self, work: asyncio.Task[None], events: list[Event]) -> None:
        """The rest of what was read, once ``work`` is done, and any work held while it
        ran (a stanza it dispatched that holds the stream in turn)."""
        while True:
            await asyncio.wait([work])  # its failure is the server's to log, not this stream's
            if self._held is None:
                break
            work, self._held = self._held, None
        if not self.closed:
            self._defer([])
            self._handle(events)

    async def _continue_later(self, seconds: float, events: list[Event]) -> None:
        """Past the stanza rate: the rest of what was read, once the rate allows more."""
        await asyncio.sleep(seconds)
        if not self.closed:
            self._defer([])
            self._handle(events)

    def _run(self, work: Coroutine[Any, Any, None]) -> None:
        """Run an answer that waits on I/O; reading pauses until it is given."""
        self.transport.pause_reading()
        self._task = asyncio.ensure_future(work)
        self._task.add_done_callback(self._answered)

    def _answered(self, task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            log.error("stream answer failed", exc_info=task.exception())
            self.close_stream(StreamError(StreamCondition.INTERNAL_SERVER_ERROR))
            return
        if task is not self._task:
            return  # it started the next answer (another held stanza): keep waiting for that
        self._task = None
        if not self.closed and self._slowed is None:  # else reading resumes when it ends
            self.transport.resume_reading()

    def _schedule_timer(self) -> None:
        deadline = self.stream.get_timer()
        if deadline == self._timer_deadline or self.closed:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_deadline = deadline
        self._timer = None if deadline is None else self._loop.call_at(deadline, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_deadline = None
        self._handle(self.stream.handle_timer(self._loop.time()))

    # --- TLS, SASL and binding -------------------------------------------------------

    async def _start_tls(self) -> None:
        self.flush()
        # Reading is paused since <starttls/>, so whatever arrives from here on came
        # through TLS: keep it for the stream that tls_established() restarts.
        self._early_tls = []
        try:
            await self.transport.start_tls()
        except (OSError, asyncio.CancelledError, ConnectionError) as error:
            log.info("TLS handshake failed: %s", error)
            self.transport.close()
            self.connection_lost()
            return
        finally:
            early, self._early_tls = self._early_tls, None
        self._handle(self.stream.tls_established())
        if early and not self.closed:
            self.data_received(b"".join(early))

    async def _refuse_address(self) -> bool:
        """End the stream (policy-violation) if the client's address is refused for its
        failed sign-ins; returns whether it did."""
        refused_for = await self.host.auth_failures.refused_for(self.transport.peer_address)
        if refused_for is None:
            return False
        if log.isEnabledFor(logging.DEBUG):
            log.debug("refused a sign-in from a banned address", extra={"fields": self._client()})
        self.close_stream(StreamError(StreamCondition.POLICY_VIOLATION, refusal(refused_for)))
        return True

    async def _malformed(self) -> None:
        """A malformed SASL request counts as a failure, from an address not yet refused."""
        if not await self._refuse_address():
            await self.host.auth_failures.failed(self.transport.peer_address)

    async def _authenticate(self, event: AuthRequested) -> None:
        if await self._refuse_address():
            return
        driver = self.host.sasl_driver(event.mechanism)
        if driver is None:  # offered by the stream config, so only a misconfiguration gets here
            self._handle(self.stream.sasl_failure(SaslCondition.INVALID_MECHANISM))
            return
        self._sasl = driver
        self._mechanism = event.mechanism
        await self._answer_sasl(self._sasl.start(event.initial_response))

    async def _continue_authentication(self, event: AuthResponse) -> None:
        if self._sasl is None:
            self._handle(self.stream.sasl_failure(SaslCondition.MALFORMED_REQUEST))
            return
        await self._answer_sasl(self._sasl.step(event.data))

    async def _answer_sasl(self, pending: Awaitable[Outcome]) -> None:
        try:
            outcome = await pending
        except SaslFailure as failure:
            driver, self._sasl = self._sasl, None
            self.host.stats.sign_in_failed(self._mechanism or "unknown")
            self._log_failure(driver, failure.condition, failure.text)
            if counts_against_address(failure):
                await self.host.auth_failures.failed(self.transport.peer_address)
            self._handle(self.stream.sasl_failure(failure.condition, failure.text))
            return
        if isinstance(outcome, Challenge):
            self._handle(self.stream.sasl_challenge(outcome.data))
        else:
            self._sasl = None
            self._grant = outcome.grant
            self.host.stats.signed_in(self._mechanism or "unknown")
            self.host.unbound.add(self)
            self._handle(self.stream.sasl_success(outcome.grant.username, outcome.additional_data))

    def _client(self) -> dict[str, object]:
        return {
            "transport": transport_name(self.transport.kind),
            "address": self.transport.peer_address,
        }

    def _log_sign_in(self, message: str, jid: JID) -> None:
        if not log.isEnabledFor(logging.INFO):
            return  # every sign-in comes here: its fields are not gathered for nothing
        grant = self._grant
        fields = {
            "user": jid.local,
            "resource": jid.resource,
            "mechanism": self._mechanism,
            "client_id": grant.app if grant is not None else None,
        }
        log.info(message, extra={"fields": fields | self._client()})

    def _log_failure(self, driver: SaslDriver | None, condition: SaslCondition, text: str) -> None:
        """A failed sign-in: the username the client gave, never what proves it."""
        fields = {
            "user": driver.claimed if driver is not None else None,
            "mechanism": self._mechanism,
            "condition": str(condition),
            "reason": text or None,
        }
        log.info("sign-in failed", extra={"fields": fields | self._client()})
        self._mechanism = None

    async def _bind(self, event: BindRequested) -> None:
        username = self.stream.username
        assert username is not None
        if self.host.shutting_down:
            error = StanzaError(StanzaCondition.SERVICE_UNAVAILABLE, "the server is stopping")
            self._handle(self.stream.bind_error(event.iq_id, error))
            return
        session = await self.host.sessions.bind(self, username, event.resource, self._grant)
        if session is None:
            return  # the stream ended while the roster loaded
        self.session = session
        self.host.unbound.discard(self)
        self._log_sign_in("signed in", session.jid)
        self._handle(self.stream.bind_result(event.iq_id, session.jid))

    # --- stream management (XEP-0198) ---------------------------------------------------

    def _enable(self, event: EnableRequested) -> None:
        session = self.session
        assert session is not None  # the stream asks only once bound
        # On the session before <enabled/> is written: what is sent after it is counted.
        sm = self.host.sessions.enable(session, resume=event.resume, max_seconds=event.max_seconds)
        window = sm.resume_seconds if sm.id is not None else None
        self._handle(self.stream.sm_enabled(sm.id, window))

    def _resume(self, event: ResumeRequested) -> None:
        """Take over the session ``event.previd`` names; the client gets <resumed/>, then
        what it had not acknowledged, then what waited for it. In a cluster, a session
        this node does not hold may be another node's (alive or dead)."""
        username = self.stream.username
        assert username is not None
        if self.host.shutting_down:
            self._handle(self.stream.sm_resume_failed())
            return
        sessions = self.host.sessions
        try:
            session = sessions.resume(event.previd, username, self._grant, event.handled)
        except ResumeRefused as refused:
            if sessions.resumes_elsewhere:
                self._run(self._resume_elsewhere(event, username, refused))
            else:
                self._handle(self.stream.sm_resume_failed(refused.handled))
            return
        except HandledCountTooHigh as error:
            self.close_stream(error)
            return
        self._resumed(event, session)

    async def _resume_elsewhere(
        self, event: ResumeRequested, username: str, refused: ResumeRefused
    ) -> None:
        sessions = self.host.sessions
        try:
            session, presence = await sessions.take_over(
                event.previd, username, self._grant, event.handled
            )
        except ResumeRefused:
            if not self.closed:
                self._handle(self.stream.sm_resume_failed(refused.handled))
            return
        if self.closed:  # the session waits on this node for its client to come back
            return
        self._resumed(event, session)
        if presence is not None:  # announced again, as when its node died it was gone
            self._dispatch(presence, None, session)

    def _resumed(self, event: ResumeRequested, session: Session) -> None:
        sm = session.stream_management
        assert sm is not None  # only sessions with stream management are resumable
        self.session = session
        self.host.unbound.discard(self)
        self._log_sign_in("signed in and resumed a session", session.jid)
        events = self.stream.sm_resumed(event.previd, sm.handled, session.jid)
        self._write_stream_output()  # <resumed/> ahead of what is sent again
        self.host.sessions.reattach(session, self)
        self._handle(events)

    def _acked(self, handled: int) -> bool:
        """The client's <a/>; False when it acknowledged more than it was sent, which ends
        the stream (XEP-0198 §4). What was written after the last request is asked about
        with the next write, not in a write of its own: a request alone would cost a
        system call each way and a read of the client's answer alone."""
        sm = self.session.stream_management if self.session is not None else None
        assert sm is not None  # the stream takes <a/> only with stream management
        if not sm.acknowledge(handled):
            self.close_stream(HandledCountTooHigh(handled, sm.sent))
            return False
        return True

    def _unacked_overflow(self, sm: StreamManagement) -> None:
        """XEP-0198 leaves the bound to the server: a client that stops acknowledging is
        cut off, as one that stops reading is."""
        unacked = f"more than {sm.max_unacked} stanzas sent and not acknowledged"
        self.close_stream(StreamError(StreamCondition.POLICY_VIOLATION, unacked))
