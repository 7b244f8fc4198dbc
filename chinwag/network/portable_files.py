"""Reading XEP-0227 files safely: the ``<user/>`` elements of one host, as they are read.

An export is one document, one spread over files with XInclude ``<include
href='…'/>`` (XEP-0227 section 5: relative paths, which must stay inside the
export's directory), or a directory of documents, one per user, as Prosody keeps
them. Files are untrusted input, parsed with expat as they are read: a document
type declaration (and so any entity expansion) refuses the file, elements nest at
most ``MAX_DEPTH`` deep, and only the users of the wanted host are built, each
holding at most ``MAX_USER_BYTES``. Inside a user, only the children an import reads
(``KEPT_IN_USER``) are built; the others (archives, privacy lists, ...) are walked
and counted, never kept.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from enum import Enum, auto
from pathlib import Path
from typing import IO
from urllib.parse import unquote, urlsplit
from xml.parsers import expat

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element
from chinwag.xmpp.jid import InvalidJID, prep_domainpart

PIE = "urn:xmpp:pie:0"
PIE_DRAFT = "http://www.xmpp.org/extensions/xep-0227.html#ns"
"""The namespace of XEP-0227 before version 1.0, which older exports use."""
PIE_NAMESPACES = (PIE, PIE_DRAFT)
SCRAM = "urn:xmpp:pie:0#scram"
XINCLUDE = "http://www.w3.org/2001/XInclude"
PUBSUB = "http://jabber.org/protocol/pubsub"

MAX_DEPTH = 64
MAX_USER_BYTES = 64 * 1024 * 1024
"""Text and attribute values kept of one ``<user/>``; a larger one refuses the file."""
MAX_INCLUDE_DEPTH = 8
READ_BYTES = 64 * 1024
KEPT_IN_USER = frozenset(
    {
        (SCRAM, "scram-credentials"),
        (ns.ROSTER, "query"),
        (ns.CLIENT, "presence"),
        (ns.VCARD, "vCard"),
        (PIE, "offline-messages"),
        (PIE_DRAFT, "offline-messages"),
        (PUBSUB, "pubsub"),
        (ns.PUBSUB_OWNER, "pubsub"),
        (ns.PRIVATE, "query"),
        (XINCLUDE, "include"),
    }
)
"""The children of ``<user/>`` an import reads; the others are skipped unbuilt."""


class PortableFileError(Exception):
    """A file that cannot be read as XEP-0227 data; the message says where and why."""


class _Role(Enum):
    SERVER_DATA = auto()
    HOST = auto()
    USER = auto()
    """A <user/> of the host being imported: built, with what it holds that is read."""
    OTHER_USER = auto()
    INCLUDE = auto()
    BUILD = auto()
    """Inside a user (or an included fragment): built."""
    SKIP = auto()


@dataclass(frozen=True, slots=True)
class _Include:
    href: str
    host: str | None
    """The host whose <host/> holds the include; None for one in <server-data/>."""
    line: int


@dataclass(frozen=True, slots=True)
class _Found:
    user: Element
    kept: int
    """The bytes of text and attributes it holds (against MAX_USER_BYTES)."""


@dataclass(slots=True)
class _Frame:
    role: _Role
    host: str | None = None
    element: Element | None = None


class _FileParser:
    """One file of an export, parsed as it is read.

    ``root`` is the role its root element must have. The users of the host that
    ``wanted`` accepts are built whole and handed out by :meth:`take` in document
    order, with the includes met on the way; everything else is walked, not kept.
    """

    def __init__(
        self,
        name: str,
        root: _Role,
        host: str | None,
        wanted: Callable[[str], bool],
        kept: int = 0,
    ) -> None:
        """``kept``: with ``root`` BUILD, what the user that includes this file holds
        already, which counts against MAX_USER_BYTES."""
        self.name = name
        self._root = root
        self._root_host = host
        self._wanted = wanted
        self._stack: list[_Frame] = []
        self._out: list[_Found | _Include] = []
        self.kept = kept
        self.fragment: Element | None = None
        """With ``root`` BUILD, the document's element once it is parsed."""
        self.other_hosts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()
        """Children of users that were not read, by qualified name."""
        self._parser = expat.ParserCreate(None, " ")
        self._parser.buffer_text = True
        self._parser.StartElementHandler = self._start
        self._parser.EndElementHandler = self._end
        self._parser.CharacterDataHandler = self._text
        self._parser.StartDoctypeDeclHandler = self._doctype
        self._parser.SetParamEntityParsing(expat.XML_PARAM_ENTITY_PARSING_NEVER)

    def feed(self, data: bytes, final: bool = False) -> None:
        try:
            self._parser.Parse(data, final)
        except expat.ExpatError as error:
            raise self._error(expat.errors.messages[error.code], error.lineno) from None

    def take(self) -> list[_Found | _Include]:
        out, self._out = self._out, []
        return out

    def _error(self, reason: str, line: int | None = None) -> PortableFileError:
        at = self._parser.CurrentLineNumber if line is None else line
        return PortableFileError(f"{self.name}, line {at}: {reason}")

    def _doctype(self, *_args: object) -> None:
        raise self._error("document type declarations are not allowed in an import file")

    def _start(self, name: str, attrs: dict[str, str]) -> None:
        if len(self._stack) >= MAX_DEPTH:
            raise self._error(f"elements nested deeper than {MAX_DEPTH}")
        uri, _, tag = name.rpartition(" ")
        attrs = {_attribute_name(key): value for key, value in attrs.items()}
        parent = self._stack[-1] if self._stack else None
        frame = self._child(parent, uri, tag, attrs)
        if frame.role in (_Role.USER, _Role.BUILD):
            frame.element = Element(tag, uri, attrs)
            self._keep(sum(len(key) + len(value) for key, value in attrs.items()))
            if parent is not None and parent.element is not None:
                parent.element.children.append(frame.element)
        self._stack.append(frame)

    def _child(self, parent: _Frame | None, uri: str, tag: str, attrs: dict[str, str]) -> _Frame:
        """The role of an element ``<tag/>`` in ``uri`` within ``parent``."""
        if parent is None:
            return self._root_frame(uri, tag, attrs)
        role = parent.role
        if role is _Role.SERVER_DATA:
            if (uri, tag) == (XINCLUDE, "include"):
                return self._include(attrs, None)
            if uri in PIE_NAMESPACES and tag == "host":
                return _Frame(_Role.HOST, self._host(attrs))
        elif role is _Role.HOST:
            if (uri, tag) == (XINCLUDE, "include"):
                return self._include(attrs, parent.host)
            if uri in PIE_NAMESPACES and tag == "user":
                return self._user(parent.host)
        elif role is _Role.USER:
            if (uri, tag) in KEPT_IN_USER:
                return _Frame(_Role.BUILD)
            self.skipped[f"<{tag} xmlns='{uri}'>" if uri else f"<{tag}>"] += 1
        elif role is _Role.BUILD:
            return _Frame(_Role.BUILD)
        return _Frame(_Role.SKIP)

    def _root_frame(self, uri: str, tag: str, attrs: dict[str, str]) -> _Frame:
        expected = {_Role.SERVER_DATA: "server-data", _Role.HOST: "host", _Role.USER: "user"}
        wanted_tag = expected.get(self._root)
        if wanted_tag is None:
            return _Frame(_Role.BUILD)
        if uri not in PIE_NAMESPACES or tag != wanted_tag:
            raise self._error(
                f"not XEP-0227 data: the root element is <{tag}> in '{uri}', "
                f"not <{wanted_tag}> in '{PIE}'"
            )
        if self._root is _Role.HOST:
            return _Frame(_Role.HOST, self._host(attrs))
        if self._root is _Role.USER:
            return self._user(self._root_host)
        return _Frame(_Role.SERVER_DATA)

    def _host(self, attrs: dict[str, str]) -> str:
        host = attrs.get("jid")
        if not host:
            raise self._error("a <host> without its 'jid'")
        return host

    def _user(self, host: str | None) -> _Frame:
        assert host is not None
        if self._wanted(host):
            self.kept = 0
            return _Frame(_Role.USER, host)
        self.other_hosts[host] += 1
        return _Frame(_Role.OTHER_USER, host)

    def _include(self, attrs: dict[str, str], host: str | None) -> _Frame:
        if host is not None and not self._wanted(host):
            self.other_hosts[host] += 1  # one user per file, in XEP-0227's layout
        else:
            href = attrs.get("href")
            if not href or "parse" in attrs or "xpointer" in attrs:
                raise self._error("only <include href='…'/> of a relative path is supported")
            self._out.append(_Include(href, host, self._parser.CurrentLineNumber))
        return _Frame(_Role.INCLUDE)

    def _end(self, _name: str) -> None:
        frame = self._stack.pop()
        if frame.element is None:
            return
        children = frame.element.children
        if len(children) > 1:
            _merge_text(children)
        if frame.role is _Role.USER:
            self._out.append(_Found(frame.element, self.kept))
        elif not self._stack and frame.role is _Role.BUILD:
            self.fragment = frame.element

    def _text(self, text: str) -> None:
        frame = self._stack[-1] if self._stack else None
        if frame is not None and frame.element is not None:
            self._keep(len(text))
            frame.element.children.append(text)

    def _keep(self, size: int) -> None:
        self.kept += size
        if self.kept > MAX_USER_BYTES:
            raise self._error(f"a user holds more than {MAX_USER_BYTES // (1024 * 1024)} MiB")


def _attribute_name(name: str) -> str:
    uri, space, local = name.rpartition(" ")
    if not space:
        return name
    return f"xml:{local}" if uri == ns.XML else f"{{{uri}}}{local}"


def _merge_text(children: list[Element | str]) -> None:
    merged: list[Element | str] = []
    for child in children:
        if isinstance(child, str) and merged and isinstance(merged[-1], str):
            merged[-1] += child
        else:
            merged.append(child)
    children[:] = merged


class ExportFiles:
    """The users of one host in an export: a file, standard input, or a directory of
    files (one per user, as Prosody writes them), and the files these include.

    Included files are found relative to the file that names them, and must be inside
    ``root``: the directory of the export.
    """

    def __init__(self, host: str, root: Path) -> None:
        self._host = prep_domainpart(host)
        self.root = root.resolve()
        self.other_hosts: Counter[str] = Counter()
        self.skipped: Counter[str] = Counter()

    def wanted(self, host: str) -> bool:
        try:
            return prep_domainpart(host) == self._host
        except InvalidJID:
            return False

    def users(self, stream: IO[bytes], name: str, base: Path) -> Iterator[Element]:
        """Each ``<user/>`` of the host in the document ``stream``, includes resolved."""
        return self._walk(stream, name, base, _Role.SERVER_DATA, None, 0)

    def directory_users(self, directory: Path) -> Iterator[Element]:
        """Each user of the host in the ``*.xml`` documents of ``directory``."""
        for path in sorted(directory.glob("*.xml")):
            with _opened(path, str(path)) as stream:
                yield from self.users(stream, str(path), path.parent)

    def _walk(
        self, stream: IO[bytes], name: str, base: Path, root: _Role, host: str | None, depth: int
    ) -> Iterator[Element]:
        parser = _FileParser(name, root, host, self.wanted)
        while True:
            data = stream.read(READ_BYTES)
            parser.feed(data, final=not data)
            for found in parser.take():
                if isinstance(found, _Include):
                    yield from self._included(parser, found, base, depth)
                else:
                    self._with_fragments(found.user, found.kept, parser.name, base, depth)
                    yield found.user
            if not data:
                break
        self.other_hosts += parser.other_hosts
        self.skipped += parser.skipped

    def _included(
        self, parser: _FileParser, include: _Include, base: Path, depth: int
    ) -> Iterator[Element]:
        path = self._resolve(f"{parser.name}, line {include.line}", include.href, base, depth)
        role = _Role.HOST if include.host is None else _Role.USER
        with _opened(path, f"{parser.name}, line {include.line}") as stream:
            yield from self._walk(stream, str(path), path.parent, role, include.host, depth + 1)

    def _with_fragments(
        self, element: Element, kept: int, name: str, base: Path, depth: int
    ) -> int:
        """Replace every <include/> inside ``element`` with the element its file holds;
        returns what the user holds then, ``kept`` before."""
        for index, child in enumerate(element.children):
            if not isinstance(child, Element):
                continue
            if (child.ns, child.tag) != (XINCLUDE, "include"):
                kept = self._with_fragments(child, kept, name, base, depth)
                continue
            path = self._resolve(name, child.attrs.get("href", ""), base, depth)
            fragment = _FileParser(str(path), _Role.BUILD, None, self.wanted, kept)
            with _opened(path, name) as stream:
                while data := stream.read(READ_BYTES):
                    fragment.feed(data)
            fragment.feed(b"", final=True)
            assert fragment.fragment is not None
            element.children[index] = fragment.fragment
            kept = self._with_fragments(
                fragment.fragment, fragment.kept, str(path), path.parent, depth + 1
            )
        return kept

    def _resolve(self, where: str, href: str, base: Path, depth: int) -> Path:
        if depth >= MAX_INCLUDE_DEPTH:
            raise PortableFileError(f"{where}: includes nested deeper than {MAX_INCLUDE_DEPTH}")
        parts = urlsplit(href)
        if not parts.path or parts.scheme or parts.netloc or parts.query or parts.fragment:
            raise PortableFileError(f"{where}: include {href!r} is not a relative path")
        path = (base / unquote(parts.path)).resolve()
        if href.startswith("/") or not path.is_relative_to(self.root):
            raise PortableFileError(f"{where}: include {href!r} is outside {self.root}")
        if not path.is_file():
            raise PortableFileError(f"{where}: include {href!r}: no such file")
        return path


def _opened(path: Path, where: str) -> IO[bytes]:
    """``path`` open for reading; PortableFileError naming ``where`` when it cannot be."""
    try:
        return path.open("rb")
    except OSError as error:
        raise PortableFileError(f"{where}: cannot read {path}: {error.strerror}") from None
