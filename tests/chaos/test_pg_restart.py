"""PostgreSQL restarted during a run (issue 8): a private cluster (tests/chaos/pgcluster.py)
is crashed (`pg_ctl stop -m immediate`) while two workers apply 10,000 mixed messages, kept
down a few seconds and started again. The workers must reconnect by themselves (no worker
restarted) and the store must end in the state computed from the input, 0 lost, 0 duplicated.
"""

from __future__ import annotations

import asyncio
import time

import pytest
from sqlalchemy import func, select

from hub.store import db
from hub.store.models import RecordEvent
from tests.chaos import pgcluster
from tests.chaos import scaleout as so
from tests.chaos.conftest import record
from tests.chaos.mixed import build
from tests.helpers import wait_until

pytestmark = pytest.mark.chaos

N, WORKERS, DOWN_S = 10_000, 2, 5


async def test_postgres_crashed_and_restarted_mid_run(broker: str) -> None:
    reason = pgcluster.available()
    if reason:
        pytest.skip(f"no private PostgreSQL cluster: {reason}")
    pg = pgcluster.PrivateCluster()
    await asyncio.to_thread(pg.create)
    stream = build(N, seed=4)
    engine = db.create_engine(pg.url)
    workers = {}
    try:
        await db.migrate(engine)
        sessions = db.sessionmaker(engine)
        await so.create_topics(broker)
        workers = {f"w{i}": so.start_worker(broker, pg.url, f"w{i}") for i in range(WORKERS)}
        await so.produce_stream(broker, stream)

        async def seen() -> int:
            async with sessions() as s:
                n = await s.scalar(select(func.count(func.distinct(RecordEvent.message_id))))
            return int(n or 0)

        async def a_third() -> bool:
            return await seen() >= len(stream.outcome) // 3

        await wait_until(a_third, timeout=300, what="a third applied")
        before = await seen()
        async with so.OffsetWatch(broker) as watch:
            await watch.load_ends()
            await asyncio.to_thread(pg.stop, "immediate")
            await engine.dispose()  # our own pooled connections died with the server
            await asyncio.sleep(1.0)  # a commit in flight at the crash lands or fails
            # Offsets are committed only after the store commit: with the store down they
            # stay put until the workers reconnect.
            stalled = await watch.lagging()
            await asyncio.sleep(DOWN_S - 1.0)
            back = time.monotonic()
            await asyncio.to_thread(pg.start)
            resumed_s = await watch.time_to_progress(stalled, timeout=180)
        await wait_until(lambda: so.settled(sessions, stream), timeout=400, what="settled")
        settled_s = time.monotonic() - back
        assert stalled, "the crash must land while messages are still waiting"
        result = await so.audit(sessions, stream)
        alive = sum(p.poll() is None for p in workers.values())
    finally:
        for p in workers.values():
            await so.stop_worker(p)
        await engine.dispose()
        await asyncio.to_thread(pg.destroy)
    scenario = (
        f"PostgreSQL crashed and restarted mid-run ({DOWN_S} s down), {WORKERS} workers, {N} msgs"
    )
    record(scenario, "messages lost", result.lost, "0")
    record(scenario, "effects duplicated (lineage rows)", result.duplicated, "0")
    record(
        scenario,
        "changes published missing / twice",
        f"{result.changes_missing} / {result.changes_duplicated}",
        "0 / 0",
    )
    record(scenario, "records differing from the expected final state", result.wrong_state, "0")
    record(scenario, "messages applied before the crash", before, "reported")
    record(scenario, "workers still running (none restarted)", alive, str(WORKERS))
    record(
        scenario,
        "server start to every waiting partition consumed again s / to settled s",
        f"{resumed_s:.1f} / {settled_s:.0f}",
        "reported",
    )
    assert result.bad() == {}, result
    assert alive == WORKERS, "a worker died instead of reconnecting"
    assert 0 < before < len(stream.outcome)
