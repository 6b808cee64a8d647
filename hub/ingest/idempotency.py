"""Idempotency keys of webhook calls: a retry gets the first answer, nothing twice.

A system that retries a push (its timeout, a lost answer, a retry storm) with the same
``Idempotency-Key`` header, to the same system, within ``webhook_idempotency_retention_s``,
gets the status and body the first call got, with ``Idempotent-Replayed: true``, and nothing
is written or published again. The same key with another body (or entity, or charset) is
refused with 422 naming the key, as Stripe and the IETF Idempotency-Key draft do: the key
was meant for one request.

The answer is stored in the transaction that writes the records, so it exists exactly when
they do: a call that failed (503) left no answer and its retry is processed. Two calls with
one key at the same time: within one process SQLite's write gate runs them one after the
other and the second finds the answer; otherwise (PostgreSQL, several processes) both insert
the key, the second waits on the primary key and fails with IntegrityError when the first
commits, its whole transaction (records, dead letters, audit) is rolled back, and it answers
from the row the first committed.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import WebhookIdempotency

REPLAYED = "Idempotent-Replayed"


def fingerprint(entity: str, charset: str | None, raw: bytes) -> str:
    h = hashlib.sha256()
    for part in (entity.encode(), (charset or "").lower().encode(), raw):
        h.update(len(part).to_bytes(8, "big"))
        h.update(part)
    return h.hexdigest()


@dataclass(frozen=True)
class Answer:
    status: int
    body: dict[str, Any]
    created_at: datetime


class KeyReused(Exception):
    """The key came with another request than the one it was first used for."""

    def __init__(self, system: str, key: str, first: datetime) -> None:
        super().__init__(
            f"Idempotency-Key {key!r} was used for a different request to {system} at "
            f"{first.isoformat()}: a retry must send the same entity and body; a new request "
            "needs a new key"
        )


async def answered(
    s: AsyncSession, system: str, key: str, request_hash: str, now: datetime, retention_s: float
) -> Answer | None:
    """The answer stored for this key, or None when there is none within the retention
    (an expired one is deleted here, so the key can be stored again)."""
    row = await s.get(WebhookIdempotency, (system, key), populate_existing=True)
    if row is None:
        return None
    if row.created_at < now - timedelta(seconds=retention_s):
        await s.execute(
            delete(WebhookIdempotency).where(
                WebhookIdempotency.system == system, WebhookIdempotency.key == key
            )
        )
        return None
    if row.request_hash != request_hash:
        raise KeyReused(system, key, row.created_at)
    return Answer(row.status, dict(row.response), row.created_at)


def remember(
    s: AsyncSession,
    system: str,
    entity: str,
    key: str,
    request_hash: str,
    status: int,
    body: dict[str, Any],
    now: datetime,
) -> None:
    s.add(
        WebhookIdempotency(
            system=system,
            key=key,
            entity=entity,
            request_hash=request_hash,
            status=status,
            response=body,
            created_at=now,
        )
    )


async def expired_chunk(s: AsyncSession, cutoff: datetime, limit: int) -> int:
    """Housekeeping: delete up to ``limit`` answers stored before ``cutoff``."""
    w = WebhookIdempotency
    keys = select(w.system, w.key).where(w.created_at < cutoff).limit(limit)
    res: Any = await s.execute(delete(w).where(tuple_(w.system, w.key).in_(keys)))
    return int(res.rowcount or 0)
