"""The PROXY protocol, versions 1 (text) and 2 (binary): the header that a load balancer
such as HAProxy sends first on each connection it forwards, naming the client.

Sans-IO: :func:`parse` finds a header at the start of the bytes a connection began with
and says how many of them it takes; the listener (``tcp.py``) reads them off the socket.
The parser is strict, as HAProxy's specification asks of a receiver: anything that is
not a header as written there is refused as soon as the bytes show it, and a header is
never longer than ``MAX_HEADER_BYTES``. Version 2's type-length-value extensions are
skipped unread.
"""

from __future__ import annotations

import ipaddress
import struct
from dataclasses import dataclass

V1_PREFIX = b"PROXY "
V1_MAX_BYTES = 107
"""The longest version 1 line, its CRLF included (the specification's own bound)."""
V2_SIGNATURE = b"\r\n\r\n\x00\r\nQUIT\n"
V2_FIXED_BYTES = 16
"""Signature, version and command, family and transport, and the length that follows."""
V2_MAX_LENGTH = 4096
"""The longest address block (with its extensions) accepted after the fixed part; the
addresses take at most 216 bytes, and what a balancer adds (TLS details, a unique id,
a cloud endpoint's id) fits well within this."""
MAX_HEADER_BYTES = V2_FIXED_BYTES + V2_MAX_LENGTH

_V2_VERSION = 2
_V2_LOCAL, _V2_PROXY = 0x0, 0x1
_V2_INET_STREAM, _V2_INET6_STREAM = 0x11, 0x21
_V2_ADDRESS_BYTES = {0x00: 0, 0x01: 0, _V2_INET_STREAM: 12, _V2_INET6_STREAM: 36, 0x31: 216}
"""Address bytes by family and transport, for a stream: unspecified, TCP over IPv4 or
IPv6, and a Unix stream socket. Datagram families do not describe a TCP connection."""
_V1_FAMILIES = {b"TCP4": 4, b"TCP6": 6}
_ADDRESS_CHARACTERS = frozenset(b"0123456789abcdefABCDEF:.")
_PORT_DIGITS = 5


class ProxyHeaderError(ValueError):
    """The connection did not begin with a valid PROXY header."""


@dataclass(frozen=True, slots=True)
class ProxyHeader:
    length: int
    """How many bytes at the start of the connection the header takes."""
    source: str | None
    """The client's IP address, or None where the header names none (version 2's
    LOCAL, version 1's UNKNOWN, a Unix socket): the connection's own peer stands."""


def parse(data: bytes) -> ProxyHeader | None:
    """The header at the start of ``data``; None while every byte of ``data`` may still
    belong to one, so that the caller may take them all and read on.

    Raises ProxyHeaderError as soon as ``data`` cannot begin a header."""
    if not data:
        return None
    if data[0] == V1_PREFIX[0]:
        return _parse_v1(data)
    if data[0] == V2_SIGNATURE[0]:
        return _parse_v2(data)
    raise ProxyHeaderError("the connection did not begin with a PROXY header")


def _parse_v1(data: bytes) -> ProxyHeader | None:
    if not V1_PREFIX.startswith(data[: len(V1_PREFIX)]):
        raise ProxyHeaderError("the connection did not begin with a PROXY header")
    end = data.find(b"\n", 0, V1_MAX_BYTES)
    if end < 0:
        if len(data) >= V1_MAX_BYTES:
            raise ProxyHeaderError(f"a version 1 PROXY header longer than {V1_MAX_BYTES} bytes")
        return None
    if data[end - 1] != ord("\r"):
        raise ProxyHeaderError("a version 1 PROXY header must end with CRLF")
    return ProxyHeader(end + 1, _v1_source(data[len(V1_PREFIX) : end - 1]))


def _v1_source(line: bytes) -> str | None:
    """The source address of a version 1 line, from its protocol on, without CRLF."""
    fields = line.split(b" ")
    if fields[0] == b"UNKNOWN":  # whatever follows it is to be ignored
        return None
    version = _V1_FAMILIES.get(fields[0])
    if version is None or len(fields) != 5:
        raise ProxyHeaderError(f"a malformed version 1 PROXY header: {line[:64]!r}")
    _family, source, destination, source_port, destination_port = fields
    _v1_address(destination, version)
    _v1_port(source_port)
    _v1_port(destination_port)
    return _v1_address(source, version)


def _v1_address(text: bytes, version: int) -> str:
    if text and _ADDRESS_CHARACTERS.issuperset(text):  # no zone index, no sign, no space
        try:
            address = ipaddress.ip_address(text.decode("ascii"))
        except ValueError:
            pass
        else:
            if address.version == version:
                return _text(address)
    raise ProxyHeaderError(f"not an IPv{version} address in a PROXY header: {text[:64]!r}")


def _v1_port(text: bytes) -> None:
    """A decimal number from 0 to 65535, without leading zeros."""
    if (
        not text.isdigit()
        or len(text) > _PORT_DIGITS
        or (len(text) > 1 and text[0] == ord("0"))
        or int(text) > 0xFFFF
    ):
        raise ProxyHeaderError(f"not a port in a PROXY header: {text[:64]!r}")


def _parse_v2(data: bytes) -> ProxyHeader | None:
    if not V2_SIGNATURE.startswith(data[: len(V2_SIGNATURE)]):
        raise ProxyHeaderError("the connection did not begin with a PROXY header")
    if len(data) < V2_FIXED_BYTES:
        return None
    version_command, family, length = struct.unpack_from("!BBH", data, len(V2_SIGNATURE))
    command = version_command & 0x0F
    if version_command >> 4 != _V2_VERSION or command not in (_V2_LOCAL, _V2_PROXY):
        raise ProxyHeaderError(f"an unknown PROXY version or command: {version_command:#04x}")
    address_bytes = _V2_ADDRESS_BYTES.get(family)
    if address_bytes is None:
        raise ProxyHeaderError(f"an unknown or datagram PROXY address family: {family:#04x}")
    if length > V2_MAX_LENGTH:
        raise ProxyHeaderError(f"a PROXY header of {length} bytes (at most {V2_MAX_LENGTH})")
    if command == _V2_PROXY and length < address_bytes:
        raise ProxyHeaderError(f"a PROXY header too short for its addresses: {length} bytes")
    if len(data) < V2_FIXED_BYTES + length:
        return None
    source = None if command == _V2_LOCAL else _v2_source(family, data)
    return ProxyHeader(V2_FIXED_BYTES + length, source)


def _v2_source(family: int, data: bytes) -> str | None:
    """The source address of a PROXY command: first in the address block."""
    start = V2_FIXED_BYTES
    if family == _V2_INET_STREAM:
        return str(ipaddress.IPv4Address(data[start : start + 4]))
    if family == _V2_INET6_STREAM:
        return _text(ipaddress.IPv6Address(data[start : start + 16]))
    return None  # unspecified, or a Unix socket: no IP address to go by


def _text(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> str:
    """An IPv4 client that a balancer wrote as IPv4-mapped IPv6 is written as IPv4."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return str(address.ipv4_mapped)
    return str(address)
