"""When an issuance's last token stops working, so that old issuances can be deleted.

``oauth_tokens`` gains ``usable_until``, indexed: the refresh token's expiry, or the
access token's when there is no refresh token. Existing rows get it from those
columns.

Revision ID: 0014
Revises: 0013
Create Date: 2026-12-08
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0014"
down_revision: str | Sequence[str] | None = "0013"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.add_column(
        "oauth_tokens", sa.Column("usable_until", sa.DateTime(timezone=True), nullable=True)
    )
    op.execute("UPDATE oauth_tokens SET usable_until = COALESCE(refresh_expires_at, expires_at)")
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.alter_column("usable_until", existing_type=sa.DateTime(timezone=True), nullable=False)
    op.create_index(op.f("ix_oauth_tokens_usable_until"), "oauth_tokens", ["usable_until"])


def downgrade() -> None:
    op.drop_index(op.f("ix_oauth_tokens_usable_until"), table_name="oauth_tokens")
    with op.batch_alter_table("oauth_tokens") as batch:
        batch.drop_column("usable_until")
