"""Roster items know whether they are on the owner's roster.

A row can exist only to hold a pending inbound subscription request (RFC 6121
3.1.3), which puts nobody on the roster; an item the owner added with
subscription 'none' is on it. Existing rows of the first kind are marked.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-22
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | Sequence[str] | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    with op.batch_alter_table("roster_items") as batch:
        batch.add_column(
            sa.Column("listed", sa.Boolean(), server_default=sa.true(), nullable=False)
        )
    items = sa.table(
        "roster_items",
        sa.column("listed", sa.Boolean()),
        sa.column("subscription", sa.String()),
        sa.column("ask", sa.Boolean()),
        sa.column("approved", sa.Boolean()),
        sa.column("pending_in", sa.Boolean()),
        sa.column("name", sa.String()),
        sa.column("groups", sa.Text()),
    )
    op.execute(
        items.update()
        .where(
            items.c.subscription == "none",
            items.c.pending_in == sa.true(),
            items.c.ask == sa.false(),
            items.c.approved == sa.false(),
            items.c.name.is_(None),
            items.c.groups == "[]",
        )
        .values(listed=False)
    )


def downgrade() -> None:
    with op.batch_alter_table("roster_items") as batch:
        batch.drop_column("listed")
