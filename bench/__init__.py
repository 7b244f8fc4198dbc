"""Benchmarks that run chinwag side by side with Prosody and ejabberd (``python -m bench.run``)."""
