"""Affiliations with PEP nodes (XEP-0060 §8.9): members and outcasts.

Adds ``pep_affiliations``, one row per node and bare JID; rows go with their node.

Revision ID: 0011
Revises: 0010
Create Date: 2026-12-07
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0011"
down_revision: str | Sequence[str] | None = "0010"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "pep_affiliations",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("node_id", BIG_ID, nullable=False),
        sa.Column("jid", sa.Text(), nullable=False),
        sa.Column("affiliation", sa.String(16), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["pep_nodes.id"],
            name=op.f("fk_pep_affiliations_node_id_pep_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pep_affiliations")),
    )
    op.create_index(
        op.f("ix_pep_affiliations_node_id"), "pep_affiliations", ["node_id"], unique=False
    )


def downgrade() -> None:
    op.drop_index(op.f("ix_pep_affiliations_node_id"), table_name="pep_affiliations")
    op.drop_table("pep_affiliations")
