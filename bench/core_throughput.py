"""Records flow (batch consume, one store transaction per batch, outbox relay) against a raw
aiokafka consume-transform-produce loop on the same broker, same messages, same run."""

from __future__ import annotations

import asyncio
import json
import sys
import tempfile
import time
from pathlib import Path

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity
from hub.broker.embedded import EmbeddedBroker
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.models import OutboxRow, SourceRecord
from tests.helpers import customer_env, produce_envs

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 20_000


async def raw_baseline(bootstrap: str, topic: str, n: int) -> float:
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id="bench-raw",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, enable_idempotence=False, linger_ms=5)
    await consumer.start()
    await producer.start()
    t0 = time.perf_counter()
    seen = 0
    while seen < n:
        batches = await consumer.getmany(timeout_ms=500, max_records=500)
        futs = []
        for rs in batches.values():
            for r in rs:
                doc = json.loads(r.value)
                futs.append(
                    await producer.send("bench.raw.out", key=r.key, value=json.dumps(doc).encode())
                )
            seen += len(rs)
        if futs:
            await asyncio.gather(*futs)
            await consumer.commit()
    elapsed = time.perf_counter() - t0
    await consumer.stop()
    await producer.stop()
    return elapsed


async def hub_records_flow(bootstrap: str, n: int, batch_size: int) -> float:
    with tempfile.TemporaryDirectory() as tmp:
        settings = Settings(
            kafka_bootstrap=bootstrap,
            batch_size=batch_size,
            database_url=f"sqlite+aiosqlite:///{Path(tmp) / 'b.db'}",
            group_prefix=f"bench{batch_size}",
        )
        hub = Hub(settings, serve_api=False)
        await hub.start()
        t0 = time.perf_counter()  # like the baseline: after start, group join included
        assert hub.sessions is not None
        while True:
            async with hub.sessions() as s:
                done = await s.scalar(select(func.count()).select_from(SourceRecord))
                pending = await s.scalar(
                    select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
                )
            if done == n and pending == 0:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - t0
        await hub.stop()
        return elapsed


async def run() -> None:
    with EmbeddedBroker() as b:
        settings = Settings(kafka_bootstrap=b.bootstrap)
        from hub.broker.kafka import ensure_topics

        await ensure_topics(settings, b.bootstrap, [*topics.all_topics(), "bench.raw.out"])
        envs = [customer_env(i) for i in range(N)]
        await produce_envs(b.bootstrap, topics.canonical(Entity.customer), envs)
        raw = await raw_baseline(b.bootstrap, topics.canonical(Entity.customer), N)
        print(f"messages: {N}")
        print(f"raw aiokafka consume-transform-produce: {N / raw:,.0f} msg/s (baseline)")
        for batch in (100, 500):
            t = await hub_records_flow(b.bootstrap, N, batch)
            print(
                f"records flow, batch {batch:>4}, SQLite, incl. outbox relay: "
                f"{N / t:,.0f} msg/s  ratio to baseline {raw / t:.2f}"
            )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
