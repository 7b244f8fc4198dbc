"""network/portable.py: chinwag's accounts as XEP-0227 data, and XEP-0227 data as accounts."""

import io
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

import chinwag.network.portable
from chinwag.cli import Network
from chinwag.network.portable import (
    ImportLimits,
    ImportRejected,
    ImportReport,
    export_users,
    import_users,
)
from chinwag.network.portable_files import ExportFiles
from chinwag.store.contacts import Contact, RosterChange, SqlContactRepository
from chinwag.store.db import Database
from chinwag.store.offline import NewOfflineMessage, SqlOfflineRepository
from chinwag.store.pep import NodeConfig, SqlPepRepository, StoredItem
from chinwag.store.portable import PortableAccount, dump
from chinwag.xmpp.xml import parse_stanza

HOST = "chat.example"
LIMITS = ImportLimits(offline_quota=1000, max_stanza_bytes=262144)
T0 = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
PNG = bytes.fromhex("89504e470d0a1a0a") + bytes(range(200))

# What Debian's Prosody 0.12 wrote (prosody-migrator, internal storage to xep0227) for a
# user whose password is alice-secret, after she set her vCard over vcard-temp, which
# mod_vcard_legacy keeps as PEP vCard4 and avatar nodes; trimmed of its PEP node configs.
PROSODY_ALICE = (
    "<server-data xmlns='urn:xmpp:pie:0'><host jid='localhost'><user name='alice'>"
    "<scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
    "<server-key>TDXFFSwkavX+PCkazz93p2n/nEs=</server-key>"
    "<stored-key>BGWG2kf7z97gEKhFW8PubyWe/kw=</stored-key><iter-count>10000</iter-count>"
    "<salt>ZGUyNTc2NDYtOTA0Yy00YmFmLWI2ZjMtZWI1OGQyNTBkYmIx</salt></scram-credentials>"
    "<query version='5' xmlns='jabber:iq:roster'><item subscription='both' name='Bobby' "
    "jid='bob@localhost'><group>Friends</group></item></query>"
    "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='urn:xmpp:vcard4'/>"
    "</pubsub><pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='urn:xmpp:vcard4'>"
    "<item id='current'><vcard xmlns='urn:ietf:params:xml:ns:vcard-4.0'><fn><text>Alice "
    "Liddell</text></fn><n><surname/><given/><additional/><prefix/><suffix/></n><nickname>"
    "<text>ali</text></nickname><email><text>alice@example.org</text><parameters><type/>"
    "</parameters></email></vcard></item></items><items node='urn:xmpp:avatar:metadata'>"
    "<item id='4a5eb7171b58e08a6881721e3b43d5a44419a2be'><metadata xmlns='urn:xmpp:avatar:metadata'>"
    "<info id='4a5eb7171b58e08a6881721e3b43d5a44419a2be' type='image/gif' bytes='70'/>"
    "</metadata></item></items><items node='urn:xmpp:avatar:data'>"
    "<item id='4a5eb7171b58e08a6881721e3b43d5a44419a2be'><data xmlns='urn:xmpp:avatar:data'>"
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNk+M9QDwADhgGAWjR9awAAAABJRU5E"
    "rkJggg==</data></item></items></pubsub></user></host></server-data>"
)


@pytest.fixture
async def db(tmp_path: Path) -> AsyncIterator[Database]:
    database = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


@pytest.fixture
async def other(tmp_path: Path) -> AsyncIterator[Database]:
    """A second, empty store, to import into."""
    database = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'other.db'}")
    await database.migrate()
    try:
        yield database
    finally:
        await database.close()


def users_of(data: str, host: str = HOST, root: Path = Path()) -> ExportFiles:
    return ExportFiles(host, root).users(io.BytesIO(data.encode()), "export.xml", root)


async def load(
    db: Database, data: str, host: str = HOST, limits: ImportLimits = LIMITS
) -> ImportReport:
    return await import_users(db, users_of(data, host), host, limits)


async def exported(db: Database, host: str = HOST) -> str:
    out = io.StringIO()
    await export_users(db, host, out.write)
    return out.getvalue()


async def accounts(db: Database) -> dict[str, PortableAccount]:
    return {a.username: a for batch in [b async for b in dump(db)] for a in batch}


def doc(users: str, host: str = HOST) -> str:
    return f"<server-data xmlns='urn:xmpp:pie:0'><host jid='{host}'>{users}</host></server-data>"


async def test_an_export_imports_into_another_chinwag_unchanged(db, other):
    network = Network.over(db)
    await network.accounts.add_user("alice", "alice-secret", "Alice")
    await network.accounts.add_user("bob", "bob-secret")
    await network.accounts.add_user("carol", "carol-secret")
    await network.contacts.add_mutual("alice", "bob")
    await SqlContactRepository(db).save(
        [
            RosterChange(
                "alice", "carol", Contact("carol", "C", "none", True, False, False, ("Ü",), True)
            ),
            RosterChange(
                "carol", "alice", Contact("alice", None, "none", False, True, False, (), False)
            ),
        ],
        "test",
    )
    await network.profiles.set_fields(
        "alice", email="a@example.org", photo=PNG, photo_type="image/png"
    )
    stanza = "<message xmlns='jabber:client' from='bob@chat.example/x' type='chat'><body>&lt;3</body></message>"
    await SqlOfflineRepository(db).store_many([NewOfflineMessage("alice", stanza, T0)], 10)

    text = await exported(db)
    report = await load(other, text)

    before, after = await accounts(db), await accounts(other)
    assert after.keys() == {"alice", "bob", "carol"}
    for name in after:
        assert after[name].credentials == before[name].credentials
        assert after[name].profile == before[name].profile
        assert after[name].roster == before[name].roster
    [message] = after["alice"].offline
    assert message.stored_at == T0
    assert parse_stanza(message.stanza) == parse_stanza(stanza)
    assert (report.users, report.contacts, report.profiles, report.offline_messages) == (3, 3, 1, 1)
    assert not report.left_out
    assert await Network.over(other).accounts.verify_password("bob", "bob-secret")


async def test_an_export_says_what_xep_0227_readers_expect(db):
    network = Network.over(db)
    await network.accounts.add_user("alice", "pw", "Alice")
    await network.accounts.add_user("bob", "pw")
    await network.contacts.add_mutual("alice", "bob")
    await SqlContactRepository(db).save(
        [RosterChange("bob", "alice", Contact("alice", None, "both", False, True, True, (), True))],
        "test",
    )
    await SqlOfflineRepository(db).store_many(
        [NewOfflineMessage("bob", "<message xmlns='jabber:client'><body>hi</body></message>", T0)],
        10,
    )

    text = await exported(db)

    assert text.startswith(
        "<?xml version='1.0' encoding='UTF-8'?>\n<server-data xmlns='urn:xmpp:pie:0'>\n<host jid='chat.example'>\n"
    )
    assert 'mechanism="SCRAM-SHA-1"><iter-count>4096</iter-count><salt>' in text
    assert 'mechanism="SCRAM-SHA-256"' in text
    assert "password=" not in text
    assert '<vCard xmlns="vcard-temp"><FN>Alice</FN></vCard>' in text
    assert '<item jid="alice@chat.example" subscription="both" approved="true"/>' in text
    assert '<presence xmlns="jabber:client" from="alice@chat.example" type="subscribe"/>' in text
    assert (
        '<offline-messages><message xmlns="jabber:client"><body>hi</body>'
        '<delay xmlns="urn:xmpp:delay" '
        'from="chat.example" stamp="2026-01-02T03:04:05.678Z">Offline Storage</delay>'
        "</message></offline-messages>"
    ) in text
    assert text.count("<vCard") == 1  # bob has no profile


async def test_prosodys_export_signs_in_with_its_verifiers_and_keeps_the_pep_vcard(db):
    report = await load(db, PROSODY_ALICE + "", host="localhost")

    [alice] = (await accounts(db)).values()
    assert [scram.mechanism for scram in alice.credentials] == ["SCRAM-SHA-1"]
    assert alice.credentials[0].iterations == 10000
    assert alice.profile.fn == "Alice Liddell"
    assert alice.profile.nickname == "ali"
    assert alice.profile.email == "alice@example.org"
    assert alice.profile.photo_type == "image/gif"
    assert alice.profile.photo is not None and alice.profile.photo.startswith(b"\x89PNG")
    # bob is not in this file: his item has no account to name
    assert report.left_out == {"contacts with no account here or in the import": 1}
    assert alice.roster == ()
    # PLAIN checks a SCRAM-SHA-1 verifier when the account has no SCRAM-SHA-256 one
    service = Network.over(db).accounts
    assert await service.verify_password("alice", "alice-secret")
    assert not await service.verify_password("alice", "wrong")


async def test_a_vcard_temp_card_gives_the_profile(db):
    await load(
        db,
        doc(
            "<user name='alice'><vCard xmlns='vcard-temp'><FN> Alice </FN><NICKNAME>ali</NICKNAME>"
            "<EMAIL><HOME/><USERID>a@example.org</USERID></EMAIL><PHOTO><TYPE>image/jpeg</TYPE>"
            "<BINVAL>/9j/\n4AAQ</BINVAL></PHOTO><TEL><NUMBER>1</NUMBER></TEL></vCard></user>"
        ),
    )

    alice = (await accounts(db))["alice"]
    assert (alice.profile.fn, alice.profile.nickname, alice.profile.email) == (
        "Alice",
        "ali",
        "a@example.org",
    )
    assert (alice.profile.photo_type, alice.profile.photo) == (
        "image/jpeg",
        b"\xff\xd8\xff\xe0\x00\x10",
    )


async def test_a_plaintext_password_becomes_verifiers_and_is_not_kept(db):
    draft = "http://www.xmpp.org/extensions/xep-0227.html#ns"
    data = f"<server-data xmlns='{draft}'><host jid='{HOST}'><user name='Alice' password='s3crEt'/></host></server-data>"

    report = await load(db, data)

    [alice] = (await accounts(db)).values()
    assert alice.username == "alice"
    assert [scram.mechanism for scram in alice.credentials] == ["SCRAM-SHA-1", "SCRAM-SHA-256"]
    assert await Network.over(db).accounts.verify_password("alice", "s3crEt")
    assert report.without_credentials == []


async def test_users_without_credentials_are_named(db):
    report = await load(db, doc("<user name='alice'/>"))

    assert report.without_credentials == ["alice"]
    assert (await accounts(db))["alice"].credentials == ()


async def test_contacts_are_kept_with_their_state_and_pending_requests(db):
    await load(
        db,
        doc(
            "<user name='alice'><query xmlns='jabber:iq:roster'>"
            "<item jid='bob@chat.example' subscription='from' ask='subscribe' name='B'>"
            "<group>A</group><group>A</group><group>B</group></item>"
            "<item jid='carol@Chat.Example/phone' subscription='to'/>"
            "<item jid='dave@chat.example' subscription='remove'/>"
            "<item jid='alice@chat.example' subscription='both'/>"
            "<item jid='romeo@montague.example' subscription='both'/>"
            "</query>"
            "<presence xmlns='jabber:client' from='bob@chat.example' type='subscribe'/>"
            "<presence xmlns='jabber:client' from='dave@chat.example/x' type='subscribe'/>"
            "<presence xmlns='jabber:client' from='eve@chat.example' type='unsubscribe'/>"
            "</user><user name='bob'/><user name='carol'/><user name='dave'/><user name='eve'/>"
        ),
    )

    roster = {item.contact: item for item in (await accounts(db))["alice"].roster}
    assert roster.keys() == {"bob", "carol", "dave"}
    bob = roster["bob"]
    assert (bob.subscription, bob.ask, bob.pending_in, bob.name, bob.groups, bob.listed) == (
        "from",
        True,
        True,
        "B",
        ("A", "B"),
        True,
    )
    assert roster["carol"].subscription == "to"
    dave = roster["dave"]
    assert (dave.subscription, dave.pending_in, dave.listed) == ("none", True, False)


async def test_what_chinwag_has_no_place_for_is_counted(db):
    big = "<message xmlns='jabber:client'><body>" + "x" * 2000 + "</body></message>"
    small = "<message xmlns='jabber:client'><body>{}</body></message>"
    report = await load(
        db,
        doc(
            "<user name='alice'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-512'/>"
            "<query xmlns='jabber:iq:roster'><item jid='romeo@montague.example'/>"
            "<item jid='@@' subscription='both'/></query>"
            f"<offline-messages>{big}{small.format(1)}{small.format(2)}{small.format(3)}</offline-messages>"
            "</user>"
        ),
        limits=ImportLimits(offline_quota=2, max_stanza_bytes=1024),
    )

    assert report.left_out == {
        "SCRAM-SHA-512 verifiers": 1,
        "contacts on other servers": 1,
        "contacts that are not valid addresses": 1,
        "offline messages larger than limits.max_stanza_bytes": 1,
        "offline messages beyond messages.offline_quota": 1,
    }
    bodies = [
        parse_stanza(m.stanza).find("body").text for m in (await accounts(db))["alice"].offline
    ]
    assert bodies == ["1", "2"]


async def test_the_storage_delay_becomes_the_time_stored(db):
    await load(
        db,
        doc(
            "<user name='alice'><offline-messages>"
            "<message xmlns='jabber:client' from='bob@chat.example/x'><body>1</body>"
            "<delay xmlns='urn:xmpp:delay' from='elsewhere.example' stamp='2001-01-01T00:00:00Z'/>"
            "<delay xmlns='urn:xmpp:delay' from='chat.example' stamp='2026-01-02T04:04:05.678+01:00'>Offline Storage</delay>"
            "</message><message xmlns='jabber:client'><body>2</body></message>"
            "</offline-messages></user>"
        ),
    )

    first, second = (await accounts(db))["alice"].offline
    assert first.stored_at == T0
    delays = parse_stanza(first.stanza).find_all("delay", "urn:xmpp:delay")
    assert [delay.attrs["from"] for delay in delays] == ["elsewhere.example"]
    assert second.stored_at > T0  # no stamp: the time of the import


async def test_a_bad_user_refuses_the_whole_import_listing_every_problem(db):
    await Network.over(db).accounts.add_user("taken", "pw")
    bad_key = "<stored-key>AAAA</stored-key><server-key>AAAA</server-key>"
    data = doc(
        "<user name='fine'/>"
        "<user name='a b'/>"
        "<user name='taken'/>"
        "<user name='twice'/><user name='Twice'/>"
        "<user name='broken'><scram-credentials xmlns='urn:xmpp:pie:0#scram' mechanism='SCRAM-SHA-1'>"
        f"<iter-count>4096</iter-count><salt>c2FsdA==</salt>{bad_key}</scram-credentials></user>"
        "<user name='odd'><query xmlns='jabber:iq:roster'><item jid='fine@chat.example' "
        "subscription='sometimes'/></query></user>"
    )

    with pytest.raises(ImportRejected) as rejected:
        await load(db, data)

    assert rejected.value.problems == [
        "user 'a b': 'a b' is not a valid username: it contains a space",
        "user 'twice' appears more than once",
        "user 'broken': the SCRAM-SHA-1 verifier is malformed",
        "user 'odd': the contact fine has the subscription 'sometimes'",
        "user 'taken' already exists",
    ]
    assert (await accounts(db)).keys() == {"taken"}


async def test_problems_past_the_first_fifty_are_counted(db):
    with pytest.raises(ImportRejected) as rejected:
        await load(db, doc("<user name='a b'/>" * 60))

    assert len(rejected.value.problems) == 50
    assert rejected.value.total == 60


async def test_an_import_from_another_host_name_keeps_its_contacts(db):
    """Moving from old.example to chat.example: bob@old.example is the imported bob."""
    data = doc(
        "<user name='alice'><query xmlns='jabber:iq:roster'><item jid='bob@old.example' "
        "subscription='both'/></query></user><user name='bob'/>",
        host="old.example",
    )

    report = await import_users(db, users_of(data, "old.example"), "old.example", LIMITS)

    assert report.contacts == 1
    assert [item.contact for item in (await accounts(db))["alice"].roster] == ["bob"]


def nodes_of(account: PortableAccount) -> list[tuple[str, str, int, list[tuple[str, Any]]]]:
    """Each node, with its items' payloads parsed (quotes may change on the way)."""
    return [
        (
            node.node,
            node.access_model,
            node.max_items,
            [(item.item_id, parse_stanza(item.payload)) for item in node.items],
        )
        for node in account.pep
    ]


async def test_pep_nodes_and_private_storage_go_out_and_come_back(db, other):
    network = Network.over(db)
    await network.accounts.add_user("alice", "alice-secret")
    pep = SqlPepRepository(db)
    bookmarks = "<conference xmlns='urn:xmpp:bookmarks:1' name='Room'/>"
    await pep.publish(
        "alice", "urn:xmpp:bookmarks:1", NodeConfig("whitelist", 5), StoredItem("room@x", bookmarks)
    )
    for n in range(2):
        item = StoredItem(
            f"d{n}", f"<devices xmlns='urn:xmpp:omemo:2'><device id='{n}'/></devices>"
        )
        await pep.publish("alice", "urn:xmpp:omemo:2:devices", NodeConfig("open", 3), item)
    storage = "<query xmlns='jabber:iq:private'><storage xmlns='storage:bookmarks'/></query>"
    await pep.set_private("alice", "storage:bookmarks", storage)

    text = await exported(db)
    await load(other, text)

    before, after = await accounts(db), await accounts(other)
    assert nodes_of(after["alice"]) == nodes_of(before["alice"])
    assert [node.node for node in after["alice"].pep] == [
        "urn:xmpp:bookmarks:1",
        "urn:xmpp:omemo:2:devices",
    ]
    [(namespace, fragment)] = after["alice"].private
    assert namespace == "storage:bookmarks"
    assert parse_stanza(fragment) == parse_stanza(storage)


async def test_imported_pep_nodes_keep_to_the_bounds(db):
    items = "".join(
        f"<item id='i{n}'><n xmlns='urn:example'>{'x' * (400 if n == 0 else 1)}</n></item>"
        for n in range(5)
    )
    user = (
        "<user name='alice'>"
        "<pubsub xmlns='http://jabber.org/protocol/pubsub#owner'><configure node='n'>"
        "<x xmlns='jabber:x:data' type='submit'><field var='pubsub#access_model'>"
        "<value>authorize</value></field></x></configure></pubsub>"
        f"<pubsub xmlns='http://jabber.org/protocol/pubsub'><items node='n'>{items}</items></pubsub>"
        "</user>"
    )
    limits = ImportLimits(1000, 262144, pep_max_items=3, pep_max_payload_bytes=300)

    report = await load(db, doc(user), limits=limits)

    [node] = (await accounts(db))["alice"].pep
    assert (node.access_model, node.max_items) == ("whitelist", 3)
    assert [item.item_id for item in node.items] == ["i2", "i3", "i4"]
    assert report.left_out == {
        "PEP access models other than presence, open, roster, whitelist": 1,
        "PEP items larger than pep.max_payload_bytes": 1,
        "PEP items beyond a node's max_items": 1,
    }


async def test_node_affiliations_go_out_as_xep_0060_lists_them_and_come_back(db, other):
    await Network.over(db).accounts.add_user("alice", "alice-secret")
    pep = SqlPepRepository(db)
    item = StoredItem("i", "<p xmlns='urn:example'/>")
    await pep.publish("alice", "a", NodeConfig("whitelist", 5), item)
    await pep.publish("alice", "b", NodeConfig("open", 5), item)
    await pep.set_affiliations("alice", "a", {f"bob@{HOST}": "member"})
    await pep.set_affiliations("alice", "b", {f"carol@{HOST}": "outcast"})

    text = await exported(db)
    report = await load(other, text)

    # One element of each namespace for every node: Prosody reads only the first.
    assert text.count("<pubsub ") == 2
    assert (
        '<affiliations node="a"><affiliation jid="alice@chat.example" affiliation="owner"/>'
        '<affiliation jid="bob@chat.example" affiliation="member"/></affiliations>'
    ) in text
    assert not report.left_out
    before, after = await accounts(db), await accounts(other)
    assert [n.affiliations for n in after["alice"].pep] == [
        ((f"bob@{HOST}", "member"),),
        ((f"carol@{HOST}", "outcast"),),
    ]
    assert nodes_of(after["alice"]) == nodes_of(before["alice"])


async def test_roster_groups_and_subscriptions_go_out_as_xep_0060_lists_them_and_come_back(
    db, other
):
    await Network.over(db).accounts.add_user("alice", "alice-secret")
    pep = SqlPepRepository(db)
    friends = NodeConfig("roster", 5, ("Friends", "Family"))
    await pep.publish("alice", "f", friends, StoredItem("i", "<p xmlns='urn:example'/>"))
    await pep.subscribe("alice", "f", [f"bob@{HOST}/phone"])
    await pep.subscribe("alice", "f", ["eve@elsewhere.example"])

    text = await exported(db)
    report = await load(other, text)

    assert (
        '<field var="pubsub#roster_groups_allowed"><value>Friends</value>'
        "<value>Family</value></field>"
    ) in text
    assert (
        '<subscriptions node="f">'
        f'<subscription jid="bob@{HOST}/phone" subscription="subscribed"/>'
        '<subscription jid="eve@elsewhere.example" subscription="subscribed"/></subscriptions>'
    ) in text
    assert not report.left_out
    assert await SqlPepRepository(other).node("alice", "f") == friends
    assert await SqlPepRepository(other).subscriptions("alice", "f") == [
        f"bob@{HOST}/phone",
        "eve@elsewhere.example",
    ]


async def test_imported_subscriptions_are_of_this_domain_within_bounds(db, monkeypatch):
    monkeypatch.setattr(chinwag.network.portable, "MAX_SUBSCRIPTIONS", 2)
    entries = "".join(
        f"<subscription jid='{jid}' subscription='{subscription}'/>"
        for jid, subscription in (
            ("bob@old.example/phone", "subscribed"),
            ("carol@old.example", "pending"),
            ("@@", "subscribed"),
            ("eve@elsewhere.example", "subscribed"),
            ("dave@old.example", "subscribed"),
        )
    )
    user = (
        "<user name='alice'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>"
        "<configure node='n'><x xmlns='jabber:x:data' type='submit'>"
        "<field var='pubsub#access_model'><value>roster</value></field>"
        "<field var='pubsub#roster_groups_allowed'><value>A</value><value>B</value>"
        f"<value>{'C' * 5000}</value></field>"
        f"</x></configure><subscriptions node='n'>{entries}</subscriptions></pubsub></user>"
    )

    report = await import_users(
        db, users_of(doc(user, "old.example"), "old.example"), "old.example", LIMITS, HOST
    )

    [node] = (await accounts(db))["alice"].pep
    assert (node.access_model, node.roster_groups) == ("roster", ("A", "B"))
    assert node.subscriptions == (f"bob@{HOST}/phone", "eve@elsewhere.example")
    assert report.left_out == {
        "PEP roster groups beyond a node's bounds": 1,
        "PEP subscriptions other than subscribed": 1,
        "PEP subscriptions whose JID is malformed": 1,
        "PEP subscriptions beyond 2 a node": 1,
    }


async def test_imported_affiliations_are_bare_jids_of_this_domain_within_bounds(db):
    entries = "".join(
        f"<affiliation jid='{jid}' affiliation='{affiliation}'/>"
        for jid, affiliation in (
            ("alice@old.example", "owner"),
            ("bob@old.example/phone", "member"),
            ("eve@elsewhere.example", "outcast"),
            ("mallory@old.example", "publisher"),
            ("trent@old.example", "owner"),
            ("@@", "member"),
            ("dave@old.example", "none"),
        )
    )
    many = "".join(f"<affiliation jid='u{n}@x.example' affiliation='member'/>" for n in range(1001))
    user = (
        "<user name='alice'><pubsub xmlns='http://jabber.org/protocol/pubsub#owner'>"
        f"<affiliations node='closed'>{entries}</affiliations>"
        f"<affiliations node='crowded'>{many}</affiliations></pubsub></user>"
    )

    report = await import_users(
        db, users_of(doc(user, "old.example"), "old.example"), "old.example", LIMITS, HOST
    )

    closed, crowded = (await accounts(db))["alice"].pep
    assert (closed.node, closed.access_model, closed.items) == ("closed", "presence", ())
    assert closed.affiliations == (
        (f"bob@{HOST}", "member"),
        ("eve@elsewhere.example", "outcast"),
    )
    assert len(crowded.affiliations) == 1000
    assert report.left_out == {
        "PEP affiliations other than member and outcast": 2,
        "PEP affiliations whose JID is malformed": 1,
        "PEP affiliations beyond 1000 a node": 1,
    }
