"""Replay throughput (hub/replay.py) against a raw aiokafka consumer reading the same topic range
on the same broker in the same run.

Setup: the embedded broker, N canonical customer messages on ``canonical.customer`` (6
partitions). Baseline: a group-less AIOKafkaConsumer assigned to every partition, ``getmany``
until it reaches the end offsets, decoding nothing. Then replay jobs over the same range through
the hub's ``ReplayRunner`` (as the API queues them), timed from claim to ``done``:

* dry run into the records flow (decode, validate, ledger lookup, compare with
  ``source_records``; writes nothing but the job's progress);
* for real into the records flow (the flow's BatchProcessor: one store transaction per batch
  with the ledger, ``source_records``, lineage and the outbox rows for ``changes.customer``);
* the dry run again, now that every record is in the store (it reads the ledger hits back).

Each dry run is run ``--rounds`` times (default 3), each time after the baselines measured
again; the fastest of each counts (the machine is shared).

Usage: ``python -m bench.replay_throughput [N] [--pg] [--rounds R]`` (``--pg``: PostgreSQL on
127.0.0.1:5432 in a temporary database instead of SQLite).
"""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from aiokafka import AIOKafkaConsumer, TopicPartition
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity, Envelope
from contracts.registry import validate_body
from hub.broker.embedded import EmbeddedBroker
from hub.broker.kafka import end_offsets, ensure_topics
from hub.replay import ReplayRunner, new_counters
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.admin_models import ReplayJob
from hub.store.models import OutboxRow
from tests.helpers import customer_env, produce_envs

ARGS = [a for i, a in enumerate(sys.argv[1:], 1) if sys.argv[i - 1] != "--rounds"]
ARGS = [a for a in ARGS if not a.startswith("-")]
N = int(ARGS[0]) if ARGS and ARGS[0].isdigit() else 30_000
USE_PG = "--pg" in sys.argv
ROUNDS = int(sys.argv[sys.argv.index("--rounds") + 1]) if "--rounds" in sys.argv else 3
TOPIC = topics.canonical(Entity.customer)


def contract_decode(value: bytes) -> object:
    """What any consumer of a canonical topic must do with a message: the contract's decoding
    and body validation (the same calls the records flow makes)."""
    return validate_body(Envelope.from_bytes(value))


BASELINES: list[tuple[str, Callable[[bytes], object] | None]] = [
    ("bytes only", None),
    ("json.loads", json.loads),
    ("contract decode+validate", contract_decode),
]


async def raw_read(
    bootstrap: str, topic: str, look: Callable[[bytes], object] | None = None
) -> tuple[int, float]:
    """(records, seconds): a plain consumer reading the whole topic, as fast as it can, and
    doing ``look`` with each value."""
    c = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=None, enable_auto_commit=False)
    await c.start()
    try:
        await c.topics()
        tps = [TopicPartition(topic, p) for p in sorted(c.partitions_for_topic(topic) or ())]
        ends = await end_offsets(c, tps)
        t0 = time.perf_counter()
        c.assign(tps)
        for tp in tps:
            c.seek(tp, 0)
        pending = set(tps)
        seen = 0
        while pending:
            batches = await c.getmany(*pending, timeout_ms=300, max_records=500)
            for rs in batches.values():
                seen += len(rs)
                if look is not None:
                    for r in rs:
                        look(r.value)
            for tp in list(pending):
                if await c.position(tp) >= ends[tp]:
                    pending.discard(tp)
        return seen, time.perf_counter() - t0
    finally:
        await c.stop()


async def replay(hub: Hub, runner: ReplayRunner, *, dry_run: bool) -> tuple[ReplayJob, float]:
    assert hub.sessions is not None
    async with hub.sessions() as s, s.begin():
        job = ReplayJob(
            topic=TOPIC,
            target_flow="records",
            dry_run=dry_run,
            force=False,
            status="queued",
            cancel_requested=False,
            counters=new_counters(),
            report={},
            positions={},
            created_by="bench",
            created_at=datetime.now(UTC),
        )
        s.add(job)
        await s.flush()
        job_id = job.id
    t0 = time.perf_counter()
    assert await runner.run_one()
    elapsed = time.perf_counter() - t0
    async with hub.sessions() as s:
        done = await s.get(ReplayJob, job_id)
    assert done is not None and done.status == "done", (done.status, done.error)
    return done, elapsed


async def drained(hub: Hub) -> float:
    assert hub.sessions is not None
    t0 = time.perf_counter()
    while True:
        async with hub.sessions() as s:
            pending = await s.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
            )
        if not pending:
            return time.perf_counter() - t0
        await asyncio.sleep(0.05)


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


async def run() -> None:
    with EmbeddedBroker() as b, tempfile.TemporaryDirectory() as tmp:
        pg_name = f"eai_bench_{uuid.uuid4().hex[:10]}"
        if USE_PG:
            await _pg_admin(f'CREATE DATABASE "{pg_name}"')
            url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{pg_name}"
        else:
            url = f"sqlite+aiosqlite:///{Path(tmp) / 'replay.db'}"
        settings = Settings(kafka_bootstrap=b.bootstrap, database_url=url, batch_size=500)
        await ensure_topics(settings, b.bootstrap, topics.all_topics())
        await produce_envs(b.bootstrap, TOPIC, [customer_env(i) for i in range(N)])
        # The flows do not run: the replay is the only reader, as on a hub where the topic
        # was consumed long ago. The relay runs (it publishes what the real replay emits).
        hub = Hub(settings, run_flows=False, serve_api=False)
        await hub.start()
        try:
            runner = ReplayRunner(hub)
            results: list[tuple[str, ReplayJob, float]] = []
            raw: dict[str, float] = {}

            async def baselines() -> None:
                # The machine may be shared: every round measures the baselines again, and
                # each ratio uses the fastest of all measurements of both sides.
                for name, look in BASELINES:
                    seen, t = await raw_read(b.bootstrap, TOPIC, look)
                    assert seen == N, seen
                    raw[name] = min(t, raw.get(name, t))

            async def dry_runs(label: str) -> None:
                best: tuple[ReplayJob, float] | None = None
                for _ in range(ROUNDS):
                    await baselines()
                    job, t = await replay(hub, runner, dry_run=True)
                    if best is None or t < best[1]:
                        best = (job, t)
                assert best is not None
                results.append((label, *best))

            await dry_runs("dry run, empty store")
            job, t = await replay(hub, runner, dry_run=False)
            results.append(("for real (records flow)", job, t))
            # The relay publishes the changes the real replay emitted; wait for it so the next
            # dry run does not share the store and the CPU with it.
            t_pub = t + await drained(hub)
            results.append(("for real, incl. relay", job, t_pub))
            await dry_runs("dry run, all applied")
            await baselines()
        finally:
            await hub.stop()
            if USE_PG:
                await _pg_admin(f'DROP DATABASE IF EXISTS "{pg_name}" WITH (FORCE)')
    store = "PostgreSQL" if USE_PG else "SQLite"
    print(
        f"messages: {N}, store: {store}, batch 500, 6 partitions, one process; "
        f"best of {ROUNDS} rounds (dry runs and baselines)"
    )
    print("baselines, a raw aiokafka consumer (group-less, getmany) reading the topic and:")
    for name, t in raw.items():
        print(f"  {name:<26} {N / t:>9,.0f} msg/s")
    cols = "".join(f"  /{name.split()[0]:<9}" for name in raw)
    print(f"{'replay':<34} {'msg/s':>9}  ratio to baseline:{cols}")
    for name, _job, t in results:
        ratios = "".join(f"  {raw_t / t:>10.2f}" for raw_t in raw.values())
        print(f"  {name:<32} {N / t:>9,.0f}  {'':<17}{ratios}")
    for name, job, _ in results:
        report: dict[str, Any] = job.report or {}
        detail = {k: v for k, v in report.items() if k != "target"}
        print(f"  report, {name}: {detail}")


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
