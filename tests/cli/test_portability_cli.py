"""``chinwag export`` and ``chinwag import``: XEP-0227 files, run as an operator would."""

import json
import os
import stat
import subprocess
from datetime import UTC, datetime

import pytest
from cli_support import CHINWAG, Chinwag, error_line

from chinwag.config import CONFIG_ENV_VAR
from chinwag.store.db import Database
from chinwag.store.offline import NewOfflineMessage, SqlOfflineRepository


@pytest.fixture
def second(tmp_path):
    """Another chinwag, of the same domain, in a directory of its own."""
    directory = tmp_path / "second"
    directory.mkdir()
    return Chinwag(directory)


async def fill(chinwag):
    async with chinwag.network() as network:
        await network.accounts.add_user("alice", "alice-secret", "Alice Liddell")
        await network.accounts.add_user("bob", "bob-secret")
        await network.contacts.add_mutual("alice", "bob")
    stanza = "<message xmlns='jabber:client' type='chat'><body>later</body></message>"
    when = datetime(2026, 5, 6, 7, 8, 9, tzinfo=UTC)
    db = Database.open(f"sqlite+aiosqlite:///{chinwag.data_dir / 'chinwag.db'}")
    try:
        await SqlOfflineRepository(db).store_many([NewOfflineMessage("bob", stanza, when)], 10)
    finally:
        await db.close()


async def summary(chinwag):
    async with chinwag.network() as network:
        users = [record.username for record in await network.accounts.list_users()]
        contacts = {
            name: [c.username for c in await network.contacts.list_contacts(name)] for name in users
        }
        profile = await network.profiles.get("alice")
        signs_in = await network.accounts.verify_password("bob", "bob-secret")
    return users, contacts, profile and profile.fn, signs_in


def mode(path):
    return stat.S_IMODE(path.stat().st_mode)


async def test_export_to_a_file_and_import_it_elsewhere(chinwag, second):
    await fill(chinwag)

    exported = chinwag("export", "backup.xml", "--json")

    assert exported.returncode == 0, exported.stderr
    assert json.loads(exported.stdout) == {
        "file": "backup.xml",
        "users": 2,
        "contacts": 2,
        "offline_messages": 1,
    }
    backup = chinwag.directory / "backup.xml"
    assert mode(backup) == 0o600
    assert [path.name for path in chinwag.directory.iterdir() if ".part" in path.name] == []
    text = backup.read_text()
    assert "<server-data xmlns='urn:xmpp:pie:0'>" in text
    assert "alice-secret" not in text

    imported = second("import", str(backup))

    assert imported.returncode == 0, imported.stderr
    assert imported.stdout.strip() == (
        "✓ Imported 2 users, 2 contacts, 1 profile and 1 offline message"
    )
    assert await summary(second) == await summary(chinwag)
    assert await summary(second) == (
        ["alice", "bob"],
        {"alice": ["bob"], "bob": ["alice"]},
        "Alice Liddell",
        True,
    )


async def test_export_to_stdout_and_import_from_stdin(chinwag, second):
    await fill(chinwag)

    exported = chinwag("export", "-")

    assert exported.returncode == 0, exported.stderr
    assert exported.stdout.startswith("<?xml version='1.0' encoding='UTF-8'?>")
    assert "Exported 2 users" in exported.stderr
    imported = second("import", "-", "--json", stdin=exported.stdout)
    assert imported.returncode == 0, imported.stderr
    assert json.loads(imported.stdout)["users"] == 2
    assert await summary(second) == await summary(chinwag)


async def test_split_export_writes_a_file_per_user_as_prosody_keeps_them(chinwag, second):
    await fill(chinwag)

    exported = chinwag("export", "--split", "users")

    assert exported.returncode == 0, exported.stderr
    directory = chinwag.directory / "users"
    assert mode(directory) == 0o700
    files = sorted(directory.iterdir())
    assert [path.name for path in files] == ["alice@chat.example.xml", "bob@chat.example.xml"]
    assert {mode(path) for path in files} == {0o600}
    assert '<user name="alice">' in files[0].read_text()
    imported = second("import", str(directory))
    assert imported.returncode == 0, imported.stderr
    assert await summary(second) == await summary(chinwag)


async def test_an_import_of_another_host_says_what_it_left_out(chinwag):
    (chinwag.directory / "old.xml").write_text(
        "<server-data xmlns='urn:xmpp:pie:0'>"
        "<host jid='old.example'><user name='alice' password='pw'>"
        "<query xmlns='jabber:iq:roster'><item jid='romeo@montague.example' subscription='both'/>"
        "</query><query xmlns='jabber:iq:privacy'/></user></host>"
        "<host jid='conference.old.example'><user name='x'/></host></server-data>"
    )

    imported = chinwag("import", "old.xml", "--host", "old.example")

    assert imported.returncode == 0, imported.stderr
    assert imported.stderr.splitlines() == [
        "warning: left out: contacts on other servers: 1",
        "warning: not read (chinwag keeps no such data): <query xmlns='jabber:iq:privacy'>: 1",
        "warning: 1 user of conference.old.example not imported (--host)",
    ]
    async with chinwag.accounts() as accounts:
        assert await accounts.verify_password("alice", "pw")


async def test_a_rejected_import_lists_its_problems_and_imports_nothing(chinwag):
    async with chinwag.accounts() as accounts:
        await accounts.add_user("bob", "pw")
    (chinwag.directory / "bad.xml").write_text(
        "<server-data xmlns='urn:xmpp:pie:0'><host jid='chat.example'>"
        "<user name='alice'/><user name='a b'/><user name='bob'/></host></server-data>"
    )

    rejected = chinwag("import", "bad.xml")

    assert rejected.returncode == 1
    assert rejected.stderr.splitlines() == [
        "user 'a b': 'a b' is not a valid username: it contains a space",
        "user 'bob' already exists",
        "error: nothing imported: 2 problems",
    ]
    async with chinwag.accounts() as accounts:
        assert [record.username for record in await accounts.list_users()] == ["bob"]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("<server-data xmlns='urn:xmpp:pie:0'><host", "error: nothing imported: bad.xml, line 1: "),
        ("<users/>", "error: nothing imported: bad.xml, line 1: not XEP-0227 data"),
        (None, "error: cannot read bad.xml: No such file or directory"),
    ],
)
def test_a_file_that_cannot_be_read_is_one_line(chinwag, content, message):
    if content is not None:
        (chinwag.directory / "bad.xml").write_text(content)

    result = chinwag("import", "bad.xml")

    assert result.returncode == 1
    assert error_line(result).startswith(message)


def test_an_export_where_nothing_can_be_written_is_one_line(chinwag):
    result = chinwag("export", "missing/backup.xml")

    assert result.returncode == 1
    assert error_line(result) == "error: cannot write missing/backup.xml: No such file or directory"


def test_import_of_a_host_that_is_no_domain_is_refused(chinwag):
    result = chinwag("import", "-", "--host", "a b", stdin="")

    assert result.returncode == 1
    assert error_line(result).startswith("error: --host 'a b' is not a domain")


def test_an_export_to_a_closed_stdout_says_so_in_one_line(chinwag):
    env = {key: value for key, value in os.environ.items() if key != CONFIG_ENV_VAR}
    process = subprocess.Popen(
        [str(CHINWAG), "export", "-", "--config", str(chinwag.config)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=chinwag.directory,
        env=env,
    )
    assert process.stdout is not None
    process.stdout.close()  # before anything is written: the first write fails
    _out, errors = process.communicate(timeout=120)

    assert process.returncode == 1
    assert errors.decode().strip() == (
        "error: standard output was closed before the export was whole"
    )
