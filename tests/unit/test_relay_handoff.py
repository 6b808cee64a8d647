"""The outbox relay hands what it just published to the flows of its process (decision 60):
a flow takes the records only when they are exactly the next ones of a partition it holds,
then moves its consumer past them; everything else it consumes as usual."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from types import SimpleNamespace
from typing import Any

from aiokafka import TopicPartition
from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.core.inbound import InboundRecord
from hub.core.processor import BatchStats
from hub.core.relay import OutboxRelay, handoff_enabled
from hub.core.runner import FlowRunner
from hub.store.models import OutboxRow

TP = TopicPartition("changes.customer", 0)


class _Producer:
    """Acknowledges every record with the offset a broker would give it."""

    def __init__(self) -> None:
        self.next: dict[str, int] = {}

    async def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: object
    ) -> asyncio.Future[Any]:
        offset = self.next.get(topic, 40)
        self.next[topic] = offset + 1
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(SimpleNamespace(topic=topic, partition=0, offset=offset, timestamp=-1))
        return fut


async def test_the_relay_tells_what_it_published_with_the_brokers_offsets(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add_all(
            OutboxRow(topic="changes.customer", key=k, value=b"v" + k, headers=[], created_at=now)
            for k in (b"a", b"b")
        )
    relay = OutboxRelay(sessions, _Producer(), batch_size=10)  # type: ignore[arg-type]
    told: list[InboundRecord] = []
    relay.on_published = told.extend
    assert await relay.publish_once() == 2
    assert [(r.topic, r.partition, r.offset, r.key, r.value) for r in told] == [
        ("changes.customer", 0, 40, b"a", b"va"),
        ("changes.customer", 0, 41, b"b", b"vb"),
    ]


class _HeldProducer(_Producer):
    """Acknowledges nothing until `go` is set."""

    def __init__(self) -> None:
        super().__init__()
        self.sending = asyncio.Event()
        self.go = asyncio.Event()

    async def send(
        self, topic: str, *, value: bytes, key: bytes | None, headers: object
    ) -> asyncio.Future[Any]:
        self.sending.set()
        await self.go.wait()
        return await super().send(topic, value=value, key=key, headers=headers)


async def test_the_hand_off_does_not_wait_for_the_store_to_mark_the_rows_sent(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    """Decision 66: with another writer holding SQLite's write gate (a flow's batch) when the
    broker acknowledges, the flows are told at once; the rows are marked sent once the
    writer is done."""
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():
        s.add(
            OutboxRow(topic="changes.customer", key=b"a", value=b"va", headers=[], created_at=now)
        )
    producer = _HeldProducer()
    relay = OutboxRelay(sessions, producer, batch_size=10)  # type: ignore[arg-type]
    told: list[InboundRecord] = []
    relay.on_published = told.extend
    task = asyncio.create_task(relay.publish_once())
    await asyncio.wait_for(producer.sending.wait(), 5)  # claimed, being published
    async with sessions() as writer, writer.begin():
        # the write gate is this transaction's until it ends
        await writer.execute(update(OutboxRow).where(OutboxRow.id < 0).values(attempts=0))
        producer.go.set()
        for _ in range(200):
            if told:
                break
            await asyncio.sleep(0.01)
        assert [r.key for r in told] == [b"a"]
        assert not task.done()  # the mark waits for the writer
    assert await asyncio.wait_for(task, 5) == 1
    async with sessions() as s:
        assert (await s.execute(select(OutboxRow.sent_at))).scalar_one() is not None


class _Consumer:
    """What FlowRunner uses of AIOKafkaConsumer; its position is aiokafka's internal state."""

    def __init__(self, position: int | None) -> None:
        self.state = SimpleNamespace(
            has_valid_position=position is not None, position=position or 0
        )
        states = {TP: self.state}
        self._subscription = SimpleNamespace(
            subscription=SimpleNamespace(assignment=SimpleNamespace(state_value=states.get))
        )
        self.committed: list[dict[TopicPartition, int]] = []
        self.seeks: list[tuple[TopicPartition, int]] = []
        self.fetches = 0

    def assignment(self) -> set[TopicPartition]:
        return {TP}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    async def getmany(self, timeout_ms: int, max_records: int) -> dict[Any, Any]:
        self.fetches += 1
        await asyncio.sleep(3600)  # a fetch the broker holds (Tansu: its whole wait)
        return {}

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        self.committed.append(offsets)

    def seek(self, tp: TopicPartition, offset: int) -> None:
        self.seeks.append((tp, offset))
        self.state.position = offset


class _Processor:
    def __init__(self) -> None:
        self.spec = SimpleNamespace(name="identity", topics=["changes.customer"])
        self.batches: list[list[int]] = []

    async def process(self, records: list[InboundRecord]) -> BatchStats:
        self.batches.append([r.offset for r in records])
        return BatchStats(applied=len(records))


def rec(offset: int, topic: str = "changes.customer", partition: int = 0) -> InboundRecord:
    return InboundRecord(topic, partition, offset, b"v", b"k")


def runner(position: int | None) -> tuple[FlowRunner, _Consumer, _Processor]:
    consumer, processor = _Consumer(position), _Processor()
    r = FlowRunner(
        processor,  # type: ignore[arg-type]
        consumer,  # type: ignore[arg-type]
        batch_size=100,
        poll_timeout_ms=200,
        backoff_initial_ms=10,
        backoff_max_ms=100,
    )
    return r, consumer, processor


def test_only_the_next_records_of_a_held_partition_are_taken() -> None:
    r, _, _ = runner(position=10)
    # 9 was consumed already; 13 follows a gap (another producer's record 12)
    r.offer([rec(9), rec(11), rec(10), rec(13), rec(5, topic="golden.customer")])
    r.offer([rec(0, partition=1)])  # a partition another worker holds
    taken = r._take_offered()
    assert {tp: [x.offset for x in rs] for tp, rs in taken.items()} == {TP: [10, 11]}
    assert r._take_offered() == {}, "what was not taken is left to the fetch"


def test_nothing_is_taken_while_the_position_is_unknown() -> None:
    r, _, _ = runner(position=None)
    r.offer([rec(0), rec(1)])
    assert r._take_offered() == {}


async def test_an_offer_cuts_the_wait_for_a_fetch_and_the_consumer_moves_past_it() -> None:
    r, consumer, processor = runner(position=7)
    running = asyncio.create_task(r.run())
    try:
        async with asyncio.timeout(5):
            while consumer.fetches < 1:
                await asyncio.sleep(0.01)
            r.offer([rec(7), rec(8)])  # while the fetch waits at the broker
            while not consumer.seeks:
                await asyncio.sleep(0.01)
    finally:
        r.stop()
        running.cancel()
        await asyncio.gather(running, return_exceptions=True)
    assert processor.batches == [[7, 8]]
    assert consumer.committed == [{TP: 9}]
    assert consumer.seeks == [(TP, 9)], "past what was taken: the held fetch is discarded"
    assert r.metrics.handed == 2 and r.metrics.consumed == 2


async def test_a_commit_during_a_relay_round_is_published_without_waiting_for_the_interval(
    sessions: async_sessionmaker[AsyncSession],
) -> None:
    # decision 60: the wake-up of a commit that lands while the relay publishes was cleared
    # after the round, and its rows waited for the next interval (200 ms by default)
    relay = OutboxRelay(sessions, _Producer(), batch_size=10, interval_ms=5_000)  # type: ignore[arg-type]
    publish_once = relay.publish_once
    rounds = 0

    async def committing_meanwhile() -> int:
        nonlocal rounds
        rounds += 1
        n = await publish_once()
        if rounds == 1:  # a flow commits a row and wakes the relay while it publishes
            async with sessions() as s, s.begin():
                s.add(
                    OutboxRow(
                        topic="t", key=b"k", value=b"v", headers=[], created_at=datetime.now(UTC)
                    )
                )
            relay.wake()
        return n

    relay.publish_once = committing_meanwhile  # type: ignore[method-assign]
    running = asyncio.create_task(relay.run())
    try:
        async with asyncio.timeout(2):  # far less than the interval
            while relay.published < 1:
                await asyncio.sleep(0.01)
    finally:
        relay.stop()
        await running


def test_the_hand_off_is_on_by_default_with_the_embedded_broker_only() -> None:
    assert handoff_enabled(None, embedded_broker=True)
    assert not handoff_enabled(None, embedded_broker=False)
    assert handoff_enabled(True, embedded_broker=False)
    assert not handoff_enabled(False, embedded_broker=True)
