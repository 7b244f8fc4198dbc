"""A DNS server on the loopback that answers from a table, for ``chinwag check`` to ask
(``--dns-server``) without the internet.

It runs in a thread, since the tests wait for the command in a subprocess; every
read is bounded, and it stops when its ``with`` block ends.
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Mapping, Sequence
from types import TracebackType

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset

HOST = "127.0.0.1"
POLL_SECONDS = 0.1


class FakeDNS:
    """Answers ``(name, type)`` from ``records`` (rdata as zone-file text); a name absent
    from the table is NXDOMAIN, a type absent for a known name an empty answer."""

    def __init__(self, records: Mapping[tuple[str, str], Sequence[str]]) -> None:
        self.records = {(name.lower(), kind): list(data) for (name, kind), data in records.items()}
        self.asked: list[tuple[str, str]] = []
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._socket.bind((HOST, 0))
        self._socket.settimeout(POLL_SECONDS)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    @property
    def address(self) -> str:
        """``ADDRESS:PORT``, as ``--dns-server`` takes it."""
        host, port = self._socket.getsockname()
        return f"{host}:{port}"

    def __enter__(self) -> FakeDNS:
        self._thread.start()
        return self

    def __exit__(
        self,
        kind: type[BaseException] | None,
        value: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self._stop.set()
        self._thread.join(5)
        self._socket.close()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                data, peer = self._socket.recvfrom(4096)
            except TimeoutError:
                continue
            self._socket.sendto(self._answer(dns.message.from_wire(data)).to_wire(), peer)

    def _answer(self, query: dns.message.Message) -> dns.message.Message:
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text().lower()
        kind = dns.rdatatype.to_text(question.rdtype)
        self.asked.append((name, kind))
        data = self.records.get((name, kind))
        if data:
            response.answer.append(dns.rrset.from_text_list(question.name, 300, "IN", kind, data))
        elif not any(known == name for known, _ in self.records):
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response
