"""SIGKILL at the dangerous moments of the correctness core; after restart: nothing lost,
nothing applied twice."""

from __future__ import annotations

import asyncio
import signal
import subprocess
import sys
from collections import Counter

import pytest
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity
from hub.store import db
from hub.store.models import OutboxRow, RecordEvent, SourceRecord
from tests.conftest import hub_env
from tests.helpers import customer_env, header, produce_envs, read_topic, wait_until

pytestmark = pytest.mark.integration
N = 300


def start_worker(broker: str, store_url: str, fault: str | None = None) -> subprocess.Popen[bytes]:
    env = hub_env(
        EAI_KAFKA_BOOTSTRAP=broker,
        EAI_DATABASE_URL=store_url,
        EAI_BATCH_SIZE="50",
        EAI_TOPIC_PARTITIONS="3",
        EAI_LOG_LEVEL="WARNING",
        EAI_KAFKA_SESSION_TIMEOUT_MS="3000",
        EAI_RELAY_LEASE_S="4",
    )
    if fault:
        env["EAI_FAULT_POINT"] = fault
    return subprocess.Popen([sys.executable, "-m", "hub.cli", "worker"], env=env)


async def wait_exit(proc: subprocess.Popen[bytes], timeout: float = 60) -> int:
    for _ in range(int(timeout * 10)):
        if proc.poll() is not None:
            return proc.returncode
        await asyncio.sleep(0.1)
    proc.kill()
    raise AssertionError("worker did not reach its fault point")


@pytest.mark.parametrize(
    ("fault", "store_url"),
    [
        ("after_store_commit", "sqlite"),
        ("after_store_commit", "postgres"),
        ("after_publish_before_mark", "sqlite"),
        ("after_publish_before_mark", "postgres"),
        ("before_store_commit", "sqlite"),
    ],
    indirect=["store_url"],
)
async def test_sigkill_then_restart_loses_nothing_and_duplicates_nothing(
    broker: str, store_url: str, fault: str
) -> None:
    envs = [customer_env(i) for i in range(N)]
    # The worker creates the topics; start it first so our produce hits 3 partitions.
    crashing = start_worker(broker, store_url, fault)
    engine = db.create_engine(store_url)
    try:
        await asyncio.sleep(0.5)
        await produce_envs(broker, topics.canonical(Entity.customer), envs)
        code = await wait_exit(crashing)
        assert code == -signal.SIGKILL, f"worker should have died at {fault}, exit {code}"
        sessions = db.sessionmaker(engine)
        async with sessions() as s:
            pending = await s.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
            )
        if fault == "after_store_commit":
            assert pending and pending > 0, "killed before the relay ran: outbox rows pending"

        survivor = start_worker(broker, store_url)
        try:

            async def all_applied() -> bool:
                async with sessions() as s:
                    n = await s.scalar(select(func.count()).select_from(SourceRecord))
                    left = await s.scalar(
                        select(func.count())
                        .select_from(OutboxRow)
                        .where(OutboxRow.sent_at.is_(None))
                    )
                return n == N and left == 0

            await wait_until(all_applied, timeout=90, what=f"{N} records applied, outbox empty")
        finally:
            survivor.send_signal(signal.SIGTERM)
            assert await wait_exit(survivor, 30) == 0
        async with sessions() as s:
            per_message = Counter((await s.execute(select(RecordEvent.message_id))).scalars())
            revisions = set((await s.execute(select(SourceRecord.revision))).scalars())
    finally:
        if crashing.poll() is None:
            crashing.kill()
        await engine.dispose()
    assert len(per_message) == N, "no message lost"
    assert max(per_message.values()) == 1, "no message applied twice"
    assert revisions == {1}
    changes = await read_topic(broker, topics.changes(Entity.customer))
    distinct = {header(r, "eai.message_id") for r in changes}
    assert len(distinct) == N, "every change published"
    # A re-published row (killed between publish and mark) repeats a message_id, never a new one.
    assert len(changes) >= N
