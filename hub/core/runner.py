"""Runs one flow: a batch consume loop on aiokafka, offsets committed after the store commit.

A raw getmany loop rather than a per-message subscriber: the hot path takes a batch, applies it
in one store transaction and commits offsets once (see bench/ and docs/decisions.md).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from dataclasses import dataclass, field

from aiokafka import AIOKafkaConsumer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import CommitFailedError, IllegalStateError, KafkaError

from hub import metrics
from hub.broker import kafka
from hub.core import faults
from hub.core.errors import TransientError
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor, BatchStats

log = logging.getLogger(__name__)

# How long a stop waits for a consumer still joining its group to leave on its own terms
JOINING_STOP_WAIT_S = 1.0

# records offered per partition and not taken yet; beyond it the fetch brings them
OFFER_LIMIT = 10_000


def _position(consumer: AIOKafkaConsumer, tp: TopicPartition) -> int | None:
    """The consumer's next offset of ``tp`` if it knows it (aiokafka's ``position`` waits for
    an offset reset instead; a hand-off never waits)."""
    try:
        state = consumer._subscription.subscription.assignment.state_value(tp)
    except AttributeError:
        return None
    if state is None or not state.has_valid_position:
        return None
    return int(state.position)


@dataclass
class FlowMetrics:
    consumed: int = 0
    applied: int = 0
    duplicates: int = 0
    dead_lettered: int = 0
    retries: int = 0
    batches: int = 0
    busy_s: float = 0.0  # time spent applying batches (store transaction included)
    handed: int = 0  # records taken from this process's relay rather than a fetch
    last_error: str | None = None
    last_error_at: float | None = None
    last_batch_at: float | None = None
    positions: dict[tuple[str, int], int] = field(default_factory=dict)

    def add(self, n: int, s: BatchStats) -> None:
        self.consumed += n
        self.applied += s.applied
        self.duplicates += s.duplicates
        self.dead_lettered += s.dead_lettered
        self.batches += 1
        self.busy_s += s.seconds
        self.last_batch_at = time.time()
        if s.last_error:
            self.last_error, self.last_error_at = s.last_error, time.time()


class RewindNewPartitions(ConsumerRebalanceListener):  # type: ignore[misc]
    """Start each partition this member is given for the first time at the beginning of the log,
    whatever the group has committed there, until ``settled`` is set.

    For a hub started after its broker lost its data (hub/broker/epoch.py): the offsets the
    group holds on the new broker may have been committed by consumers of a hub that had not
    yet noticed the loss, with positions of the lost log. Starting from them skipped messages
    of the new log (tests/chaos/test_broker_restart.py: 285 of 2,000 accepted records never
    applied). Not only the first assignment: a partition that moves here later, from a process
    that was still working with lost-log positions, carries that process's offsets too. Reading
    the new log from its start costs repeats, which the ledger drops. The runner commits the
    start positions (``to_commit``) so that whoever holds the partition next starts there too."""

    def __init__(self, consumer: AIOKafkaConsumer, flow: str) -> None:
        self.consumer = consumer
        self.flow = flow
        self.seen: set[TopicPartition] = set()
        self.to_commit: set[TopicPartition] = set()
        self.settled = False

    @property
    def done(self) -> bool:
        """Given partitions at least once, and each one's start position committed."""
        return bool(self.seen) and not self.to_commit

    async def on_partitions_revoked(self, revoked: object) -> None:
        return None

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        new = set(assigned) - self.seen
        if self.settled or not new:
            return
        self.seen |= new
        self.to_commit |= new
        await self.consumer.seek_to_beginning(*new)
        log.warning(
            "flow %s: after a broker loss, reading %d partition(s) from the start of the log",
            self.flow,
            len(new),
        )


class FlowRunner:
    def __init__(
        self,
        processor: BatchProcessor,
        consumer: AIOKafkaConsumer,
        *,
        batch_size: int,
        poll_timeout_ms: int,
        backoff_initial_ms: int,
        backoff_max_ms: int,
        rewind_topics: tuple[str, ...] = (),
    ) -> None:
        """``rewind_topics``: subscribe to these with ``RewindNewPartitions`` (the consumer
        was made without topics); empty for the usual start at the committed offsets."""
        self.processor = processor
        self.consumer = consumer
        self.batch_size = batch_size
        self.poll_timeout_ms = poll_timeout_ms
        self.backoff_initial = backoff_initial_ms / 1000
        self.backoff_max = backoff_max_ms / 1000
        self.metrics = FlowMetrics()
        self._stopping = asyncio.Event()
        self.rewind_topics = rewind_topics
        self.rewind: RewindNewPartitions | None = None
        # records the outbox relay of this process just published to this flow's topics
        # (decision 60): taken when they are exactly the next ones of a partition held here
        self._offered: dict[TopicPartition, list[InboundRecord]] = {}
        self._topics = frozenset(processor.spec.topics)
        self._offer = asyncio.Event()

    @property
    def name(self) -> str:
        return self.processor.spec.name

    def stop(self) -> None:
        self._stopping.set()
        self._offer.set()

    def offer(self, records: list[InboundRecord]) -> None:
        """Records just published to the broker (with their offsets): a hint that this
        flow need not wait for its next fetch. Taken only from the consumer's position on, in
        unbroken offset order; anything else is dropped here and consumed as usual."""
        took = False
        for r in records:
            if r.topic in self._topics:
                queued = self._offered.setdefault(TopicPartition(r.topic, r.partition), [])
                if len(queued) < OFFER_LIMIT:
                    queued.append(r)
                    took = True
        if took:
            self._offer.set()

    def _take_offered(self) -> dict[TopicPartition, list[InboundRecord]]:
        offered, self._offered = self._offered, {}
        self._offer.clear()
        held = self.consumer.assignment()
        out: dict[TopicPartition, list[InboundRecord]] = {}
        room = self.batch_size
        for tp, records in sorted(offered.items()):
            at = _position(self.consumer, tp) if tp in held else None
            if at is None:
                continue
            run: list[InboundRecord] = []
            for r in sorted(records, key=lambda r: r.offset):
                if r.offset < at:
                    continue  # consumed already
                if r.offset != at or len(run) >= room:
                    break  # a gap (another producer's record): the fetch brings the rest
                run.append(r)
                at += 1
            if run:
                out[tp] = run
                room -= len(run)
            if room <= 0:
                break
        return out

    async def _poll(self) -> dict[TopicPartition, list]:  # type: ignore[type-arg]
        """``getmany``, cut short when the relay offers records."""
        fetch = asyncio.ensure_future(
            self.consumer.getmany(timeout_ms=self.poll_timeout_ms, max_records=self.batch_size)
        )
        offered = asyncio.ensure_future(self._offer.wait())
        try:
            await asyncio.wait({fetch, offered}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            offered.cancel()
            if not fetch.done():
                fetch.cancel()  # its records stay in the fetcher's buffer for the next getmany
        try:
            batches: dict[TopicPartition, list] = await fetch  # type: ignore[type-arg]
            return batches
        except asyncio.CancelledError:
            task = asyncio.current_task()
            if task is not None and task.cancelling():
                raise  # this runner is being cancelled, not only its fetch
            return {}

    async def run(self) -> None:
        if not await self._start_unless_stopped():
            return
        if self.rewind_topics:
            self.rewind = RewindNewPartitions(self.consumer, self.name)
            self.consumer.subscribe(list(self.rewind_topics), listener=self.rewind)
        try:
            while not self._stopping.is_set():
                if self.rewind is not None and self.rewind.to_commit:
                    await self._commit_rewound(self.rewind)
                if self._offered:
                    taken = self._take_offered()
                    if taken:
                        self.metrics.handed += sum(len(rs) for rs in taken.values())
                        await self._handle_records(taken, offered=True)
                        continue
                batches = await self._poll()
                if not batches:
                    continue
                await self._handle(batches)
        finally:
            await self.consumer.stop()

    async def _start_unless_stopped(self) -> bool:
        """Start the consumer; False if told to stop first.

        A consumer subscribed at creation returns from ``start()`` only once the group has
        assigned it partitions, which can take seconds (a group's first join waits the broker's
        initial rebalance delay; after a restart the embedded broker waits out the old members'
        session). A stop arriving meanwhile must not wait for that join: it used to hold every
        stop made soon after a start for the hub's whole grace period."""
        starting = asyncio.ensure_future(self.consumer.start())
        stopping = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            stopping.cancel()
        if starting.done():
            starting.result()  # a failed start raises here, as it did unwrapped
            return True
        starting.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await starting
        await kafka.stop_joining_consumer(self.consumer, JOINING_STOP_WAIT_S)
        return False

    async def _commit_rewound(self, rewind: RewindNewPartitions) -> None:
        """Commit the start positions of the partitions just rewound (outside the rebalance
        callback, where a commit would wait on the rebalance it is part of)."""
        pending = set(rewind.to_commit)
        held = pending & self.consumer.assignment()
        try:
            positions = {tp: await self.consumer.position(tp) for tp in held}
            if positions:
                await self.consumer.commit(positions)
        except (CommitFailedError, KafkaError) as exc:
            log.warning("flow %s: committing the rewound positions failed: %s", self.name, exc)
            return  # the next round tries again
        # committed, or no longer held (its next owner reads from its own position)
        rewind.to_commit -= pending

    async def _handle(self, batches: dict[TopicPartition, list]) -> None:  # type: ignore[type-arg]
        await self._handle_records(
            {tp: [InboundRecord.from_kafka(r) for r in rs] for tp, rs in batches.items()}
        )

    async def _handle_records(
        self, batches: dict[TopicPartition, list[InboundRecord]], *, offered: bool = False
    ) -> None:
        records = [r for tp in sorted(batches) for r in batches[tp]]
        delay = self.backoff_initial
        while True:
            try:
                stats = await self.processor.process(records)
                break
            except TransientError as exc:
                self.metrics.retries += 1
                metrics.BATCH_RETRIES.labels(self.name).inc()
                self.metrics.last_error, self.metrics.last_error_at = str(exc), time.time()
                log.warning("flow %s: batch retried in %.1fs: %s", self.name, delay, exc)
                if self._stopping.is_set():
                    return  # nothing committed; the next owner of these partitions redoes them
                await asyncio.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, self.backoff_max)
        self.metrics.add(len(records), stats)
        metrics.MESSAGES.labels(self.name, "applied").inc(stats.applied)
        metrics.MESSAGES.labels(self.name, "duplicate").inc(stats.duplicates)
        metrics.MESSAGES.labels(self.name, "dead_lettered").inc(stats.dead_lettered)
        offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs}
        try:
            await self.consumer.commit(offsets)
        except (CommitFailedError, KafkaError) as exc:
            # The group rebalanced: the new owner re-reads these records and the ledger
            # turns them into duplicates, so nothing happens twice.
            log.warning("flow %s: offset commit failed after store commit: %s", self.name, exc)
            return
        for tp, off in offsets.items():
            self.metrics.positions[(tp.topic, tp.partition)] = off
            if offered:
                # past what was taken from the relay: the fetch already under way for the
                # old position is discarded by aiokafka, its records are these
                with contextlib.suppress(IllegalStateError):
                    self.consumer.seek(tp, off)
        faults.reached("after_offset_commit")
