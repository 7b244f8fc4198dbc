"""XEP-0198 in the session manager (server/sessions.py, server/stream_management.py): a
resumable session waits when its transport drops and is resumed with exactly what its
client missed; when it ends, for whatever reason, what the client had not acknowledged
is routed again with what waited, stamped with when it was first sent."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from module_harness import Harness, MakeHarness, MemoryConnection

from chinwag.config import StreamManagementSettings
from chinwag.server import sessions
from chinwag.server.auth import Grant
from chinwag.server.hooks import SESSION_CLOSED
from chinwag.server.session import Session, SessionState
from chinwag.server.sessions import Parking, ResumeRefused
from chinwag.server.stream_management import REQUEST_SPACING_SECONDS, StreamManagement, late
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition
from chinwag.xmpp.sm import MASK, HandledCountTooHigh
from chinwag.xmpp.xml import parse_stanza


def chat(to: str, body: str) -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


def bodies(stanzas: list[str]) -> list[str]:
    return [text.split("<body>")[1].split("</body>")[0] for text in stanzas if "<body>" in text]


def stamps(stanzas: list[str]) -> list[datetime]:
    found = []
    for text in stanzas:
        delay = parse_stanza(text).find("delay", ns.DELAY)
        assert delay is not None, text
        assert delay.get("from") == "localhost"
        found.append(datetime.fromisoformat((delay.get("stamp") or "").replace("Z", "+00:00")))
    return found


async def pair(harness: MakeHarness, *modules: str, **settings: object) -> Harness:
    host = await harness(("presence", "message", *modules), **settings)
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    return host


async def managed(host: Harness, resume: bool = True) -> tuple[MemoryConnection, Session]:
    """bob, available, with stream management on; nothing he was sent is unacknowledged."""
    bob = await host.bind("bob", "desk")
    session = bob.session
    assert session is not None
    sm = host.sessions.enable(session, resume=resume, max_seconds=None)
    host.send(bob, "<presence/>")
    await host.settle()  # stored messages (none) delivered: live ones flow
    host.received(bob)
    sm.acknowledge(sm.sent)
    return bob, session


def sm_of(session: Session) -> StreamManagement:
    assert session.stream_management is not None
    return session.stream_management


# --- enabling ----------------------------------------------------------------------------


async def test_the_window_is_the_default_or_what_the_client_asks_up_to_the_maximum(
    harness: MakeHarness,
) -> None:
    host = await pair(
        harness,
        stream_management={"resume_timeout_seconds": 100, "max_resume_timeout_seconds": 200},
    )
    windows = []
    for asked in (None, 50, 500):
        session = (await host.bind("bob", f"r{asked}")).session
        assert session is not None
        sm = host.sessions.enable(session, resume=True, max_seconds=asked)
        windows.append(sm.resume_seconds)
        assert sm.id is not None and len(sm.id) >= 24
    assert windows == [100, 50, 200]
    session = (await host.bind("bob", "plain")).session
    assert session is not None
    assert host.sessions.enable(session, resume=False, max_seconds=None).id is None


async def test_no_resumption_when_the_window_is_zero(harness: MakeHarness) -> None:
    host = await pair(harness, stream_management={"resume_timeout_seconds": 0})
    session = (await host.bind("bob", "desk")).session
    assert session is not None
    assert host.sessions.enable(session, resume=True, max_seconds=None).id is None


# --- waiting and resuming ---------------------------------------------------------------------


async def test_a_dropped_resumable_session_waits_and_resumes_with_what_was_missed(
    harness: MakeHarness,
) -> None:
    host = await pair(harness)
    alice = await host.bind("alice", "phone")
    bob, session = await managed(host)
    sm = sm_of(session)
    host.send(alice, chat("bob@localhost/desk", "one"))
    host.send(alice, chat("bob@localhost", "two"))
    assert bodies(host.received(bob)) == ["one", "two"]
    seen = sm.acked + 1  # bob's client got "one" before its transport went

    bob.close_stream()
    host.send(alice, chat("bob@localhost", "three"))

    assert session.state is SessionState.DETACHED and host.sessions.get(session.jid) is session
    parking = session.connection
    assert isinstance(parking, Parking)
    loop = asyncio.get_running_loop()
    assert parking.expiry.when() - loop.time() == pytest.approx(300, abs=5)

    assert host.sessions.resume(sm.id or "", "bob", None, seen) is session
    resumed = host.connect()
    resumed.session = session
    host.sessions.reattach(session, resumed)
    got = host.received(resumed)
    assert bodies(got) == ["two", "three"]
    first, second = stamps(got)
    assert first <= second <= datetime.now(UTC)
    assert sm.sent == (seen + 2) & MASK and len(sm.unacked) == 2
    host.send(alice, chat("bob@localhost/desk", "four"))
    assert bodies(host.received(resumed)) == ["four"]
    assert b"delay" not in sm.unacked[-1]


def test_a_stanza_sent_again_keeps_its_first_delay() -> None:
    stanza = parse_stanza(chat("bob@localhost", "x"))
    once = late(stanza, 1_000_000_000.0, "localhost")
    assert once is not stanza and stanza.find("delay", ns.DELAY) is None
    assert late(once, 2_000_000_000.0, "localhost") is once
    delay = once.find("delay", ns.DELAY)
    assert delay is not None and delay.get("stamp") == "2001-09-09T01:46:40.000Z"
    iq = parse_stanza("<iq type='get' id='1'><ping xmlns='urn:xmpp:ping'/></iq>")
    assert late(iq, 1.0, "localhost") is iq


def test_a_stanza_with_a_client_delay_still_gets_the_servers() -> None:
    stanza = parse_stanza(
        "<message to='bob@localhost' type='chat'><body>x</body>"
        "<delay xmlns='urn:xmpp:delay' from='alice@localhost/desk' stamp='2001-01-01T00:00:00Z'/>"
        "</message>"
    )
    sent_again = late(stanza, 1_000_000_000.0, "localhost")
    assert [delay.get("from") for delay in sent_again.children if delay.tag == "delay"] == [
        "alice@localhost/desk",
        "localhost",
    ]


async def test_resuming_a_session_whose_stream_is_still_open_closes_that_stream(
    harness: MakeHarness,
) -> None:
    host = await pair(harness)
    bob, session = await managed(host)
    closed: list[Session] = []
    host.hooks.add(SESSION_CLOSED, closed.append)

    assert host.sessions.resume(sm_of(session).id or "", "bob", None, sm_of(session).sent)

    assert bob.closed and bob.error is not None
    assert bob.error.condition is StreamCondition.CONFLICT
    assert session.state is SessionState.DETACHED and closed == []
    resumed = host.connect()
    host.sessions.reattach(session, resumed)
    assert session.connection is resumed and session.state is SessionState.BOUND


async def test_only_the_same_account_and_app_resume_a_session(harness: MakeHarness) -> None:
    host = await pair(harness)
    connection = host.connect()
    session = await host.sessions.bind(connection, "bob", "desk", Grant("bob", app="chat-app"))
    assert session is not None
    connection.session = session
    sm_id = host.sessions.enable(session, resume=True, max_seconds=None).id or ""
    connection.close_stream()

    for username, grant in (
        ("alice", Grant("alice", app="chat-app")),
        ("bob", Grant("bob")),
        ("bob", Grant("bob", app="other-app")),
    ):
        with pytest.raises(ResumeRefused) as refused:
            host.sessions.resume(sm_id, username, grant, 0)
        assert refused.value.handled is None
    with pytest.raises(ResumeRefused):
        host.sessions.resume("no-such-id", "bob", Grant("bob", app="chat-app"), 0)

    grant = Grant("bob", app="chat-app", app_password=7)
    assert host.sessions.resume(sm_id, "bob", grant, 0) is session
    assert session.grant is grant


async def test_an_ack_of_more_than_was_sent_refuses_resumption(harness: MakeHarness) -> None:
    host = await pair(harness)
    bob, session = await managed(host)
    sm = sm_of(session)
    bob.close_stream()

    with pytest.raises(HandledCountTooHigh) as too_high:
        host.sessions.resume(sm.id or "", "bob", None, sm.sent + 1)
    assert (too_high.value.handled, too_high.value.sent) == (sm.sent + 1, sm.sent)
    assert session.state is SessionState.DETACHED


# --- ending ---------------------------------------------------------------------------------------


async def test_when_the_window_closes_what_was_missed_goes_on_with_its_first_stamps(
    harness: MakeHarness,
) -> None:
    host = await pair(harness, "offline")
    alice = await host.bind("alice", "phone")
    bob, session = await managed(host)
    sm = sm_of(session)
    sm.handled = 4
    host.send(alice, chat("bob@localhost", "unacked"))
    host.send(alice, "<iq type='get' id='q1' to='bob@localhost/desk'><query xmlns='x:y'/></iq>")
    host.received(bob)
    before = datetime.now(UTC)
    host.sessions.detach(session, hold_seconds=0.05)
    await asyncio.sleep(0.01)  # stamps have milliseconds
    host.send(alice, chat("bob@localhost/desk", "parked"))
    await asyncio.sleep(0.2)
    await host.settle()

    assert session.state is SessionState.ENDED and not sm.unacked
    stored = await host.services.offline.fetch("bob")
    assert bodies([m.stanza for m in stored]) == ["unacked", "parked"]
    first, second = stamps([m.stanza for m in stored])
    assert first <= before <= second
    [answer] = host.received(alice)
    assert 'id="q1"' in answer and "service-unavailable" in answer
    with pytest.raises(ResumeRefused) as refused:
        host.sessions.resume(sm.id or "", "bob", None, 0)
    assert refused.value.handled == 4
    with pytest.raises(ResumeRefused) as refused:
        host.sessions.resume(sm.id or "", "alice", None, 0)
    assert refused.value.handled is None


async def test_without_resumption_a_dropped_session_ends_and_reroutes_what_was_missed(
    harness: MakeHarness,
) -> None:
    host = await pair(harness, "offline")
    alice = await host.bind("alice", "phone")
    bob, session = await managed(host, resume=False)
    host.send(alice, chat("bob@localhost", "written to a dead socket"))

    bob.close_stream()
    await host.settle()

    assert session.state is SessionState.ENDED
    stored = await host.services.offline.fetch("bob")
    assert bodies([m.stanza for m in stored]) == ["written to a dead socket"]


async def test_what_was_acknowledged_is_not_routed_again(harness: MakeHarness) -> None:
    host = await pair(harness, "offline")
    alice = await host.bind("alice", "phone")
    _, session = await managed(host, resume=False)
    for body in ("a", "b", "c"):
        host.send(alice, chat("bob@localhost", body))
    sm = sm_of(session)
    assert sm.acknowledge((sm.acked + 2) & MASK)

    host.sessions.end(session)
    await host.settle()

    stored = await host.services.offline.fetch("bob")
    assert bodies([m.stanza for m in stored]) == ["c"]


async def test_binding_the_resource_of_a_waiting_session_replaces_it(
    harness: MakeHarness,
) -> None:
    host = await pair(harness, "offline")
    alice = await host.bind("alice", "phone")
    bob, session = await managed(host)
    sm_id = sm_of(session).id or ""
    host.send(alice, chat("bob@localhost/desk", "missed"))
    bob.close_stream()

    newer = await host.bind("bob", "desk")
    await host.settle()

    assert session.state is SessionState.ENDED
    assert host.sessions.get(session.jid) is newer.session
    assert host.received(newer) == []  # nothing ahead of its bind result
    stored = await host.services.offline.fetch("bob")
    assert bodies([m.stanza for m in stored]) == ["missed"]
    with pytest.raises(ResumeRefused):
        host.sessions.resume(sm_id, "bob", None, 0)


async def test_ended_ids_are_remembered_up_to_a_bound(
    harness: MakeHarness, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sessions, "ENDED_IDS_KEPT", 2)
    host = await pair(harness)
    ids = []
    for resource in ("a", "b", "c"):
        connection = await host.bind("bob", resource)
        assert connection.session is not None
        sm = host.sessions.enable(connection.session, resume=True, max_seconds=None)
        sm.handled = 1
        ids.append(sm.id or "")
        host.sessions.end(connection.session)
    handled = []
    for sm_id in ids:
        with pytest.raises(ResumeRefused) as refused:
            host.sessions.resume(sm_id, "bob", None, 0)
        handled.append(refused.value.handled)
    assert handled == [None, 1, 1]


# --- the counts --------------------------------------------------------------------------------


def queue(sm: StreamManagement, count: int) -> None:
    for number in range(count):
        stanza = Element("message", attrs={"id": str(number)})
        sm.unacked.append(stanza.encoded())


def test_acknowledging_counts_modulo_two_to_the_32() -> None:
    sm = StreamManagement(None, 0, StreamManagementSettings())
    sm.acked = MASK - 1
    queue(sm, 4)
    assert sm.sent == 2

    assert sm.acknowledge(1)  # MASK, 0 and 1: three stanzas
    assert sm.unacked == [b'<message id="3"/>']
    assert not sm.acknowledge(3) and not sm.acknowledge(MASK)  # more than was sent; going back
    assert sm.acked == 1 and len(sm.unacked) == 1
    assert sm.acknowledge(2) and sm.sent == 2 and not sm.unacked


def test_a_write_asks_once_enough_wait_or_a_second_after_the_last_request(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A write asks once ``request_ack_after`` stanzas are unacknowledged, or fewer when the
    last request is ``REQUEST_SPACING_SECONDS`` old; never while a request is out."""
    now = [100.0]
    monkeypatch.setattr("chinwag.server.stream_management.time", lambda: now[0])
    sm = StreamManagement(None, 0, StreamManagementSettings(request_ack_after=3))
    queue(sm, 1)
    assert sm.written()  # the first request: none before it
    queue(sm, 1)
    assert not sm.written()  # one is out
    assert sm.acknowledge(1)
    queue(sm, 1)
    assert not sm.written()  # two wait, and the last request is new
    queue(sm, 1)
    assert sm.written() and not sm.written()  # three
    assert sm.acknowledge(4)
    now[0] += REQUEST_SPACING_SECONDS
    queue(sm, 1)
    assert sm.written()  # the last request is old enough: one is asked about


def test_every_write_asks_with_a_count_of_one(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr("chinwag.server.stream_management.time", lambda: 100.0)
    sm = StreamManagement(None, 0, StreamManagementSettings(request_ack_after=1))
    for count in range(1, 4):
        queue(sm, 1)
        assert sm.written()
        assert sm.acknowledge(count)


def test_the_sweep_asks_about_what_no_request_covers() -> None:
    sm = StreamManagement(None, 0, StreamManagementSettings())
    assert not sm.ask()  # nothing unacknowledged
    queue(sm, 1)
    assert sm.ask() and not sm.ask()
    assert not sm.written()  # the sweep's request is out
    assert sm.acknowledge(1) and not sm.ask()


def test_taking_what_was_not_acknowledged_keeps_the_count() -> None:
    sm = StreamManagement(None, 0, StreamManagementSettings())
    sm.acked = MASK
    queue(sm, 2)
    taken = sm.take_unacked()
    assert [stanza.get("id") for stanza, _ in taken] == ["0", "1"] and not sm.unacked
    assert sm.sent == MASK and sm.acknowledge(MASK)


def test_each_stanza_taken_back_keeps_when_it_was_written(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Written in two turns, one stamp each; what was acknowledged loses its stamp, and a
    stanza queued but never written is taken back as written now."""
    clock = iter([100.0, 200.0, 300.0, 400.0])
    monkeypatch.setattr("chinwag.server.stream_management.time", lambda: next(clock))
    sm = StreamManagement(None, 0, StreamManagementSettings())
    queue(sm, 3)
    sm.written()  # 100: ids 0, 1, 2
    sm.written()  # nothing new: no stamp, no clock read
    queue(sm, 2)
    sm.written()  # 200: ids 0, 1 again
    assert sm.acknowledge(2)
    queue(sm, 1)  # never written
    taken = sm.take_unacked()  # 300
    assert [(stanza.get("id"), since) for stanza, since in taken] == [
        ("2", 100.0),
        ("0", 200.0),
        ("1", 200.0),
        ("0", 300.0),
    ]
    queue(sm, 1)
    sm.written()
    assert sm.acknowledge(sm.sent) and not sm.unacked


def test_the_resume_window_cannot_exceed_its_maximum() -> None:
    with pytest.raises(ValueError, match="must not exceed"):
        StreamManagementSettings(resume_timeout_seconds=600)
