"""ORM models of the OAuth developer platform, on the same declarative ``Base``.

Apps (OAuth clients), authorization codes, tokens, consents, app passwords, and the
web sessions of the sign-in and consent pages. Every secret is stored as its SHA-256
digest (codes, tokens, client secrets and session ids are high-entropy random strings)
or, for app passwords, as SCRAM verifiers. Revision ``0003_oauth`` creates these
tables, and ``0006_web_sessions_pkce`` adds ``web_sessions`` and ``oauth_apps.require_pkce``.
"""

from __future__ import annotations

from datetime import datetime

from sqlalchemy import (
    Boolean,
    CheckConstraint,
    ForeignKey,
    ForeignKeyConstraint,
    Index,
    Integer,
    LargeBinary,
    String,
    Text,
    true,
)
from sqlalchemy.orm import Mapped, mapped_column

from chinwag.store.models import MAX_USERNAME_BYTES, Base, BigId, UTCDateTime, utc_now

MAX_APP_NAME = 200
MAX_LABEL = 100


class OAuthApp(Base):
    """A registered app: an OAuth client."""

    __tablename__ = "oauth_apps"
    __table_args__ = (CheckConstraint("status IN ('active', 'suspended')", name="status"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    client_id: Mapped[str] = mapped_column(String(64), unique=True)
    secret_hash: Mapped[bytes | None] = mapped_column(LargeBinary)
    """SHA-256 of the client secret; NULL for public apps, which have none."""
    name: Mapped[str] = mapped_column(String(MAX_APP_NAME))
    owner: Mapped[str | None] = mapped_column(String(MAX_USERNAME_BYTES))
    """The username of the developer who registered it, if any."""
    redirect_uris: Mapped[str] = mapped_column(Text)
    """A JSON array; a redirect URI must match one of them exactly."""
    public: Mapped[bool] = mapped_column(Boolean)
    allow_implicit: Mapped[bool] = mapped_column(Boolean)
    require_pkce: Mapped[bool] = mapped_column(Boolean, server_default=true())
    """False lets a confidential app skip PKCE; a public app always uses it."""
    status: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class OAuthCode(Base):
    """An authorization code; kept once used, so that a replay can be recognised."""

    __tablename__ = "oauth_codes"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    code_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    redirect_uri: Mapped[str | None] = mapped_column(Text)
    """The redirect URI of the authorization request; NULL when it named none."""
    scope: Mapped[str] = mapped_column(Text)
    code_challenge: Mapped[str | None] = mapped_column(String(128))
    code_challenge_method: Mapped[str | None] = mapped_column(String(8))
    family_id: Mapped[str] = mapped_column(String(32))
    """The family of the tokens this code is exchanged for."""
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used: Mapped[bool] = mapped_column(Boolean)


class OAuthToken(Base):
    """One issuance: an access token and, with ``wl.offline_access``, a refresh token.

    Tokens refreshed from one another, or exchanged for one code, share a family,
    which is revoked as a whole when a refresh token or a code is replayed.
    """

    __tablename__ = "oauth_tokens"
    __table_args__ = (Index("ix_oauth_tokens_account_id_app_id", "account_id", "app_id"),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    access_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    refresh_hash: Mapped[bytes | None] = mapped_column(LargeBinary, unique=True)
    family_id: Mapped[str] = mapped_column(String(32), index=True)
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    scope: Mapped[str] = mapped_column(Text)
    issued_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime())
    refresh_expires_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    usable_until: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    """The refresh token's expiry, or the access token's without one: a while after it,
    nothing needs the row (``TOKEN_RETENTION``)."""
    revoked: Mapped[bool] = mapped_column(Boolean)
    rotated: Mapped[bool] = mapped_column(Boolean)
    """Its refresh token was exchanged for a new one, so presenting it again is a replay."""


class OAuthConsent(Base):
    """A user's grant to an app: what the connected-apps page lists."""

    __tablename__ = "oauth_consents"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    app_id: Mapped[int] = mapped_column(
        ForeignKey("oauth_apps.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    scope: Mapped[str] = mapped_column(Text)
    """Every scope granted so far, space-separated and sorted."""
    remembered: Mapped[bool] = mapped_column(Boolean)
    """True skips the consent page for requests within ``scope``."""
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime())


class AppPassword(Base):
    """A password for one app, used by clients that only know SCRAM or PLAIN."""

    __tablename__ = "app_passwords"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    app_id: Mapped[int] = mapped_column(ForeignKey("oauth_apps.id", ondelete="CASCADE"), index=True)
    label: Mapped[str] = mapped_column(String(MAX_LABEL))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    last_used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())


class AppPasswordCredential(Base):
    """A SCRAM verifier of an app password, salted like the account's own verifier."""

    __tablename__ = "app_password_credentials"

    app_password_id: Mapped[int] = mapped_column(
        ForeignKey("app_passwords.id", ondelete="CASCADE"), primary_key=True
    )
    mechanism: Mapped[str] = mapped_column(String(32), primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    stored_key: Mapped[bytes] = mapped_column(LargeBinary)
    server_key: Mapped[bytes] = mapped_column(LargeBinary)
    iterations: Mapped[int] = mapped_column(Integer)


class WebSession(Base):
    """A browser signed in on the web pages (sign-in, consent, portal, connected apps).

    The browser's cookie carries a random session id; this row keeps its digest, so
    signing out (deleting the row) makes a copy of the cookie useless. The session
    belongs to the password the user signed in with: its foreign key to that password's
    SCRAM-SHA-256 verifier deletes it when the password changes (the verifiers are
    replaced) or the account is deleted.
    """

    __tablename__ = "web_sessions"
    __table_args__ = (
        ForeignKeyConstraint(
            ["account_id", "mechanism"],
            ["credential.account_id", "credential.mechanism"],
            ondelete="CASCADE",
        ),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    id_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    account_id: Mapped[int] = mapped_column(Integer, index=True)
    mechanism: Mapped[str] = mapped_column(String(32))
    """The credential the session depends on (always SCRAM-SHA-256, which every password has)."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
