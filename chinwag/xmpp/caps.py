"""XEP-0115 entity capabilities: the verification string of a disco#info result.

Sans-IO: it takes the ``<query xmlns='disco#info'>`` element and gives the
base64 SHA-1 hash (§5.1) that a ``<c ver=...>`` names, so that a server can check
what a client announced and announce its own.
"""

from __future__ import annotations

import base64
import hashlib

from chinwag.xmpp import ns
from chinwag.xmpp.element import Element

XML_LANG = f"{{{ns.XML}}}lang"


def verification_string(query: Element) -> str:
    """§5.1: the SHA-1 ``ver`` of the identities, features and extended forms in ``query``."""
    parts: list[str] = []
    identities = sorted(
        (
            i.attrs.get("category", ""),
            i.attrs.get("type", ""),
            i.attrs.get(XML_LANG, i.attrs.get("xml:lang", "")),
            i.attrs.get("name", ""),
        )
        for i in query.find_all("identity", ns.DISCO_INFO)
    )
    parts.extend("/".join(identity) + "<" for identity in identities)
    features = sorted(f.get("var", "") or "" for f in query.find_all("feature", ns.DISCO_INFO))
    parts.extend(f"{var}<" for var in features)
    parts.extend(_form_string(form) for form in sorted(_forms(query), key=lambda f: f[0]))
    digest = hashlib.sha1("".join(parts).encode(), usedforsecurity=False).digest()
    return base64.b64encode(digest).decode()


def _forms(query: Element) -> list[tuple[str, list[tuple[str, list[str]]]]]:
    """Each extended form's FORM_TYPE and its other fields with their values."""
    forms = []
    for form in query.find_all("x", ns.DATA_FORMS):
        form_type = ""
        fields = []
        for field in form.find_all("field", ns.DATA_FORMS):
            values = [v.text for v in field.find_all("value", ns.DATA_FORMS)]
            var = field.get("var", "") or ""
            if var == "FORM_TYPE":
                form_type = values[0] if values else ""
            else:
                fields.append((var, sorted(values)))
        forms.append((form_type, sorted(fields)))
    return forms


def _form_string(form: tuple[str, list[tuple[str, list[str]]]]) -> str:
    form_type, fields = form
    out = [f"{form_type}<"]
    for var, values in fields:
        out.append(f"{var}<")
        out.extend(f"{value}<" for value in values)
    return "".join(out)
