"""XEP-0198 counts as slixmpp's xep_0198 keeps them: the h of chinwag's <a/> and
<resumed/> is the number of stanzas the client sent, so slixmpp finds nothing
inconsistent when it resumes and sends again only what the server did not handle.

(slixmpp counts only what goes through its send filters: a test that writes stanzas
with ``send_raw`` on a stream with stream management makes it log "Inconsistent
sequence numbers" at resumption, the server's h counting stanzas slixmpp did not.)
"""

from __future__ import annotations

import asyncio
import logging

import pytest

from .im_support import Peer, body, drop_and_resume, message
from .support import DOMAIN, TIMEOUT, NewClient, ServerHandle, sign_in

INCONSISTENT = "Inconsistent sequence numbers"


async def test_resumed_h_is_what_slixmpp_sent_and_it_finds_nothing_inconsistent(
    server: ServerHandle, new_client: NewClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="slixmpp.plugins.xep_0198")
    bob = Peer(new_client(server, "bob", "desk"))
    await sign_in(bob.client, server.host, server.port)
    bob.send("<presence/>")
    client = new_client(server, "alice", "phone")
    client.register_plugin("xep_0198")
    alice = Peer(client)
    await sign_in(client, server.host, server.port)
    sm = client.plugin["xep_0198"]
    client.send_presence()
    for _ in range(3):
        await client.plugin["xep_0199"].ping(DOMAIN, timeout=TIMEOUT)
    sm.request_ack()
    async with asyncio.timeout(TIMEOUT):
        while sm.last_ack != sm.seq or not sm.seq:
            await asyncio.sleep(0.01)
    acked = sm.seq
    for index in range(2):  # unacknowledged when the connection drops
        client.send_message(f"bob@{DOMAIN}", f"after {index}", mtype="chat")

    await drop_and_resume(alice, server)

    client.send_message(f"bob@{DOMAIN}", "last", mtype="chat")
    got = []
    while not got or got[-1] != "last":
        got.append(body(await bob.next(message())))
    assert got == ["after 0", "after 1", "last"]  # none lost, none handled twice
    assert sm.seq == acked + 3
    assert INCONSISTENT not in caplog.text, caplog.text
