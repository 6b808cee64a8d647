"""The reliability proof: kill the hub repeatedly, flood it with poison; count lost and
duplicated effects. Runs with `make chaos` (kept out of `make test`: minutes, not seconds)."""

from __future__ import annotations

import asyncio
import random
import signal
import time
from collections import Counter

import pytest
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity
from hub.store import db
from hub.store.models import DeadLetter, OutboxRow, RecordEvent, SourceRecord
from tests.chaos.conftest import record
from tests.helpers import customer_env, header, produce, produce_envs, read_topic, wait_until
from tests.integration.test_crash_recovery import start_worker, wait_exit

pytestmark = pytest.mark.chaos


async def applied_counts(sessions: object) -> tuple[Counter[str], int, int]:
    async with sessions() as s:  # type: ignore[operator]
        per_message = Counter((await s.execute(select(RecordEvent.message_id))).scalars())
        records = await s.scalar(select(func.count()).select_from(SourceRecord))
        pending = await s.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )
    return per_message, int(records or 0), int(pending or 0)


@pytest.mark.parametrize("store_url", ["sqlite", "postgres"], indirect=True)
async def test_hub_killed_repeatedly_loses_and_duplicates_nothing(
    broker: str, store_url: str
) -> None:
    n, kills = 20_000, 6
    rng = random.Random(7)
    engine = db.create_engine(store_url)
    await db.migrate(engine)  # the counting below must not race the first worker's migration
    sessions = db.sessionmaker(engine)
    worker = start_worker(broker, store_url)
    t0 = time.monotonic()
    try:
        await asyncio.sleep(1.0)
        await produce_envs(
            broker, topics.canonical(Entity.customer), [customer_env(i) for i in range(n)]
        )
        recoveries: list[float] = []
        kills_mid_stream: list[bool] = []
        for _ in range(kills):
            await asyncio.sleep(rng.uniform(1.0, 2.5))
            worker.send_signal(signal.SIGKILL)
            await wait_exit(worker, 10)
            killed_at = time.monotonic()
            before = (await applied_counts(sessions))[1]
            kills_mid_stream.append(before < n)
            worker = start_worker(broker, store_url)

            async def progressed(before: int = before) -> bool:
                return (await applied_counts(sessions))[1] > before or before == n

            await wait_until(progressed, timeout=60, what="progress after a restart")
            recoveries.append(time.monotonic() - killed_at)

        async def done() -> bool:
            _, records, pending = await applied_counts(sessions)
            return records == n and pending == 0

        await wait_until(done, timeout=240, what=f"{n} records applied")
        per_message, _, _ = await applied_counts(sessions)
    finally:
        if worker.poll() is None:
            worker.send_signal(signal.SIGTERM)
            await wait_exit(worker, 30)
        await engine.dispose()
    kind = "PostgreSQL" if "postgresql" in store_url else "SQLite"
    lost = n - len(per_message)
    duplicated = sum(c - 1 for c in per_message.values() if c > 1)
    changes = await read_topic(broker, topics.changes(Entity.customer))
    published = {header(r, "eai.message_id") for r in changes}
    scenario = f"hub SIGKILLed {kills}x, {n} messages, {kind}"
    record(scenario, "messages lost", lost, "0")
    record(scenario, "effects duplicated", duplicated, "0")
    record(scenario, "changes published (distinct)", len(published), str(n))
    record(scenario, "kills while records were still pending", sum(kills_mid_stream), ">= 3")
    record(scenario, "kill to progress, max s", f"{max(recoveries):.1f}", "reported")
    record(scenario, "total run s", f"{time.monotonic() - t0:.0f}", "reported")
    assert (lost, duplicated, len(published)) == (0, 0, n)
    assert sum(kills_mid_stream) >= 3, "the kills must land while the stream is running"


async def test_poison_storm_good_delivered_bad_dead_lettered(broker: str, sqlite_url: str) -> None:
    good_n, bad_n = 10_000, 1_000
    rng = random.Random(11)
    good = [customer_env(i) for i in range(good_n)]
    poison = [
        rng.choice([b"{not json", b"\xff\xfe\x00garbage", b'{"entity": "customer"}', b"[]"])
        for _ in range(bad_n)
    ]
    items = [(e.key.encode(), e.to_bytes()) for e in good] + [(b"bad", p) for p in poison]
    rng.shuffle(items)
    engine = db.create_engine(sqlite_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    worker = start_worker(broker, sqlite_url)
    t0 = time.monotonic()
    try:
        await asyncio.sleep(1.0)
        await produce(broker, topics.canonical(Entity.customer), items)

        async def done() -> bool:
            async with sessions() as s:
                recs = await s.scalar(select(func.count()).select_from(SourceRecord))
                dead = await s.scalar(select(func.count()).select_from(DeadLetter))
            return recs == good_n and dead == bad_n

        await wait_until(done, timeout=300, what="all good applied, all bad dead-lettered")
        elapsed = time.monotonic() - t0
        async with sessions() as s:
            reasons = Counter((await s.execute(select(DeadLetter.stage))).scalars())
            empty = await s.scalar(
                select(func.count()).select_from(DeadLetter).where(DeadLetter.reason == "")
            )
    finally:
        worker.send_signal(signal.SIGTERM)
        await wait_exit(worker, 30)
        await engine.dispose()
    scenario = f"poison storm: {bad_n} bad among {good_n} good"
    record(scenario, "good records applied", good_n, str(good_n))
    record(scenario, "bad records dead-lettered", sum(reasons.values()), str(bad_n))
    record(scenario, "dead letters without a reason", empty, "0")
    record(scenario, "stages", dict(reasons), "deserialize/validate")
    record(scenario, "run s", f"{elapsed:.0f}", "reported")
    assert sum(reasons.values()) == bad_n and empty == 0
