"""The stream's transitions table, walked: in every state, each input the table accepts
leads to the state it names, and every other input ends the stream with the error the
table names for it (issue 17, point 5). Driven through ``ServerStream``'s public
methods over both framings, wherever a client or the driver can deliver the input."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
from xmpp_helpers import (
    DOMAIN,
    FULL_JID,
    USERNAME,
    bind_request,
    closed_with,
    header,
    plain_auth,
)

from chinwag.xmpp import ns
from chinwag.xmpp.errors import StanzaCondition, StanzaError, StreamCondition
from chinwag.xmpp.events import Event, StreamClosed
from chinwag.xmpp.sasl import SaslCondition
from chinwag.xmpp.states import (
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
from chinwag.xmpp.stream import Framing, ServerStream, StreamConfig

pytestmark = pytest.mark.security

UNKNOWN = ("urn:example:unknown", "thing")
EXTENSION = ("urn:example:extension", "nudge")
"""An element a module takes (``bound_elements``): the input ``Signal.EXTENSION``."""

CONFIG = StreamConfig(DOMAIN, tls_required=False, bound_elements=frozenset({EXTENSION}))
"""STARTTLS offered on a plain TCP stream, and SASL allowed without it: both accepted."""

SERVER_MESSAGE = (ns.SERVER, "message")
"""A stanza's name in a namespace a client does not write stanzas in: just an element."""

ELEMENTS: dict[tuple[str, str], bytes] = {
    STARTTLS: f"<starttls xmlns='{ns.TLS}'/>".encode(),
    AUTH: plain_auth(),
    RESPONSE: f"<response xmlns='{ns.SASL}'>=</response>".encode(),
    ABORT: f"<abort xmlns='{ns.SASL}'/>".encode(),
    MESSAGE: f"<message xmlns='{ns.CLIENT}' to='romeo@{DOMAIN}'><body>hi</body></message>".encode(),
    PRESENCE: f"<presence xmlns='{ns.CLIENT}'/>".encode(),
    IQ: bind_request().replace(b"<iq ", f"<iq xmlns='{ns.CLIENT}' ".encode(), 1),
    UNKNOWN: f"<thing xmlns='{UNKNOWN[0]}'/>".encode(),
    SERVER_MESSAGE: f"<message xmlns='{ns.SERVER}'/>".encode(),
    EXTENSION: f"<nudge xmlns='{EXTENSION[0]}'/>".encode(),
    SM_ENABLE: f"<enable xmlns='{ns.SM}' resume='true'/>".encode(),
    SM_RESUME: f"<resume xmlns='{ns.SM}' previd='some-id' h='0'/>".encode(),
    SM_REQUEST: f"<r xmlns='{ns.SM}'/>".encode(),
    SM_ACK: f"<a xmlns='{ns.SM}' h='0'/>".encode(),
}
"""One element for each key, which its handler accepts wherever the table does."""

INPUTS: list[Input] = [*Signal, *(key for key in ELEMENTS if key != EXTENSION)]

ANSWERS: dict[Signal, Callable[[ServerStream], list[Event]]] = {
    Signal.TLS_ESTABLISHED: lambda stream: stream.tls_established(),
    Signal.SASL_CHALLENGE: lambda stream: stream.sasl_challenge(b"more"),
    Signal.SASL_SUCCESS: lambda stream: stream.sasl_success(USERNAME),
    Signal.SASL_FAILURE: lambda stream: stream.sasl_failure(SaslCondition.NOT_AUTHORIZED),
    Signal.BIND_RESULT: lambda stream: stream.bind_result("bind1", FULL_JID),
    Signal.BIND_ERROR: lambda stream: stream.bind_error(
        "bind1", StanzaError(StanzaCondition.CONFLICT)
    ),
    Signal.SM_ENABLED: lambda stream: stream.sm_enabled("some-id", 300),
    Signal.SM_RESUMED: lambda stream: stream.sm_resumed("some-id", 0, FULL_JID),
    Signal.SM_RESUME_FAILED: lambda stream: stream.sm_resume_failed(),
}

_SIGNED_IN = [Signal.HEADER, AUTH, Signal.SASL_SUCCESS, Signal.HEADER]
PATHS: dict[State, list[Input]] = {
    State.AWAIT_HEADER: [],
    State.NEGOTIATING: [Signal.HEADER],
    State.TLS_PENDING: [Signal.HEADER, STARTTLS],
    State.AUTHENTICATING: [Signal.HEADER, AUTH, Signal.SASL_CHALLENGE],
    State.AWAIT_HEADER_AUTHENTICATED: _SIGNED_IN[:-1],
    State.AUTHENTICATED: _SIGNED_IN,
    State.BOUND: [*_SIGNED_IN, IQ, Signal.BIND_RESULT],
    State.MANAGED: [*_SIGNED_IN, IQ, Signal.BIND_RESULT, SM_ENABLE, Signal.SM_ENABLED],
    State.CLOSED: [Signal.CLOSE],
}
"""How a client and its driver bring a fresh stream to each state (not waiting on the
driver, so that what comes next is handled at once)."""

_HEADER_STATES = {State.AWAIT_HEADER, State.AWAIT_HEADER_AUTHENTICATED}


def apply(stream: ServerStream, key: Input) -> list[Event]:
    """Deliver one input the way a client or the driver does."""
    websocket = stream.framing == "websocket"
    if isinstance(key, Signal) and key in ANSWERS:
        return ANSWERS[key](stream)
    if key is Signal.CLOSE:
        stream.close()
        return []
    if key is Signal.HEADER:
        data = f"<open xmlns='{ns.FRAMING}' to='{DOMAIN}' version='1.0'/>".encode()
        if not websocket:
            data = header()
    elif key is Signal.STREAM_END:
        data = f"<close xmlns='{ns.FRAMING}'/>".encode() if websocket else b"</stream:stream>"
    elif key is Signal.EXTENSION:
        data = ELEMENTS[EXTENSION]
    else:
        assert isinstance(key, tuple)
        data = ELEMENTS[key]
    if websocket:
        return stream.receive_frame(data, 0.0)
    return stream.receive_data(data, 0.0)


def deliverable(framing: Framing, state: State, key: Input) -> bool:
    """Whether ``key`` can reach the table in ``state``: on TCP a header comes only at
    the start of a document and an element or closing tag only after it; STARTTLS is
    not offered over WebSocket (its handler refuses it), so TLS_PENDING is TCP's alone;
    while the TLS handshake runs, what the client sent waits and is then discarded."""
    if key is Signal.EXTENSION:
        key = EXTENSION  # the client sends it like any element
    if isinstance(key, Signal) and key not in (Signal.HEADER, Signal.STREAM_END):
        return framing == "tcp" or state is not State.TLS_PENDING
    if framing == "websocket":
        return state is not State.TLS_PENDING and (state, key) != (State.NEGOTIATING, STARTTLS)
    if state is State.TLS_PENDING:
        return False
    return (key is Signal.HEADER) == (state in _HEADER_STATES)


def reach(framing: Framing, state: State) -> ServerStream:
    stream = ServerStream(CONFIG, 0.0, framing=framing)
    for key in PATHS[state]:
        apply(stream, key)
    assert stream.state is state
    stream.frames_to_send()
    return stream


def cases() -> Iterator[object]:
    for framing in ("tcp", "websocket"):
        for state in State:
            for key in INPUTS:
                if deliverable(framing, state, key):
                    name = key.name if isinstance(key, Signal) else key[1]
                    if key in (UNKNOWN, SERVER_MESSAGE):
                        name = f"{key[0]}:{key[1]}"
                    yield pytest.param(framing, state, key, id=f"{framing}-{state.name}-{name}")


@pytest.mark.parametrize(("framing", "state", "key"), list(cases()))
def test_each_input_in_each_state_does_what_the_table_says(
    framing: Framing, state: State, key: Input
) -> None:
    stream = reach(framing, state)
    events = apply(stream, key)
    if state is State.CLOSED:
        assert events == [] and stream.frames_to_send() == ()
        assert stream.state is State.CLOSED
    elif key in TRANSITIONS[state]:
        assert stream.state is TRANSITIONS[state][key]
        if key is Signal.STREAM_END:
            assert closed_with(events, None), events
        else:
            assert not any(isinstance(event, StreamClosed) for event in events), events
    else:
        refusal = REFUSALS[state][kind_of(key)]
        assert closed_with(events, refusal.condition), events
        closed = events[-1]
        assert isinstance(closed, StreamClosed) and closed.error is not None
        as_sent = EXTENSION if key is Signal.EXTENSION else key
        assert closed.error.text == refusal.error(as_sent).text
        assert stream.state is State.CLOSED


def test_the_walk_covers_every_input_of_the_table() -> None:
    in_table = {key for row in TRANSITIONS.values() for key in row}
    assert in_table <= set(INPUTS)


def test_every_state_names_an_error_for_what_it_refuses() -> None:
    for state, row in TRANSITIONS.items():
        if state is State.CLOSED:
            continue
        for key in INPUTS:
            if key not in row:
                assert kind_of(key) in REFUSALS[state], (state, key)


def test_either_side_may_end_the_stream_in_any_state() -> None:
    for state, row in TRANSITIONS.items():
        if state is not State.CLOSED:
            assert row[Signal.STREAM_END] is row[Signal.CLOSE] is State.CLOSED


def reachable(*without: Input) -> set[State]:
    """The states a stream can get to from its start, if never given any of ``without``."""
    reached, todo = {State.AWAIT_HEADER}, [State.AWAIT_HEADER]
    while todo:
        for key, then in TRANSITIONS[todo.pop()].items():
            if key not in without and then not in reached:
                reached.add(then)
                todo.append(then)
    return reached


def test_every_state_is_reached_from_the_start() -> None:
    assert reachable() == set(State)


def test_no_way_to_a_signed_in_state_goes_around_sasl_success() -> None:
    signed_in = {State.AWAIT_HEADER_AUTHENTICATED, State.AUTHENTICATED, State.BOUND}
    assert not reachable(Signal.SASL_SUCCESS) & signed_in


def test_no_way_to_a_bound_state_goes_around_the_drivers_answer() -> None:
    """A resource is bound by the driver's bind result, or a former session resumed by
    its answer to <resume/> (XEP-0198): nothing else leads there."""
    assert State.BOUND not in reachable(Signal.BIND_RESULT)
    assert not reachable(Signal.BIND_RESULT, Signal.SM_RESUMED) & {State.BOUND, State.MANAGED}


def test_stanzas_are_accepted_only_once_bound_but_the_bind_request() -> None:
    for state, row in TRANSITIONS.items():
        accepted = {MESSAGE, PRESENCE, IQ} & row.keys()
        expected = {
            State.AUTHENTICATED: {IQ},
            State.BOUND: {MESSAGE, PRESENCE, IQ},
            State.MANAGED: {MESSAGE, PRESENCE, IQ},
        }.get(state, set())
        assert accepted == expected, state


def test_a_bound_stream_stays_bound_until_it_ends() -> None:
    """Enabling stream management is the one way on, and there is none back."""
    ends = (Signal.STREAM_END, Signal.CLOSE)
    for key, then in TRANSITIONS[State.BOUND].items():
        managed = key is Signal.SM_ENABLED
        assert then is (State.CLOSED if key in ends else State.MANAGED if managed else State.BOUND)
    for key, then in TRANSITIONS[State.MANAGED].items():
        assert then is (State.CLOSED if key in ends else State.MANAGED)


def test_acks_are_accepted_only_once_stream_management_is_on() -> None:
    for state, row in TRANSITIONS.items():
        accepted = {SM_REQUEST, SM_ACK} & row.keys()
        assert accepted == ({SM_REQUEST, SM_ACK} if state is State.MANAGED else set()), state


def test_a_failed_or_aborted_exchange_lets_the_client_try_again() -> None:
    """RFC 6120 6.4.5: the client may retry, up to the server's limit of failures."""
    for key in (ABORT, Signal.SASL_FAILURE):
        assert AUTH in TRANSITIONS[TRANSITIONS[State.AUTHENTICATING][key]]


# The driver's answers are checked against the table too: an answer to a question the
# stream did not ask (a bug of the server's) ends the stream, and never signs anyone in.


def test_sasl_success_without_an_exchange_ends_the_stream() -> None:
    stream = ServerStream(CONFIG, 0.0)
    stream.receive_data(header(), 0.0)
    events = stream.sasl_success(USERNAME)
    assert closed_with(events, StreamCondition.INTERNAL_SERVER_ERROR)
    assert stream.username is None
    assert b"<success" not in stream.data_to_send()


def test_bind_result_before_authentication_binds_nothing() -> None:
    stream = ServerStream(CONFIG, 0.0)
    stream.receive_data(header(), 0.0)
    events = stream.bind_result("bind1", FULL_JID)
    assert closed_with(events, StreamCondition.INTERNAL_SERVER_ERROR)
    assert stream.jid is None and stream.auth_deadline is not None
