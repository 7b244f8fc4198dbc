"""The PROXY protocol parser: versions 1 and 2, IPv4 and IPv6, the commands that name
no client, and everything that is not a header, refused as soon as the bytes show it."""

from __future__ import annotations

import ipaddress
import struct

import pytest

from chinwag.server.proxy_protocol import (
    MAX_HEADER_BYTES,
    V1_MAX_BYTES,
    V2_MAX_LENGTH,
    V2_SIGNATURE,
    ProxyHeader,
    ProxyHeaderError,
    parse,
)

pytestmark = pytest.mark.security

XMPP = b"<?xml version='1.0'?><stream:stream to='localhost'>"
TLS_HELLO = b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03"
PROXY, LOCAL = 0x21, 0x20
INET, INET6, UNIX, UNSPEC = 0x11, 0x21, 0x31, 0x00


def v2(command: int, family: int, block: bytes) -> bytes:
    return V2_SIGNATURE + struct.pack("!BBH", command, family, len(block)) + block


def inet(source: str, destination: str = "192.0.2.1", ports: tuple[int, int] = (51234, 5222)):
    return (
        ipaddress.ip_address(source).packed
        + ipaddress.ip_address(destination).packed
        + struct.pack("!HH", *ports)
    )


def tlv(kind: int, value: bytes) -> bytes:
    return struct.pack("!BH", kind, len(value)) + value


V1_TCP4 = b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 5222\r\n"
V1_TCP6 = b"PROXY TCP6 2001:DB8:0:0::9 2001:db8::1 65535 0\r\n"
V1_UNKNOWN = b"PROXY UNKNOWN\r\n"
V1_UNKNOWN_LONGEST = (
    b"PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535".ljust(V1_MAX_BYTES - 2, b"f")
    + b"\r\n"
)
V2_INET = v2(PROXY, INET, inet("203.0.113.7"))
V2_INET6 = v2(PROXY, INET6, inet("2001:db8::9", "2001:db8::1"))
V2_INET_TLVS = v2(
    PROXY, INET, inet("198.51.100.20") + tlv(0x05, b"unique-id") + tlv(0x20, b"\x00" * 40)
)
V2_LOCAL = v2(LOCAL, UNSPEC, b"")
V2_LOCAL_WITH_ADDRESSES = v2(LOCAL, INET, inet("203.0.113.7"))
V2_UNSPEC = v2(PROXY, UNSPEC, b"")
V2_UNIX = v2(
    PROXY, UNIX, b"/run/client.sock".ljust(108, b"\0") + b"/run/xmpp.sock".ljust(108, b"\0")
)

HEADERS = {
    "v1 TCP4": (V1_TCP4, "203.0.113.7"),
    "v1 TCP6": (V1_TCP6, "2001:db8::9"),
    "v1 UNKNOWN": (V1_UNKNOWN, None),
    "v1 UNKNOWN, 107 bytes": (V1_UNKNOWN_LONGEST, None),
    "v2 IPv4": (V2_INET, "203.0.113.7"),
    "v2 IPv6": (V2_INET6, "2001:db8::9"),
    "v2 IPv4 with TLVs": (V2_INET_TLVS, "198.51.100.20"),
    "v2 LOCAL": (V2_LOCAL, None),
    "v2 LOCAL with addresses": (V2_LOCAL_WITH_ADDRESSES, None),
    "v2 PROXY, unspecified family": (V2_UNSPEC, None),
    "v2 PROXY, Unix socket": (V2_UNIX, None),
}


@pytest.mark.parametrize(("header", "source"), HEADERS.values(), ids=HEADERS.keys())
@pytest.mark.parametrize("rest", [b"", XMPP, TLS_HELLO], ids=["alone", "xmpp", "tls"])
def test_a_header_gives_the_client_and_its_own_length(
    header: bytes, source: str | None, rest: bytes
) -> None:
    assert parse(header + rest) == ProxyHeader(len(header), source)


@pytest.mark.parametrize("header", [h for h, _ in HEADERS.values()], ids=HEADERS.keys())
def test_every_part_of_a_header_asks_for_more(header: bytes) -> None:
    """A header split across reads: each prefix may still become it."""
    for end in range(len(header)):
        assert parse(header[:end]) is None, header[:end]


REFUSED_AT_ONCE = {
    "an XMPP stream": XMPP,
    "a TLS handshake": TLS_HELLO,
    "HTTP": b"GET / HTTP/1.1\r\n",
    "lower case": b"proxy TCP4 ",
    "no space after PROXY": b"PROXY\r\n",
    "a v2 signature gone wrong": b"\r\n\r\n\x00\r\nQUIZ",
    "v2 version 1": v2(0x11, INET, inet("203.0.113.7"))[:16],
    "v2 version 3": v2(0x31, INET, inet("203.0.113.7"))[:16],
    "v2 unknown command": v2(0x22, INET, inet("203.0.113.7"))[:16],
    "v2 datagram over IPv4": v2(PROXY, 0x12, inet("203.0.113.7"))[:16],
    "v2 unknown family": v2(PROXY, 0x41, inet("203.0.113.7"))[:16],
    "v2 unknown transport": v2(PROXY, 0x13, inet("203.0.113.7"))[:16],
    "v2 too short for IPv4": v2(PROXY, INET, b"\0" * 11)[:16],
    "v2 too short for IPv6": v2(PROXY, INET6, inet("203.0.113.7"))[:16],
    "v2 longer than the cap": V2_SIGNATURE + struct.pack("!BBH", PROXY, INET, V2_MAX_LENGTH + 1),
    "v2 65535 bytes": V2_SIGNATURE + struct.pack("!BBH", PROXY, INET, 0xFFFF),
}


@pytest.mark.parametrize("data", REFUSED_AT_ONCE.values(), ids=REFUSED_AT_ONCE.keys())
def test_what_cannot_begin_a_header_is_refused_without_waiting(data: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(data)


MALFORMED_V1 = [
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 5222\n",  # LF without CR
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 5222\r\r\n",
    b"PROXY TCP4  203.0.113.7 192.0.2.1 51234 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 5222 \r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234\r\n",
    b"PROXY TCP4\r\n",
    b"PROXY\tTCP4 203.0.113.7 192.0.2.1 51234 5222\r\n",
    b"PROXY TCP5 203.0.113.7 192.0.2.1 51234 5222\r\n",
    b"PROXY tcp4 203.0.113.7 192.0.2.1 51234 5222\r\n",
    b"PROXY UNKNOWNX\r\n",
    b"PROXY \r\n",
    b"PROXY TCP4 2001:db8::9 192.0.2.1 51234 5222\r\n",  # family and address disagree
    b"PROXY TCP6 203.0.113.7 2001:db8::1 51234 5222\r\n",
    b"PROXY TCP4 203.0.113.007 192.0.2.1 51234 5222\r\n",  # leading zeros: octal?
    b"PROXY TCP4 203.0.113.256 192.0.2.1 51234 5222\r\n",
    b"PROXY TCP4 203.0.113 192.0.2.1 51234 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2 51234 5222\r\n",
    b"PROXY TCP4 example.com 192.0.2.1 51234 5222\r\n",
    b"PROXY TCP6 fe80::1%eth0 2001:db8::1 51234 5222\r\n",  # a zone index
    b"PROXY TCP6 2001:db8::9::1 2001:db8::1 51234 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 051234 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 05222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 65536 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 -1 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 +80 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 1_000 5222\r\n",
    b"PROXY TCP4 203.0.113.7 192.0.2.1 0x50 5222\r\n",
    "PROXY TCP4 203.0.113.7 192.0.2.1 \u0665\u0660 5222\r\n".encode(),  # Arabic-Indic 50
    b"PROXY TCP4 203.0.113.7 192.0.2.1 51234 \r\n",
]


@pytest.mark.parametrize("line", MALFORMED_V1)
def test_a_malformed_version_1_line_is_refused(line: bytes) -> None:
    with pytest.raises(ProxyHeaderError):
        parse(line + XMPP)


def test_version_1_ends_within_107_bytes() -> None:
    unended = b"PROXY UNKNOWN ".ljust(V1_MAX_BYTES - 1, b"x")
    assert parse(unended) is None
    with pytest.raises(ProxyHeaderError, match="longer than 107 bytes"):
        parse(unended + b"x")
    with pytest.raises(ProxyHeaderError, match="longer than 107 bytes"):
        parse(unended + b"\r\n")  # 108 bytes with its CRLF


def test_version_2_may_fill_the_cap() -> None:
    block = inet("203.0.113.7") + tlv(0x04, b"\0" * (V2_MAX_LENGTH - 12 - 3))
    header = v2(PROXY, INET, block)
    assert len(header) == MAX_HEADER_BYTES
    assert parse(header + XMPP) == ProxyHeader(MAX_HEADER_BYTES, "203.0.113.7")


def test_version_2_tlvs_are_not_read() -> None:
    """A balancer's extensions are skipped as they are, even one this parser would not
    understand, or a length that runs past the block."""
    block = inet("203.0.113.7") + b"\xff\xff\xff"
    assert parse(v2(PROXY, INET, block)) == ProxyHeader(16 + len(block), "203.0.113.7")


def test_an_ipv4_mapped_source_is_written_as_ipv4() -> None:
    header = v2(PROXY, INET6, inet("::ffff:203.0.113.7", "::1"))
    assert parse(header) == ProxyHeader(len(header), "203.0.113.7")
    line = b"PROXY TCP6 ::ffff:203.0.113.7 ::1 51234 5222\r\n"
    assert parse(line) == ProxyHeader(len(line), "203.0.113.7")


def test_nothing_yet_asks_for_more() -> None:
    assert parse(b"") is None
