"""Tables of the hub store. Migrations in hub/store/migrations mirror this module."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, ClassVar

from sqlalchemy import (
    JSON,
    BigInteger,
    DateTime,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column
from sqlalchemy.types import TypeDecorator

# SQLite only autoincrements an INTEGER PRIMARY KEY.
BigId = BigInteger().with_variant(Integer(), "sqlite")

NAMING = {
    "ix": "ix_%(table_name)s_%(column_0_N_name)s",
    "uq": "uq_%(table_name)s_%(column_0_N_name)s",
    "pk": "pk_%(table_name)s",
}


class UTCDateTime(TypeDecorator[datetime]):
    """Aware UTC datetimes on every backend; SQLite hands back naive values otherwise."""

    impl = DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            raise ValueError(f"naive datetime {value!r} cannot be stored: give it a timezone")
        return value.astimezone(UTC) if value is not None else None

    def process_result_value(self, value: datetime | None, dialect: Any) -> datetime | None:
        if value is not None and value.tzinfo is None:
            return value.replace(tzinfo=UTC)
        return value


class Base(DeclarativeBase):
    metadata = MetaData(naming_convention=NAMING)
    type_annotation_map: ClassVar[dict[Any, Any]] = {
        dict[str, Any]: JSON,
        datetime: UTCDateTime(),
    }


class ProcessedMessage(Base):
    """The idempotent-consumer ledger: one row per (consumer, message_id) applied."""

    __tablename__ = "processed_messages"
    consumer: Mapped[str] = mapped_column(String(128), primary_key=True)
    message_id: Mapped[str] = mapped_column(String(36), primary_key=True)
    processed_at: Mapped[datetime]


class OutboxRow(Base):
    __tablename__ = "outbox"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    created_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    lease_until: Mapped[datetime | None]
    attempts: Mapped[int] = mapped_column(Integer, default=0)
    last_error: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (Index("ix_outbox_pending", "sent_at", "id"),)


class DeadLetter(Base):
    """Index of everything sent to the dead-letter topic, with the original bytes."""

    __tablename__ = "dead_letters"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(128))
    stage: Mapped[str] = mapped_column(String(32))
    reason: Mapped[str] = mapped_column(Text)
    error_class: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    message_id: Mapped[str | None] = mapped_column(String(36))
    source_system: Mapped[str | None] = mapped_column(String(64))
    attempts: Mapped[int] = mapped_column(Integer, default=1)
    first_failure_at: Mapped[datetime]
    last_failure_at: Mapped[datetime]
    status: Mapped[str] = mapped_column(String(16), default="new")
    __table_args__ = (
        UniqueConstraint("flow", "topic", "partition", "offset"),
        Index("ix_dead_letters_status_id", "status", "id"),
    )


class JournalEntry(Base):
    """Every consumed canonical message, so replay can reach past the broker's retention."""

    __tablename__ = "journal"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    timestamp_ms: Mapped[int] = mapped_column(BigInteger)
    key: Mapped[bytes | None] = mapped_column(LargeBinary)
    value: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    message_id: Mapped[str | None] = mapped_column(String(36))
    source_system: Mapped[str | None] = mapped_column(String(64))
    __table_args__ = (
        UniqueConstraint("topic", "partition", "offset"),
        Index("ix_journal_topic_ts", "topic", "timestamp_ms"),
    )


class SourceRecord(Base):
    """The newest accepted version of each record as a source system sent it."""

    __tablename__ = "source_records"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32))
    source_system: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(256))
    source_version: Mapped[int | None] = mapped_column(BigInteger)
    source_ts: Mapped[datetime | None]
    op: Mapped[str] = mapped_column(String(16))
    payload: Mapped[dict[str, Any]] = mapped_column(JSON)
    revision: Mapped[int] = mapped_column(Integer, default=1)
    last_message_id: Mapped[str] = mapped_column(String(36))
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("entity", "source_system", "source_id"),)


class RecordEvent(Base):
    """Lineage: what every message did to a source record (applied, stale, unchanged)."""

    __tablename__ = "record_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    message_id: Mapped[str] = mapped_column(String(36))
    entity: Mapped[str] = mapped_column(String(32))
    source_system: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(256))
    outcome: Mapped[str] = mapped_column(String(16))
    detail: Mapped[str | None] = mapped_column(Text)
    source_version: Mapped[int | None] = mapped_column(BigInteger)
    source_ts: Mapped[datetime | None]
    at: Mapped[datetime]
    __table_args__ = (Index("ix_record_events_key", "entity", "source_system", "source_id"),)


class KeyValue(Base):
    """Small durable state: polling watermarks, connector cursors."""

    __tablename__ = "kv_state"
    name: Mapped[str] = mapped_column(String(255), primary_key=True)
    value: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]


class WebhookIdempotency(Base):
    """The answer given to a webhook call with an Idempotency-Key, replayed to its retries
    for ``webhook_idempotency_retention_s`` (hub.ingest.idempotency)."""

    __tablename__ = "webhook_idempotency"
    system: Mapped[str] = mapped_column(String(64), primary_key=True)
    key: Mapped[str] = mapped_column(String(200), primary_key=True)
    entity: Mapped[str] = mapped_column(String(64))
    request_hash: Mapped[str] = mapped_column(String(64))  # SHA-256 of entity, charset, body
    status: Mapped[int] = mapped_column(Integer)
    response: Mapped[dict[str, Any]] = mapped_column(JSON)
    created_at: Mapped[datetime]
    __table_args__ = (Index("ix_webhook_idempotency_created_at", "created_at"),)


# Feature tables live in their own modules; importing them registers them.
from hub.store import (  # noqa: E402, F401
    admin_models,
    delivery_models,
    identity_models,
    sync_models,
    urge_models,
)
