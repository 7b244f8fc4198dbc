"""The delivery pipeline's hooks, as a module would use them: before routing, on each
delivery to a session, on falling to offline storage and on a bounce."""

from __future__ import annotations

from dataclasses import replace

from module_harness import Harness, MakeHarness

from chinwag.server.api import ModuleAPI
from chinwag.server.dispatch import Routed
from chinwag.server.hooks import DELIVER_BOUNCED, DELIVER_OFFLINE, DELIVER_SESSION, ROUTE_BEFORE
from chinwag.server.session import Session
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StanzaError
from chinwag.xmpp.jid import JID


def chat(to: str, body: str = "hi") -> str:
    return f"<message to='{to}' type='chat'><body>{body}</body></message>"


async def contacts(harness: MakeHarness) -> Harness:
    host = await harness(("presence", "message"))
    await host.add_users("alice", "bob")
    await host.add_contacts("alice", "bob")
    return host


async def test_a_handler_before_routing_takes_a_stanza_out(harness: MakeHarness) -> None:
    """How a blocking list would drop what a blocked contact sends."""
    host = await contacts(harness)

    def blocked(routed: Routed) -> bool:
        body = routed.stanza.find("body")
        return body is not None and body.text == "blocked"

    host.modules["message"].hook(ROUTE_BEFORE, blocked)
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    host.received(bob)

    host.send(alice, chat("bob@localhost", "blocked"))
    host.send(alice, chat("bob@localhost", "passes"))

    [passed] = host.received(bob)
    assert "passes" in passed


async def test_observers_see_each_delivery_to_a_session(harness: MakeHarness) -> None:
    """How carbons would see what each resource got."""
    host = await contacts(harness)
    seen: list[tuple[str, str]] = []

    def observe(session: Session, stanza: Element) -> None:
        seen.append((session.jid.text, stanza.tag))

    host.modules["message"].hook(DELIVER_SESSION, observe)
    alice, bob = await host.bind("alice", "phone"), await host.bind("bob", "desk")
    host.send(bob, "<presence/>")
    seen.clear()

    host.send(alice, chat("bob@localhost"))

    assert seen == [("bob@localhost/desk", "message")]


async def test_a_message_for_nobody_online_falls_to_offline(harness: MakeHarness) -> None:
    host = await contacts(harness)
    fell: list[Routed] = []
    host.modules["message"].hook(DELIVER_OFFLINE, lambda routed: fell.append(routed) or True)
    alice = await host.bind("alice", "phone")

    host.send(alice, chat("bob@localhost"))

    [routed] = fell
    assert routed.to.text == "bob@localhost" and routed.origin is alice.session


async def test_a_bounce_is_announced_and_answered(harness: MakeHarness) -> None:
    host = await contacts(harness)
    bounced: list[tuple[Element, StanzaError]] = []
    host.modules["message"].hook(
        DELIVER_BOUNCED, lambda stanza, error: bounced.append((stanza, error))
    )
    alice = await host.bind("alice", "phone")

    host.send(alice, chat("someone@elsewhere.example"))

    [(stanza, error)] = bounced
    assert stanza.attrs["to"] == "someone@elsewhere.example"
    assert error.condition.value == "remote-server-not-found"
    [answer] = host.received(alice)
    assert 'type="error"' in answer and "remote-server-not-found" in answer


async def test_a_module_dispatches_again_through_the_server_s_dispatch(
    harness: MakeHarness,
) -> None:
    """What a module dispatches again (a stanza it held) goes through the server's own
    dispatch, which a cluster node wraps to hold a stream-managed sender until a stanza
    for another node is written there, not around it to the dispatcher."""
    host = await contacts(harness)
    seen: list[tuple[Element, JID | None, Session | None]] = []

    def dispatch(stanza: Element, to: JID | None, origin: Session | None) -> None:
        seen.append((stanza, to, origin))

    wrapped = replace(host.host, dispatch=dispatch)
    api = ModuleAPI(wrapped, "message")
    stanza = Element("message", attrs={"to": "bob@localhost"})

    api.dispatch(stanza, None, None)

    assert seen == [(stanza, None, None)]
