"""``chinwag db copy``: every row of one database into another, as from SQLite to PostgreSQL.

The tables are those of the models' metadata, which comes from every model module
(imported here), so that a table added by a later migration is copied without
change here; a source table that no model describes refuses the copy rather than
being left behind. Tables are copied parents first (``MetaData.sorted_tables``), a
batch of ``COPY_BATCH`` rows at a time, with their primary keys. The source is read
from one snapshot; the target, migrated to the newest revision first, is written in
one transaction, which ends by setting each table's id sequence past the highest id
the source ever gave (SQLite's ``sqlite_sequence`` remembers ids of deleted rows,
which must not be given again: readers of the event outbox resume after an id) and
by comparing the rows of every table on both sides.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Column, Table, delete, func, insert, inspect, select, text
from sqlalchemy.ext.asyncio import AsyncConnection

from chinwag.store import oauth_models  # noqa: F401  (its tables join the metadata)
from chinwag.store.db import Database, read_snapshot
from chinwag.store.models import Base

COPY_BATCH = 1000
_NOT_COPIED = frozenset({"alembic_version", "sqlite_sequence"})
"""Kept by the migrations and by SQLite themselves, not copied."""


class CopyRefused(Exception):
    """The copy cannot be made; nothing was written."""


@dataclass(frozen=True)
class CopiedTable:
    name: str
    rows: int


def copied_tables() -> list[Table]:
    """Every table of the store, parents before the tables that refer to them."""
    return list(Base.metadata.sorted_tables)


async def copy_database(
    source: Database,
    target: Database,
    *,
    force: bool = False,
    progress: Callable[[str, int], object] | None = None,
) -> list[CopiedTable]:
    """Copy every row of ``source`` into ``target`` (both migrated to the newest
    revision); raises CopyRefused when the target has rows already, unless ``force``
    deletes them first. ``progress`` hears (table, rows copied so far) after each batch."""
    tables = copied_tables()
    async with source.engine.connect() as reading:
        await read_snapshot(reading)
        await _refuse_unknown_tables(reading, tables)
        async with target.engine.begin() as writing:
            await _empty_target(writing, tables, force)
            copied = [
                CopiedTable(table.name, await _copy_table(reading, writing, table, progress))
                for table in tables
            ]
            for table in tables:
                await _continue_ids(reading, writing, table)
            await _compare(writing, tables, copied)
    return copied


async def _refuse_unknown_tables(reading: AsyncConnection, tables: list[Table]) -> None:
    names = set(await reading.run_sync(lambda sync: inspect(sync).get_table_names()))
    unknown = sorted(names - {table.name for table in tables} - _NOT_COPIED)
    if unknown:
        raise CopyRefused(
            f"the source has tables this chinwag does not know ({', '.join(unknown)}): "
            "is it from a newer chinwag?"
        )


async def _empty_target(writing: AsyncConnection, tables: list[Table], force: bool) -> None:
    filled = [table.name for table in tables if await _count(writing, table)]
    if not filled:
        return
    if not force:
        raise CopyRefused(
            f"the target has data already (in {', '.join(filled)}); "
            "--force deletes it before copying"
        )
    for table in reversed(tables):
        await writing.execute(delete(table))


async def _count(connection: AsyncConnection, table: Table) -> int:
    return int(await connection.scalar(select(func.count()).select_from(table)) or 0)


async def _copy_table(
    reading: AsyncConnection,
    writing: AsyncConnection,
    table: Table,
    progress: Callable[[str, int], object] | None,
) -> int:
    rows = 0
    result = await reading.stream(select(table).order_by(*table.primary_key.columns))
    async for batch in result.partitions(COPY_BATCH):
        await writing.execute(insert(table), [dict(row._mapping) for row in batch])
        rows += len(batch)
        if progress is not None:
            progress(table.name, rows)
    return rows


async def _continue_ids(reading: AsyncConnection, writing: AsyncConnection, table: Table) -> None:
    """Make the target give ``table`` new ids above every id the source gave."""
    column = table.autoincrement_column
    if column is None:
        return
    highest = await _highest_id(reading, table, column)
    if writing.dialect.name == "postgresql":
        # setval(seq, 1, false): the next id is 1, for a table that never had a row.
        await writing.execute(
            text("SELECT setval(pg_get_serial_sequence(:table, :column), :value, :called)"),
            {
                "table": table.name,
                "column": column.name,
                "value": max(highest, 1),
                "called": highest > 0,
            },
        )
    elif _sqlite_autoincrement(table) and highest:
        # Inserting with ids raised sqlite_sequence to the highest id copied, which may be
        # below the highest given (or have made no row for it, when none was copied).
        given = await _sqlite_sequence(writing, table)
        await writing.execute(
            text("DELETE FROM sqlite_sequence WHERE name = :table"), {"table": table.name}
        )
        await writing.execute(
            text("INSERT INTO sqlite_sequence (name, seq) VALUES (:table, :value)"),
            {"table": table.name, "value": max(highest, given)},
        )


async def _highest_id(reading: AsyncConnection, table: Table, column: Column[int]) -> int:
    """The highest id the source has given in ``table``, even to rows deleted since."""
    highest = int(await reading.scalar(select(func.max(column))) or 0)
    if reading.dialect.name == "postgresql":
        given = await reading.scalar(
            text(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence(:table, :column)::regclass)"
            ),
            {"table": table.name, "column": column.name},
        )
    elif _sqlite_autoincrement(table):
        given = await _sqlite_sequence(reading, table)
    else:
        given = None
    return max(highest, int(given or 0))


async def _sqlite_sequence(connection: AsyncConnection, table: Table) -> int:
    """The highest id SQLite has given in the AUTOINCREMENT ``table``."""
    given = await connection.scalar(
        text("SELECT max(seq) FROM sqlite_sequence WHERE name = :table"), {"table": table.name}
    )
    return int(given or 0)


def _sqlite_autoincrement(table: Table) -> bool:
    return bool(table.dialect_options["sqlite"].get("autoincrement"))


async def _compare(
    writing: AsyncConnection, tables: list[Table], copied: list[CopiedTable]
) -> None:
    for table, done in zip(tables, copied, strict=True):
        found = await _count(writing, table)
        if found != done.rows:
            raise CopyRefused(f"{table.name}: {done.rows} rows copied but {found} in the target")
