"""Incremental XML stream parser on expat, with the restricted-XML guard of RFC 6120 11.1.

``feed(bytes)`` returns what the bytes completed: the stream header, whole
top-level elements (stanzas and negotiation elements), or the end of the stream.
Only top-level elements are materialised; the stream root never is. Anything
RFC 6120 forbids raises ``StreamError`` with the condition it names.

``XMLFrameParser`` is the same parser for RFC 7395 framing, where each
WebSocket message is one whole element: ``feed_frame(bytes)`` returns it.

With ``keep_wire``, each top-level element in the stream's default namespace (the
stanzas; the rest are never written out as they came) also gets the bytes it was
parsed from as its ``wire`` (see ``Element``), when those bytes stand on their own: an
unprefixed top-level tag, and no prefix that only the stream header declares; an
element that inherits its namespace from the header gets an ``xmlns`` of its own.
Once ``stamp_wire`` is called, each wire form also carries that attribute (the
stream's ``from``), written in as the form is cut out. Expat reports where each
top-level element begins and where its end tag is, so this costs one search and
one join per element.

Expat is most of an idle connection's memory, so ``release()`` lets a stream that
is between elements drop it; the next ``feed`` makes a new one and primes it with
a root element that declares what the stream header declared. The same renewal
bounds what expat remembers of the names a peer sends: it happens after every
``RENEW_AFTER_BYTES`` of input too.

Expat scans a token it could not finish (a tag, a reference) again from its first
byte at every feed, so a large token sent a few bytes at a time would cost time
quadratic in its size. A stream header is bounded (``MAX_HEADER_BYTES``), a parser
may bound single tokens (``max_token_bytes``, before authentication), and the reads
that continue a token longer than ``LARGE_TOKEN_BYTES`` are held back from expat
while they cannot finish it (see ``_LargeToken``).
"""

from __future__ import annotations

import functools
import re
import sys
from dataclasses import dataclass
from typing import Any, NamedTuple
from xml.parsers import expat

from . import ns
from .element import Element, escape_attr
from .errors import StreamCondition, StreamError

_SEPARATOR = " "
_AFTER_TAG_NAME = frozenset(b" \t\r\n/>")
_START_TAG = re.compile(rb"""<([^\s/>]+)(?:\s+[^\s=]+\s*=\s*(?:'[^']*'|"[^"]*"))*\s*>""")
_XML_PREFIX = ns.XML + _SEPARATOR
RENEW_AFTER_BYTES = 256 * 1024
"""Expat keeps every element and attribute name it has seen for as long as it lives, and a
peer may send new ones forever: a stream's parser is renewed, between elements, after
this much input (with ``keep_wire``, which tracks where elements end)."""
# Top-level elements deeper than this are refused: a policy limit that keeps
# recursion in serialisation bounded (no real stanza comes close).
MAX_DEPTH = 64
MAX_HEADER_BYTES = 4096
"""A stream header, with what comes before it (XML declaration, whitespace), longer than
this is refused (policy-violation): real ones take a few hundred bytes."""
LARGE_TOKEN_BYTES = 4096
"""An unfinished token longer than this is fed the reads that continue it only when they
may finish it, or have grown as long as it (see ``_LargeToken``)."""


@dataclass(frozen=True, slots=True)
class StreamHeader:
    """The opening tag of a stream: its qualified name, attributes and declared namespaces."""

    ns: str
    tag: str
    attrs: dict[str, str]
    default_ns: str | None


@dataclass(frozen=True, slots=True)
class StreamEnd:
    """The peer closed its stream with ``</stream:stream>``."""


Parsed = StreamHeader | Element | StreamEnd

# Names are cached process-wide so that each is split or encoded once. A peer chooses
# them, so only so many, and only short ones, are kept.
_CACHED_NAMES = 4096
_CACHED_NAME_LENGTH = 256

_name_cache: dict[str, tuple[str, str]] = {}


def _split_name(name: str) -> tuple[str, str]:
    """'uri local' -> (uri, local); a name without namespace -> ('', name)."""
    cached = _name_cache.get(name)
    if cached is None:
        uri, sep, local = name.rpartition(_SEPARATOR)
        cached = (uri, local) if sep else ("", name)
        if len(_name_cache) < _CACHED_NAMES and len(name) <= _CACHED_NAME_LENGTH:
            # A cached tag is interned (there are few): the very string of the same name
            # written as a literal elsewhere, so that comparing them takes no more than
            # their addresses (the stanza counts of server/stats.py rely on it).
            cached = (cached[0], sys.intern(cached[1]))
            _name_cache[name] = cached
    return cached


class _TagBytes(NamedTuple):
    """A tag name as the wire has it: ``name``, ``<name`` and ``</name>``."""

    name: bytes
    start: bytes
    end: bytes


_tag_bytes_cache: dict[str, _TagBytes] = {}
_WIRE_HEADS = 8
"""Top-level tags whose wire head a stream keeps (message, presence and iq, and a few
more: the peer chooses them)."""


def _new_tag_bytes(tag: str) -> _TagBytes:
    """The bytes of a tag not in ``_tag_bytes_cache`` (look there first), kept there when
    there is room."""
    name = tag.encode()
    found = _TagBytes(name, b"<" + name, b"</%s>" % name)
    if len(_tag_bytes_cache) < _CACHED_NAMES and len(tag) <= _CACHED_NAME_LENGTH:
        _tag_bytes_cache[tag] = found
    return found


@functools.lru_cache(maxsize=64)
def _declaration(uri: str, prefix: str | None = None) -> bytes:
    """`` xmlns="uri"`` (or ``xmlns:prefix``), to write into a tag."""
    name = "xmlns" if prefix is None else f"xmlns:{prefix}"
    return f' {name}="{escape_attr(uri)}"'.encode()


_plain_attr_names: set[str] = set()
"""Attribute names seen without a namespace, so that most tags are checked in one C call."""


def _convert_attrs(attrs: dict[str, str]) -> dict[str, str]:
    """Namespaced attribute names as ``xml:lang`` or ``{uri}name``; others as they are."""
    for name in attrs:
        if _SEPARATOR in name:
            break
    else:
        if len(_plain_attr_names) < _CACHED_NAMES:
            _plain_attr_names.update(name for name in attrs if len(name) <= _CACHED_NAME_LENGTH)
        return attrs
    converted = {}
    for name, value in attrs.items():
        if _SEPARATOR in name:
            uri, local = _split_name(name)
            name = f"xml:{local}" if uri == ns.XML else f"{{{uri}}}{local}"
        converted[name] = value
    return converted


def _merge_text(children: list[Element | str]) -> None:
    """Join adjacent text children, so a stanza parses the same however it was chunked."""
    merged: list[Element | str] = []
    run: list[str] = []
    for child in children:
        if isinstance(child, str):
            run.append(child)
            continue
        if run:
            merged.append("".join(run))
            run = []
        merged.append(child)
    if run:
        merged.append("".join(run))
    children[:] = merged


def _restricted(what: str) -> StreamError:
    return StreamError(StreamCondition.RESTRICTED_XML, f"{what} are not allowed in XMPP")


def _policy_violation(text: str) -> StreamError:
    return StreamError(StreamCondition.POLICY_VIOLATION, text)


_OUTSIDE_QUOTES = re.compile(rb"""(?>[^'">]+|'[^']*'|"[^"]*")*+""")
"""Bytes of a start tag that close every quote they open and hold no '>' outside quotes."""


class _LargeToken:
    """A token longer than ``LARGE_TOKEN_BYTES`` that expat has begun and not finished,
    and the reads held back from expat since.

    Expat scans an unfinished token again from its first byte at every feed (expat
    before 2.6 always; later ones too, as their reparse deferral is off here: it would
    keep the small read that finishes a stanza waiting for more input). Reads are held
    back while they cannot finish the token, and given to expat when they may, or once
    they are as long as what expat holds of it: each byte is then scanned a bounded
    number of times, and no read that finishes a token waits.
    """

    __slots__ = ("_end", "_quote", "_start_tag", "held", "held_bytes", "parsed_bytes")

    def __init__(self, begun: bytes) -> None:
        self.parsed_bytes = len(begun)
        """What expat holds of the token."""
        self.held: list[bytes] = []
        self.held_bytes = 0
        self._end = b""
        """The byte that may end an end tag or a reference; none for a comment or processing
        instruction (refused once finished: they wait for the doubling)."""
        self._start_tag = False
        """Whether the token is a start tag, which '>' ends outside its quoted values."""
        self._quote = b""
        """The quote of the attribute value a start tag is in, if any."""
        if begun.startswith(b"</"):
            self._end = b">"
        elif begun.startswith(b"&"):
            self._end = b";"
        elif not begun.startswith((b"<!", b"<?")):
            self._start_tag = True
            self._start_tag_may_end(begun)

    def hold(self, data: bytes) -> bytes | None:
        """All the reads held so far, ``data`` last, when expat should have them now; else
        None, and ``data`` is held too."""
        self.held.append(data)
        self.held_bytes += len(data)
        if self.held_bytes >= self.parsed_bytes or self._may_end(data):
            return b"".join(self.held)
        return None

    def _may_end(self, data: bytes) -> bool:
        if self._start_tag:
            return self._start_tag_may_end(data)
        return bool(self._end) and self._end in data

    def _start_tag_may_end(self, data: bytes) -> bool:
        """Whether ``data``, the next bytes of a start tag, has a '>' outside quotes."""
        start = 0
        if self._quote:  # in an attribute value that an earlier read opened
            start = data.find(self._quote) + 1
            if not start:
                return False
        matched = _OUTSIDE_QUOTES.match(data, start)
        stop = matched.end() if matched else start
        if stop == len(data):
            self._quote = b""
            return False
        if data[stop] == ord(">"):
            return True
        self._quote = data[stop : stop + 1]  # opened and not closed in data
        return False


class XMLStreamParser:
    """One stream's parser; make a new one at every stream restart.

    ``max_stanza_bytes`` bounds each top-level element, ``max_token_bytes`` (if given)
    each tag or reference that a feed leaves unfinished.
    """

    def __init__(
        self, max_stanza_bytes: int, *, keep_wire: bool = False, max_token_bytes: int | None = None
    ) -> None:
        self.max_stanza_bytes = max_stanza_bytes
        self.max_token_bytes = max_token_bytes
        self._check_unfinished_above = min(
            max_stanza_bytes, max_token_bytes or LARGE_TOKEN_BYTES, LARGE_TOKEN_BYTES
        )
        """Unfinished bytes after a feed beyond which the limits are checked (rarely)."""
        self._large_token: _LargeToken | None = None
        self._parser = self._make_expat()
        self._depth = 0
        self._stack: list[Element] = []
        self._boundary = 0
        """Byte offset of the last top-level event: nothing may stay unfinished for longer."""
        self._fed = 0
        self._default_ns: str | None = None
        self._out: list[Parsed] = []
        self._failed = False
        self._completed_before_failure: list[Parsed] = []
        self._keep_wire = keep_wire
        self._chunk = b""
        """The bytes being parsed, which begin at stream offset ``_chunk_base``."""
        self._chunk_base = 0
        self._carry: bytes | bytearray = b""
        """What earlier feeds held after their last top-level event, from ``_carry_base``."""
        self._carry_base = 0
        self._element_start = 0
        self._declares_default = False
        """Whether the top-level element being parsed declares its default namespace."""
        self._header_declarations: tuple[tuple[str | None, str], ...] = ()
        """(prefix, namespace) of each declaration on the stream header."""
        self._header_prefixes: tuple[bytes, ...] = ()
        self._root_name = b"stream:stream"
        """The stream header's tag as written, for the root of a renewed parser."""
        self._inherited_declaration = b""
        self._stamp = b""
        self._stamp_name: str | None = None
        self._wire_heads: dict[str, bytes] = {}
        """``<tag``, the stamp and the inherited declaration, by top-level tag."""

    def _make_expat(self) -> Any:
        # No interning: its dictionary would hold every distinct name the peer sends.
        parser = expat.ParserCreate("UTF-8", _SEPARATOR, intern=None)
        # A small text buffer: expat's default 8 KiB is most of an idle session's memory,
        # and longer text only arrives in several pieces, which _end merges.
        parser.buffer_size = 1024
        parser.buffer_text = True
        parser.StartElementHandler = self._start
        parser.EndElementHandler = self._end
        parser.CharacterDataHandler = self._text
        parser.StartNamespaceDeclHandler = self._namespace_declared
        parser.XmlDeclHandler = self._xml_declaration
        parser.StartDoctypeDeclHandler = self._doctype
        parser.CommentHandler = self._comment
        parser.ProcessingInstructionHandler = self._processing_instruction
        if hasattr(parser, "SetReparseDeferralEnabled"):
            # Expat >= 2.6 would hold back small reads, even one that finishes a stanza;
            # _LargeToken holds back only what cannot finish a large token.
            parser.SetReparseDeferralEnabled(False)
        return parser

    def feed(self, data: bytes) -> list[Parsed]:
        """Parse ``data``; returns what it completed, or raises StreamError."""
        if self._failed:
            raise StreamError(StreamCondition.NOT_WELL_FORMED, "the stream has already failed")
        if self._fed == 0:
            self._refuse_utf16(data)
        large_token = self._large_token
        if large_token is not None:
            held = large_token.hold(data)
            if held is None:
                if self._fed + large_token.held_bytes - self._boundary > self.max_stanza_bytes:
                    self._fail()
                    raise self._too_large()
                return []
            data, self._large_token = held, None
        try:
            if self._parser is None:
                self._renew()
            self._chunk, self._chunk_base = data, self._fed
            self._fed += len(data)
            self._parser.Parse(data, False)
            self._keep_unfinished(data)
            if self._fed - self._boundary > self._check_unfinished_above:
                self._check_unfinished()
        except StreamError:
            self._fail()
            raise
        except expat.ExpatError as error:
            self._fail()
            raise self._translate(error) from None
        if self._keep_wire and self._fed > RENEW_AFTER_BYTES:
            self.release()
        out, self._out = self._out, []
        return out

    def _check_unfinished(self) -> None:
        """After a feed that left more than a few KiB unfinished: refuse what is too large,
        and watch a large unfinished token (``_LargeToken``)."""
        if self._depth == 0 and self._fed > MAX_HEADER_BYTES:
            raise _policy_violation(f"stream header longer than {MAX_HEADER_BYTES} bytes")
        if self._fed - self._boundary > self.max_stanza_bytes:
            raise self._too_large()
        # Outside a callback, expat's current byte is where it stopped: the token it could
        # not finish begins there.
        token_start = self._parser.CurrentByteIndex
        token_bytes = self._fed - token_start
        if self.max_token_bytes is not None and token_bytes > self.max_token_bytes:
            raise _policy_violation(f"a tag or reference longer than {self.max_token_bytes} bytes")
        if token_bytes > LARGE_TOKEN_BYTES:
            self._large_token = _LargeToken(bytes(self._carry[token_start - self._carry_base :]))

    def release(self) -> bool:
        """Drop the expat parser if nothing is half-parsed (only with ``keep_wire``, which
        tracks exactly where the last element ended); returns whether it did."""
        if not self._keep_wire or self._depth != 1 or self._carry or self._failed:
            return False
        self._parser = None
        return True

    def _renew(self) -> None:
        """A new expat parser, inside a root that declares what the stream header did."""
        declarations = b"".join(
            _declaration(uri, prefix) for prefix, uri in self._header_declarations
        )
        root = b"<%s%s>" % (self._root_name, declarations)
        saved = self._header_declarations, self._header_prefixes, self._default_ns
        self._parser = self._make_expat()
        self._depth = 0
        self._parser.Parse(root, False)
        self._header_declarations, self._header_prefixes, self._default_ns = saved
        self._out.clear()  # the root is not a new stream header
        self._fed = self._boundary = self._carry_base = len(root)

    def at_rest(self) -> bool:
        """Whether everything fed so far is parsed, up to whitespace, into whole top-level
        elements: the next byte fed would begin a new one or more whitespace. Only with
        ``keep_wire``, which tracks exactly where elements end; then bytes that are not fed
        here (read by other means) leave the stream as it is."""
        return (
            self._keep_wire
            and self._depth == 1
            and (not self._carry or self._carry.isspace())
            and self._large_token is None
            and not self._failed
        )

    def between_elements(self) -> bool:
        """Inside the stream root with no top-level element begun (the end of a whole element)."""
        return self._depth == 1

    def _refuse_utf16(self, data: bytes) -> None:
        if data[:2] in (b"\xfe\xff", b"\xff\xfe") or b"\x00" in data[:2]:
            self._fail()
            raise StreamError(StreamCondition.UNSUPPORTED_ENCODING, "streams must be UTF-8")

    def completed_before_failure(self) -> list[Parsed]:
        """After ``feed`` raised: what that input completed before the error, in order
        (given once), so that the elements a peer sent before its bad input still count."""
        completed, self._completed_before_failure = self._completed_before_failure, []
        return completed

    def _fail(self) -> None:
        self._failed = True
        self._large_token = None
        self._stack.clear()
        self._completed_before_failure, self._out = self._out, []
        self._carry = self._chunk = b""

    def _keep_unfinished(self, data: bytes) -> None:
        """Hold on to the bytes after the last top-level event: the next feed may finish
        an element that they begin."""
        kept_from = self._boundary
        self._chunk = b""
        if kept_from == self._fed:  # the usual case: the read ended on a whole element
            self._carry = b""
        elif kept_from >= self._chunk_base:
            self._carry = data[kept_from - self._chunk_base :]
            self._carry_base = kept_from
        else:  # extended in place: an element trickling in is not copied at every feed
            if type(self._carry) is bytes:
                self._carry = bytearray(self._carry)
            self._carry += data

    def _bytes_from(self, offset: int) -> tuple[bytes, int]:
        """What is held of the stream from ``offset`` on, and the offset of its first byte."""
        if offset < self._chunk_base:
            return b"".join((self._carry, self._chunk)), self._carry_base
        return self._chunk, self._chunk_base

    def _note_root(self, offset: int) -> None:
        """Record the stream header's tag name as written, and move past its start tag."""
        buffer, base = self._bytes_from(offset)
        tag = _START_TAG.match(buffer, offset - base)
        if tag is not None:  # expat has just accepted this very tag
            self._root_name = tag.group(1)
            self._boundary = base + tag.end()

    def stamp_wire(self, name: str, value: str) -> None:
        """From now on, write `` name="value"`` into the wire form of each top-level element,
        right after its name (a stream stamps ``from``, RFC 6120 8.1.2.1). An element that
        carries ``name`` itself gets no wire form."""
        self._stamp = f' {name}="{escape_attr(value)}"'.encode()
        self._stamp_name = name
        self._wire_heads.clear()

    def _wire(self, element: Element, end: int) -> bytes | None:
        """The bytes of the top-level element that ends at ``end`` (where expat reports the
        end: its end tag, or just past an empty-element tag), if they stand on their own
        outside this stream. Moves the boundary past them."""
        start = self._element_start
        buffer, base = self._bytes_from(start)
        at, first = end - base, start - base
        tag = _tag_bytes_cache.get(element.tag) or _new_tag_bytes(element.tag)
        if element.children and buffer.startswith(tag.end, at):  # so is the start tag
            stop, unprefixed = at + len(tag.end), True
        else:  # empty, or an end tag with a prefix or spaces
            if not element.children and buffer.startswith(b"/>", at - 2):
                stop = at
            elif buffer.startswith(b"</", at):
                stop = buffer.find(b">", at) + 1
            else:
                return None
            after_name = first + len(tag.start)
            unprefixed = (
                buffer.startswith(tag.name, first + 1) and buffer[after_name] in _AFTER_TAG_NAME
            )
        self._boundary = base + stop
        if not unprefixed:
            return None  # a prefixed top-level tag leans on a declaration outside it
        for prefix in self._header_prefixes:
            if buffer.find(prefix, first, stop) >= 0:
                return None  # may lean on the header's declaration (or only mention it)
        if self._stamp_name is not None and self._stamp_name in element.attrs:
            return None
        after_name = first + len(tag.start)
        if self._declares_default:
            if not self._stamp:
                return buffer[first:stop]
            return b"".join((tag.start, self._stamp, buffer[after_name:stop]))
        # Declare the namespace that the header gave it.
        head = self._wire_heads.get(element.tag) or self._wire_head(element, tag.start)
        return head + buffer[after_name:stop]

    def _pass_end_tag(self, end: int) -> None:
        """Move the boundary past the end tag of the top-level element ending at ``end``
        (already past an empty-element tag)."""
        buffer, base = self._bytes_from(end)
        if buffer.startswith(b"</", end - base):
            self._boundary = base + buffer.find(b">", end - base) + 1

    def _wire_head(self, element: Element, start: bytes) -> bytes:
        """``<tag``, the stamp and `` xmlns="…"`` for the default namespace a top-level
        element inherits (the same for every element that declares none of its own)."""
        if not self._inherited_declaration:
            self._inherited_declaration = _declaration(element.ns)
        head = start + self._stamp + self._inherited_declaration
        if len(self._wire_heads) < _WIRE_HEADS:
            self._wire_heads[element.tag] = head
        return head

    def _too_large(self) -> StreamError:
        return StreamError(
            StreamCondition.POLICY_VIOLATION,
            f"stanza larger than the limit of {self.max_stanza_bytes} bytes",
        )

    @staticmethod
    def _translate(error: expat.ExpatError) -> StreamError:
        if error.code == expat.errors.codes[expat.errors.XML_ERROR_UNDEFINED_ENTITY]:
            return _restricted("entity references other than the five predefined ones")
        if error.code == expat.errors.codes[expat.errors.XML_ERROR_UNBOUND_PREFIX]:
            return StreamError(StreamCondition.BAD_NAMESPACE_PREFIX, str(error))
        if error.code == expat.errors.codes[expat.errors.XML_ERROR_INCORRECT_ENCODING]:
            return StreamError(StreamCondition.UNSUPPORTED_ENCODING, "streams must be UTF-8")
        return StreamError(StreamCondition.NOT_WELL_FORMED, str(error))

    # expat callbacks

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        depth = self._depth = self._depth + 1
        uri, tag = _name_cache.get(name) or _split_name(name)
        if attrs and not _plain_attr_names.issuperset(attrs):
            attrs = _convert_attrs(attrs)
        if depth == 2:
            self._boundary = self._element_start = self._parser.CurrentByteIndex
            self._stack.append(Element(tag, uri, attrs))
            return
        if depth == 1:
            self._boundary = self._parser.CurrentByteIndex
            if self._keep_wire:
                self._note_root(self._boundary)  # moves the boundary past the header
            if self._boundary > MAX_HEADER_BYTES:
                raise _policy_violation(f"stream header longer than {MAX_HEADER_BYTES} bytes")
            self._out.append(StreamHeader(uri, tag, attrs, self._default_ns))
            return
        if depth > MAX_DEPTH:
            raise StreamError(
                StreamCondition.POLICY_VIOLATION, f"elements nested deeper than {MAX_DEPTH}"
            )
        element = Element(tag, uri, attrs)
        stack = self._stack
        stack[-1].children.append(element)
        stack.append(element)

    def _end(self, name: str) -> None:
        depth = self._depth
        self._depth = depth - 1
        if depth == 1:
            self._out.append(StreamEnd())
            return
        element = self._stack.pop()
        if len(element.children) > 1:
            _merge_text(element.children)
        if depth != 2:
            return
        end = self._parser.CurrentByteIndex
        if end - self._boundary > self.max_stanza_bytes:
            raise self._too_large()
        self._boundary = end
        if self._keep_wire:
            if element.ns == self._default_ns:
                element.wire = self._wire(element, end)
            else:  # not a stanza (<r/>, <a/>, SASL): never written anywhere as it came
                self._pass_end_tag(end)
            self._declares_default = False
        self._out.append(element)

    def _text(self, text: str) -> None:
        if self._stack:
            self._stack[-1].children.append(text)
        elif self._depth == 1:
            if not text.isspace():
                raise StreamError(StreamCondition.BAD_FORMAT, "text outside of any stanza")
            # Whitespace between stanzas is a keepalive (RFC 6120 4.6.1) and is dropped.
            self._boundary = self._parser.CurrentByteIndex

    def _namespace_declared(self, prefix: str | None, uri: str | None) -> None:
        if self._depth == 1 and prefix is None:  # on the top-level element that starts next
            self._declares_default = True
        elif self._depth == 0:
            self._header_declarations += ((prefix, uri or ""),)
            if prefix is None:
                self._default_ns = uri
            else:
                self._header_prefixes += (f"{prefix}:".encode(),)

    def _xml_declaration(self, version: str | None, encoding: str | None, standalone: int) -> None:
        if encoding is not None and encoding.upper().replace("_", "-") not in ("UTF-8", "UTF8"):
            raise StreamError(StreamCondition.UNSUPPORTED_ENCODING, "streams must be UTF-8")

    def _doctype(self, *_args: object) -> None:
        raise _restricted("document type declarations")

    def _comment(self, _data: str) -> None:
        raise _restricted("comments")

    def _processing_instruction(self, _target: str, _data: str) -> None:
        raise _restricted("processing instructions")


_FRAGMENT_HEADER = f"<stream xmlns='{ns.CLIENT}'>".encode()
_FRAME_END_TAG = "chinwag-frame-end"
_FRAME_END = f"<{_FRAME_END_TAG}/>".encode()
_XML_DECLARATION = re.compile(rb"<\?xml\s[^>]*?\?>")
_DECLARED_ENCODING = re.compile(rb"encoding\s*=\s*['\"]([^'\"]*)['\"]")


class XMLFrameParser(XMLStreamParser):
    """RFC 7395 3.3.3: every WebSocket message is one complete element, a document of its own.

    One expat parser serves all of a connection's messages (a new one per
    message would cost ten times the parse). It is opened on a synthetic root,
    as if the messages were the children of a TCP stream, and each message must
    complete exactly one child of it. A marker element fed after each message
    proves that nothing is left half-parsed: an unfinished tag, comment or
    attribute would swallow it. So nothing carries over from one message to the
    next; a namespace declared in a message is scoped to its element. The root
    declares ``jabber:client`` as the default namespace, so a stanza that does not
    repeat it is still a ``jabber:client`` stanza, as on TCP.
    """

    def __init__(
        self, max_stanza_bytes: int, *, keep_wire: bool = False, max_token_bytes: int | None = None
    ) -> None:
        super().__init__(max_stanza_bytes, keep_wire=keep_wire, max_token_bytes=max_token_bytes)
        self.feed(_FRAGMENT_HEADER)

    def feed_frame(self, data: bytes) -> Element | None:
        """The element ``data`` holds, or None for an empty (or whitespace) message.

        Raises ``StreamError``: ``not-well-formed`` unless the message is exactly one
        whole element (not a part of one, not text, not several), or what the
        stream parser raises for the element's content.
        """
        if data.startswith(b"<?xml"):
            data = self._without_declaration(data)
        try:
            parsed = self.feed(data + _FRAME_END)
        except StreamError as error:
            if error.condition is not StreamCondition.BAD_FORMAT:
                raise
            raise self._not_one_element() from None  # text outside the element
        count = len(parsed)
        if 0 < count <= 2 and self._depth == 1:
            end = parsed[-1]
            if type(end) is Element and end.tag == _FRAME_END_TAG and not end.children:
                element = parsed[0] if count == 2 else None
                if element is None or type(element) is Element:
                    return element
        self._fail()
        raise self._not_one_element()

    def _without_declaration(self, data: bytes) -> bytes:
        """A message is a document, so it may start with an XML declaration (UTF-8 only)."""
        declaration = _XML_DECLARATION.match(data)
        if declaration is None:
            return data  # "<?xml-..." is a processing instruction: the parser refuses it
        encoding = _DECLARED_ENCODING.search(declaration.group())
        if encoding is not None:
            self._xml_declaration(None, encoding.group(1).decode("ascii", "replace"), -1)
        return data[declaration.end() :]

    def _not_one_element(self) -> StreamError:
        return StreamError(
            StreamCondition.NOT_WELL_FORMED,
            "a WebSocket message must hold exactly one whole XML element (RFC 7395 3.3.3)",
        )


def parse_stanza(text: str, max_bytes: int = 1 << 24) -> Element:
    """Parse one serialized stanza (as ``Element.serialize`` wrote it) back into an Element."""
    parser = XMLStreamParser(max_bytes)
    parsed = parser.feed(_FRAGMENT_HEADER + text.encode())
    elements = [item for item in parsed if isinstance(item, Element)]
    if len(elements) != 1:
        raise StreamError(StreamCondition.BAD_FORMAT, "expected exactly one stanza")
    return elements[0]
