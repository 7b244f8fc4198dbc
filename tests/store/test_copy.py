"""store/copy.py and ``chinwag db copy``: a whole store into another database, nothing lost.

The source is an SQLite store holding a row in every table that the network and the
OAuth platform fill; the copy is compared with it table by table, row by row. The
PostgreSQL targets are databases of their own, made for the test and dropped after
it; those tests are skipped, with the reason, when PostgreSQL is unreachable.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from chinwag.cli import Network
from chinwag.config import CONFIG_ENV_VAR
from chinwag.network.accounts import derive_matching
from chinwag.store.archive import NewArchivedMessage, Prefs, SqlArchiveRepository, id_at
from chinwag.store.blocking import SqlBlockingRepository
from chinwag.store.contacts import Contact, RosterChange, SqlContactRepository
from chinwag.store.copy import CopyRefused, copied_tables, copy_database
from chinwag.store.db import Database
from chinwag.store.invitations import SqlInvitationRepository
from chinwag.store.oauth import NewApp, NewCode, NewToken, SqlOAuthRepository
from chinwag.store.offline import NewOfflineMessage, SqlOfflineRepository
from chinwag.store.pep import NodeConfig, SqlPepRepository, StoredItem

CHINWAG = Path(sys.executable).with_name("chinwag")
POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
"""The server the ``postgres_problem`` fixture probes (conftest.py); each test makes a
database of its own there."""
T0 = datetime(2026, 7, 8, 9, 10, 11, 123456, tzinfo=UTC)


async def fill(db: Database) -> None:
    """A row in every table the network and the platform write, and ids given to rows
    that are gone (which a copy must not give again)."""
    network = Network.over(db)
    await network.accounts.add_user("alice", "alice-secret", "Alice")
    await network.accounts.add_user("bob", "bob-secret")
    await network.accounts.add_user("carol", "carol-secret")
    await network.contacts.add_mutual("alice", "bob")
    await SqlContactRepository(db).save(
        [
            RosterChange(
                "carol", "alice", Contact("alice", "Al", "to", True, False, True, ("Ü",), True)
            )
        ],
        "test",
    )
    await network.profiles.set_fields("alice", photo=bytes(range(256)), photo_type="image/png")
    offline = SqlOfflineRepository(db)
    await offline.store_many(
        [
            NewOfflineMessage(
                "bob", f"<message xmlns='jabber:client'><body>{n}</body></message>", T0
            )
            for n in range(3)
        ],
        10,
    )
    await SqlBlockingRepository(db).block("alice", ["spam@else.example"], 100, "test")
    archive = SqlArchiveRepository(db)
    await archive.append(
        [
            NewArchivedMessage(
                "alice",
                id_at(T0, n),
                "bob@localhost",
                "phone",
                n == 0,
                f"<message xmlns='jabber:client'><body>Ü {n}</body></message>",
            )
            for n in range(2)
        ]
    )
    await archive.set_prefs("alice", Prefs("roster", frozenset({"bob@localhost"})))
    oauth = SqlOAuthRepository(db)
    await oauth.add_app(
        NewApp("app1", "App", b"h" * 32, ("https://app.example/cb",), False, False, "alice")
    )
    await oauth.add_token(
        NewToken(
            b"a" * 32,
            b"r" * 32,
            "fam",
            "app1",
            "alice",
            "wl.messenger",
            T0,
            T0 + timedelta(hours=1),
            None,
        )
    )
    await oauth.add_code(
        NewCode(b"c" * 32, "app1", "alice", None, "wl.messenger", "x" * 43, "S256", "fam", T0)
    )
    await oauth.grant_consent("alice", "app1", "wl.messenger", remembered=True)
    model = await network.accounts.scram_credentials("alice", "SCRAM-SHA-256")
    assert model is not None
    await oauth.add_app_password("alice", "app1", "phone", [derive_matching("app-pw", model)])
    await oauth.add_web_session("alice", b"s" * 32, T0 + timedelta(days=365 * 20))
    await SqlInvitationRepository(db).add(b"i" * 32, "operator", T0, T0 + timedelta(days=7))
    pep = SqlPepRepository(db)
    for n in range(2):
        item = StoredItem(f"i{n}", f"<n xmlns='urn:example'>{n}</n>")
        await pep.publish("alice", "urn:example", NodeConfig("open", 1), item)  # i0 goes
    await pep.set_affiliations("alice", "urn:example", {"bob@example.org": "member"})
    await pep.subscribe("alice", "urn:example", ["bob@example.org/phone"])
    await pep.create("alice", "urn:example:friends", NodeConfig("roster", 1, ("Friends",)))
    await pep.set_private(
        "alice", "a:b", "<query xmlns='jabber:iq:private'><a xmlns='a:b'/></query>"
    )
    async with db.engine.begin() as connection:  # the newest message: its id stays taken
        await connection.execute(text("DELETE FROM offline_messages WHERE id = 3"))


async def rows(db: Database) -> dict[str, list[dict[str, Any]]]:
    """Every row of every table, in primary key order."""
    found = {}
    async with db.engine.connect() as connection:
        for table in copied_tables():
            result = await connection.execute(select(table).order_by(*table.primary_key.columns))
            found[table.name] = [dict(row._mapping) for row in result]
    return found


def same_rows(
    source: dict[str, list[dict[str, Any]]], target: dict[str, list[dict[str, Any]]]
) -> None:
    assert source.keys() == target.keys()
    for table, expected in source.items():
        assert target[table] == expected, table


@pytest.fixture
async def source(tmp_path: Path) -> AsyncIterator[Database]:
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'source.db'}")
    await db.migrate()
    await fill(db)
    try:
        yield db
    finally:
        await db.close()


async def _postgres(statement: str) -> None:
    engine = create_async_engine(
        POSTGRES_URL, isolation_level="AUTOCOMMIT", connect_args={"timeout": 3}
    )
    try:
        async with engine.connect() as connection:
            await connection.execute(text(statement))
    finally:
        await engine.dispose()


@asynccontextmanager
async def new_postgres_database(problem: str | None) -> AsyncIterator[str]:
    """The URL of a new, empty PostgreSQL database, dropped at the end."""
    if problem is not None:
        pytest.skip(f"PostgreSQL at 127.0.0.1:5432 unreachable: {problem}")
    name = f"chinwag_copy_{uuid.uuid4().hex}"
    await _postgres(f'CREATE DATABASE "{name}"')
    try:
        yield POSTGRES_URL.rsplit("/", 1)[0] + f"/{name}"
    finally:
        await _postgres(f'DROP DATABASE "{name}" WITH (FORCE)')


@pytest.fixture
async def postgres_url(postgres_problem: str | None) -> AsyncIterator[str]:
    async with new_postgres_database(postgres_problem) as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
async def target_url(
    request: pytest.FixtureRequest, tmp_path: Path, postgres_problem: str | None
) -> AsyncIterator[str]:
    """An empty SQLite file's URL, or a new PostgreSQL database's (dropped after)."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
        return
    async with new_postgres_database(postgres_problem) as url:
        yield url


async def copied(source: Database, url: str, *, force: bool = False) -> Database:
    target = Database.open(url)
    await target.migrate()
    await copy_database(source, target, force=force)
    return target


async def next_offline_id(db: Database) -> int:
    await SqlOfflineRepository(db).store_many(
        [NewOfflineMessage("alice", "<message xmlns='jabber:client'/>", T0)], 10
    )
    async with db.engine.connect() as connection:
        return int(await connection.scalar(text("SELECT max(id) FROM offline_messages")))


async def test_every_table_is_filled_and_copied_to_sqlite(source, tmp_path):
    target = await copied(source, f"sqlite+aiosqlite:///{tmp_path / 'target.db'}")
    try:
        before, after = await rows(source), await rows(target)
        same_rows(before, after)
        empty = {name for name, found in before.items() if not found}
        assert not empty, f"fill() leaves {empty} empty"
        assert await next_offline_id(target) == 4
        assert await Network.over(target).accounts.verify_password("alice", "alice-secret")
    finally:
        await target.close()


@pytest.mark.postgres
async def test_sqlite_to_postgresql_loses_nothing(source, postgres_url):
    target = await copied(source, postgres_url)
    try:
        same_rows(await rows(source), await rows(target))
        assert await next_offline_id(target) == 4  # past the id of the deleted message
        network = Network.over(target)
        assert await network.accounts.verify_password("bob", "bob-secret")
        assert [c.username for c in await network.contacts.list_contacts("alice")] == ["bob"]
        added = await network.accounts.add_user("dave", "pw")  # account ids go on too
        assert added == "dave"
    finally:
        await target.close()


async def test_ids_of_rows_all_deleted_are_not_given_again(source, target_url):
    async with source.engine.begin() as connection:
        await connection.execute(text("DELETE FROM offline_messages"))
    target = await copied(source, target_url)
    try:
        assert await next_offline_id(target) == 4
    finally:
        await target.close()


async def test_a_target_with_data_is_refused_unless_forced(source, tmp_path):
    url = f"sqlite+aiosqlite:///{tmp_path / 'target.db'}"
    target = await copied(source, url)
    try:
        await Network.over(target).accounts.add_user("zed", "pw")

        with pytest.raises(CopyRefused, match=r"the target has data already \(in account, "):
            await copy_database(source, target)

        await copy_database(source, target, force=True)
        same_rows(await rows(source), await rows(target))
    finally:
        await target.close()


async def test_a_source_table_that_no_model_describes_refuses_the_copy(source, tmp_path):
    async with source.engine.begin() as connection:
        await connection.execute(text("CREATE TABLE later_feature (id INTEGER PRIMARY KEY)"))
    target = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'target.db'}")
    await target.migrate()
    try:
        with pytest.raises(CopyRefused, match=r"does not know \(later_feature\)"):
            await copy_database(source, target)
        assert all(not found for found in (await rows(target)).values())
    finally:
        await target.close()


def chinwag(directory: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {key: value for key, value in os.environ.items() if key != CONFIG_ENV_VAR}
    return subprocess.run(
        [str(CHINWAG), *args, "--config", str(directory / "chinwag.toml")],
        capture_output=True,
        text=True,
        cwd=directory,
        env=env,
        timeout=120,
    )


@pytest.mark.postgres
async def test_db_copy_moves_an_installation_to_postgresql(tmp_path, postgres_url):
    (tmp_path / "chinwag.toml").write_text(f"domain = 'chat.example'\ndata_dir = '{tmp_path}'\n")
    db = Database.open(f"sqlite+aiosqlite:///{tmp_path / 'chinwag.db'}")
    await db.migrate()
    await fill(db)
    before = await rows(db)
    await db.close()

    result = chinwag(tmp_path, "db", "copy", "--to", postgres_url, "--json")

    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout)
    assert report["to"] == postgres_url
    assert report["tables"] == {name: len(found) for name, found in before.items()}
    assert report["tables"]["account"] == 3
    target = Database.open(postgres_url)
    try:
        same_rows(before, await rows(target))
    finally:
        await target.close()

    again = chinwag(tmp_path, "db", "copy", "--to", postgres_url)

    assert again.returncode == 1
    assert again.stderr.strip().startswith("error: the target has data already (in account, ")


@pytest.mark.parametrize(
    ("url", "message"),
    [
        (
            "mysql://db/chinwag",
            "error: --to must start with sqlite+aiosqlite:// or postgresql+asyncpg://",
        ),
        (
            "sqlite+aiosqlite:///{dir}/chinwag.db",
            "error: --to names the configured database itself",
        ),
        (
            "postgresql+asyncpg://chinwag:s3cret@127.0.0.1:1/chat",
            "error: cannot use the database postgresql+asyncpg://chinwag:***@127.0.0.1:1/chat: ",
        ),
    ],
)
def test_db_copy_refuses_a_target_it_cannot_use(tmp_path, url, message):
    (tmp_path / "chinwag.toml").write_text(f"domain = 'chat.example'\ndata_dir = '{tmp_path}'\n")
    assert chinwag(tmp_path, "db", "migrate").returncode == 0

    result = chinwag(tmp_path, "db", "copy", "--to", url.format(dir=tmp_path))

    assert result.returncode == 1
    [line] = result.stderr.strip().splitlines()
    assert line.startswith(message)


@pytest.mark.postgres
async def test_db_migrate_makes_the_schema_that_other_commands_refuse_to_make(
    tmp_path, postgres_url
):
    (tmp_path / "chinwag.toml").write_text(f"[database]\nurl = '{postgres_url}'\n")

    refused = chinwag(tmp_path, "user", "list")
    made = chinwag(tmp_path, "db", "migrate")
    listed = chinwag(tmp_path, "user", "list", "--json")

    assert refused.returncode == 1
    [line] = refused.stderr.strip().splitlines()
    assert line.startswith(f"error: the database {postgres_url} holds no chinwag tables: ")
    assert made.returncode == 0, made.stderr
    assert listed.returncode == 0, listed.stderr
    assert json.loads(listed.stdout) == []
