"""Tables of the synchronization flows (``flows/sync``).

- ``sync_state``: per golden record, the body last fanned out to the subscribers: field
  ownership is judged against it and a change that alters nothing a subscriber sees is not
  sent again.
- ``parked``: messages whose target does not know a record they refer to yet (an order's
  customer, a BOM's part). They wait here, in their key's order, until the cross-reference
  appears; nothing is dropped and nothing is sent with a wrong key.
- ``sync_orders``: every order the hub routed, with the golden customer and amount the credit
  check sums over, and the original body so the target's status can go back to the origin.
- ``sync_boms``: per BOM and target, the lines last sent, so a new revision sends only what
  changed.
"""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from sqlalchemy import JSON, Index, Integer, Numeric, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, BigId

KEY_LEN = 300


class SyncState(Base):
    __tablename__ = "sync_state"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(KEY_LEN))
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    quarantined: Mapped[bool]
    # systems it was sent to (a quarantine goes to them, and to those holding a member)
    targets: Mapped[list[str]] = mapped_column(JSON)
    version: Mapped[int] = mapped_column(Integer)
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("entity", "key"),)


class Parked(Base):
    """One message waiting for its dependencies in one target."""

    __tablename__ = "parked"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    flow: Mapped[str] = mapped_column(String(64))
    target: Mapped[str] = mapped_column(String(64))
    entity: Mapped[str] = mapped_column(String(32))
    key: Mapped[str] = mapped_column(String(KEY_LEN))
    message_id: Mapped[str] = mapped_column(String(36))
    envelope: Mapped[str] = mapped_column(Text)
    # what it waits for: ["customer:crm:KH000001", "material:crm:4000000001", ...]
    waiting_on: Mapped[list[str]] = mapped_column(JSON)
    reason: Mapped[str] = mapped_column(Text)
    parked_at: Mapped[datetime]
    checked_at: Mapped[datetime]
    checks: Mapped[int] = mapped_column(Integer)
    __table_args__ = (
        UniqueConstraint("target", "message_id"),
        Index("ix_parked_key", "target", "entity", "key", "id"),
        Index("ix_parked_age", "parked_at"),
    )


class SyncOrder(Base):
    __tablename__ = "sync_orders"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(KEY_LEN))
    origin_system: Mapped[str] = mapped_column(String(64))
    origin_id: Mapped[str] = mapped_column(String(256))
    customer_key: Mapped[str | None] = mapped_column(String(KEY_LEN))
    amount: Mapped[Decimal] = mapped_column(Numeric(20, 4))
    currency: Mapped[str] = mapped_column(String(3))
    status: Mapped[str] = mapped_column(String(32))
    open: Mapped[bool]
    credit_flagged: Mapped[bool]
    body: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
    __table_args__ = (
        UniqueConstraint("key"),
        Index("ix_sync_orders_customer", "customer_key", "open"),
    )


class SyncBom(Base):
    __tablename__ = "sync_boms"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(KEY_LEN))
    target: Mapped[str] = mapped_column(String(64))
    revision: Mapped[str] = mapped_column(String(32))
    lines: Mapped[dict[str, Any]] = mapped_column(JSON)
    updated_at: Mapped[datetime]
    __table_args__ = (UniqueConstraint("key", "target"),)
