"""How long archive queries (XEP-0313) take on a large archive, on SQLite and PostgreSQL.

    python -m bench.archive [--rows N] [--engines sqlite,postgresql] [--postgres URL]
                            [--without-peer-index]

One account's archive is filled with N messages (1,000,000 by default) exchanged with
50 peers, and one in 10,000 with a rare one, a second apart, through the repository's own batched ``append`` (20,000 rows
a transaction), beside a second account with a tenth as many. Then each typical query
runs 20 times and its median and slowest times are printed: the newest page and the
oldest, a page after an id in the middle, a conversation with one peer (a frequent one
and the rare one), a time window
and a lookup by ids. Each query also counts its whole result set, as an XEP-0313
answer does. SQLite runs on a file in a temporary directory; PostgreSQL in a schema of
its own, dropped afterwards, and is skipped when it cannot be reached.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from chinwag.store.accounts import SqlAccountRepository
from chinwag.store.archive import (
    ArchiveQuery,
    NewArchivedMessage,
    SqlArchiveRepository,
    id_at,
    visible_id,
)
from chinwag.store.db import Database

POSTGRES_URL = "postgresql+asyncpg://postgres@127.0.0.1:5432/test"
BATCH = 20_000
PEERS = 50
RARE_PEER = "rare@localhost"
RARE_EVERY = 10_000
"""One message in this many is exchanged with ``RARE_PEER``."""
RUNS = 20
PEER_INDEX = "ix_archive_messages_account_id_peer_id"
T0 = datetime(2025, 1, 1, tzinfo=UTC)
STANZA = (
    "<message xmlns='jabber:client' type='chat' id='m{n}'><body>message number {n}</body></message>"
)


def archive_id(n: int) -> int:
    """The id of message ``n``, archived ``n`` seconds after T0."""
    return id_at(T0 + timedelta(seconds=n))


def messages(username: str, start: int, count: int) -> list[NewArchivedMessage]:
    return [
        NewArchivedMessage(
            username=username,
            id=archive_id(n),
            peer=RARE_PEER if n % RARE_EVERY == RARE_EVERY // 2 else f"peer{n % PEERS}@localhost",
            peer_resource="phone",
            outgoing=n % 2 == 0,
            stanza=STANZA.format(n=n),
        )
        for n in range(start, start + count)
    ]


async def fill(repo: SqlArchiveRepository, username: str, rows: int) -> float:
    began = time.perf_counter()
    for start in range(0, rows, BATCH):
        await repo.append(messages(username, start, min(BATCH, rows - start)))
    return time.perf_counter() - began


def queries(rows: int) -> dict[str, ArchiveQuery]:
    middle = visible_id(archive_id(rows // 2))
    return {
        "newest page (<before/>, max 50)": ArchiveQuery(last_page=True, max=50),
        "oldest page (max 50)": ArchiveQuery(max=50),
        "page after an id in the middle": ArchiveQuery(page_after=middle, max=50),
        "page before an id in the middle": ArchiveQuery(page_before=middle, max=50),
        "with one peer, newest page": ArchiveQuery(peer="peer7@localhost", last_page=True, max=50),
        "with a rare peer, newest page": ArchiveQuery(peer=RARE_PEER, last_page=True, max=50),
        "with one peer and a full JID": ArchiveQuery(
            peer="peer7@localhost", peer_resource="phone", max=50
        ),
        "a one-hour window in the middle": ArchiveQuery(
            start=T0 + timedelta(seconds=rows // 2),
            end=T0 + timedelta(seconds=rows // 2 + 3600),
            max=50,
        ),
        "since the last hour": ArchiveQuery(start=T0 + timedelta(seconds=rows - 3600), max=50),
        "five ids": ArchiveQuery(
            ids=tuple(visible_id(archive_id(n)) for n in range(0, rows, rows // 5))
        ),
    }


async def time_query(
    repo: SqlArchiveRepository, query: ArchiveQuery
) -> tuple[float, float, int | None]:
    times = []
    page = None
    for _ in range(RUNS + 1):  # the first warms the cache
        began = time.perf_counter()
        page = await repo.query("alice", query)
        times.append(time.perf_counter() - began)
    assert page is not None
    return statistics.median(times[1:]) * 1e3, max(times[1:]) * 1e3, page.count


@asynccontextmanager
async def sqlite_database() -> AsyncIterator[Database]:
    with tempfile.TemporaryDirectory(prefix="chinwag-archive-") as directory:
        db = Database.open(f"sqlite+aiosqlite:///{Path(directory) / 'chinwag.db'}")
        try:
            yield db
        finally:
            await db.close()


@asynccontextmanager
async def postgres_database(url: str) -> AsyncIterator[Database]:
    schema = f"bench_archive_{uuid.uuid4().hex}"
    admin = create_async_engine(url, connect_args={"timeout": 3})
    try:
        async with admin.begin() as connection:
            await connection.execute(text(f'CREATE SCHEMA "{schema}"'))
        db = Database.open(url, connect_args={"server_settings": {"search_path": schema}})
        try:
            yield db
        finally:
            await db.close()
            async with admin.begin() as connection:
                await connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
    finally:
        await admin.dispose()


async def run(
    engine: str, open_database: Callable[[], object], rows: int, peer_index: bool
) -> None:
    async with open_database() as db:  # type: ignore[attr-defined]
        await db.migrate()
        if not peer_index:
            async with db.engine.begin() as connection:
                await connection.execute(text(f"DROP INDEX {PEER_INDEX}"))
        accounts = SqlAccountRepository(db)
        await accounts.add("alice", [])
        await accounts.add("bob", [])
        repo = SqlArchiveRepository(db)
        filled = await fill(repo, "alice", rows)
        await fill(repo, "bob", rows // 10)
        if engine == "postgresql":
            async with db.engine.begin() as connection:
                await connection.execute(text("ANALYZE archive_messages"))
        print(
            f"\n{engine}: {rows:,} messages archived in {filled:.1f} s "
            f"({filled / rows * 1e6:.1f} µs a message)"
        )
        print(f"{'query':<36} {'median ms':>10} {'slowest ms':>11} {'count':>9}")
        for name, query in queries(rows).items():
            median, slowest, count = await time_query(repo, query)
            counted = "> 1,000" if count is None else f"{count:,}"
            print(f"{name:<36} {median:>10.2f} {slowest:>11.2f} {counted:>9}")


async def postgres_problem(url: str) -> str | None:
    engine = create_async_engine(url, connect_args={"timeout": 3})
    try:
        async with engine.connect() as connection:
            await connection.execute(text("SELECT 1"))
    except Exception as error:  # whatever stops us reaching it is the reason to skip
        return f"{type(error).__name__}: {error}".splitlines()[0]
    finally:
        await engine.dispose()
    return None


async def main_async(rows: int, engines: list[str], url: str, peer_index: bool) -> None:
    for engine in engines:
        if engine == "sqlite":
            await run(engine, sqlite_database, rows, peer_index)
        elif (problem := await postgres_problem(url)) is not None:
            print(f"\npostgresql: skipped ({problem})")
        else:
            await run(engine, lambda: postgres_database(url), rows, peer_index)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.archive", description=__doc__)
    parser.add_argument("--rows", type=int, default=1_000_000, help="messages in the archive")
    parser.add_argument("--engines", default="sqlite,postgresql", help="comma-separated")
    parser.add_argument("--postgres", default=POSTGRES_URL, help="a PostgreSQL URL to use")
    parser.add_argument(
        "--without-peer-index",
        action="store_true",
        help=f"drop {PEER_INDEX} first, to see what it costs and what it gives",
    )
    args = parser.parse_args(argv)
    engines = [name for name in args.engines.split(",") if name]
    if args.rows < 10 or any(name not in ("sqlite", "postgresql") for name in engines):
        parser.error("--rows must be at least 10; engines are sqlite and postgresql")
    asyncio.run(main_async(args.rows, engines, args.postgres, not args.without_peer_index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
