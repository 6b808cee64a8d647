"""Housekeeping keeps the outbox and the delivery history to their retention (SQLite and
PostgreSQL), and deletes nothing that something still needs: unsent rows, rows a lost broker
must be given again, pending and dead deliveries, and the delivered rows that make a re-drive
of an older dead letter refuse to overwrite newer data."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select, update

from connectors.common.sink import Outcome
from hub import housekeeping
from hub.delivery import queue
from hub.housekeeping import Housekeeper, Retention
from hub.store.delivery_models import Delivery
from hub.store.models import OutboxRow
from tests.unit.test_delivery_queue import claim, enqueue, finish, item

pytestmark = pytest.mark.integration

DAY = 86_400.0
NOW = datetime.now(UTC)


@pytest.fixture
def sessions(store_sessions: Any) -> Any:
    return store_sessions


async def outbox(sessions: Any, *sent_ago: float | None) -> None:
    async with sessions() as s, s.begin():
        for i, ago in enumerate(sent_ago):
            s.add(
                OutboxRow(
                    topic="t",
                    key=str(i).encode(),
                    value=b"{}",
                    headers=[],
                    created_at=NOW - timedelta(seconds=ago or 0),
                    sent_at=None if ago is None else NOW - timedelta(seconds=ago),
                )
            )


async def outbox_keys(sessions: Any) -> list[bytes]:
    async with sessions() as s:
        return [
            bytes(k)
            for k in (await s.execute(select(OutboxRow.key).order_by(OutboxRow.id))).scalars()
        ]


async def test_outbox_keeps_unsent_and_recent_rows(sessions: Any, monkeypatch: Any) -> None:
    monkeypatch.setattr(housekeeping, "CHUNK", 2)  # several chunks for five old rows
    #                    0     1        2        3        4        5        6        7
    await outbox(sessions, None, 2 * DAY, 3 * DAY, 2 * DAY, 9 * DAY, 2 * DAY, 3600.0, 0.5 * DAY)
    keeper = Housekeeper(sessions, Retention(outbox_s=DAY, deliveries_s=0, republish_s=3600))
    assert await keeper.sweep(NOW) == {"outbox": 5, "deliveries": 0, "webhook_idempotency": 0}
    assert await outbox_keys(sessions) == [b"0", b"6", b"7"]
    # the republish window wins over a shorter retention: a lost broker gets them again
    keeper = Housekeeper(sessions, Retention(outbox_s=60, deliveries_s=0, republish_s=DAY))
    assert await keeper.sweep(NOW) == {"outbox": 0, "deliveries": 0, "webhook_idempotency": 0}
    keeper = Housekeeper(sessions, Retention(outbox_s=60, deliveries_s=0, republish_s=0))
    assert (await keeper.sweep(NOW))["outbox"] == 2
    assert await outbox_keys(sessions) == [b"0"]


async def test_zero_retention_keeps_everything(sessions: Any) -> None:
    await outbox(sessions, 30 * DAY)
    keeper = Housekeeper(sessions, Retention(outbox_s=0, deliveries_s=0))
    assert await keeper.sweep(NOW) == {"outbox": 0, "deliveries": 0, "webhook_idempotency": 0}
    assert await outbox_keys(sessions) == [b"0"]


async def test_delivery_history_goes_but_a_dead_letter_still_knows_newer_data(
    sessions: Any,
) -> None:
    a1, a2, b1, b2, c1 = item("A"), item("A"), item("B"), item("B"), item("C")
    await enqueue(sessions, a1, b1, c1)
    jobs = {j.key: j for j in await claim(sessions)}
    await finish(sessions, jobs["A"], Outcome.permanent, reason="refused")  # A v1 dead
    await finish(sessions, jobs["B"], Outcome.delivered, local_id="KB")
    # C v1 stays pending (claimed, lease running)
    await enqueue(sessions, a2, b2)
    later = {j.key: j for j in await claim(sessions, now=NOW + timedelta(days=2))}
    await finish(sessions, later["A"], Outcome.delivered, local_id="KA")
    await finish(sessions, later["B"], Outcome.delivered, local_id="KB")
    async with sessions() as s, s.begin():  # everything finished ten days ago
        await s.execute(update(Delivery).values(finished_at=NOW - timedelta(days=10)))
        await s.execute(
            update(Delivery)
            .where(Delivery.message_id == str(b2.env.message_id))
            .values(finished_at=NOW - timedelta(days=1))
        )
    keeper = Housekeeper(sessions, Retention(outbox_s=0, deliveries_s=7 * DAY))
    assert await keeper.sweep(NOW) == {"outbox": 0, "deliveries": 1, "webhook_idempotency": 0}
    async with sessions() as s:
        left = {(r.key, r.seq): r.status for r in (await s.execute(select(Delivery))).scalars()}
    # B v1 went (history); B v2 is within the retention; C is pending; A v1 is dead and A v2,
    # delivered after it, stays: without it the re-drive below would overwrite newer data
    assert left == {
        ("A", 1): "dead",
        ("A", 2): "delivered",
        ("B", 2): "delivered",
        ("C", 1): "pending",
    }
    async with sessions() as s, s.begin():
        with pytest.raises(ValueError, match="newer message"):
            await queue.redrive(s, "crm", str(a1.env.message_id))


async def test_webhook_idempotency_answers_past_their_retention_are_deleted(
    sessions: Any,
) -> None:
    from hub.ingest import idempotency
    from hub.store.models import WebhookIdempotency

    async with sessions() as s, s.begin():
        for key, ago in (("old", 2 * DAY), ("older", 3 * DAY), ("fresh", 60.0)):
            idempotency.remember(
                s, "crm", "customer", key, "h", 202, {"accepted": 1}, NOW - timedelta(seconds=ago)
            )
    keeper = Housekeeper(sessions, Retention(outbox_s=0, deliveries_s=0, idempotency_s=DAY))
    assert (await keeper.sweep(NOW))["webhook_idempotency"] == 2
    async with sessions() as s:
        left = (await s.execute(select(WebhookIdempotency.key))).scalars().all()
    assert left == ["fresh"]
