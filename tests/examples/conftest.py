"""Fixtures of the example tests: the integration suite's live in-process server.

``start_server`` starts a chinwag on free loopback ports with the users alice and
bob (mutual contacts); ``connect`` signs a slixmpp client in.
"""

from integration.conftest import connect, new_client, server, start_server

__all__ = ["connect", "new_client", "server", "start_server"]
