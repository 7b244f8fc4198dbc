"""systemd's service notifications (sd_notify(3)) without libsystemd.

Under a ``Type=notify`` unit, systemd names a datagram socket in ``$NOTIFY_SOCKET``;
the service sends it ``READY=1`` once it serves, ``RELOADING=1`` and ``READY=1`` around
a reload, and ``STOPPING=1`` as it stops. Anywhere else the variable is unset and
nothing is sent.
"""

from __future__ import annotations

import logging
import os
import socket
import time

NOTIFY_SOCKET = "NOTIFY_SOCKET"

log = logging.getLogger(__name__)


def notify(*assignments: str) -> bool:
    """Send ``assignments`` (``READY=1``, ``STATUS=...``) to systemd; whether it was sent.
    A socket that cannot be written to is logged, never raised: serving matters more."""
    address = os.environ.get(NOTIFY_SOCKET, "")
    if not address.startswith(("/", "@")):
        return False  # unset, or a transport (vsock) a local service is not given
    if address.startswith("@"):
        address = "\0" + address[1:]  # an abstract socket
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sender:
            sender.connect(address)
            sender.sendall("\n".join(assignments).encode())
    except OSError as error:
        log.warning("cannot notify systemd at %s: %s", os.environ[NOTIFY_SOCKET], error)
        return False
    return True


def reloading() -> bool:
    """``RELOADING=1`` with the monotonic time that systemd 253+ asks for."""
    return notify(
        "RELOADING=1", f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"
    )
