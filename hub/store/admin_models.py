"""Tables of the admin API: API tokens, the audit log, dead-letter re-drives, replay jobs.

Migration: hub/store/migrations/versions/0003_admin.py (a branch from 0001).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, BigInteger, Boolean, Float, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, BigId


class ApiToken(Base):
    """A bearer token of the admin API. Only the SHA-256 of the token is stored; ``hint`` is
    its first characters, enough to tell tokens apart in a list and useless to an attacker."""

    __tablename__ = "api_tokens"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    name: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))  # viewer | operator | admin
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    hint: Mapped[str] = mapped_column(String(16))
    created_at: Mapped[datetime]
    created_by: Mapped[str] = mapped_column(String(128))
    last_used_at: Mapped[datetime | None]
    revoked_at: Mapped[datetime | None]


class AuditEntry(Base):
    """One mutating call of the admin API (or of the token CLI): who, what, when, parameters."""

    __tablename__ = "audit_log"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    role: Mapped[str] = mapped_column(String(16))
    action: Mapped[str] = mapped_column(String(64))
    method: Mapped[str] = mapped_column(String(8))
    path: Mapped[str] = mapped_column(String(512))
    params: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[int] = mapped_column(Integer)
    detail: Mapped[str | None] = mapped_column(Text)
    __table_args__ = (
        Index("ix_audit_log_at", "at"),
        Index("ix_audit_log_actor_id", "actor", "id"),
    )


class DeadLetterRedrive(Base):
    """One re-drive of a dead letter: what was sent again, by whom, with which patch."""

    __tablename__ = "dead_letter_redrives"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    dead_letter_id: Mapped[int] = mapped_column(BigInteger, ForeignKey("dead_letters.id"))
    at: Mapped[datetime]
    actor: Mapped[str] = mapped_column(String(128))
    topic: Mapped[str] = mapped_column(String(255))
    message_id: Mapped[str | None] = mapped_column(String(36))
    patch: Mapped[dict[str, Any] | None] = mapped_column(JSON)
    forced: Mapped[bool] = mapped_column(Boolean, default=False)
    __table_args__ = (Index("ix_dead_letter_redrives_dead_letter_id", "dead_letter_id"),)


class ReplayJob(Base):
    """A replay of a topic range into a flow or a topic; the runner in hub.replay executes it.

    ``positions`` is the plan and the resume point per partition (next offset to read, the stop
    offset measured when the job started, the log start of the broker), so a job whose runner
    died resumes where it stopped with the same bounds.
    """

    __tablename__ = "replay_jobs"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    topic: Mapped[str] = mapped_column(String(255))
    partitions: Mapped[list[int] | None] = mapped_column(JSON)
    from_offset: Mapped[int | None] = mapped_column(BigInteger)
    from_time: Mapped[datetime | None]
    to_offset: Mapped[int | None] = mapped_column(BigInteger)
    to_time: Mapped[datetime | None]
    key_filter: Mapped[str | None] = mapped_column(String(512))
    source_system: Mapped[str | None] = mapped_column(String(64))
    target_flow: Mapped[str | None] = mapped_column(String(128))
    target_topic: Mapped[str | None] = mapped_column(String(255))
    dry_run: Mapped[bool] = mapped_column(Boolean, default=False)
    force: Mapped[bool] = mapped_column(Boolean, default=False)
    rate_limit: Mapped[float | None] = mapped_column(Float)
    status: Mapped[str] = mapped_column(String(16), default="queued")
    cancel_requested: Mapped[bool] = mapped_column(Boolean, default=False)
    counters: Mapped[dict[str, Any]] = mapped_column(JSON)
    report: Mapped[dict[str, Any]] = mapped_column(JSON)
    positions: Mapped[dict[str, Any]] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text)
    created_by: Mapped[str] = mapped_column(String(128))
    created_at: Mapped[datetime]
    started_at: Mapped[datetime | None]
    finished_at: Mapped[datetime | None]
    heartbeat_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_replay_jobs_status_id", "status", "id"),)
