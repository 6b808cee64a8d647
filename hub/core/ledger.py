"""The idempotent-consumer ledger (Camel's idempotent consumer, kept in the store)."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from functools import lru_cache

from sqlalchemy import String, any_, bindparam, insert, select
from sqlalchemy.dialects.postgresql import ARRAY
from sqlalchemy.ext.asyncio import AsyncSession

from hub.store.models import ProcessedMessage

_CHUNK = 500
_IDS = ARRAY(String(36))


async def already_processed(session: AsyncSession, consumer: str, ids: Iterable[str]) -> set[str]:
    wanted = list(dict.fromkeys(ids))
    seen: set[str] = set()
    if not wanted:
        return seen
    if session.get_bind().dialect.name == "postgresql":
        # One array parameter, not 500: asyncpg prepares the statement, and PostgreSQL ran
        # the 500-parameter IN list 40-100 times slower (270-600 ms against 6-15 ms for 500
        # ids in a 20,000-row ledger not yet analyzed, as after a bulk load).
        rows = await session.execute(
            select(ProcessedMessage.message_id).where(
                ProcessedMessage.consumer == consumer,
                ProcessedMessage.message_id == any_(bindparam("ids", wanted, type_=_IDS)),
            )
        )
        seen.update(rows.scalars())
        return seen
    # SQLite: the statement as the driver takes it. Rendering a 500-item IN list through the
    # ORM cost more than SQLite's 500 index probes (1.4-2.3 ms against 0.8-1.0 ms a lookup).
    conn = await session.connection()
    for i in range(0, len(wanted), _CHUNK):
        chunk = wanted[i : i + _CHUNK]
        rows = await conn.exec_driver_sql(_sqlite_lookup(len(chunk)), (consumer, *chunk))
        seen.update(r[0] for r in rows)
    return seen


@lru_cache(maxsize=8)
def _sqlite_lookup(n: int) -> str:
    table = ProcessedMessage.__tablename__
    marks = ",".join("?" * n)
    return f"SELECT message_id FROM {table} WHERE consumer = ? AND message_id IN ({marks})"


async def mark_processed(session: AsyncSession, consumer: str, ids: Iterable[str]) -> None:
    now = datetime.now(UTC)
    rows = [{"consumer": consumer, "message_id": i, "processed_at": now} for i in ids]
    if rows:
        await session.execute(insert(ProcessedMessage), rows)
