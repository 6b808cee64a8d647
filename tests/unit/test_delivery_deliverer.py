"""The deliverer's loop on a real SQLite store with a fake target: every message delivered in
per-key order, never more calls in flight than the concurrency, and the outcomes recorded and
the next rows claimed in one store transaction per round, not one or two per call."""

from __future__ import annotations

import asyncio
from collections import defaultdict
from datetime import UTC, datetime
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
from hub.store.models import DeadLetter
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


async def run_until_delivered(deliverer: Deliverer, n: int, *, timeout_s: float) -> None:
    """Runs the deliverer until it has delivered ``n`` calls, then stops it."""
    running = asyncio.create_task(deliverer.run())
    try:
        async with asyncio.timeout(timeout_s):
            while deliverer.counters.delivered < n:
                await asyncio.sleep(0.02)
    finally:
        deliverer.stop()
        await running


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


class GatedTarget(FakeTarget):
    """Holds every call until ``gate`` opens."""

    def __init__(self) -> None:
        super().__init__()
        self.gate = asyncio.Event()
        self.started: list[str] = []

    async def deliver(
        self, entity: Any, body: Any, idempotency_key: str, *, local_id: str | None = None
    ) -> DeliveryResult:
        self.in_flight += 1
        self.most_in_flight = max(self.most_in_flight, self.in_flight)
        self.started.append(str(body["name"]))
        try:
            await self.gate.wait()
        finally:
            self.in_flight -= 1
        self.calls[str(body["name"])].append(idempotency_key)
        return DeliveryResult(Outcome.delivered, "crm", "customer", 201, f"L-{body['name']}")


async def test_rows_claimed_ahead_go_back_unattempted_when_the_deliverer_stops(
    sessions: Sessions,
) -> None:
    await enqueue(sessions, *[item(f"G-{k}", name=f"G-{k}") for k in range(6)], system="crm")
    config = DeliveryConfig(
        concurrency=2, claim_ahead=2, timeout_s=0.3, lease_s=30, poll_interval_ms=50
    )
    target = GatedTarget()
    deliverer = Deliverer("crm", target, sessions, config)  # type: ignore[arg-type]
    running = asyncio.create_task(deliverer.run())
    async with asyncio.timeout(10):
        while target.in_flight < 2:
            await asyncio.sleep(0.01)
    async with sessions() as s:
        leased = (await s.scalars(select(Delivery).where(Delivery.leased_by.is_not(None)))).all()
    assert len(leased) == 4, "two calls in flight and two rows ready for the next free slots"
    deliverer.stop()  # the calls never return: cancelled at the timeout, their rows released
    await running
    async with sessions() as s:
        after = {r.key: r for r in await s.scalars(select(Delivery))}
    assert all(r.leased_by is None and r.lease_until is None for r in after.values())
    attempted = {r.key: r.attempts for r in after.values() if r.attempts}
    assert attempted == dict.fromkeys(target.started, 1), "only the calls made count"
    assert len(target.started) == 2
    # another worker takes all six at once and delivers each exactly once
    second = FakeTarget()
    other = Deliverer("crm", second, sessions, config)  # type: ignore[arg-type]
    await run_until_delivered(other, 6, timeout_s=10)
    assert sorted(second.calls) == [f"G-{k}" for k in range(6)]
    assert all(len(v) == 1 for v in second.calls.values())


async def test_a_row_ready_too_long_for_its_lease_is_given_back_and_sent_later(
    sessions: Sessions,
) -> None:
    # lease 1.35 s, timeout 0.3 s: a ready row must start within 0.05 s of its claim (the
    # lease must outlive a call by a second), and the one call in flight takes 0.3 s, so
    # every ready row runs out of time once
    await enqueue(sessions, *[item(f"G-{k}", name=f"G-{k}") for k in range(4)], system="crm")
    config = DeliveryConfig(concurrency=1, timeout_s=0.3, lease_s=1.35, poll_interval_ms=20)
    target = FakeTarget()
    orig = target.deliver
    lease_left: list[float] = []

    async def slow(entity: Any, body: Any, key: str, **kw: Any) -> DeliveryResult:
        async with sessions() as s:
            until = await s.scalar(select(Delivery.lease_until).where(Delivery.message_id == key))
        assert until is not None
        lease_left.append((until.replace(tzinfo=UTC) - datetime.now(UTC)).total_seconds())
        await asyncio.sleep(0.28)
        return await orig(entity, body, key, **kw)

    target.deliver = slow  # type: ignore[method-assign]
    deliverer = Deliverer("crm", target, sessions, config)  # type: ignore[arg-type]
    await run_until_delivered(deliverer, 4, timeout_s=20)
    async with sessions() as s:
        after = list(await s.scalars(select(Delivery)))
    assert sorted(target.calls) == [f"G-{k}" for k in range(4)]
    assert all(len(v) == 1 for v in target.calls.values()), "each sent once"
    # no call starts with less of its lease left than a call may take plus the second of
    # margin (minus this check's own read): no second worker claims it while in flight
    assert min(lease_left) > config.timeout_s + 0.9, lease_left
    assert [(r.status, r.attempts) for r in after] == [(DELIVERED, 1)] * 4, (
        "a row given back unstarted has not used an attempt"
    )


class NaturalKeyTarget(FakeTarget):
    """Stores one record per name, as a target with a natural key does: a second record of
    ours with the same name is answered 409 with the first one's id."""

    def __init__(self) -> None:
        super().__init__()
        self.by_name: dict[str, str] = {}

    async def deliver(
        self, entity: Any, body: Any, idempotency_key: str, *, local_id: str | None = None
    ) -> DeliveryResult:
        name = str(body["name"])
        if name in self.by_name:
            return DeliveryResult(
                Outcome.duplicate, "crm", "customer", 409, local_id=self.by_name[name]
            )
        self.by_name[name] = f"L-{len(self.by_name)}"
        return DeliveryResult(Outcome.delivered, "crm", "customer", 201, self.by_name[name])


async def test_a_409_naming_another_records_id_is_a_dead_letter_not_a_delivery(
    sessions: Sessions,
) -> None:
    # two different records of ours that the target's natural key takes for one
    await enqueue(sessions, item("G-1", name="电机组件"), system="crm")
    await enqueue(sessions, item("G-2", name="电机组件"), system="crm")
    deliverer = Deliverer(
        "crm",
        NaturalKeyTarget(),  # type: ignore[arg-type]
        sessions,
        DeliveryConfig(concurrency=1, poll_interval_ms=50),
    )
    running = asyncio.create_task(deliverer.run())
    try:
        async with asyncio.timeout(30):
            while deliverer.counters.delivered + deliverer.counters.dead_lettered < 2:
                await asyncio.sleep(0.05)
    finally:
        deliverer.stop()
        await running
    assert (deliverer.counters.delivered, deliverer.counters.dead_lettered) == (1, 1)
    async with sessions() as s:
        status = dict((await s.execute(select(Delivery.key, Delivery.status))).all())
        dead = (await s.execute(select(DeadLetter))).scalars().all()
    assert status == {"G-1": DELIVERED, "G-2": "dead"}
    assert [d.error_class for d in dead] == ["DeliveryConflict"]
    assert "cross-reference of 'G-1'" in dead[0].reason and "G-2" in dead[0].reason


async def test_claims_ahead_as_many_rows_as_configured_beyond_the_calls_in_flight(
    sessions: Sessions,
) -> None:
    # decision 60: the ready rows keep the calls going while a round waits for the store
    await enqueue(sessions, *[item(f"G-{k}", name=f"G-{k}") for k in range(12)], system="crm")
    config = DeliveryConfig(concurrency=2, claim_ahead=5, poll_interval_ms=50)
    target = GatedTarget()
    deliverer = Deliverer("crm", target, sessions, config)  # type: ignore[arg-type]
    running = asyncio.create_task(deliverer.run())
    try:
        async with asyncio.timeout(10):
            while target.in_flight < 2:
                await asyncio.sleep(0.01)
        await asyncio.sleep(0.1)  # a further round would claim more if it were allowed to
        async with sessions() as s:
            leased = (
                await s.scalars(select(Delivery.key).where(Delivery.leased_by.is_not(None)))
            ).all()
        assert len(leased) == 2 + 5, "two calls in flight and five rows ready"
        assert target.most_in_flight == 2
    finally:
        target.gate.set()
        deliverer.stop()
        await running


class ReleasedTarget(FakeTarget):
    """Each call returns when the test releases it."""

    def __init__(self) -> None:
        super().__init__()
        self.release = asyncio.Semaphore(0)

    async def deliver(
        self, entity: Any, body: Any, idempotency_key: str, *, local_id: str | None = None
    ) -> DeliveryResult:
        self.in_flight += 1
        try:
            await self.release.acquire()
        finally:
            self.in_flight -= 1
        return DeliveryResult(Outcome.delivered, "crm", "customer", 201, f"L-{body['name']}")


async def test_a_round_records_the_outcomes_that_came_back_while_it_waited_for_the_store(
    sessions: Sessions, monkeypatch: pytest.MonkeyPatch
) -> None:
    # decision 60: on SQLite a round first queues for the write lock behind the flows'
    # batches; the calls that return meanwhile are recorded in that round, not the next
    await enqueue(sessions, *[item(f"G-{k}", name=f"G-{k}") for k in range(6)], system="crm")
    recorded: list[int] = []
    finish_many = queue.finish_many

    async def counted(s: Any, owner: str, attempts: Any, **kw: Any) -> dict[int, bool]:
        recorded.append(len(attempts))
        return await finish_many(s, owner, attempts, **kw)

    monkeypatch.setattr(queue, "finish_many", counted)
    config = DeliveryConfig(concurrency=6, claim_ahead=0, poll_interval_ms=50)
    target = ReleasedTarget()
    deliverer = Deliverer("crm", target, sessions, config)  # type: ignore[arg-type]
    running = asyncio.create_task(deliverer.run())
    try:
        async with asyncio.timeout(10):
            while target.in_flight < 6:
                await asyncio.sleep(0.01)
        async with sessions() as other, other.begin():
            await other.connection()  # a flow's batch holds the write lock
            target.release.release()  # one call returns: a round starts, and waits
            await asyncio.sleep(0.2)
            for _ in range(5):  # the others return while it waits
                target.release.release()
            await asyncio.sleep(0.2)
        async with asyncio.timeout(10):
            while deliverer.counters.delivered < 6:
                await asyncio.sleep(0.01)
    finally:
        deliverer.stop()
        await running
    assert recorded == [6], "every outcome that was waiting recorded in the one round"
