"""XEP-0085 Chat State Notifications: states pass between contacts unchanged; the server
only announces the feature and keeps state-only messages out of offline storage."""

from __future__ import annotations

from chinwag.server.api import ModuleAPI, Spec
from chinwag.xmpp import ns

SPEC = Spec(
    "XEP-0085",
    "Chat State Notifications",
    "supported",
    "active, composing, paused, inactive and gone pass unchanged, alone or with a body; "
    "messages that carry only a chat state are never stored offline",
)


def setup(api: ModuleAPI) -> None:
    api.add_feature(ns.CHATSTATES)
