"""ORM models: the tables every repository maps, as one declarative metadata.

Alembic migrations in ``migrations/versions`` create exactly these tables; the
storage suite checks that the two never drift apart.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import TYPE_CHECKING, ClassVar

from sqlalchemy import (
    BigInteger,
    Boolean,
    CheckConstraint,
    DateTime,
    Dialect,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    TypeDecorator,
    true,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

# Deterministic constraint names, so later migrations can alter them on both engines.
NAMING_CONVENTION = {
    "ix": "ix_%(column_0_label)s",
    "uq": "uq_%(table_name)s_%(column_0_name)s",
    "ck": "ck_%(table_name)s_%(constraint_name)s",
    "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
    "pk": "pk_%(table_name)s",
}

MAX_USERNAME_BYTES = 1023
MAX_INVITER_LENGTH = 64
MAX_BARE_JID_BYTES = 2047
MAX_PEP_NODE_BYTES = 1023
"""A node name, item id or private storage namespace: enough for any real one, and
short enough for a unique index on PostgreSQL."""

# A 64-bit id on PostgreSQL; SQLite's rowid (already 64-bit) must be declared INTEGER.
BigId = BigInteger().with_variant(Integer(), "sqlite")


class UTCDateTime(TypeDecorator[datetime]):
    """A timezone-aware UTC datetime on every engine (SQLite keeps no offset)."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are ambiguous; pass an aware UTC datetime")
        return value.astimezone(UTC)

    def process_result_value(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


def utc_now() -> datetime:
    return datetime.now(UTC)


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING_CONVENTION)

    if TYPE_CHECKING:
        # SQLAlchemy types it as any FromClause; every model here declares its table, and
        # a Table is what the Core insert(), update() and delete() take.
        __table__: ClassVar[Table]


class Account(Base):
    __tablename__ = "account"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    username: Mapped[str] = mapped_column(String(MAX_USERNAME_BYTES), unique=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)
    roster_version: Mapped[int] = mapped_column(Integer, default=0, server_default="0")
    """Bumped by every change of this account's roster (RFC 6121 2.6 versioning)."""


class Credential(Base):
    """One SCRAM verifier per (account, mechanism); never the password itself."""

    __tablename__ = "credential"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    mechanism: Mapped[str] = mapped_column(String(32), primary_key=True)
    salt: Mapped[bytes] = mapped_column(LargeBinary)
    stored_key: Mapped[bytes] = mapped_column(LargeBinary)
    server_key: Mapped[bytes] = mapped_column(LargeBinary)
    iterations: Mapped[int] = mapped_column(Integer)


class Profile(Base):
    """The vCard-like public profile of an account."""

    __tablename__ = "profile"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    fn: Mapped[str | None] = mapped_column(String)
    nickname: Mapped[str | None] = mapped_column(String)
    email: Mapped[str | None] = mapped_column(String)
    photo_type: Mapped[str | None] = mapped_column(String)
    photo: Mapped[bytes | None] = mapped_column(LargeBinary)


class RosterItem(Base):
    """One contact on an owner's roster, with its RFC 6121 subscription state."""

    __tablename__ = "roster_items"
    __table_args__ = (
        CheckConstraint("subscription IN ('none', 'to', 'from', 'both')", name="subscription"),
    )

    owner_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    contact_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True, index=True
    )
    name: Mapped[str | None] = mapped_column(String)
    """The owner's own name for the contact; NULL shows the contact's profile FN."""
    subscription: Mapped[str] = mapped_column(String(4))
    ask: Mapped[bool] = mapped_column(Boolean)
    pending_in: Mapped[bool] = mapped_column(Boolean)
    approved: Mapped[bool] = mapped_column(Boolean)
    groups: Mapped[str] = mapped_column(Text)
    """A JSON array of group names."""
    listed: Mapped[bool] = mapped_column(Boolean, server_default=true())
    """On the owner's roster; false for a row that only holds a pending inbound request."""


class OfflineMessage(Base):
    """A stanza kept for an account with no available resource (XEP-0160)."""

    __tablename__ = "offline_messages"
    __table_args__ = (
        Index("ix_offline_messages_account_id_id", "account_id", "id"),
        {"sqlite_autoincrement": True},
    )

    # AUTOINCREMENT on SQLite: ids only grow, even after the newest rows are deleted.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    stanza: Mapped[str] = mapped_column(Text)
    stored_at: Mapped[datetime] = mapped_column(UTCDateTime())


class ArchivedMessage(Base):
    """A message with a body that an account sent or received (XEP-0313), one row per
    message and archive, kept in the account's order: ``id`` grows with the time it was
    archived (microseconds since the epoch times 2**10, plus a low part; see
    ``store/archive.py``), is the XEP-0359 stanza-id and RSM key clients see (in hex)
    and holds the time, so there is no time column. ``peer`` is the other party's bare
    JID and ``peer_resource`` its resource, if any, for ``with`` on a bare or a full JID.

    A row costs the table (appended to: SQLite's rowid, PostgreSQL's heap), the primary
    key's index ``(account_id, id)`` and the ``(account_id, peer, id)`` index. Not a
    table clustered by ``(account_id, id)`` (SQLite's WITHOUT ROWID): messages of many
    accounts arrive interleaved, so each batch rewrote a page of the table per account,
    and measured twice as slow to insert."""

    __tablename__ = "archive_messages"
    __table_args__ = (Index("ix_archive_messages_account_id_peer_id", "account_id", "peer", "id"),)

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    peer: Mapped[str] = mapped_column(String(MAX_BARE_JID_BYTES))
    peer_resource: Mapped[str | None] = mapped_column(String(MAX_USERNAME_BYTES))
    outgoing: Mapped[bool] = mapped_column(Boolean)
    """Sent by the account (true) or to it (false)."""
    stanza: Mapped[str] = mapped_column(Text)


class ArchivePrefs(Base):
    """An account's archiving preferences (XEP-0313 §6), absent while it has set none."""

    __tablename__ = "archive_prefs"

    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), primary_key=True
    )
    default: Mapped[str] = mapped_column(String(8))
    """``always``, ``never`` or ``roster``."""
    always: Mapped[str] = mapped_column(Text)
    """A JSON array of the bare JIDs always archived."""
    never: Mapped[str] = mapped_column(Text)
    """A JSON array of the bare JIDs never archived."""


class BlockedJid(Base):
    """One JID an account blocks (XEP-0191), in its canonical form.

    No unique index: a JID may be 3071 bytes, more than a PostgreSQL b-tree entry
    holds; the repository keeps each JID once, under the lock of the owner's row.
    """

    __tablename__ = "blocked_jids"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(
        ForeignKey("account.id", ondelete="CASCADE"), index=True
    )
    jid: Mapped[str] = mapped_column(Text)


class NetworkEventRow(Base):
    """The transactional outbox: one row per change, written with the change itself."""

    __tablename__ = "network_events"
    __table_args__ = ({"sqlite_autoincrement": True},)

    # Readers resume after the last id they saw, so ids must never be reused.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    kind: Mapped[str] = mapped_column(String(64))
    subject: Mapped[str] = mapped_column(String(MAX_USERNAME_BYTES))
    object: Mapped[str | None] = mapped_column(String(MAX_USERNAME_BYTES))
    detail: Mapped[str | None] = mapped_column(String(128))
    """What narrows the event down, for the kinds that can be narrowed; None: nothing does."""
    origin: Mapped[str] = mapped_column(String(64))
    """The writing process's mark; empty when no process has applied the change yet."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now, index=True)


class Invitation(Base):
    """A sign-up link an operator made (``chinwag invite create``): good for one account.

    Only the SHA-256 digest of its random token is kept, so the table gives nobody a
    working link. Spending it (``used_at``, ``used_by``) happens in the transaction
    that creates the account.
    """

    __tablename__ = "invitations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    token_hash: Mapped[bytes] = mapped_column(LargeBinary, unique=True)
    created_by: Mapped[str] = mapped_column(String(MAX_INVITER_LENGTH))
    """Who made it: the operator's login name, or what they gave with ``--by``."""
    created_at: Mapped[datetime] = mapped_column(UTCDateTime())
    expires_at: Mapped[datetime] = mapped_column(UTCDateTime(), index=True)
    used_at: Mapped[datetime | None] = mapped_column(UTCDateTime())
    used_by: Mapped[str | None] = mapped_column(String(MAX_USERNAME_BYTES))
    """The username it created (kept when that account is deleted later)."""


class PepNode(Base):
    """A personal eventing node (XEP-0163) of an account, with its configuration."""

    __tablename__ = "pep_nodes"
    __table_args__ = (Index("ix_pep_nodes_account_id_node", "account_id", "node", unique=True),)

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    node: Mapped[str] = mapped_column(String(MAX_PEP_NODE_BYTES))
    access_model: Mapped[str] = mapped_column(String(16))
    """``presence``, ``open``, ``roster`` or ``whitelist`` (the owner alone)."""
    max_items: Mapped[int] = mapped_column(Integer)
    roster_groups: Mapped[str] = mapped_column(Text, server_default="[]")
    """The owner's roster groups whose contacts may read the node under the ``roster``
    access model, as a JSON array."""


class PepItem(Base):
    """One published item of a PEP node: its id and its payload as XML text."""

    __tablename__ = "pep_items"
    __table_args__ = (
        Index("ix_pep_items_node_id_item_id", "node_id", "item_id", unique=True),
        {"sqlite_autoincrement": True},
    )

    # Ids only grow: the newest row of a node is its last published item.
    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("pep_nodes.id", ondelete="CASCADE"))
    item_id: Mapped[str] = mapped_column(String(MAX_PEP_NODE_BYTES))
    payload: Mapped[str] = mapped_column(Text)
    published_at: Mapped[datetime] = mapped_column(UTCDateTime(), default=utc_now)


class PepAffiliation(Base):
    """A JID's affiliation with a PEP node (XEP-0060 §8.9) other than its owner's:
    ``member`` (may read, whatever the access model) or ``outcast`` (may not).

    No unique index, as for blocked JIDs: the repository keeps each bare JID once per
    node, in the transaction that sets it.
    """

    __tablename__ = "pep_affiliations"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("pep_nodes.id", ondelete="CASCADE"), index=True)
    jid: Mapped[str] = mapped_column(Text)
    affiliation: Mapped[str] = mapped_column(String(16))


class PepSubscription(Base):
    """A JID subscribed to a PEP node (XEP-0060 §6.1): a bare JID or one resource's.

    No unique index, as for affiliations: the repository keeps each JID once per node,
    in the transaction that subscribes it.
    """

    __tablename__ = "pep_subscriptions"

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    node_id: Mapped[int] = mapped_column(ForeignKey("pep_nodes.id", ondelete="CASCADE"), index=True)
    jid: Mapped[str] = mapped_column(Text)


class PrivateXml(Base):
    """One XML element an account keeps in private storage (XEP-0049), by namespace."""

    __tablename__ = "private_xml"
    __table_args__ = (
        Index("ix_private_xml_account_id_namespace", "account_id", "namespace", unique=True),
    )

    id: Mapped[int] = mapped_column(BigId, primary_key=True)
    account_id: Mapped[int] = mapped_column(ForeignKey("account.id", ondelete="CASCADE"))
    namespace: Mapped[str] = mapped_column(String(MAX_PEP_NODE_BYTES))
    payload: Mapped[str] = mapped_column(Text)
