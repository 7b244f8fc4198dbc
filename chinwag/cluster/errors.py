"""What joining a cluster may fail with, importable without redis-py (the single process
names it too)."""


class ClusterUnavailable(Exception):
    """The node could not join its cluster: Redis out of reach, or its name in use."""
