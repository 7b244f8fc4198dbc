"""Personal eventing (XEP-0163) and private XML storage (XEP-0049).

Adds ``pep_nodes`` (an account's nodes and their configuration), ``pep_items`` (their
published items) and ``private_xml`` (one element per account and namespace); all go
with the account.

Revision ID: 0010
Revises: 0009
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0010"
down_revision: str | Sequence[str] | None = "0009"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
NAME = sa.String(1023)


def _account_id() -> sa.Column[int]:
    return sa.Column("account_id", sa.Integer(), nullable=False)


def upgrade() -> None:
    op.create_table(
        "pep_nodes",
        sa.Column("id", BIG_ID, nullable=False),
        _account_id(),
        sa.Column("node", NAME, nullable=False),
        sa.Column("access_model", sa.String(16), nullable=False),
        sa.Column("max_items", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_pep_nodes_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pep_nodes")),
    )
    op.create_index(
        "ix_pep_nodes_account_id_node", "pep_nodes", ["account_id", "node"], unique=True
    )
    op.create_table(
        "pep_items",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("node_id", BIG_ID, nullable=False),
        sa.Column("item_id", NAME, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.Column("published_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["node_id"],
            ["pep_nodes.id"],
            name=op.f("fk_pep_items_node_id_pep_nodes"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_pep_items")),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "ix_pep_items_node_id_item_id", "pep_items", ["node_id", "item_id"], unique=True
    )
    op.create_table(
        "private_xml",
        sa.Column("id", BIG_ID, nullable=False),
        _account_id(),
        sa.Column("namespace", NAME, nullable=False),
        sa.Column("payload", sa.Text(), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id"],
            ["account.id"],
            name=op.f("fk_private_xml_account_id_account"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_private_xml")),
    )
    op.create_index(
        "ix_private_xml_account_id_namespace",
        "private_xml",
        ["account_id", "namespace"],
        unique=True,
    )


def downgrade() -> None:
    op.drop_index("ix_private_xml_account_id_namespace", table_name="private_xml")
    op.drop_table("private_xml")
    op.drop_index("ix_pep_items_node_id_item_id", table_name="pep_items")
    op.drop_table("pep_items")
    op.drop_index("ix_pep_nodes_account_id_node", table_name="pep_nodes")
    op.drop_table("pep_nodes")
