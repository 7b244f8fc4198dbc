"""Message archive (XEP-0313).

Adds ``archive_messages`` (each account's archived messages, deleted with the account)
with the indexes a query by id, by peer and by time needs, and ``archive_prefs``.

Revision ID: 0009
Revises: 0008
Create Date: 2026-12-10
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0009"
down_revision: str | Sequence[str] | None = "0008"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
INDEXES = {
    "ix_archive_messages_account_id_id": ["account_id", "id"],
    "ix_archive_messages_account_id_peer_id": ["account_id", "peer", "id"],
    "ix_archive_messages_account_id_archived_at": ["account_id", "archived_at"],
    "ix_archive_messages_account_id_archive_id": ["account_id", "archive_id"],
}


def upgrade() -> None:
    op.create_table(
        "archive_messages",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("archive_id", sa.String(length=32), nullable=False),
        sa.Column("archived_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("peer", sa.String(length=2047), nullable=False),
        sa.Column("peer_resource", sa.String(length=1023), nullable=True),
        sa.Column("outgoing", sa.Boolean(), nullable=False),
        sa.Column("stanza", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_archive_messages_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_archive_messages")),
        sqlite_autoincrement=True,
    )
    for name, columns in INDEXES.items():
        op.create_index(name, "archive_messages", columns)
    op.create_table(
        "archive_prefs",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("default", sa.String(length=8), nullable=False),
        sa.Column("always", sa.Text(), nullable=False),
        sa.Column("never", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_archive_prefs_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("account_id", name=op.f("pk_archive_prefs")),
    )


def downgrade() -> None:
    op.drop_table("archive_prefs")
    for name in INDEXES:
        op.drop_index(name, table_name="archive_messages")
    op.drop_table("archive_messages")
