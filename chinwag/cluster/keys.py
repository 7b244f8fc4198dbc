"""The names of the cluster's Redis keys, all under one prefix."""

from __future__ import annotations

GROUP = "chinwag"
"""The consumer group through which a node reads its inbox (its consumer: the node)."""


class Keys:
    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.nodes = f"{prefix}nodes"
        """A set: every node that has joined and not yet left or been cleaned up."""
        self.changes = f"{prefix}changes"
        """A stream: each change to the registry, in the order it was made, numbered."""
        self.advertised = f"{prefix}advertised"
        """A hash: the public ``host:port`` of each node that advertises one, by node."""
        self.resumable_waiting = f"{prefix}resumable-waiting"
        """A sorted set: the resumption ids of dead nodes' sessions waiting to be resumed,
        by when their window closes (seconds since the epoch)."""
        self.changes_count = f"{prefix}changes-count"
        """The number of the last change: a reader that finds one missing has fallen
        behind the stream's trimming."""

    @property
    def change_log(self) -> tuple[str, str]:
        """The changes stream and its count, as the registry's scripts take them."""
        return self.changes, self.changes_count

    def lease(self, node: str) -> str:
        """A string holding the node's token while its lease lasts."""
        return f"{self.prefix}lease:{node}"

    def cleanup(self, node: str) -> str:
        """The lock held by whoever cleans up after ``node``."""
        return f"{self.prefix}cleanup:{node}"

    def sessions(self, bare: str) -> str:
        """A hash: the account's records, by resource."""
        return f"{self.prefix}sessions:{bare}"

    @property
    def all_sessions(self) -> str:
        """The pattern (for SCAN) of every account's record hash."""
        return f"{self.prefix}sessions:*"

    def node_sessions(self, node: str) -> str:
        """A set: the full JIDs ``node`` has published records for."""
        return f"{self.prefix}node-sessions:{node}"

    def inbox(self, node: str) -> str:
        """A stream: the stanzas other nodes deliver to ``node``'s sessions."""
        return f"{self.prefix}inbox:{node}"

    def orphans(self, node: str) -> str:
        """Where a dead node's inbox is moved while its entries are routed again."""
        return f"{self.prefix}orphans:{node}"

    def resumable(self, sm_id: str) -> str:
        """A hash: what resuming the XEP-0198 session ``sm_id`` on any node needs (its
        full JID, node, app, window, the count of its client's stanzas handled, its
        presence)."""
        return f"{self.prefix}resumable:{sm_id}"

    def unacked(self, sm_id: str) -> str:
        """A list: what the session ``sm_id`` was sent and its client has not acknowledged,
        each with its number in the session's output, oldest first."""
        return f"{self.prefix}unacked:{sm_id}"

    def node_resumable(self, node: str) -> str:
        """A set: the resumption ids of ``node``'s sessions."""
        return f"{self.prefix}node-resumable:{node}"
