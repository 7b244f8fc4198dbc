"""A lightweight XML element: tag, namespace, attributes, children, and its serializer.

Attribute keys are plain names; ``xml:lang`` keeps its conventional spelling and
any other namespaced attribute is written ``{uri}name``. Children are elements
or text strings, so mixed content survives a round trip.

A stanza received from a client may carry ``wire``: bytes that serialise it exactly,
in any context (the bytes it arrived as, with its namespace declared and the
server's ``from`` stamped in), so that routing it costs no serialisation, over TCP
and WebSocket alike. Whoever changes a received element in place sets ``wire`` to
None; ``append`` and ``add`` do so themselves.
"""

from __future__ import annotations

import re
from collections.abc import Iterator

from .ns import CLIENT

_TEXT_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", "\r": "&#13;"})
_ATTR_ESCAPES = str.maketrans(
    {
        "&": "&amp;",
        "<": "&lt;",
        ">": "&gt;",
        '"': "&quot;",
        "\t": "&#9;",
        "\n": "&#10;",
        "\r": "&#13;",
    }
)


def escape_text(text: str) -> str:
    return text.translate(_TEXT_ESCAPES) if _needs_escape(text) else text


_ATTR_SPECIAL = re.compile('[&<>"\t\n\r]')


def escape_attr(value: str) -> str:
    # Most attribute values (JIDs, ids, types) need nothing: one C scan decides.
    return value.translate(_ATTR_ESCAPES) if _ATTR_SPECIAL.search(value) else value


def _needs_escape(text: str) -> bool:
    return "&" in text or "<" in text or ">" in text or "\r" in text


class Element:
    __slots__ = ("attrs", "children", "ns", "tag", "wire")

    def __init__(
        self,
        tag: str,
        ns: str = CLIENT,
        attrs: dict[str, str] | None = None,
        children: list[Element | str] | None = None,
    ) -> None:
        self.tag = tag
        self.ns = ns
        self.attrs = attrs if attrs is not None else {}
        self.children = children if children is not None else []
        self.wire: bytes | None = None

    def get(self, name: str, default: str | None = None) -> str | None:
        return self.attrs.get(name, default)

    def append(self, child: Element | str) -> Element | str:
        self.children.append(child)
        self.wire = None
        return child

    def add(self, tag: str, ns: str | None = None, attrs: dict[str, str] | None = None) -> Element:
        """Append and return a new child element (in this element's namespace by default)."""
        child = Element(tag, self.ns if ns is None else ns, attrs)
        self.children.append(child)
        self.wire = None
        return child

    def elements(self) -> Iterator[Element]:
        for child in self.children:
            if isinstance(child, Element):
                yield child

    def find(self, tag: str, ns: str | None = None) -> Element | None:
        for child in self.children:
            if isinstance(child, Element) and child.tag == tag and (ns is None or child.ns == ns):
                return child
        return None

    def find_all(self, tag: str, ns: str | None = None) -> list[Element]:
        return [c for c in self.elements() if c.tag == tag and (ns is None or c.ns == ns)]

    def first_element(self) -> Element | None:
        return next(self.elements(), None)

    @property
    def text(self) -> str:
        return "".join(child for child in self.children if isinstance(child, str))

    def copy(self) -> Element:
        """A deep copy (text strings are immutable and shared)."""
        return Element(
            self.tag,
            self.ns,
            dict(self.attrs),
            [c.copy() if isinstance(c, Element) else c for c in self.children],
        )

    def serialize(self, parent_ns: str = CLIENT) -> str:
        """XML text for this element, declaring namespaces that differ from ``parent_ns``."""
        out: list[str] = []
        _write(self, parent_ns, out)
        return "".join(out)

    def encoded(self, parent_ns: str = CLIENT) -> bytes:
        """The wire form when there is one, else the serialisation for ``parent_ns``."""
        return self.wire if self.wire is not None else self.serialize(parent_ns).encode()

    def __bytes__(self) -> bytes:
        return self.serialize().encode()

    def __repr__(self) -> str:
        return f"<Element {self.serialize()[:200]}>"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Element):
            return NotImplemented
        return (
            self.tag == other.tag
            and self.ns == other.ns
            and self.attrs == other.attrs
            and self.children == other.children
        )

    __hash__ = None  # type: ignore[assignment]  # mutable


def _write(element: Element, parent_ns: str, out: list[str]) -> None:
    out.append("<")
    out.append(element.tag)
    if element.ns != parent_ns:
        out.append(f' xmlns="{escape_attr(element.ns)}"')
    prefixed = 0
    for name, value in element.attrs.items():
        if name[0] == "{":
            uri, _, local = name[1:].rpartition("}")
            prefixed += 1
            prefix = f"ns{prefixed}"
            out.append(
                f' xmlns:{prefix}="{escape_attr(uri)}" {prefix}:{local}="{escape_attr(value)}"'
            )
        else:
            out.append(f' {name}="{escape_attr(value)}"')
    if not element.children:
        out.append("/>")
        return
    out.append(">")
    for child in element.children:
        if isinstance(child, str):
            out.append(escape_text(child))
        else:
            _write(child, element.ns, out)
    out.append(f"</{element.tag}>")
