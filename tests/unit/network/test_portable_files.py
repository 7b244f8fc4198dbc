"""network/portable_files.py: reading the users of one host out of XEP-0227 files, safely."""

import io
from pathlib import Path

import pytest

from chinwag.network import portable_files
from chinwag.network.portable_files import ExportFiles, PortableFileError

PIE = "urn:xmpp:pie:0"


def document(body: str, *, namespace: str = PIE) -> bytes:
    return f"<?xml version='1.0' encoding='UTF-8'?><server-data xmlns='{namespace}'>{body}</server-data>".encode()


def names(files: ExportFiles, data: bytes, directory: Path | None = None) -> list[str]:
    base = directory or files.root
    return [user.attrs["name"] for user in files.users(io.BytesIO(data), "export.xml", base)]


def test_users_of_the_wanted_host_are_built_and_others_counted(tmp_path):
    files = ExportFiles("chat.example", tmp_path)
    data = document(
        "<host jid='other.example'><user name='x'/><user name='y'/></host>"
        "<host jid='Chat.Example'><user name='alice'><vCard xmlns='vcard-temp'><FN>A</FN>"
        "</vCard></user><user name='bob'/></host>"
    )

    users = list(files.users(io.BytesIO(data), "export.xml", tmp_path))

    assert [user.attrs["name"] for user in users] == ["alice", "bob"]
    assert users[0].find("vCard", "vcard-temp").find("FN", "vcard-temp").text == "A"
    assert files.other_hosts == {"other.example": 2}


def test_the_draft_namespace_of_older_exports_is_read(tmp_path):
    files = ExportFiles("chat.example", tmp_path)
    data = document(
        "<host jid='chat.example'><user name='alice' password='pw'/></host>",
        namespace="http://www.xmpp.org/extensions/xep-0227.html#ns",
    )

    assert names(files, data) == ["alice"]


def test_what_an_import_does_not_read_is_counted_and_not_kept(tmp_path):
    files = ExportFiles("chat.example", tmp_path)
    archive = "<result xmlns='urn:xmpp:mam:2'><body>old</body></result>" * 3
    data = document(
        "<host jid='chat.example'><user name='alice'>"
        f"<archive xmlns='urn:xmpp:pie:0#mam'>{archive}</archive>"
        "<query xmlns='jabber:iq:privacy'><list name='a'/></query>"
        "<query xmlns='jabber:iq:roster'/>"
        "</user><user name='bob'><archive xmlns='urn:xmpp:pie:0#mam'/></user></host>"
    )

    alice, _bob = files.users(io.BytesIO(data), "export.xml", tmp_path)

    assert [(child.ns, child.tag) for child in alice.elements()] == [("jabber:iq:roster", "query")]
    assert files.skipped == {
        "<archive xmlns='urn:xmpp:pie:0#mam'>": 2,
        "<query xmlns='jabber:iq:privacy'>": 1,
    }


def test_a_file_read_in_small_pieces_gives_the_same_users(tmp_path, monkeypatch):
    monkeypatch.setattr(portable_files, "READ_BYTES", 7)
    files = ExportFiles("chat.example", tmp_path)
    data = document(
        "<host jid='chat.example'><user name='alice'><vCard xmlns='vcard-temp'>"
        "<FN>Alice Liddell, of Wonderland</FN></vCard></user><user name='bob'/></host>"
    )

    alice, bob = files.users(io.BytesIO(data), "export.xml", tmp_path)

    assert alice.find("vCard", "vcard-temp").find("FN", "vcard-temp").text == (
        "Alice Liddell, of Wonderland"
    )
    assert bob.attrs["name"] == "bob"


def test_xinclude_layout_of_xep_0227_is_followed(tmp_path):
    """Section 5: the main file includes a file per host, which includes a file per user."""
    (tmp_path / "chat.example").mkdir()
    (tmp_path / "export.xml").write_text(
        f"<server-data xmlns='{PIE}' xmlns:xi='http://www.w3.org/2001/XInclude'>"
        "<xi:include href='chat.example.xml'/><xi:include href='other.example.xml'/>"
        "</server-data>"
    )
    (tmp_path / "chat.example.xml").write_text(
        f"<host xmlns='{PIE}' xmlns:xi='http://www.w3.org/2001/XInclude' jid='chat.example'>"
        "<xi:include href='chat.example/alice.xml'/><xi:include href='chat.example/bob.xml'/>"
        "</host>"
    )
    (tmp_path / "other.example.xml").write_text(
        f"<host xmlns='{PIE}' xmlns:xi='http://www.w3.org/2001/XInclude' jid='other.example'>"
        "<xi:include href='missing.xml'/></host>"
    )
    (tmp_path / "chat.example" / "alice.xml").write_text(
        f"<user xmlns='{PIE}' name='alice'><vCard xmlns='vcard-temp'>"
        "<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='fn.xml'/></vCard></user>"
    )
    (tmp_path / "chat.example" / "fn.xml").write_text("<FN xmlns='vcard-temp'>Alice</FN>")
    (tmp_path / "chat.example" / "bob.xml").write_text(f"<user xmlns='{PIE}' name='bob'/>")
    files = ExportFiles("chat.example", tmp_path)

    with (tmp_path / "export.xml").open("rb") as stream:
        alice, bob = files.users(stream, "export.xml", tmp_path)

    assert alice.find("vCard", "vcard-temp").find("FN", "vcard-temp").text == "Alice"
    assert bob.attrs["name"] == "bob"
    assert files.other_hosts == {"other.example": 1}


def test_a_directory_of_documents_as_prosody_keeps_them(tmp_path):
    for name in ("bob", "alice"):
        (tmp_path / f"{name}@chat.example.xml").write_bytes(
            document(f"<host jid='chat.example'><user name='{name}'/></host>")
        )
    (tmp_path / "carol@other.example.xml").write_bytes(
        document("<host jid='other.example'><user name='carol'/></host>")
    )
    (tmp_path / "notes.txt").write_text("not XML")
    files = ExportFiles("chat.example", tmp_path)

    assert [user.attrs["name"] for user in files.directory_users(tmp_path)] == ["alice", "bob"]
    assert files.other_hosts == {"other.example": 1}


@pytest.mark.security
@pytest.mark.parametrize(
    ("href", "reason"),
    [
        ("../outside.xml", "is outside"),
        ("/etc/passwd", "is outside"),
        ("file:///etc/passwd", "is not a relative path"),
        ("http://example.org/x.xml", "is not a relative path"),
        ("missing.xml", "no such file"),
    ],
)
def test_includes_stay_inside_the_export_directory(tmp_path, href, reason):
    export = tmp_path / "export"
    export.mkdir()
    (tmp_path / "outside.xml").write_text(f"<host xmlns='{PIE}' jid='chat.example'/>")
    data = document(f"<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='{href}'/>")

    with pytest.raises(PortableFileError, match=reason):
        names(ExportFiles("chat.example", export), data, export)


@pytest.mark.security
def test_includes_that_include_themselves_end(tmp_path):
    (tmp_path / "loop.xml").write_text(
        f"<host xmlns='{PIE}' jid='chat.example'><user name='a'>"
        "<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='part.xml'/></user></host>"
    )
    (tmp_path / "part.xml").write_text(
        "<x xmlns:xi='http://www.w3.org/2001/XInclude'><xi:include href='part.xml'/></x>"
    )
    data = document("<xi:include xmlns:xi='http://www.w3.org/2001/XInclude' href='loop.xml'/>")

    with pytest.raises(PortableFileError, match="includes nested deeper than 8"):
        names(ExportFiles("chat.example", tmp_path), data)


@pytest.mark.security
def test_entity_expansion_is_refused(tmp_path):
    data = (
        b"<?xml version='1.0'?><!DOCTYPE lolz [<!ENTITY lol 'lol'>"
        b"<!ENTITY lol2 '&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;&lol;'>]>"
        b"<server-data xmlns='urn:xmpp:pie:0'><host jid='chat.example'>"
        b"<user name='&lol2;'/></host></server-data>"
    )

    with pytest.raises(PortableFileError, match="line 1: document type declarations are not"):
        names(ExportFiles("chat.example", tmp_path), data)


@pytest.mark.security
def test_external_entities_are_refused(tmp_path):
    data = (
        b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY secret SYSTEM 'file:///etc/passwd'>]>"
        b"<server-data xmlns='urn:xmpp:pie:0'/>"
    )

    with pytest.raises(PortableFileError, match="document type declarations"):
        names(ExportFiles("chat.example", tmp_path), data)


@pytest.mark.security
def test_deep_nesting_is_refused(tmp_path):
    inner = "<a>" * 70 + "</a>" * 70
    data = document(
        f"<host jid='chat.example'><user name='x'><vCard xmlns='vcard-temp'>{inner}</vCard></user></host>"
    )

    with pytest.raises(PortableFileError, match="nested deeper than 64"):
        names(ExportFiles("chat.example", tmp_path), data)


@pytest.mark.security
def test_a_user_larger_than_the_limit_is_refused(tmp_path, monkeypatch):
    monkeypatch.setattr(portable_files, "MAX_USER_BYTES", 1000)
    big = "x" * 600
    data = document(
        "<host jid='chat.example'><user name='a'><vCard xmlns='vcard-temp'>"
        f"<FN>{big}</FN><NICKNAME>{big}</NICKNAME></vCard></user></host>"
    )

    with pytest.raises(PortableFileError, match="a user holds more than"):
        names(ExportFiles("chat.example", tmp_path), data)


def test_what_is_not_skipped_counts_against_each_user_afresh(tmp_path, monkeypatch):
    monkeypatch.setattr(portable_files, "MAX_USER_BYTES", 1000)
    user = "<user name='u{}'><vCard xmlns='vcard-temp'><FN>" + "x" * 600 + "</FN></vCard></user>"
    skipped = "<archive xmlns='urn:xmpp:pie:0#mam'>" + "y" * 5000 + "</archive>"
    data = document(
        "<host jid='chat.example'>"
        + "".join(user.format(n) for n in range(3))
        + f"<user name='v'>{skipped}</user></host>"
    )

    assert names(ExportFiles("chat.example", tmp_path), data) == ["u0", "u1", "u2", "v"]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"<server-data xmlns='urn:xmpp:pie:0'><host jid='a'>", "no element found"),
        (b"<users/>", "not XEP-0227 data: the root element is <users>"),
        (b"<server-data xmlns='urn:xmpp:pie:0'><host/></server-data>", "without its 'jid'"),
        (b"<server-data xmlns='urn:xmpp:pie:0'>&unknown;</server-data>", "undefined entity"),
        (
            b"<server-data xmlns='urn:xmpp:pie:0' xmlns:xi='http://www.w3.org/2001/XInclude'>"
            b"<xi:include href='a.xml' parse='text'/></server-data>",
            "only <include href",
        ),
    ],
)
def test_a_file_that_is_not_xep_0227_data_names_the_reason(tmp_path, data, reason):
    with pytest.raises(PortableFileError, match=f"^export.xml, line 1: .*{reason}"):
        names(ExportFiles("chat.example", tmp_path), data)
