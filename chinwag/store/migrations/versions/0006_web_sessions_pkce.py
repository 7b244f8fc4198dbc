"""Web sessions kept on the server, and PKCE required of confidential apps by default.

Adds ``web_sessions`` (a signed-in browser: the digest of its cookie's random id, bound
to the password it signed in with) and ``oauth_apps.require_pkce``. Apps registered
before keep the rule they were registered under: public apps require PKCE, confidential
ones may skip it; apps registered from now on require it unless registered otherwise.

Revision ID: 0006
Revises: 0005
Create Date: 2026-12-06
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | Sequence[str] | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.add_column(
        "oauth_apps",
        sa.Column("require_pkce", sa.Boolean(), server_default=sa.true(), nullable=False),
    )
    apps = sa.table("oauth_apps", sa.column("public", sa.Boolean()), sa.column("require_pkce"))
    op.execute(apps.update().where(apps.c.public.is_(False)).values(require_pkce=False))
    op.create_table(
        "web_sessions",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("id_hash", sa.LargeBinary(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("mechanism", sa.String(length=32), nullable=False),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("expires_at", sa.DateTime(timezone=True), nullable=False),
        sa.ForeignKeyConstraint(
            ["account_id", "mechanism"],
            ["credential.account_id", "credential.mechanism"],
            name=op.f("fk_web_sessions_account_id_credential"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_web_sessions")),
        sa.UniqueConstraint("id_hash", name=op.f("uq_web_sessions_id_hash")),
    )
    for column in ("account_id", "expires_at"):
        op.create_index(op.f(f"ix_web_sessions_{column}"), "web_sessions", [column])


def downgrade() -> None:
    op.drop_table("web_sessions")
    with op.batch_alter_table("oauth_apps") as batch:
        batch.drop_column("require_pkce")
