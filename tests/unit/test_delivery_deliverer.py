"""The deliverer's loop on a real SQLite store with a fake target: every message delivered in
per-key order, never more calls in flight than the concurrency, and the outcomes recorded and
the next rows claimed in one store transaction per round, not one or two per call."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from typing import Any

import pytest
from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.common.sink import DeliveryResult, Outcome
from hub.delivery import queue, xref
from hub.delivery.config import DeliveryConfig
from hub.delivery.deliverer import Deliverer
from hub.store import db
from hub.store.delivery_models import DELIVERED, Delivery
from tests.unit.test_delivery_queue import enqueue, item

Sessions = async_sessionmaker[AsyncSession]


class FakeTarget:
    """Answers every create after a short pause, notes the order of calls per key."""

    def __init__(self) -> None:
        self.calls: dict[str, list[str]] = defaultdict(list)
        self.in_flight = 0
        self.most_in_flight = 0

    async def deliver(
        self, entity: Any, body: Any, idempotency_key: str, *, local_id: str | None = None
    ) -> DeliveryResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            await asyncio.sleep(0.02)
        finally:
            self.in_flight -= 1
        self.calls[str(body["name"]).split("/")[0]].append(str(body["name"]))
        return DeliveryResult(
            Outcome.delivered, "crm", "customer", 201, local_id=f"L-{body['name']}"
        )

    async def aclose(self) -> None:
        pass


async def test_rounds_record_and_claim_together_in_key_order(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    keys, per_key, concurrency = 40, 3, 8
    for n in range(per_key):
        await enqueue(
            sessions, *[item(f"G-{k}", name=f"G-{k}/{n}") for k in range(keys)], system="crm"
        )
    engine = sessions.kw["bind"]
    writes = 0

    def count(conn: Any) -> None:
        nonlocal writes
        writes += not conn.get_execution_options().get(db.READ_ONLY)

    recordings = 0
    finish_many = queue.finish_many

    async def counted(*a: Any, **kw: Any) -> dict[int, bool]:
        nonlocal recordings
        recordings += 1
        return await finish_many(*a, **kw)

    monkeypatch.setattr(queue, "finish_many", counted)
    target = FakeTarget()
    config = DeliveryConfig(concurrency=concurrency, poll_interval_ms=50)
    deliverer = Deliverer("crm", target, sessions, config)  # type: ignore[arg-type]
    event.listen(engine.sync_engine, "begin", count)
    running = asyncio.create_task(deliverer.run())
    try:
        async with asyncio.timeout(30):
            while deliverer.counters.delivered < keys * per_key:
                await asyncio.sleep(0.05)
    finally:
        deliverer.stop()
        await running
        event.remove(engine.sync_engine, "begin", count)

    calls = keys * per_key
    async with sessions() as s:
        statuses = list((await s.scalars(select(Delivery.status))).all())
        linked = await xref.local_ids(s, "crm", [("customer", f"G-{k}") for k in range(keys)])
    assert statuses == [DELIVERED] * calls
    assert len(linked) == keys
    # a key's messages go one after the other, in order
    assert all(v == [f"{k}/{n}" for n in range(per_key)] for k, v in target.calls.items())
    assert target.most_in_flight <= concurrency
    # the transaction that records outcomes claims the next rows too (apart, a claim and a
    # record transaction, it was twice as many); only the first claim records nothing
    assert recordings < calls // 2, f"{recordings} recordings for {calls} calls"
    assert writes <= recordings + 2, f"{writes} write transactions, {recordings} recordings"
