"""The message archive keyed by account and a time-ordered id.

``archive_messages`` is rebuilt as one row per message and archive under the primary
key ``(account_id, id)`` with one more index, on ``(account_id, peer, id)``: ``id`` is a 64-bit integer that holds the time of
archiving (microseconds times 2**10 plus a low part), and it is also the stanza-id
clients see, so the columns ``archive_id`` and ``archived_at`` and three indexes go.
Existing rows are copied: an id this server gave (20 hex digits, 14 of microseconds
and 6 random) becomes those microseconds and the low ten bits of the random part, so
that clients that kept it find the message under it, and one of 16 hex digits (which
a downgrade wrote) is kept; any other gets the time it was archived, with the old row
id's low bits. An id that meets another of the same
account moves up to the next free one. Downgrading copies back, with the new ids as
``archive_id``.

Revision ID: 0012
Revises: 0011
Create Date: 2026-12-07
"""

import re
from collections.abc import Iterator, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa
from alembic import op

revision: str = "0012"
down_revision: str | Sequence[str] | None = "0011"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
LOW_BITS = 10
LOW = (1 << LOW_BITS) - 1
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
SERVER_ID = re.compile(r"[0-9a-f]{20}")
NEW_ID = re.compile(r"[0-9a-f]{16}")
"""What a downgrade from this revision wrote: kept as it is by the next upgrade."""
BATCH = 10_000
OLD_INDEXES = {
    "ix_archive_messages_account_id_id": ["account_id", "id"],
    "ix_archive_messages_account_id_peer_id": ["account_id", "peer", "id"],
    "ix_archive_messages_account_id_archived_at": ["account_id", "archived_at"],
    "ix_archive_messages_account_id_archive_id": ["account_id", "archive_id"],
}
NEW_INDEX = "ix_archive_messages_account_id_peer_id"
OLD_TABLE = "archive_messages_0010"
NEW_TABLE = "archive_messages_0012"


def _foreign_key(table: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        ["account_id"],
        ["account.id"],
        name=f"fk_{table}_account_id_account",
        ondelete="CASCADE",
    )


def _micros(when: datetime) -> int:
    if when.tzinfo is None:  # SQLite keeps no offset: the stored time is UTC
        when = when.replace(tzinfo=UTC)
    return (when - EPOCH) // timedelta(microseconds=1)


def _new_id(archive_id: str, archived_at: datetime, row_id: int) -> int:
    if NEW_ID.fullmatch(archive_id):
        return int(archive_id, 16)
    if SERVER_ID.fullmatch(archive_id):
        return int(archive_id[:14], 16) << LOW_BITS | int(archive_id[14:], 16) & LOW
    return _micros(archived_at) << LOW_BITS | row_id & LOW


def _batches(table: sa.Table, columns: list[str]) -> Iterator[Sequence[Any]]:
    """The rows of ``table`` in (account_id, id) order, a batch at a time, by key."""
    bind = op.get_bind()
    c = table.c
    last: tuple[int, int] | None = None
    while True:
        statement = sa.select(*(c[name] for name in columns)).order_by(c.account_id, c.id)
        if last is not None:
            statement = statement.where(
                sa.or_(c.account_id > last[0], sa.and_(c.account_id == last[0], c.id > last[1]))
            )
        rows = bind.execute(statement.limit(BATCH)).all()
        if not rows:
            return
        yield rows
        last = (rows[-1].account_id, rows[-1].id)


def _new_table(name: str) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("id", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("peer", sa.String(length=2047), nullable=False),
        sa.Column("peer_resource", sa.String(length=1023), nullable=True),
        sa.Column("outgoing", sa.Boolean(), nullable=False),
        sa.Column("stanza", sa.Text(), nullable=False),
        _foreign_key("archive_messages"),
        sa.PrimaryKeyConstraint("account_id", "id", name="pk_archive_messages"),
    )


def _old_table(name: str) -> sa.Table:
    return op.create_table(
        name,
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("archive_id", sa.String(length=32), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(length=2047), nullable=False),
        sa.Column("peer_resource", sa.String(length=1023), nullable=True),
        sa.Column("outgoing", sa.Boolean(), nullable=False),
        sa.Column("stanza", sa.Text(), nullable=False),
        _foreign_key("archive_messages"),
        sa.PrimaryKeyConstraint("id", name="pk_archive_messages"),
        sqlite_autoincrement=True,
    )


def _rename_out(old_indexes: Sequence[str]) -> sa.Table:
    """Move the current table aside (its indexes dropped, names freed) and reflect it."""
    for name in old_indexes:
        op.drop_index(name, table_name="archive_messages")
    op.rename_table("archive_messages", OLD_TABLE)
    if op.get_bind().dialect.name == "postgresql":
        # Constraint names are the schema's on PostgreSQL: free them for the new table.
        op.execute(f"ALTER TABLE {OLD_TABLE} RENAME CONSTRAINT pk_archive_messages TO pk_old")
        op.execute(
            f"ALTER TABLE {OLD_TABLE} RENAME CONSTRAINT fk_archive_messages_account_id_account "
            "TO fk_old"
        )
    return sa.Table(OLD_TABLE, sa.MetaData(), autoload_with=op.get_bind())


def upgrade() -> None:
    old = _rename_out(list(OLD_INDEXES))
    new = _new_table(NEW_TABLE)
    bind = op.get_bind()
    account: int | None = None
    taken: set[int] = set()
    columns = ["account_id", "id", "archive_id", "archived_at", "peer", "peer_resource"]
    for rows in _batches(old, [*columns, "outgoing", "stanza"]):
        copied = []
        for row in rows:
            if row.account_id != account:
                account, taken = row.account_id, set()
            new_id = _new_id(row.archive_id, row.archived_at, row.id)
            while new_id in taken:
                new_id += 1
            taken.add(new_id)
            copied.append(
                {
                    "account_id": row.account_id,
                    "id": new_id,
                    "peer": row.peer,
                    "peer_resource": row.peer_resource,
                    "outgoing": row.outgoing,
                    "stanza": row.stanza,
                }
            )
        bind.execute(sa.insert(new), copied)
    op.drop_table(OLD_TABLE)
    op.rename_table(NEW_TABLE, "archive_messages")
    op.create_index(NEW_INDEX, "archive_messages", ["account_id", "peer", "id"])


def downgrade() -> None:
    new = _rename_out([NEW_INDEX])
    old = _old_table(NEW_TABLE)
    bind = op.get_bind()
    for rows in _batches(new, ["account_id", "id", "peer", "peer_resource", "outgoing", "stanza"]):
        bind.execute(
            sa.insert(old),
            [
                {
                    "account_id": row.account_id,
                    "archive_id": f"{row.id:016x}",
                    "archived_at": EPOCH + timedelta(microseconds=row.id >> LOW_BITS),
                    "peer": row.peer,
                    "peer_resource": row.peer_resource,
                    "outgoing": row.outgoing,
                    "stanza": row.stanza,
                }
                for row in rows
            ],
        )
    op.drop_table(OLD_TABLE)
    op.rename_table(NEW_TABLE, "archive_messages")
    for name, columns in OLD_INDEXES.items():
        op.create_index(name, "archive_messages", columns)
