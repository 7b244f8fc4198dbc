"""Rosters, offline messages and the network event outbox.

Adds ``account.roster_version``, and the tables ``roster_items``,
``offline_messages`` and ``network_events``. Full names given at account creation
already live in ``profile.fn`` (revision 0001), so no data moves.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | Sequence[str] | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "account",
        sa.Column("roster_version", sa.Integer(), server_default="0", nullable=False),
    )
    op.create_table(
        "roster_items",
        sa.Column("owner_id", sa.Integer(), nullable=False),
        sa.Column("contact_id", sa.Integer(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("subscription", sa.String(length=4), nullable=False),
        sa.Column("ask", sa.Boolean(), nullable=False),
        sa.Column("pending_in", sa.Boolean(), nullable=False),
        sa.Column("approved", sa.Boolean(), nullable=False),
        sa.Column("groups", sa.Text(), nullable=False),
        sa.CheckConstraint(
            "subscription IN ('none', 'to', 'from', 'both')",
            name=op.f("ck_roster_items_subscription"),
        ),
        sa.ForeignKeyConstraint(
            ["owner_id"],
            ["account.id"],
            name=op.f("fk_roster_items_owner_id_account"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["account.id"],
            name=op.f("fk_roster_items_contact_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("owner_id", "contact_id", name=op.f("pk_roster_items")),
    )
    op.create_index(
        op.f("ix_roster_items_contact_id"), "roster_items", ["contact_id"], unique=False
    )
    op.create_table(
        "offline_messages",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("stanza", sa.Text(), nullable=False),
        sa.Column("stored_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_offline_messages_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_offline_messages")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_offline_messages_account_id_id",
        "offline_messages",
        ["account_id", "id"],
        unique=False,
    )
    op.create_table(
        "network_events",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("subject", sa.String(length=1023), nullable=False),
        sa.Column("object", sa.String(length=1023), nullable=True),
        sa.Column("origin", sa.String(length=64), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_network_events")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        op.f("ix_network_events_created_at"), "network_events", ["created_at"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_network_events_created_at"), table_name="network_events")
    op.drop_table("network_events")
    op.drop_index("ix_offline_messages_account_id_id", table_name="offline_messages")
    op.drop_table("offline_messages")
    op.drop_index(op.f("ix_roster_items_contact_id"), table_name="roster_items")
    op.drop_table("roster_items")
    with op.batch_alter_table("account") as batch:
        batch.drop_column("roster_version")
