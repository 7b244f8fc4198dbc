"""XEP-0227 portable data: chinwag's accounts out to other servers, and theirs in.

Export writes ``<server-data xmlns='urn:xmpp:pie:0'>`` with one ``<host/>``, this
server's domain, and a ``<user/>`` per account: its SCRAM verifiers (XEP-0227 1.1
``<scram-credentials/>``, never a password), its roster (``jabber:iq:roster`` items,
and a ``<presence type='subscribe'/>`` for each request waiting for its answer), its
profile as a ``vcard-temp`` vCard, its offline messages, each with the
``<delay/>`` of when it was stored, its PEP nodes (XEP-0227 1.1: the items of every
node in one ``pubsub`` element; each node's access model, bound and roster groups,
its affiliations as XEP-0060 §8.9 lists them, the account as ``owner`` first, and its
subscriptions as §8.8 lists them, in one ``pubsub#owner`` element, where Prosody's
``mod_storage_xep0227`` looks) and its
private XML storage (a ``jabber:iq:private`` query). :func:`export_users` writes one document;
:func:`user_document` one document per user, the layout that Prosody's
``mod_storage_xep0227`` reads (``user@host.xml``).

Import takes the ``<user/>`` elements that ``portable_files.py`` reads from files
Prosody, ejabberd or chinwag wrote. A password, when a file has one, becomes SCRAM
verifiers at once. A profile comes from the ``vcard-temp`` vCard, or from the PEP
nodes of vCard4 (XEP-0292) and the avatar (XEP-0084), where Prosody keeps it.
Everything of one import goes in as one transaction: a bad user (a name chinwag
cannot take, an account that exists, broken verifiers) refuses the whole import,
listing each problem. What chinwag has no place for (contacts on other servers,
verifiers of other mechanisms, ...) is left out and counted in the report, as are
a user's offline messages beyond ``messages.offline_quota`` and those larger than
``limits.max_stanza_bytes``, PEP items beyond a node's ``[pep] max_items`` or
larger than ``max_payload_bytes``, and node affiliations chinwag does not keep
(``publisher``, ``publish-only``, another owner), whose JID is malformed, or beyond
1,000 a node, and subscriptions other than ``subscribed``, whose JID is malformed, or
beyond 1,000 a node. An affiliated or subscribed JID of the imported host becomes one
of this server's domain, as contacts do. Block lists (XEP-0191) have no place in XEP-0227, and
apps, tokens and app passwords are chinwag's own: neither is exported.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

from chinwag.network.accounts import (
    InvalidPassword,
    InvalidUsername,
    StoredScram,
    derive_credentials,
    normalize_username,
)
from chinwag.network.portable_files import (
    PIE,
    PIE_NAMESPACES,
    PUBSUB,
    SCRAM,
)
from chinwag.network.profiles import MAX_PHOTO_BYTES, MAX_TEXT_LENGTH, vcard_element
from chinwag.store.contacts import SUBSCRIPTIONS
from chinwag.store.db import Database
from chinwag.store.pep import (
    ACCESS_MODELS,
    MAX_AFFILIATIONS,
    MAX_SUBSCRIPTIONS,
    StoredItem,
    fitting_roster_groups,
)
from chinwag.store.portable import (
    Loader,
    PortableAccount,
    PortableItem,
    PortableMessage,
    PortableNode,
    dump,
    loading,
)
from chinwag.store.profiles import Profile
from chinwag.xmpp import ns
from chinwag.xmpp.element import Element, escape_attr
from chinwag.xmpp.jid import JID, InvalidJID, prep_domainpart
from chinwag.xmpp.times import format_datetime, parse_datetime
from chinwag.xmpp.xml import parse_stanza

VCARD4 = "urn:ietf:params:xml:ns:vcard-4.0"
VCARD4_NODE = "urn:xmpp:vcard4"
AVATAR_DATA = "urn:xmpp:avatar:data"
AVATAR_METADATA = "urn:xmpp:avatar:metadata"

IMPORT_BATCH = 200
"""Users converted and written at a time: what an import holds in memory at once."""
MAX_SHOWN_PROBLEMS = 50
STORAGE_DELAY = "Offline Storage"

_DIGEST_BYTES = {"SCRAM-SHA-1": 20, "SCRAM-SHA-256": 32}
_MAX_ITERATIONS = 10_000_000


class ImportRejected(Exception):
    """Users that cannot be imported; nothing was."""

    def __init__(self, problems: Sequence[str], total: int) -> None:
        self.problems = list(problems)
        self.total = total
        """How many problems there were (only the first MAX_SHOWN_PROBLEMS are kept)."""
        super().__init__(f"{total} problems; nothing imported")


@dataclass(frozen=True)
class ImportLimits:
    offline_quota: int
    max_stanza_bytes: int
    pep_max_items: int = 64
    pep_max_payload_bytes: int = 262_144


@dataclass
class ImportReport:
    users: int = 0
    contacts: int = 0
    profiles: int = 0
    offline_messages: int = 0
    without_credentials: list[str] = field(default_factory=list)
    left_out: Counter[str] = field(default_factory=Counter)
    """What was not imported, and how often: e.g. 'contacts on other servers'."""
    other_hosts: Counter[str] = field(default_factory=Counter)
    """Users of hosts other than the one imported, by host."""


@dataclass(frozen=True)
class ExportReport:
    users: int
    contacts: int
    offline_messages: int


# -- export


def user_element(account: PortableAccount, host: str) -> Element:
    """The ``<user/>`` of ``account`` on ``host``."""
    user = Element("user", PIE, {"name": account.username})
    for scram in account.credentials:
        user.append(_scram_element(scram))
    items = [item for item in account.roster if item.listed]
    if items:
        query = user.add("query", ns.ROSTER)
        for item in items:
            query.append(_item_element(item, host))
    for item in account.roster:
        if item.pending_in:
            sender = f"{item.contact}@{host}"
            user.append(Element("presence", ns.CLIENT, {"from": sender, "type": "subscribe"}))
    card = vcard_element(account.profile)
    if card.children:
        user.append(card)
    if account.offline:
        stored = user.add("offline-messages")
        for message in account.offline:
            stored.append(_offline_element(message, host))
    if account.pep:
        _add_nodes(user, account.pep, f"{account.username}@{host}")
    if account.private:
        query = user.add("query", ns.PRIVATE)
        for _namespace, payload in account.private:
            for element in parse_stanza(payload).elements():
                query.append(element)
    return user


def _add_nodes(user: Element, nodes: Sequence[PortableNode], owner_jid: str) -> None:
    """Each node's configuration and affiliations (``pubsub#owner``), and its items
    (``pubsub``): one element of each namespace, as Prosody reads only the first."""
    owner = user.add("pubsub", ns.PUBSUB_OWNER)
    published = user.add("pubsub", PUBSUB)
    for node in nodes:
        form = owner.add("configure", attrs={"node": node.node}).add(
            "x", ns.DATA_FORMS, {"type": "submit"}
        )
        for var, values in (
            ("FORM_TYPE", (ns.PUBSUB_NODE_CONFIG,)),
            ("pubsub#access_model", (node.access_model,)),
            ("pubsub#max_items", (str(node.max_items),)),
            ("pubsub#roster_groups_allowed", node.roster_groups),
        ):
            if not values:
                continue  # no roster groups: the field says nothing
            form_field = form.add("field", attrs={"var": var})
            for value in values:
                form_field.add("value").append(value)
        listed = owner.add("affiliations", attrs={"node": node.node})
        for jid, affiliation in ((owner_jid, "owner"), *node.affiliations):
            listed.add("affiliation", attrs={"jid": jid, "affiliation": affiliation})
        if node.subscriptions:
            subscribed = owner.add("subscriptions", attrs={"node": node.node})
            for jid in node.subscriptions:
                subscribed.add("subscription", attrs={"jid": jid, "subscription": "subscribed"})
        items = published.add("items", attrs={"node": node.node})
        for item in node.items:
            items.add("item", attrs={"id": item.item_id}).append(parse_stanza(item.payload))


def _scram_element(scram: StoredScram) -> Element:
    element = Element("scram-credentials", SCRAM, {"mechanism": scram.mechanism})
    for tag, value in (
        ("iter-count", str(scram.iterations)),
        ("salt", _b64(scram.salt)),
        ("server-key", _b64(scram.server_key)),
        ("stored-key", _b64(scram.stored_key)),
    ):
        element.add(tag).append(value)
    return element


def _item_element(item: PortableItem, host: str) -> Element:
    attrs = {"jid": f"{item.contact}@{host}", "subscription": item.subscription}
    if item.name is not None:
        attrs["name"] = item.name
    if item.ask:
        attrs["ask"] = "subscribe"
    if item.approved:
        attrs["approved"] = "true"
    element = Element("item", ns.ROSTER, attrs)
    for group in item.groups:
        element.add("group").append(group)
    return element


def _offline_element(message: PortableMessage, host: str) -> Element:
    stanza = parse_stanza(message.stanza)
    delay = stanza.add(
        "delay", ns.DELAY, {"from": host, "stamp": format_datetime(message.stored_at)}
    )
    delay.append(STORAGE_DELAY)
    return stanza


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


HEADER = f"<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='{PIE}'>\n"
FOOTER = "</server-data>\n"


def _host_start(host: str) -> str:
    return f"<host jid='{escape_attr(host)}'>\n"


async def export_users(db: Database, host: str, write: Callable[[str], object]) -> ExportReport:
    """Write every account of ``db`` to ``write`` as one XEP-0227 document."""
    write(HEADER + _host_start(host))
    report = await each_user(db, host, lambda _name, user: write(user.serialize(PIE) + "\n"))
    write("</host>\n" + FOOTER)
    return report


def user_document(host: str, user: Element) -> str:
    """A whole XEP-0227 document of one user, as Prosody keeps each user's."""
    return HEADER + _host_start(host) + user.serialize(PIE) + "\n</host>\n" + FOOTER


async def each_user(
    db: Database, host: str, take: Callable[[str, Element], object]
) -> ExportReport:
    """Hand ``take`` the username and ``<user/>`` of every account of ``db``, one by one."""
    users = contacts = messages = 0
    async for batch in dump(db):
        for account in batch:
            take(account.username, user_element(account, host))
            users += 1
            contacts += sum(1 for item in account.roster if item.listed)
            messages += len(account.offline)
    return ExportReport(users, contacts, messages)


# -- reading users


@dataclass
class _User:
    """One user of an import file, checked; ``password`` is turned into verifiers later."""

    account: PortableAccount
    password: str | None


class _UserReader:
    """Turns the ``<user/>`` elements of ``host`` into accounts, noting problems."""

    def __init__(self, host: str, limits: ImportLimits, report: ImportReport, domain: str) -> None:
        self.host = prep_domainpart(host)
        self.domain = prep_domainpart(domain)
        """This server's domain, which the imported host's JIDs become."""
        self.limits = limits
        self.report = report
        self.problems: list[str] = []
        self.problem_count = 0
        self.seen: set[str] = set()

    def problem(self, message: str) -> None:
        self.problem_count += 1
        if len(self.problems) < MAX_SHOWN_PROBLEMS:
            self.problems.append(message)

    def read(self, user: Element) -> _User | None:
        raw_name = user.attrs.get("name", "")
        try:
            username = normalize_username(raw_name)
        except InvalidUsername as error:
            self.problem(f"user {raw_name!r}: {error}")
            return None
        if username in self.seen:
            self.problem(f"user '{username}' appears more than once")
            return None
        self.seen.add(username)
        credentials = self._credentials(username, user)
        if credentials is None:
            return None
        password = user.attrs.get("password") or None
        account = PortableAccount(
            username,
            credentials,
            self._profile(user),
            self._roster(username, user),
            self._offline(user),
            self._nodes(username, user),
            self._private(user),
        )
        return _User(account, password)

    def _nodes(self, username: str, user: Element) -> tuple[PortableNode, ...]:
        configs = _node_configs(user)
        pep_items = _pep_items(user)
        affiliations = _owner_lists(user, "affiliations", "affiliation")
        subscriptions = _owner_lists(user, "subscriptions", "subscription")
        nodes = []
        for name in dict.fromkeys([*configs, *affiliations, *pep_items]):
            items = pep_items.get(name, [])
            default = ("presence", self.limits.pep_max_items, ())
            access_model, max_items, groups = configs.get(name, default)
            if access_model not in ACCESS_MODELS:
                self.report.left_out[
                    "PEP access models other than presence, open, roster, whitelist"
                ] += 1
                access_model = "whitelist"  # the closest to what the user chose
            max_items = min(max_items, self.limits.pep_max_items)
            kept = [stored for item in items if (stored := self._pep_item(item)) is not None]
            if len(kept) > max_items:
                self.report.left_out["PEP items beyond a node's max_items"] += len(kept) - max_items
                kept = kept[-max_items:]
            if name and (kept or name in configs or name in affiliations):
                affiliated = self._affiliations(username, affiliations.get(name, []))
                subscribed = self._subscriptions(subscriptions.get(name, []))
                fitting = fitting_roster_groups(groups)
                if dropped := len(groups) - len(fitting):
                    self.report.left_out["PEP roster groups beyond a node's bounds"] += dropped
                nodes.append(
                    PortableNode(
                        name,
                        access_model,
                        max_items,
                        tuple(kept),
                        affiliated,
                        fitting,
                        subscribed,
                    )
                )
        return tuple(nodes)

    def _subscriptions(self, entries: list[Element]) -> tuple[str, ...]:
        """The JIDs subscribed to a node, bare or full, in the file's order."""
        kept: dict[str, None] = {}
        for entry in entries:
            try:
                jid = JID.parse(entry.attrs.get("jid", ""))
            except InvalidJID:
                self.report.left_out["PEP subscriptions whose JID is malformed"] += 1
                continue
            if entry.attrs.get("subscription", "subscribed") != "subscribed":
                self.report.left_out["PEP subscriptions other than subscribed"] += 1
                continue
            if jid.domain == self.host and jid.local:
                jid = JID(jid.local, self.domain, jid.resource)
            kept[str(jid)] = None
        if len(kept) > MAX_SUBSCRIPTIONS:
            dropped = len(kept) - MAX_SUBSCRIPTIONS
            self.report.left_out[f"PEP subscriptions beyond {MAX_SUBSCRIPTIONS} a node"] += dropped
        return tuple(kept)[:MAX_SUBSCRIPTIONS]

    def _affiliations(self, username: str, entries: list[Element]) -> tuple[tuple[str, str], ...]:
        """The members and outcasts of a node, by bare JID; the owner's own entry says
        nothing chinwag does not know."""
        kept: dict[str, str] = {}
        for entry in entries:
            affiliation = entry.attrs.get("affiliation", "")
            try:
                jid = JID.parse(entry.attrs.get("jid", "")).bare
            except InvalidJID:
                self.report.left_out["PEP affiliations whose JID is malformed"] += 1
                continue
            if jid.domain == self.host:
                if jid.local == username:
                    continue
                jid = JID(jid.local, self.domain)
            if affiliation == "none":
                continue
            if affiliation not in ("member", "outcast"):
                self.report.left_out["PEP affiliations other than member and outcast"] += 1
                continue
            kept[str(jid)] = affiliation
        if len(kept) > MAX_AFFILIATIONS:
            dropped = len(kept) - MAX_AFFILIATIONS
            self.report.left_out[f"PEP affiliations beyond {MAX_AFFILIATIONS} a node"] += dropped
        return tuple(kept.items())[:MAX_AFFILIATIONS]

    def _pep_item(self, item: Element) -> StoredItem | None:
        payload = item.first_element()
        if payload is None:
            return None
        text = payload.serialize()
        if len(text.encode()) > self.limits.pep_max_payload_bytes:
            self.report.left_out["PEP items larger than pep.max_payload_bytes"] += 1
            return None
        return StoredItem(item.attrs.get("id") or "current", text)

    def _private(self, user: Element) -> tuple[tuple[str, str], ...]:
        by_namespace: dict[str, Element] = {}
        for query in user.find_all("query", ns.PRIVATE):
            for element in query.elements():
                wrapper = by_namespace.setdefault(element.ns, Element("query", ns.PRIVATE))
                wrapper.append(element)
        return tuple((namespace, q.serialize()) for namespace, q in sorted(by_namespace.items()))

    def _credentials(self, username: str, user: Element) -> tuple[StoredScram, ...] | None:
        found: dict[str, StoredScram] = {}
        for element in user.find_all("scram-credentials", SCRAM):
            mechanism = element.attrs.get("mechanism", "")
            if mechanism not in _DIGEST_BYTES:
                self.report.left_out[f"{mechanism or 'unnamed'} verifiers"] += 1
                continue
            scram = _scram(element, mechanism)
            if scram is None:
                self.problem(f"user '{username}': the {mechanism} verifier is malformed")
                return None
            found.setdefault(mechanism, scram)
        return tuple(found.values())

    def _roster(self, username: str, user: Element) -> tuple[PortableItem, ...]:
        items: dict[str, PortableItem] = {}
        query = user.find("query", ns.ROSTER)
        for element in query.find_all("item", ns.ROSTER) if query is not None else ():
            contact = self._local_contact(element.attrs.get("jid", ""))
            subscription = element.attrs.get("subscription", "none")
            if contact is None or contact == username or subscription == "remove":
                continue
            if subscription not in SUBSCRIPTIONS:
                self.problem(
                    f"user '{username}': the contact {contact} has the subscription "
                    f"{subscription!r}"
                )
                continue
            items[contact] = PortableItem(
                contact,
                element.attrs.get("name") or None,
                subscription,
                element.attrs.get("ask") == "subscribe",
                False,
                element.attrs.get("approved") in ("true", "1"),
                tuple(dict.fromkeys(g.text for g in element.find_all("group") if g.text)),
                True,
            )
        for presence in user.find_all("presence", ns.CLIENT):
            contact = self._local_contact(presence.attrs.get("from", ""))
            if presence.attrs.get("type") != "subscribe" or contact in (None, username):
                continue
            assert contact is not None
            waiting = items.get(contact)
            items[contact] = (
                replace(waiting, pending_in=True)
                if waiting is not None
                else PortableItem(contact, None, "none", False, True, False, (), False)
            )
        return tuple(items.values())

    def _local_contact(self, text: str) -> str | None:
        """The username of an address on the imported host; None (and counted) for one
        on another server, or that is no address."""
        try:
            jid = JID.parse(text).bare
        except InvalidJID:
            self.report.left_out["contacts that are not valid addresses"] += 1
            return None
        if jid.domain != self.host or jid.local is None:
            self.report.left_out["contacts on other servers"] += 1
            return None
        return jid.local

    def _profile(self, user: Element) -> Profile:
        card = user.find("vCard", ns.VCARD)
        fields: dict[str, str | None] = {"fn": None, "nickname": None, "email": None}
        photo_type, photo = None, None
        if card is not None:
            fields = {
                "fn": _child_text(card, "FN"),
                "nickname": _child_text(card, "NICKNAME"),
                "email": _vcard_email(card),
            }
            photo_type, photo = self._vcard_photo(card)
        pep = _pep_items(user)
        vcard4 = _last_payload(pep.get(VCARD4_NODE), "vcard", VCARD4)
        if vcard4 is not None:
            fields = {
                "fn": _vcard4_text(vcard4, "fn"),
                "nickname": _vcard4_text(vcard4, "nickname"),
                "email": _vcard4_text(vcard4, "email"),
            }
        avatar = self._avatar(pep)
        if avatar is not None:
            photo_type, photo = avatar
        checked = {name: self._text_field(value) for name, value in fields.items()}
        if photo is not None and len(photo) > MAX_PHOTO_BYTES:
            self.report.left_out[f"photos larger than {MAX_PHOTO_BYTES // 1024} KiB"] += 1
            photo_type, photo = None, None
        photo_type = self._text_field(photo_type) if photo else None
        profile = Profile(checked["fn"], checked["nickname"], checked["email"], photo_type, photo)
        if any(value is not None for value in (*checked.values(), photo)):
            self.report.profiles += 1
        return profile

    def _text_field(self, value: str | None) -> str | None:
        text = (value or "").strip()
        if len(text) > MAX_TEXT_LENGTH:
            self.report.left_out[f"profile fields longer than {MAX_TEXT_LENGTH} characters"] += 1
            return None
        return text or None

    def _vcard_photo(self, card: Element) -> tuple[str | None, bytes | None]:
        photo = card.find("PHOTO", ns.VCARD)
        binval = photo.find("BINVAL", ns.VCARD) if photo is not None else None
        if photo is None or binval is None or not binval.text.strip():
            return None, None
        data = self._base64(binval.text)
        return (_child_text(photo, "TYPE") or "image/png", data) if data else (None, None)

    def _avatar(self, pep: dict[str, list[Element]]) -> tuple[str, bytes] | None:
        items = pep.get(AVATAR_DATA)
        if not items:
            return None
        item = items[-1]
        payload = item.find("data", AVATAR_DATA)
        data = self._base64(payload.text) if payload is not None else None
        if not data:
            return None
        return _avatar_type(pep.get(AVATAR_METADATA), item.attrs.get("id")), data

    def _base64(self, text: str) -> bytes | None:
        try:
            return base64.b64decode("".join(text.split()), validate=True)
        except binascii.Error:
            self.report.left_out["photos that are not base64"] += 1
            return None

    def _offline(self, user: Element) -> tuple[PortableMessage, ...]:
        messages: list[PortableMessage] = []
        for stored in user.elements():
            if stored.tag != "offline-messages" or stored.ns not in PIE_NAMESPACES:
                continue
            for stanza in stored.find_all("message", ns.CLIENT):
                message = self._message(stanza)
                if message is None:
                    continue
                if len(messages) >= self.limits.offline_quota:
                    self.report.left_out["offline messages beyond messages.offline_quota"] += 1
                    continue
                messages.append(message)
        self.report.offline_messages += len(messages)
        return tuple(messages)

    def _message(self, stanza: Element) -> PortableMessage | None:
        stored_at = _take_storage_delay(stanza, self.host) or datetime.now(UTC)
        text = stanza.serialize(ns.CLIENT)
        if len(text.encode()) > self.limits.max_stanza_bytes:
            self.report.left_out["offline messages larger than limits.max_stanza_bytes"] += 1
            return None
        return PortableMessage(text, stored_at)


def _scram(element: Element, mechanism: str) -> StoredScram | None:
    try:
        iterations = int(_child_text(element, "iter-count", SCRAM) or "")
        salt, server_key, stored_key = (
            base64.b64decode(
                "".join((_child_text(element, tag, SCRAM) or "").split()), validate=True
            )
            for tag in ("salt", "server-key", "stored-key")
        )
    except (ValueError, binascii.Error):
        return None
    size = _DIGEST_BYTES[mechanism]
    if not (
        0 < iterations <= _MAX_ITERATIONS and salt and len(server_key) == len(stored_key) == size
    ):
        return None
    return StoredScram(mechanism, salt, stored_key, server_key, iterations)


def _child_text(element: Element, tag: str, namespace: str | None = None) -> str | None:
    child = element.find(tag, element.ns if namespace is None else namespace)
    return child.text.strip() or None if child is not None else None


def _vcard_email(card: Element) -> str | None:
    for email in card.find_all("EMAIL", ns.VCARD):
        userid = _child_text(email, "USERID")
        if userid:
            return userid
    return None


def _pep_items(user: Element) -> dict[str, list[Element]]:
    """The items of each PEP node the user's data holds (XEP-0227 1.1), by node."""
    nodes: dict[str, list[Element]] = {}
    for pubsub in user.find_all("pubsub", PUBSUB):
        for items in pubsub.find_all("items", PUBSUB):
            nodes.setdefault(items.attrs.get("node", ""), []).extend(items.find_all("item", PUBSUB))
    return nodes


def _owner_lists(user: Element, listing: str, entry: str) -> dict[str, list[Element]]:
    """The entries of each node's ``pubsub#owner`` list the user's data holds, by node:
    ``affiliations`` of ``affiliation`` (XEP-0060 §8.9), ``subscriptions`` of
    ``subscription`` (§8.8)."""
    nodes: dict[str, list[Element]] = {}
    for pubsub in user.find_all("pubsub", ns.PUBSUB_OWNER):
        for listed in pubsub.find_all(listing, ns.PUBSUB_OWNER):
            entries = listed.find_all(entry, ns.PUBSUB_OWNER)
            nodes.setdefault(listed.attrs.get("node", ""), []).extend(entries)
    return nodes


def _node_configs(user: Element) -> dict[str, tuple[str, int, tuple[str, ...]]]:
    """The access model, item bound and roster groups of each node configured in the
    user's data."""
    configs: dict[str, tuple[str, int, tuple[str, ...]]] = {}
    for pubsub in user.find_all("pubsub", ns.PUBSUB_OWNER):
        for configure in pubsub.find_all("configure", ns.PUBSUB_OWNER):
            form = configure.find("x", ns.DATA_FORMS)
            values: dict[str, list[str]] = {}
            for form_field in form.find_all("field", ns.DATA_FORMS) if form is not None else ():
                values[form_field.attrs.get("var", "")] = [
                    value.text.strip() for value in form_field.find_all("value", ns.DATA_FORMS)
                ]
            max_items = (values.get("pubsub#max_items") or [""])[0]
            configs[configure.attrs.get("node", "")] = (
                (values.get("pubsub#access_model") or [""])[0] or "presence",
                int(max_items) if max_items.isdigit() and int(max_items) > 0 else 1 << 30,
                tuple(
                    dict.fromkeys(
                        group for group in values.get("pubsub#roster_groups_allowed", ()) if group
                    )
                ),
            )
    return configs


def _last_payload(items: list[Element] | None, tag: str, namespace: str) -> Element | None:
    if not items:
        return None
    return items[-1].find(tag, namespace)


def _vcard4_text(vcard: Element, tag: str) -> str | None:
    prop = vcard.find(tag, VCARD4)
    return _child_text(prop, "text", VCARD4) if prop is not None else None


def _avatar_type(metadata: list[Element] | None, avatar_id: str | None) -> str:
    """The media type the avatar metadata gives the avatar ``avatar_id``."""
    payload = _last_payload(metadata, "metadata", AVATAR_METADATA)
    for info in payload.find_all("info", AVATAR_METADATA) if payload is not None else ():
        if info.attrs.get("id") == avatar_id and info.attrs.get("type"):
            return info.attrs["type"]
    return "image/png"


def _take_storage_delay(stanza: Element, host: str) -> datetime | None:
    """Remove the delay that says when the exporting server stored ``stanza`` (the last
    one from its host, or without a 'from'), and return its time."""
    for index in range(len(stanza.children) - 1, -1, -1):
        delay = stanza.children[index]
        if not isinstance(delay, Element) or (delay.ns, delay.tag) != (ns.DELAY, "delay"):
            continue
        sender = delay.attrs.get("from")
        if sender is not None and _domain_or_none(sender) != host:
            continue
        when = parse_datetime(delay.attrs.get("stamp", ""))
        if when is not None:
            del stanza.children[index]
            stanza.wire = None
            return when
    return None


def _domain_or_none(text: str) -> str | None:
    try:
        return JID.parse(text).domain
    except InvalidJID:
        return None


# -- importing


async def import_users(
    db: Database,
    users: Iterator[Element],
    host: str,
    limits: ImportLimits,
    domain: str | None = None,
) -> ImportReport:
    """Add the users of ``users`` (``<user/>`` elements of ``host``) with all they hold,
    in one transaction; raises ImportRejected or PortableFileError, adding nobody.
    ``domain`` is this server's (default: ``host``), which JIDs of ``host`` become."""
    report = ImportReport()
    reader = _UserReader(host, limits, report, domain or host)
    async with loading(db) as loader:
        batch: list[_User] = []
        for element in users:
            user = reader.read(element)
            if user is not None:
                batch.append(user)
            if len(batch) >= IMPORT_BATCH:
                await _write(loader, batch, reader)
                batch = []
        await _write(loader, batch, reader)
        if reader.problem_count:
            raise ImportRejected(reader.problems, reader.problem_count)
        missing = await loader.finish()
    if missing:
        report.left_out["contacts with no account here or in the import"] += len(missing)
        report.contacts -= sum(1 for _owner, item in missing if item.listed)
    return report


async def _write(loader: Loader, batch: list[_User], reader: _UserReader) -> None:
    if not batch:
        return
    for taken in sorted(await loader.existing(user.account.username for user in batch)):
        reader.problem(f"user '{taken}' already exists")
    accounts = await asyncio.gather(*(_with_password(user, reader) for user in batch))
    if reader.problem_count:
        return  # only checking from now on: the import will be refused
    await loader.add(accounts)
    report = reader.report
    report.users += len(accounts)
    report.contacts += sum(1 for a in accounts for item in a.roster if item.listed)
    report.without_credentials += [a.username for a in accounts if not a.credentials]


async def _with_password(user: _User, reader: _UserReader) -> PortableAccount:
    """The account, with verifiers of the file's password when it gave one."""
    if user.password is None:
        return user.account
    try:
        derived = await asyncio.to_thread(derive_credentials, user.password)
    except InvalidPassword as error:
        reader.problem(f"user '{user.account.username}': {error}")
        return user.account
    return replace(user.account, credentials=tuple(derived))
