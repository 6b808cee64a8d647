"""Tables of approval urging (催办): approvals with their timer, urges sent, caps, early decisions.

The timer of an approval is the ``next_due_at`` column: the scheduler claims rows whose time
has come (row lease; ``FOR UPDATE SKIP LOCKED`` on PostgreSQL), asks the pure ladder logic in
``flows.urge`` what to do, and writes the urge, its outbox row and the next time in one
transaction. Urge ids are deterministic, and ``urges.urge_id`` is unique: a step fired twice
by two workers is a conflict, not a second message.
"""

from __future__ import annotations

from datetime import date, datetime
from typing import Any

from sqlalchemy import JSON, Date, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, BigId

KEY_LEN = 200  # origin system (64) + ":" + approval id (128)


class Approval(Base):
    """One approval the hub watches, keyed hub-wide by ``origin_system:approval_id``."""

    __tablename__ = "approvals"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    key: Mapped[str] = mapped_column(String(KEY_LEN), unique=True)
    origin_system: Mapped[str] = mapped_column(String(64))
    approval_id: Mapped[str] = mapped_column(String(128), index=True)
    # A new round starts when the approver changes or a decided approval is submitted again:
    # the ladder restarts, with urge ids of its own.
    round: Mapped[int] = mapped_column(Integer, default=1)
    type: Mapped[str] = mapped_column(String(64))
    type_key: Mapped[str] = mapped_column(String(64))
    title: Mapped[str] = mapped_column(Text)
    # Exact decimal text: SQLite has no decimal type and floats would round amounts.
    amount: Mapped[str | None] = mapped_column(String(40))
    currency: Mapped[str | None] = mapped_column(String(8))
    requester: Mapped[str] = mapped_column(String(128))
    requester_department: Mapped[str | None] = mapped_column(String(128))
    approver: Mapped[str] = mapped_column(String(128))
    approver_department: Mapped[str | None] = mapped_column(String(128))
    superior: Mapped[str | None] = mapped_column(String(128))
    escalate_to: Mapped[str | None] = mapped_column(String(128))
    tie: Mapped[str] = mapped_column(String(16))
    submitted_at: Mapped[datetime]
    deadline: Mapped[datetime]
    band_index: Mapped[int] = mapped_column(Integer)
    authority: Mapped[str] = mapped_column(String(64))
    request: Mapped[dict[str, Any]] = mapped_column(JSON)
    plan: Mapped[dict[str, Any]] = mapped_column(JSON)
    policy_fingerprint: Mapped[str] = mapped_column(String(32))
    # open | approved | rejected | withdrawn
    status: Mapped[str] = mapped_column(String(16), default="open")
    decided_at: Mapped[datetime | None]
    decided_by: Mapped[str | None] = mapped_column(String(128))
    next_due_at: Mapped[datetime | None] = mapped_column(index=True)
    lease_until: Mapped[datetime | None]
    leased_by: Mapped[str | None] = mapped_column(String(128))
    # Bumped by every change (request update, decision, urge): the scheduler writes its
    # result only if the row is still the version it computed from.
    version: Mapped[int] = mapped_column(Integer, default=1)
    urge_count: Mapped[int] = mapped_column(Integer, default=0)
    last_urged_at: Mapped[datetime | None]
    last_error: Mapped[str | None] = mapped_column(Text)
    correlation_id: Mapped[str | None] = mapped_column(String(36))
    last_message_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (Index("ix_approvals_status_deadline", "status", "deadline"),)


class UrgeRecord(Base):
    """One urge: sent (``status`` sent) or accepted for later (a one-click urge in quiet
    hours, ``status`` scheduled until the scheduler delivers it at ``send_at``)."""

    __tablename__ = "urges"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    urge_id: Mapped[str] = mapped_column(String(36), unique=True)
    approval_key: Mapped[str] = mapped_column(String(KEY_LEN), index=True)
    round: Mapped[int] = mapped_column(Integer, default=1)
    kind: Mapped[str] = mapped_column(String(16))  # ladder | one_click
    status: Mapped[str] = mapped_column(String(16), default="sent")  # sent | scheduled
    level: Mapped[int] = mapped_column(Integer)
    channel: Mapped[str] = mapped_column(String(16))
    recipient: Mapped[str] = mapped_column(String(128))
    escalated_to: Mapped[str | None] = mapped_column(String(128))
    text: Mapped[str] = mapped_column(Text)
    sequence: Mapped[int] = mapped_column(Integer)
    previous_urge_id: Mapped[str | None] = mapped_column(String(36))
    skipped_levels: Mapped[list[Any]] = mapped_column(JSON, default=list)
    urged_by: Mapped[str | None] = mapped_column(String(128))
    due_at: Mapped[datetime]
    send_at: Mapped[datetime]
    sent_at: Mapped[datetime | None]
    business_date: Mapped[date | None] = mapped_column(Date)
    created_at: Mapped[datetime]


class UrgeRecipientDay(Base):
    """Urges delivered to one recipient on one business date, across all approvals. Raised
    with a conditional upsert, so concurrent workers cannot exceed the daily cap."""

    __tablename__ = "urge_recipient_days"
    recipient: Mapped[str] = mapped_column(String(128), primary_key=True)
    business_date: Mapped[date] = mapped_column(Date, primary_key=True)
    count: Mapped[int] = mapped_column(Integer, default=0)


class PendingDecision(Base):
    """A decision that arrived before its request (other topic partition, other system).
    Applied, then deleted, when the request comes."""

    __tablename__ = "urge_pending_decisions"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    approval_id: Mapped[str] = mapped_column(String(128), index=True)
    source_system: Mapped[str] = mapped_column(String(64))
    decision: Mapped[str] = mapped_column(String(16))
    decided_by: Mapped[str] = mapped_column(String(128))
    decided_at: Mapped[datetime]
    message_id: Mapped[str] = mapped_column(String(36))
    received_at: Mapped[datetime]
