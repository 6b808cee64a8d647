"""Tables of the delivery runtime: messages on their way to a target system, and the
cross-reference of canonical keys to the local ids those systems gave.

``deliveries`` is a per-target work queue with per-key order: the delivery flow writes one row
per message consumed from ``outbound.<system>`` (in the batch's store transaction), and the
system's deliverer claims the head row of each key (lowest ``seq`` still pending) under a
lease, calls the system's API outside any transaction, and records the outcome.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, BigId

KEY_LEN = 300  # a golden id, "system:source_id", or a composite local key ("MAT/1000/0001")
LOCAL_ID_LEN = 256

PENDING = "pending"  # waiting for its turn, due, leased or between retries
DELIVERED = "delivered"  # the target has it (2xx, or 409 for an earlier attempt that landed)
SUPPRESSED = "suppressed"  # an echo: the change came from this system, never sent back
DEAD = "dead"  # permanent refusal or retries exhausted: dead-lettered, the key goes on
STATUSES = (PENDING, DELIVERED, SUPPRESSED, DEAD)


class Delivery(Base):
    """One message for one target system."""

    __tablename__ = "deliveries"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    system: Mapped[str] = mapped_column(String(64))
    message_id: Mapped[str] = mapped_column(String(36))
    entity: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(KEY_LEN))
    # Position among the messages of (system, entity, key), in consumption order.
    seq: Mapped[int] = mapped_column(Integer)
    op: Mapped[str] = mapped_column(String(16))
    source_system: Mapped[str] = mapped_column(String(64))
    envelope: Mapped[str] = mapped_column(Text)  # the consumed value, byte for byte (UTF-8 JSON)
    # Where it was consumed: the dead-letter index is keyed by the source position.
    topic: Mapped[str] = mapped_column(String(255))
    partition: Mapped[int] = mapped_column(Integer)
    offset: Mapped[int] = mapped_column(BigInteger)
    headers: Mapped[list[Any]] = mapped_column(JSON, default=list)
    status: Mapped[str] = mapped_column(String(16))
    attempts: Mapped[int] = mapped_column(Integer, default=0)  # counted when claimed
    next_attempt_at: Mapped[datetime]
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(64))
    # The first claim decides create (None) or update (the cross-referenced id); retries
    # repeat exactly that request, so a retry never differs from an attempt that landed.
    target_local_id: Mapped[str | None] = mapped_column(String(LOCAL_ID_LEN))
    local_id: Mapped[str | None] = mapped_column(String(LOCAL_ID_LEN))
    last_status_code: Mapped[int | None] = mapped_column(Integer)
    last_error: Mapped[str | None] = mapped_column(Text)
    created_at: Mapped[datetime]
    first_failure_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    __table_args__ = (
        UniqueConstraint("system", "message_id"),
        UniqueConstraint("system", "entity", "key", "seq"),
        Index("ix_deliveries_due", "system", "status", "next_attempt_at", "id"),
        Index("ix_deliveries_finished", "status", "finished_at"),
    )


class Xref(Base):
    """Canonical key <-> local id in one target system, for one entity."""

    __tablename__ = "xrefs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(KEY_LEN))
    system: Mapped[str] = mapped_column(String(64))
    local_id: Mapped[str] = mapped_column(String(LOCAL_ID_LEN))
    updated_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("entity", "key", "system"),
        UniqueConstraint("entity", "system", "local_id"),
    )
