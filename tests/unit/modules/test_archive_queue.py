"""The archive's queue of messages waiting for the writer, and the stamp each message
gets on its way (``modules/mam.py``)."""

from __future__ import annotations

import gc
from types import SimpleNamespace
from typing import Any

import pytest

from chinwag.config import ArchiveSettings
from chinwag.modules import mam
from chinwag.server.dispatch import Routed
from chinwag.store.archive import Prefs
from chinwag.xmpp import ns
from chinwag.xmpp.jid import JID
from chinwag.xmpp.xml import parse_stanza


def archive_of(spawned: list[Any]) -> mam.Archive:
    """An archive whose writer's task is kept in ``spawned``, never run."""
    api = SimpleNamespace(
        services=SimpleNamespace(archive=None),
        domain=SimpleNamespace(domain="localhost"),
        settings=SimpleNamespace(archive=ArchiveSettings()),
        spawn=spawned.append,
    )
    return mam.Archive(api)  # type: ignore[arg-type]


def test_queued_messages_leave_the_garbage_collectors_lists() -> None:
    """Tens of thousands of messages wait for the writer under load: queued as plain
    tuples, they stop being tracked at the collector's first look, where a tuple
    subclass's would be walked by every collection until stored."""
    spawned: list[Any] = []
    archive = archive_of(spawned)

    for n in range(3):
        stanza = f"<message type='chat'><body>{n}</body></message>"
        assert archive.archive("alice", "bob@localhost", "desk", n % 2 == 0, stanza, n)
    gc.collect()

    queued = archive.writer._queue.messages
    assert [row[1] for row in queued] == [0, 1, 2]
    assert not any(gc.is_tracked(row) for row in queued)
    for work in spawned:
        work.close()


def test_only_preferences_that_keep_every_peer_skip_the_peer_lists() -> None:
    """``Prefs.keeps_everything`` lets the routing path skip the lists: it holds for
    ``always`` with nothing in ``never``, and for no other preferences."""
    assert Prefs("always").keeps_everything
    assert Prefs("always", always=frozenset({"bob@localhost"})).keeps_everything
    assert not Prefs("always", never=frozenset({"bob@localhost"})).keeps_everything
    assert not Prefs("roster").keeps_everything
    assert not Prefs("never", always=frozenset({"bob@localhost"})).keeps_everything
    never_bob = Prefs("always", never=frozenset({"bob@localhost"}))
    assert not mam.listed(never_bob, "bob@localhost")
    assert mam.listed(never_bob, "carol@localhost")


def test_each_recipient_s_stamp_is_right_however_few_are_kept(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The start of each user's <stanza-id/> is kept between messages for at most
    ``MAX_STAMPS`` users; the stamp spliced into the wire form a message came with says
    what its element does."""
    monkeypatch.setattr(mam, "MAX_STAMPS", 2)
    spawned: list[Any] = []
    archive = archive_of(spawned)
    for n in (0, 1, 2, 0, 3):
        message = parse_stanza(
            f"<message xmlns='jabber:client' from='bob@localhost/desk' to='u{n}@localhost' "
            "type='chat'><body>hi</body></message>"
        )
        message.wire = message.serialize().encode()
        archive.on_route(Routed(message, JID.parse(f"u{n}@localhost"), None))
        stamp = message.find("stanza-id", ns.STANZA_ID)
        assert stamp is not None and stamp.attrs["by"] == f"u{n}@localhost"
        assert message.wire is not None
        assert parse_stanza(message.wire.decode()) == message
        assert len(archive._stamps) <= 2
    for work in spawned:
        work.close()
