"""Several chinwag nodes as one server: what they share in Redis (or Valkey).

Redis holds, under one key prefix (``keys.py``):

- each node's lease, renewed while the node lives (``lease.py``);
- the session registry, a hash per bare JID with one packed record per bound resource,
  and a stream of its changes that every node mirrors in memory (``registry.py``);
- one inbox stream per node, read through a consumer group: the stanzas other nodes
  deliver to its sessions (``bus.py``);
- where clients reach each node, for a drained node to send them on (``advertised.py``).

What a node writes in one event-loop turn goes out in one pipeline (``writer.py``). When
a node's lease expires, one survivor takes over its cleanup (``cleanup.py``): its records
leave the registry and what waited in its inbox is routed again. ``node.py`` composes
these for the server, which it knows only through the ``ClusterHost`` protocol.

Only a server with ``[cluster]`` imports this package, and with it redis-py; the single
process path never does.
"""
