"""An IQ handler that fails: the sender gets <internal-server-error/>, and the log names
the request without its content, which may hold a password (XEP-0077)."""

from __future__ import annotations

import pytest
from module_harness import MakeHarness

from chinwag.server.api import ModuleAPI
from chinwag.xmpp.element import Element

NS = "urn:example:failing"


async def test_the_log_of_a_failed_iq_holds_no_payload(
    harness: MakeHarness, caplog: pytest.LogCaptureFixture
) -> None:
    host = await harness(())
    await host.add_users("alice")

    async def fail(iq: Element) -> Element:
        raise RuntimeError("the handler broke")

    ModuleAPI(host.host, "failing").iq_handler("set", NS, "query", fail)
    alice = await host.bind("alice", "phone")

    host.send(
        alice,
        f"<iq type='set' id='p1' to='localhost'><query xmlns='{NS}'><password>hunter2-x</password></query></iq>",
    )
    [answer] = await host.arrived(alice, 1)

    assert "internal-server-error" in answer
    [failed] = [line for line in caplog.records if line.exc_info]
    assert failed.getMessage() == f"IQ handler failed on a set of {{{NS}}}query"
    assert "hunter2-x" not in caplog.text
