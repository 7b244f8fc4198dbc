"""The session manager (server/sessions.py): bind and replace, detach from a transport,
reattach to a new one, and end, with what was routed meanwhile kept or routed again."""

from __future__ import annotations

import asyncio

import pytest
from module_harness import Harness, MakeHarness

from chinwag.server import sessions
from chinwag.server.hooks import SESSION_CLOSED
from chinwag.server.session import Session, SessionState
from chinwag.xmpp.errors import StreamCondition, StreamError
from chinwag.xmpp.jid import JID

BOB = JID.parse("bob@localhost/desk")


def chat(to: str, body: str) -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


def bodies(received: list[str]) -> list[str]:
    return [text.split("<body>")[1].split("</body>")[0] for text in received]


async def contacts(harness: MakeHarness, *modules: str) -> tuple[Harness, list[Session]]:
    host = await harness(("presence", "message", *modules))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    closed: list[Session] = []
    host.hooks.add(SESSION_CLOSED, closed.append)
    return host, closed


async def test_binding_a_bound_resource_replaces_the_older_session(
    harness: MakeHarness,
) -> None:
    host, closed = await contacts(harness)
    older = await host.bind("bob", "desk")
    replaced = older.session
    newer = await host.bind("bob", "desk")

    assert older.error is not None and older.error.condition is StreamCondition.CONFLICT
    assert older.closed and not newer.closed
    assert replaced is not None and closed == [replaced]
    assert replaced.state is SessionState.ENDED
    assert host.sessions.get(BOB) is newer.session is not replaced


async def test_a_dropped_transport_ends_its_session_at_once(harness: MakeHarness) -> None:
    host, closed = await contacts(harness)
    bob = await host.bind("bob", "desk")
    session = bob.session

    bob.close_stream()

    assert closed == [session]
    assert session is not None and session.state is SessionState.ENDED
    assert host.sessions.get(BOB) is None


async def test_a_detached_session_keeps_what_is_routed_to_it_for_the_next_transport(
    harness: MakeHarness,
) -> None:
    host, closed = await contacts(harness)
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    host.received(bob)
    session = bob.session
    assert session is not None

    host.sessions.detach(session, hold_seconds=60)
    host.send(alice, chat("bob@localhost/desk", "one"))
    host.send(alice, chat("bob@localhost", "two"))

    assert session.state is SessionState.DETACHED and session.transport_kind == "detached"
    assert host.sessions.get(BOB) is session and session.available
    assert host.received(bob) == [] and closed == []

    resumed = host.connect()
    host.sessions.reattach(session, resumed)
    resumed.session = session
    host.send(alice, chat("bob@localhost/desk", "three"))

    assert session.state is SessionState.BOUND and session.connection is resumed
    assert bodies(host.received(resumed)) == ["one", "two", "three"]
    with pytest.raises(ValueError, match="not detached"):
        host.sessions.reattach(session, host.connect())


async def test_a_detached_session_ends_when_its_time_is_up_and_its_stanzas_move_on(
    harness: MakeHarness,
) -> None:
    host, closed = await contacts(harness, "offline")
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    session = bob.session
    assert session is not None

    host.sessions.detach(session, hold_seconds=0.05)
    host.send(alice, chat("bob@localhost/desk", "kept offline"))
    host.send(alice, "<iq type='get' id='q1' to='bob@localhost/desk'><query xmlns='x:y'/></iq>")
    await asyncio.sleep(0.2)
    await host.settle()

    assert closed == [session] and session.state is SessionState.ENDED
    assert host.sessions.get(BOB) is None
    stored = await host.services.offline.fetch("bob")
    assert bodies([m.stanza for m in stored]) == ["kept offline"]
    [answer] = host.received(alice)
    assert 'id="q1"' in answer and "service-unavailable" in answer


async def test_a_detached_session_that_keeps_too_much_ends(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "MAX_PARKED", 2)
    host, closed = await contacts(harness, "offline")
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    session = bob.session
    assert session is not None
    host.sessions.detach(session, hold_seconds=60)

    for body in ("1", "2", "3"):
        host.send(alice, chat("bob@localhost/desk", body))
    await host.settle()

    assert closed == [session] and session.state is SessionState.ENDED
    stored = await host.services.offline.fetch("bob")
    assert bodies([m.stanza for m in stored]) == ["1", "2", "3"]


def _logged(caplog: pytest.LogCaptureFixture) -> list[tuple[str, str | None, object]]:
    return [
        (line.getMessage(), line.fields["resource"], line.fields["reason"])  # type: ignore[attr-defined]
        for line in caplog.records
        if line.name == "chinwag.server.sessions"
    ]


async def test_parking_and_each_end_are_logged_with_their_reason(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level("INFO", logger="chinwag.server.sessions")
    monkeypatch.setattr(sessions, "MAX_PARKED", 1)
    host, _closed = await contacts(harness)
    alice = await host.bind("alice", "phone")
    waiting, overflowing = await host.bind("bob", "desk"), await host.bind("bob", "tablet")
    assert waiting.session is not None and overflowing.session is not None

    host.sessions.detach(waiting.session, hold_seconds=0.05)
    host.sessions.detach(overflowing.session, hold_seconds=60)
    for body in ("1", "2"):
        host.send(alice, chat("bob@localhost/tablet", body))
    await asyncio.sleep(0.1)
    alice.close_stream()

    assert _logged(caplog) == [
        ("session parked for resumption", "desk", "connection lost"),
        ("session parked for resumption", "tablet", "connection lost"),
        ("session ended", "tablet", "too many stanzas waiting"),
        ("session ended", "desk", "resumption expired"),
        ("session ended", "phone", "connection lost"),
    ]


@pytest.mark.parametrize(
    ("condition", "reason"),
    [
        (StreamCondition.CONNECTION_TIMEOUT, "timeout"),
        (StreamCondition.CONFLICT, "conflict"),
        (StreamCondition.SYSTEM_SHUTDOWN, "server shutdown"),
        (StreamCondition.RESET, "password changed"),
        (StreamCondition.POLICY_VIOLATION, "stream error"),
    ],
)
def test_the_reason_a_stream_error_stands_for(condition: StreamCondition, reason: str) -> None:
    assert sessions.end_reason(StreamError(condition)) == reason
    assert sessions.end_reason(None) == "closed by server"
