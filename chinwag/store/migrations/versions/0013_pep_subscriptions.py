"""Explicit subscriptions to PEP nodes (XEP-0060 §6.1) and the ``roster`` access model.

Adds ``pep_subscriptions``, one row per node and subscribed JID (bare or full); rows go
with their node. ``pep_nodes`` gains ``roster_groups``, the owner's roster groups whose
contacts may read a node with the ``roster`` access model (a JSON array; empty for
every existing node).

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0013"
down_revision: str | Sequence[str] | None = "0012"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pep_subscriptions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("node_id", BIG_ID, nullable=False),
        sa.Column("jid", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["pep_nodes.id"],
            name=op.f("fk_pep_subscriptions_node_id_pep_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pep_subscriptions")),
    )
    op.create_index(
        op.f("ix_pep_subscriptions_node_id"), "pep_subscriptions", ["node_id"], unique=False
    )
    op.add_column(
        "pep_nodes",
        sa.Column("roster_groups", sa.Text(), nullable=False, server_default="[]"),
    )


def downgrade() -> None:
    with op.batch_alter_table("pep_nodes") as batch:
        batch.drop_column("roster_groups")
    op.drop_index(op.f("ix_pep_subscriptions_node_id"), table_name="pep_subscriptions")
    op.drop_table("pep_subscriptions")
