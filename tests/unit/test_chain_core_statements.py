"""Decision 50: the chain's hot paths write and read through Core, not the ORM.

The ORM's bulk persistence and ORM instances cost a sizable share of the hub's CPU per
customer (bench/sync_throughput.py); these tests fail if a hot path goes back to them, and
check that the rows written are the same.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

from sqlalchemy import event, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker
from sqlalchemy.orm import ORMExecuteState, Session

from connectors.common.sink import DeliveryResult, Outcome
from contracts.envelope import Envelope
from flows.records import flow as records
from hub.core.inbound import InboundRecord
from hub.core.ledger import already_processed, mark_processed
from hub.core.processor import BatchProcessor
from hub.core.relay import OutboxRelay
from hub.delivery import queue
from hub.delivery.policy import Decision, Verdict
from hub.store.bulk import update_by_id
from hub.store.delivery_models import DELIVERED, PENDING, Delivery
from hub.store.models import OutboxRow, RecordEvent, SourceRecord
from tests.helpers import customer_env
from tests.unit.test_delivery_queue import T0, claim, enqueue, item

Sessions = async_sessionmaker[AsyncSession]


@dataclass
class OrmUse:
    """ORM-enabled statements seen: bulk DML on a mapped class, SELECTs of whole entities."""

    dml: list[str] = field(default_factory=list)
    entities: list[str] = field(default_factory=list)


@contextmanager
def orm_use() -> Iterator[OrmUse]:
    seen = OrmUse()

    def on_execute(state: ORMExecuteState) -> None:
        stmt = state.statement
        if (state.is_insert or state.is_update or state.is_delete) and state.bind_mapper:
            seen.dml.append(f"{type(stmt).__name__} {state.bind_mapper.class_.__name__}")
        if state.is_select:
            for d in getattr(stmt, "column_descriptions", []):
                if d.get("entity") is not None and d.get("type") is d.get("entity"):
                    seen.entities.append(d["name"])

    event.listen(Session, "do_orm_execute", on_execute)
    try:
        yield seen
    finally:
        event.remove(Session, "do_orm_execute", on_execute)


class _Producer:
    """What the relay needs of an AIOKafkaProducer: send() -> a future of the send."""

    def __init__(self) -> None:
        self.sent: list[tuple[str, bytes, bytes | None, list[tuple[str, bytes]]]] = []

    async def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: list[tuple[str, bytes]]
    ) -> asyncio.Future[None]:
        self.sent.append((topic, value, key, headers))
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        fut.set_result(None)
        return fut


async def test_the_relay_publishes_and_marks_rows_without_orm_instances(
    sessions: Sessions,
) -> None:
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add_all(
            OutboxRow(
                topic="t", key=f"k{i}".encode(), value=b"v", headers=[["h", "x"]], created_at=now
            )
            for i in range(3)
        )
    producer = _Producer()
    relay = OutboxRelay(sessions, producer, batch_size=10)  # type: ignore[arg-type]
    with orm_use() as seen:
        assert await relay.publish_once() == 3
    assert seen.dml == [] and seen.entities == []
    assert [(t, k, h) for t, _, k, h in producer.sent] == [
        ("t", b"k0", [("h", b"x")]),
        ("t", b"k1", [("h", b"x")]),
        ("t", b"k2", [("h", b"x")]),
    ]
    async with sessions() as s:
        rows = (await s.execute(select(OutboxRow).order_by(OutboxRow.id))).scalars().all()
    assert all(r.sent_at is not None and r.attempts == 1 for r in rows)


async def test_claiming_and_recording_deliveries_use_core_statements(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"), item("G-1"))
    queue._claim_query.cache_clear()
    with orm_use() as seen:
        jobs = await claim(sessions)
        again = await claim(sessions)  # the same statement object, from the cache
        async with sessions() as s, s.begin():
            result = DeliveryResult(Outcome.delivered, "crm", "customer", local_id="L-1")
            answers = await queue.finish_many(
                s, "w1", [(jobs[0], result, Decision(Verdict.delivered))], now=T0
            )
    assert seen.dml == [] and seen.entities == []
    assert queue._claim_query.cache_info().hits >= 1
    # heads only, one per key, in due order; nothing claimed twice
    assert [(j.key, j.seq, j.attempts) for j in jobs] == [("G-1", 1, 1), ("G-2", 1, 1)]
    assert again == []
    assert answers == {jobs[0].id: True}
    async with sessions() as s:
        rows = {r.id: r for r in (await s.execute(select(Delivery))).scalars()}
    assert rows[jobs[0].id].status == DELIVERED and rows[jobs[0].id].local_id == "L-1"
    assert rows[jobs[1].id].status == PENDING and rows[jobs[1].id].leased_by == "w1"


async def test_claim_skips_excluded_rows(sessions: Sessions) -> None:
    await enqueue(sessions, item("G-1"), item("G-2"))
    async with sessions() as s, s.begin():
        first = await queue.claim(s, "crm", "w1", 1, lease_s=30, now=T0)
    async with sessions() as s, s.begin():
        # an expired lease would make G-1 claimable again; exclude keeps it with its owner
        rest = await queue.claim(
            s, "crm", "w1", 10, lease_s=30, exclude=[first[0].id], now=T0.replace(year=2100)
        )
    assert [j.key for j in first] == ["G-1"] and [j.key for j in rest] == ["G-2"]


async def test_update_by_id_groups_rows_by_their_columns(sessions: Sessions) -> None:
    await enqueue(sessions, item("A"), item("B"), item("C"))
    async with sessions() as s:
        ids = sorted((await s.execute(select(Delivery.id))).scalars())
    async with sessions() as s, s.begin():
        await update_by_id(
            s,
            Delivery,
            [
                {"id": ids[0], "attempts": 5},
                {"id": ids[1], "attempts": 6, "last_error": "boom"},
                {"id": ids[2], "attempts": 7},
            ],
        )
    async with sessions() as s:
        got = (await s.execute(select(Delivery.attempts, Delivery.last_error))).all()
    assert sorted(got) == [(5, None), (6, "boom"), (7, None)]


def _record(env: Envelope, offset: int) -> InboundRecord:
    return InboundRecord("canonical.customer", 0, offset, env.to_bytes(), env.key.encode())


async def test_the_records_flow_and_the_ledger_write_through_core(sessions: Sessions) -> None:
    first = customer_env(1)
    newer = first.model_copy(update={"message_id": customer_env(2).message_id, "source_version": 2})
    proc = BatchProcessor(records.spec(), sessions, max_message_bytes=1_000_000)
    with orm_use() as seen:
        await proc.process([_record(first, 0)])
        await proc.process([_record(newer, 1), _record(newer, 1)])  # a repeat in the batch
    assert seen.dml == [] and seen.entities == []
    async with sessions() as s:
        stored = (await s.execute(select(SourceRecord))).scalars().one()
        outcomes = (await s.execute(select(RecordEvent.outcome))).scalars().all()
        done = await already_processed(
            s, records.NAME, [str(first.message_id), str(newer.message_id)]
        )
    assert (stored.revision, stored.source_version, stored.last_message_id) == (
        2,
        2,
        str(newer.message_id),
    )
    assert list(outcomes) == ["applied", "applied"]
    assert done == {str(first.message_id), str(newer.message_id)}


async def test_mark_processed_writes_one_ledger_row_per_id(sessions: Sessions) -> None:
    with orm_use() as seen:
        async with sessions() as s, s.begin():
            await mark_processed(s, "f", ["a", "b"])
            await mark_processed(s, "f", [])
    assert seen.dml == []
    async with sessions() as s:
        assert await already_processed(s, "f", ["a", "b", "c"]) == {"a", "b"}
