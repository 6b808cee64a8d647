"""Tables of identity resolution: golden records, their members, the persisted candidate index,
the review queue and the identity event log.

Migration: hub/store/migrations/versions/0005_identity.py (a branch from 0001).

The candidate index is two tables. ``block_keys`` holds the postings (key -> golden id) and
``block_key_counts`` how many golden ids a key has: a key held by more than ``block_cap``
golden ids is ignored at lookup (see ``flows.identity.resolver.CandidateIndex``), so the count
is read first and the postings of such hot keys are neither fetched nor written any more. With
millions of golden records a lookup therefore reads at most ``cap`` postings per key.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Float, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from hub.store.models import Base, BigId

GOLDEN_ID_LEN = 64  # "G-" + a UUID, with room to spare
BLOCK_KEY_LEN = 200  # longer keys are stored hashed (flows.identity.store_index.store_key)

ACTIVE, RETIRED = "active", "retired"
OPEN, ACCEPTED, REJECTED = "open", "accepted", "rejected"


class GoldenRecord(Base):
    """One real-world customer or material: matching profile, survivorship result, winners.

    ``version`` rises with every write; writers check it (optimistic locking), so two workers
    or a worker and an operator never overwrite each other's profile. A golden record merged
    into another is ``retired`` with ``merged_into`` set; it is never deleted, so its id keeps
    resolving for the systems that stored it.
    """

    __tablename__ = "golden_records"
    golden_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LEN), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32))
    profile: Mapped[dict[str, Any]] = mapped_column(JSON)
    record: Mapped[dict[str, Any]] = mapped_column(JSON)
    # {field: {source_system, source_id, message_id, rule[, sources]}}
    winners: Mapped[dict[str, Any]] = mapped_column(JSON)
    status: Mapped[str] = mapped_column(String(16), default=ACTIVE)
    merged_into: Mapped[str | None] = mapped_column(String(GOLDEN_ID_LEN))
    # for the admin search: the survivor name, and every member name and identifier, folded
    name: Mapped[str | None] = mapped_column(String(256))
    search_text: Mapped[str] = mapped_column(Text, default="")
    member_count: Mapped[int] = mapped_column(Integer, default=0)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime]
    updated_at: Mapped[datetime]
    __table_args__ = (
        Index("ix_golden_records_entity_status", "entity", "status", "golden_id"),
        # the admin list, newest change first (migration 0005a; on PostgreSQL also a pg_trgm
        # index on search_text, created there only)
        Index("ix_golden_records_list", "entity", "status", "updated_at", "golden_id"),
    )


class GoldenMember(Base):
    """Cross-reference: a source record (system, id) belongs to exactly one golden record."""

    __tablename__ = "golden_members"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32))
    source_system: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(256))
    golden_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LEN), index=True)
    # how it got there: new | merge | review | known | manual_merge | unmerge | review_accept
    action: Mapped[str] = mapped_column(String(16))
    score: Mapped[float] = mapped_column(Float, default=0.0)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    message_id: Mapped[str | None] = mapped_column(String(36))
    linked_at: Mapped[datetime]
    # source_id first: the batch lookup is `source_id IN (...)`, which then uses the index
    # as its condition even before the planner has statistics (a fresh or fast-growing table)
    __table_args__ = (UniqueConstraint("source_id", "source_system", "entity"),)


class BlockKey(Base):
    """A posting of the candidate index: golden records carrying a blocking key."""

    __tablename__ = "block_keys"
    # key first in the primary key: `key IN (...)` is the index condition whatever the
    # planner's statistics say (with entity first, a never-analyzed table is scanned by entity)
    key: Mapped[str] = mapped_column(String(BLOCK_KEY_LEN), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    golden_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LEN), primary_key=True)
    __table_args__ = (Index("ix_block_keys_golden", "golden_id"),)


class BlockKeyCount(Base):
    """How many golden ids hold a key; above the cap the key is hot and ignored."""

    __tablename__ = "block_key_counts"
    key: Mapped[str] = mapped_column(String(BLOCK_KEY_LEN), primary_key=True)
    entity: Mapped[str] = mapped_column(String(32), primary_key=True)
    n: Mapped[int] = mapped_column(Integer, default=0)


class ReviewItem(Base):
    """A record scored between the thresholds: its own golden record for now, and a candidate
    it may be the same as. Accepting merges the record into the candidate."""

    __tablename__ = "review_queue"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32))
    source_system: Mapped[str] = mapped_column(String(64))
    source_id: Mapped[str] = mapped_column(String(256))
    golden_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LEN))
    candidate_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LEN))
    score: Mapped[float] = mapped_column(Float)
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    message_id: Mapped[str | None] = mapped_column(String(36))
    status: Mapped[str] = mapped_column(String(16), default=OPEN)
    created_at: Mapped[datetime]
    decided_by: Mapped[str | None] = mapped_column(String(128))
    decided_at: Mapped[datetime | None]
    __table_args__ = (Index("ix_review_queue_status_id", "status", "id"),)


class IdentityEvent(Base):
    """What happened to golden records and why: upsert | merge | unmerge | review."""

    __tablename__ = "identity_events"
    id: Mapped[int] = mapped_column(BigId, primary_key=True, autoincrement=True)
    entity: Mapped[str] = mapped_column(String(32))
    kind: Mapped[str] = mapped_column(String(16))
    golden_id: Mapped[str] = mapped_column(String(GOLDEN_ID_LEN), index=True)
    other_golden_id: Mapped[str | None] = mapped_column(String(GOLDEN_ID_LEN))
    source_system: Mapped[str | None] = mapped_column(String(64))
    source_id: Mapped[str | None] = mapped_column(String(256))
    evidence: Mapped[dict[str, Any]] = mapped_column(JSON)
    message_id: Mapped[str | None] = mapped_column(String(36))
    actor: Mapped[str | None] = mapped_column(String(128))  # an operator, or None for the flow
    at: Mapped[datetime]
