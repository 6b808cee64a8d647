"""Shared machinery of the multi-worker chaos tests: worker processes, committed-offset
watching, and the audit of a run against the expected state of tests/chaos/mixed.py."""

from __future__ import annotations

import asyncio
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity, Envelope
from hub.broker import kafka
from hub.settings import Settings
from hub.store.models import OutboxRow, RecordEvent, SourceRecord
from tests.chaos.mixed import Stream
from tests.conftest import hub_env
from tests.helpers import produce

PARTITIONS = 6
SESSION_TIMEOUT_MS = 6000
RECORDS_GROUP = "eai.records"
CANONICAL = [topics.canonical(e) for e in Entity]


def worker_env(broker: str, store_url: str, name: str, **extra: str) -> dict[str, str]:
    return hub_env(
        EAI_KAFKA_BOOTSTRAP=broker,
        EAI_DATABASE_URL=store_url,
        EAI_BATCH_SIZE="100",
        EAI_TOPIC_PARTITIONS=str(PARTITIONS),
        EAI_LOG_LEVEL="WARNING",
        # Short, so that a dead worker's partitions move within seconds (production: 10 s),
        # yet long enough that a live worker on a loaded 2-core machine keeps its session.
        EAI_KAFKA_SESSION_TIMEOUT_MS=str(SESSION_TIMEOUT_MS),
        EAI_RELAY_LEASE_S="4",
        EAI_WORKER_NAME=name,
        **extra,
    )


def start_worker(broker: str, store_url: str, name: str, **extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "worker"],
        env=worker_env(broker, store_url, name, **extra),
    )


async def stop_worker(proc: subprocess.Popen[bytes], timeout: float = 30) -> None:
    if proc.poll() is not None:
        return
    proc.terminate()
    try:
        await asyncio.to_thread(proc.wait, timeout)
    except subprocess.TimeoutExpired:
        proc.kill()
        await asyncio.to_thread(proc.wait)


async def create_topics(broker: str) -> None:
    """Before any worker: so the produce below lands on every partition."""
    settings = Settings(topic_partitions=PARTITIONS, kafka_bootstrap=broker)
    await kafka.ensure_topics(settings, broker, topics.all_topics())


async def produce_stream(broker: str, stream: Stream) -> None:
    await produce_sends(broker, stream.sends)


async def produce_sends(broker: str, sends: list[tuple[str, Envelope]]) -> None:
    """Produce in order (a key's messages keep their order: one key, one partition)."""
    by_topic: dict[str, list[tuple[bytes | None, bytes]]] = {}
    for topic, env in sends:
        by_topic.setdefault(topic, []).append((env.key.encode(), env.to_bytes()))
    for topic, items in by_topic.items():
        await produce(broker, topic, items)


class OffsetWatch:
    """The records group's committed offsets, read by a member that never joins the group
    (hub.broker.kafka.committed_offsets explains why), and the canonical end offsets."""

    def __init__(self, broker: str) -> None:
        self.broker = broker
        self.consumer = AIOKafkaConsumer(
            bootstrap_servers=broker, group_id=RECORDS_GROUP, enable_auto_commit=False
        )
        self.tps = [TopicPartition(t, p) for t in CANONICAL for p in range(PARTITIONS)]
        self.ends: dict[TopicPartition, int] = {}

    async def __aenter__(self) -> OffsetWatch:
        await self.consumer.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.consumer.stop()

    async def load_ends(self) -> None:
        probe = AIOKafkaConsumer(bootstrap_servers=self.broker, enable_auto_commit=False)
        await probe.start()
        try:
            self.ends = await kafka.end_offsets(probe, self.tps)
        finally:
            await probe.stop()

    async def committed(self) -> dict[TopicPartition, int]:
        out: dict[TopicPartition, int] = {}
        for tp in self.tps:
            off = await self.consumer.committed(tp)
            out[tp] = off if off is not None and off >= 0 else 0
        return out

    async def lagging(self) -> dict[TopicPartition, int]:
        done = await self.committed()
        return {tp: off for tp, off in done.items() if off < self.ends.get(tp, 0)}

    async def time_to_progress(self, stalled: dict[TopicPartition, int], timeout: float) -> float:
        """Seconds until every partition in ``stalled`` committed past its offset (or the
        end): the moment the last of them is being consumed again."""
        t0 = time.monotonic()
        waiting = dict(stalled)
        while waiting and time.monotonic() - t0 < timeout:
            now = await self.committed()
            waiting = {tp: o for tp, o in waiting.items() if now[tp] <= o}
            if waiting:
                await asyncio.sleep(0.25)
        if waiting:
            raise AssertionError(
                f"partitions not consumed again after {timeout}s: "
                + ", ".join(
                    f"{tp.topic}[{tp.partition}] at {o} of {self.ends[tp]}"
                    for tp, o in waiting.items()
                )
            )
        return time.monotonic() - t0


@dataclass
class Audit:
    lost: int = 0
    duplicated: int = 0
    wrong_outcome: int = 0
    wrong_state: int = 0
    stale_overwrites: int = 0  # records left at a lower version than the newest one sent
    changes_missing: int = 0
    changes_duplicated: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)

    def bad(self) -> dict[str, int]:
        return {k: v for k, v in vars(self).items() if isinstance(v, int) and v and k != "outcomes"}


async def settled(sessions: Any, stream: Stream) -> bool:
    async with sessions() as s:
        seen = await s.scalar(select(func.count(func.distinct(RecordEvent.message_id))))
        pending = await s.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )
    return seen == len(stream.outcome) and pending == 0


async def audit(sessions: Any, stream: Stream) -> Audit:
    """Compare the store with the expected state: every message's one lineage row and its
    outcome, every record's version, revision and name, one change per applied message."""
    a = Audit()
    changes_topics = [topics.changes(e) for e in Entity]
    async with sessions() as s:
        events = (await s.execute(select(RecordEvent.message_id, RecordEvent.outcome))).all()
        records = (
            await s.execute(
                select(
                    SourceRecord.entity,
                    SourceRecord.source_system,
                    SourceRecord.source_id,
                    SourceRecord.source_version,
                    SourceRecord.revision,
                    SourceRecord.payload,
                )
            )
        ).all()
        change_values = (
            await s.execute(select(OutboxRow.value).where(OutboxRow.topic.in_(changes_topics)))
        ).scalars()
        causes = Counter(str(Envelope.from_bytes(v).causation_id) for v in change_values)
    per_message = Counter(m for m, _ in events)
    a.lost = len(set(stream.outcome) - set(per_message))
    a.duplicated = sum(c - 1 for c in per_message.values() if c > 1) + len(
        set(per_message) - set(stream.outcome)
    )
    a.outcomes = Counter(o for _, o in events)
    a.wrong_outcome = sum(1 for m, o in events if stream.outcome.get(m) != o)
    held = {(e, sysname, sid): (v, rev, p.get("name")) for e, sysname, sid, v, rev, p in records}
    want = {k: (v, rev, body.get("name")) for k, (v, body, rev) in stream.final.items()}
    a.wrong_state = sum(1 for k in want.keys() | held.keys() if want.get(k) != held.get(k))
    a.stale_overwrites = sum(
        1 for k, (v, _, _) in want.items() if k in held and (held[k][0] or 0) < v
    )
    a.changes_missing = len(stream.applied - set(causes))
    a.changes_duplicated = sum(c - 1 for c in causes.values() if c > 1) + len(
        set(causes) - stream.applied
    )
    return a
