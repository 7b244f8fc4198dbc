"""Block lists (XEP-0191).

Adds ``blocked_jids``: one row per JID an account blocks, deleted with the account.

Revision ID: 0007
Revises: 0006
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | Sequence[str] | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "blocked_jids",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("jid", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_blocked_jids_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_blocked_jids")),
    )
    op.create_index(op.f("ix_blocked_jids_account_id"), "blocked_jids", ["account_id"])


def downgrade() -> None:
    op.drop_index(op.f("ix_blocked_jids_account_id"), table_name="blocked_jids")
    op.drop_table("blocked_jids")
