"""Integration tests: a real chinwag server and real clients over loopback sockets."""
