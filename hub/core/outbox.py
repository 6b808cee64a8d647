"""The transactional outbox: outgoing messages are rows written in the same store transaction
as the effect that caused them; the relay publishes them afterwards."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import cast

from sqlalchemy import Table, insert
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.envelope import Envelope
from hub.core.inbound import headers_to_json
from hub.store.models import OutboxRow


def outbox_values(
    topic: str, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
) -> dict[str, object]:
    return {
        "topic": topic,
        "key": key,
        "value": value,
        "headers": headers_to_json(headers),
        "created_at": datetime.now(UTC),
        "attempts": 0,
    }


def envelope_values(topic: str, env: Envelope, key: str | None = None) -> dict[str, object]:
    return outbox_values(topic, env.to_bytes(), (key or env.key).encode(), env.headers())


async def add_rows(session: AsyncSession, rows: list[dict[str, object]]) -> None:
    if rows:
        # the table, not the mapped class: the ORM's bulk insert would add RETURNING of the
        # ids and per-row bookkeeping that nobody reads (~1 ms of a one-record batch)
        await session.execute(insert(cast(Table, OutboxRow.__table__)), rows)
