"""OAuth developer platform: apps, authorization codes, tokens, consents, app passwords.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | Sequence[str] | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _when(name: str, nullable: bool = False) -> sa.Column[datetime]:
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _owned_by(table: str, column: str, target: str) -> sa.ForeignKeyConstraint:
    return sa.ForeignKeyConstraint(
        [column],
        [f"{target}.id"],
        name=op.f(f"fk_{table}_{column}_{target}"),
        ondelete="CASCADE",
    )


def upgrade() -> None:
    op.create_table(
        "oauth_apps",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("secret_hash", sa.LargeBinary(), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("owner", sa.String(length=1023), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("public", sa.Boolean(), nullable=False),
        sa.Column("allow_implicit", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        _when("created_at"),
        sa.CheckConstraint("status IN ('active', 'suspended')", name=op.f("ck_oauth_apps_status")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_apps")),
        sa.UniqueConstraint("client_id", name=op.f("uq_oauth_apps_client_id")),
    )
    op.create_table(
        "oauth_codes",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("code_hash", sa.LargeBinary(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("redirect_uri", sa.Text(), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("code_challenge", sa.String(length=128), nullable=True),
        sa.Column("code_challenge_method", sa.String(length=8), nullable=True),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        _when("expires_at"),
        sa.Column("used", sa.Boolean(), nullable=False),
        _owned_by("oauth_codes", "account_id", "account"),
        _owned_by("oauth_codes", "app_id", "oauth_apps"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_codes")),
        sa.UniqueConstraint("code_hash", name=op.f("uq_oauth_codes_code_hash")),
    )
    for column in ("account_id", "app_id", "expires_at"):
        op.create_index(op.f(f"ix_oauth_codes_{column}"), "oauth_codes", [column])
    op.create_table(
        "oauth_tokens",
        sa.Column("id", BIG_ID, nullable=False),
        sa.Column("access_hash", sa.LargeBinary(), nullable=False),
        sa.Column("refresh_hash", sa.LargeBinary(), nullable=True),
        sa.Column("family_id", sa.String(length=32), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        _when("issued_at"),
        _when("expires_at"),
        _when("refresh_expires_at", nullable=True),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("rotated", sa.Boolean(), nullable=False),
        _owned_by("oauth_tokens", "account_id", "account"),
        _owned_by("oauth_tokens", "app_id", "oauth_apps"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_oauth_tokens")),
        sa.UniqueConstraint("access_hash", name=op.f("uq_oauth_tokens_access_hash")),
        sa.UniqueConstraint("refresh_hash", name=op.f("uq_oauth_tokens_refresh_hash")),
    )
    op.create_index("ix_oauth_tokens_account_id_app_id", "oauth_tokens", ["account_id", "app_id"])
    for column in ("app_id", "family_id"):
        op.create_index(op.f(f"ix_oauth_tokens_{column}"), "oauth_tokens", [column])
    op.create_table(
        "oauth_consents",
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("remembered", sa.Boolean(), nullable=False),
        _when("updated_at"),
        _owned_by("oauth_consents", "account_id", "account"),
        _owned_by("oauth_consents", "app_id", "oauth_apps"),
        sa.PrimaryKeyConstraint("account_id", "app_id", name=op.f("pk_oauth_consents")),
    )
    op.create_index(op.f("ix_oauth_consents_app_id"), "oauth_consents", ["app_id"])
    op.create_table(
        "app_passwords",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("account_id", sa.Integer(), nullable=False),
        sa.Column("app_id", sa.Integer(), nullable=False),
        sa.Column("label", sa.String(length=100), nullable=False),
        _when("created_at"),
        _when("last_used_at", nullable=True),
        _owned_by("app_passwords", "account_id", "account"),
        _owned_by("app_passwords", "app_id", "oauth_apps"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_app_passwords")),
    )
    for column in ("account_id", "app_id"):
        op.create_index(op.f(f"ix_app_passwords_{column}"), "app_passwords", [column])
    op.create_table(
        "app_password_credentials",
        sa.Column("app_password_id", sa.Integer(), nullable=False),
        sa.Column("mechanism", sa.String(length=32), nullable=False),
        sa.Column("salt", sa.LargeBinary(), nullable=False),
        sa.Column("stored_key", sa.LargeBinary(), nullable=False),
        sa.Column("server_key", sa.LargeBinary(), nullable=False),
        sa.Column("iterations", sa.Integer(), nullable=False),
        _owned_by("app_password_credentials", "app_password_id", "app_passwords"),
        sa.PrimaryKeyConstraint(
            "app_password_id", "mechanism", name=op.f("pk_app_password_credentials")
        ),
    )


def downgrade() -> None:
    for table in (
        "app_password_credentials",
        "app_passwords",
        "oauth_consents",
        "oauth_tokens",
        "oauth_codes",
        "oauth_apps",
    ):
        op.drop_table(table)
