"""The idempotent-consumer ledger (Camel's idempotent consumer, kept in the store)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime

from sqlalchemy import insert, select
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import ProcessedMessage

_CHUNK = 500


async def already_processed(session: AsyncSession, consumer: str, ids: Iterable[str]) -> set[str]:
    wanted = list(dict.fromkeys(ids))
    seen: set[str] = set()
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        rows = await session.execute(
            select(ProcessedMessage.message_id).where(
                ProcessedMessage.consumer == consumer, ProcessedMessage.message_id.in_(chunk)
            )
        )
        seen.update(rows.scalars())
    return seen


async def mark_processed(session: AsyncSession, consumer: str, ids: Iterable[str]) -> None:
    now = datetime.now(UTC)
    rows = [{"consumer": consumer, "message_id": i, "processed_at": now} for i in ids]
    if rows:
        await session.execute(insert(ProcessedMessage), rows)
