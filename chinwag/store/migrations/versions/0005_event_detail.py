"""Network events can say what narrows them down.

Adds ``network_events.detail``, nullable: events written before it (or by a
process not yet upgraded) have none, and are read as they always were.

Revision ID: 0005
Revises: 0004
Create Date: 2026-12-04
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | Sequence[str] | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column("network_events", sa.Column("detail", sa.String(length=128), nullable=True))


def downgrade() -> None:
    # SQLite copies the table to drop a column; the copy must not reuse event ids either.
    with op.batch_alter_table(
        "network_events", table_kwargs={"sqlite_autoincrement": True}
    ) as batch:
        batch.drop_column("detail")
