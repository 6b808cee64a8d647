"""The outbox relay does not trust a broker that refused part of a batch with the rest of it."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

import pytest
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.core.relay import OutboxRelay
from hub.store.models import OutboxRow


class _RefusesOnce:
    """Refuses the record keyed ``refused`` on the first batch, as a broker answers one
    partition's batch with an error; acknowledges everything else."""

    def __init__(self) -> None:
        self.sent: list[bytes | None] = []
        self.refused_once = False

    async def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: object
    ) -> asyncio.Future[None]:
        self.sent.append(key)
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        if key == b"refused" and not self.refused_once:
            self.refused_once = True
            fut.set_exception(RuntimeError("[Error -1] UnknownError"))
        else:
            fut.set_result(None)
        return fut


async def test_a_batch_with_a_refused_record_is_published_again_whole(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add_all(
            OutboxRow(topic="t", key=k, value=b"v", headers=[], created_at=now)
            for k in (b"a", b"refused", b"b")
        )
    producer = _RefusesOnce()
    relay = OutboxRelay(sessions, producer, batch_size=10)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="1 outbox rows not published"):
        await relay.publish_once()
    async with sessions() as s:
        rows = (await s.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars().all()
    # acknowledged or not, nothing of that batch counts as sent, and all can be claimed again
    assert [(r.sent_at, r.lease_until) for r in rows] == [(None, None)] * 3
    assert all("UnknownError" in (r.last_error or "") for r in rows)
    assert await relay.publish_once() == 3
    assert producer.sent == [b"a", b"refused", b"b"] * 2
    async with sessions() as s:
        rows = (await s.execute(select(OutboxRow))).scalars().all()
    assert all(r.sent_at is not None for r in rows)
