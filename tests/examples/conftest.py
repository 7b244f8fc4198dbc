"""Fixtures of the example tests: the integration suite's live in-process server.

``start_server`` starts a chinwag on free loopback ports with the users alice and
bob (mutual contacts); ``connect`` signs a slixmpp client in.
"""

from integration.conftest import connect, empty_store, new_client, server, start_server

__all__ = ["connect", "empty_store", "new_client", "server", "start_server"]
