"""Shared helpers for the sans-IO XMPP core tests: stream headers, a client-side
reader of what the server sent, and a ``Client`` that drives a ``ServerStream``
through the usual negotiation steps (open, STARTTLS, SASL, bind).

Nothing here opens a socket: bytes go in with ``receive_data`` and come back
out of ``data_to_send``, and the reply bytes are parsed with the same
``XMLStreamParser`` the server uses.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass, field

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.errors import StreamCondition
from chinwag.xmpp.events import (
    AuthRequested,
    BindRequested,
    Event,
    StartTLSRequested,
    StreamClosed,
)
from chinwag.xmpp.jid import JID
from chinwag.xmpp.stream import ServerStream, StreamConfig
from chinwag.xmpp.xml import Parsed, StreamEnd, StreamHeader, XMLStreamParser

DOMAIN = "example.com"
USERNAME = "juliet"
RESOURCE = "balcony"
FULL_JID = JID.parse(f"{USERNAME}@{DOMAIN}/{RESOURCE}")

XML_DECL = b"<?xml version='1.0'?>"
CLOSE = b"</stream:stream>"


def header(
    to: str | None = DOMAIN,
    *,
    version: str | None = "1.0",
    content_ns: str | None = ns.CLIENT,
    stream_ns: str = ns.STREAMS,
    lang: str | None = "en",
    xml_decl: bool = True,
) -> bytes:
    """A client's stream header; pass None to leave an attribute out."""
    attrs = [f"xmlns:stream='{stream_ns}'"]
    if content_ns is not None:
        attrs.append(f"xmlns='{content_ns}'")
    if to is not None:
        attrs.append(f"to='{to}'")
    if version is not None:
        attrs.append(f"version='{version}'")
    if lang is not None:
        attrs.append(f"xml:lang='{lang}'")
    opening = f"<stream:stream {' '.join(attrs)}>".encode()
    return (XML_DECL if xml_decl else b"") + opening


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def plain_auth(username: str = USERNAME, password: str = "secret") -> bytes:
    payload = b64(f"\0{username}\0{password}".encode())
    return f"<auth xmlns='{ns.SASL}' mechanism='PLAIN'>{payload}</auth>".encode()


def bind_request(resource: str | None = RESOURCE, iq_id: str = "bind1") -> bytes:
    inner = "" if resource is None else f"<resource>{resource}</resource>"
    return f"<iq type='set' id='{iq_id}'><bind xmlns='{ns.BIND}'>{inner}</bind></iq>".encode()


@dataclass
class Output:
    """What the server sent since the last read, raw and parsed."""

    raw: bytes
    items: list[Parsed] = field(default_factory=list)

    @property
    def headers(self) -> list[StreamHeader]:
        return [item for item in self.items if isinstance(item, StreamHeader)]

    @property
    def elements(self) -> list[Element]:
        return [item for item in self.items if isinstance(item, Element)]

    @property
    def ended(self) -> bool:
        """The server closed its stream (``</stream:stream>`` was the last thing sent)."""
        return bool(self.items) and isinstance(self.items[-1], StreamEnd)

    def find(self, tag: str, namespace: str) -> Element | None:
        for element in self.elements:
            if element.tag == tag and element.ns == namespace:
                return element
        return None

    @property
    def features(self) -> Element | None:
        return self.find("features", ns.STREAMS)

    @property
    def stream_error(self) -> str | None:
        """The condition of the stream error sent, if any."""
        error = self.find("error", ns.STREAMS)
        if error is None:
            return None
        names = [
            child.tag
            for child in error.elements()
            if child.ns == ns.STREAM_ERRORS and child.tag != "text"
        ]
        assert len(names) == 1, f"a stream error has exactly one condition: {names}"
        return names[0]


def sasl_condition(element: Element) -> str:
    """The condition inside a SASL <failure/>."""
    assert element.tag == "failure" and element.ns == ns.SASL, element
    names = [child.tag for child in element.elements() if child.tag != "text"]
    assert len(names) == 1, names
    return names[0]


def stanza_error_condition(stanza: Element) -> tuple[str, str]:
    """(error type, condition) of an error stanza."""
    assert stanza.get("type") == "error", stanza
    error = stanza.find("error")
    assert error is not None, stanza
    names = [c.tag for c in error.elements() if c.ns == ns.STANZA_ERRORS and c.tag != "text"]
    assert len(names) == 1, names
    return error.get("type") or "", names[0]


class Client:
    """Drives one ``ServerStream`` the way a client (and the server's driver) would."""

    def __init__(
        self, config: StreamConfig | None = None, *, secure: bool = False, now: float = 0.0
    ) -> None:
        self.config = config or StreamConfig(DOMAIN)
        self.stream = ServerStream(self.config, now, secure=secure)
        self._parser: XMLStreamParser | None = None

    # --- raw I/O -------------------------------------------------------------

    def send(self, data: bytes | str, now: float = 0.0) -> list[Event]:
        if isinstance(data, str):
            data = data.encode()
        return self.stream.receive_data(data, now)

    def read(self) -> Output:
        """Parse what the server sent; a new XML declaration starts a new server stream."""
        raw = self.stream.data_to_send()
        output = Output(raw)
        segments = raw.split(XML_DECL)
        for index, segment in enumerate(segments):
            if index > 0:
                self._parser = XMLStreamParser(1 << 20)
                segment = XML_DECL + segment
            if not segment:
                continue
            assert self._parser is not None, f"server data before its stream header: {raw!r}"
            output.items.extend(self._parser.feed(segment))
        return output

    # --- negotiation steps ---------------------------------------------------

    def open(self, data: bytes | None = None) -> Output:
        """Send a stream header; the server's answer must be a header plus features."""
        events = self.send(header() if data is None else data)
        assert events == [], events
        output = self.read()
        assert len(output.headers) == 1, output
        assert output.features is not None, output
        return output

    def starttls(self) -> Output:
        assert self.send(f"<starttls xmlns='{ns.TLS}'/>") == [StartTLSRequested()]
        proceed = self.read()
        assert proceed.find("proceed", ns.TLS) is not None, proceed
        assert self.stream.tls_established() == []
        assert self.read().raw == b""
        return self.open()

    def authenticate(self, username: str = USERNAME) -> Output:
        """PLAIN with the driver accepting, then the stream restart; returns the new features."""
        events = self.send(plain_auth(username))
        assert len(events) == 1 and isinstance(events[0], AuthRequested), events
        assert self.stream.sasl_success(username) == []
        success = self.read()
        assert success.find("success", ns.SASL) is not None, success
        return self.open()

    def bind(self, resource: str = RESOURCE) -> JID:
        events = self.send(bind_request(resource))
        assert events == [BindRequested("bind1", resource)], events
        jid = JID.parse(f"{self.stream.username}@{DOMAIN}/{resource}")
        self.stream.bind_result("bind1", jid)
        result = self.read()
        assert result.elements and result.elements[0].get("type") == "result", result
        return jid


def open_client(config: StreamConfig | None = None, *, secure: bool = True) -> Client:
    client = Client(config, secure=secure)
    client.open()
    return client


def authenticated_client(config: StreamConfig | None = None) -> Client:
    client = open_client(config)
    client.authenticate()
    return client


def bound_client(config: StreamConfig | None = None) -> Client:
    client = authenticated_client(config)
    client.bind()
    return client


def closed_with(events: Sequence[Event], condition: StreamCondition | None) -> bool:
    """The events end the stream, with a stream error of ``condition`` (None: a clean close)."""
    closes = [event for event in events if isinstance(event, StreamClosed)]
    if len(closes) != 1 or events[-1] is not closes[0]:
        return False
    error = closes[0].error
    return (
        error is None if condition is None else error is not None and error.condition is condition
    )
