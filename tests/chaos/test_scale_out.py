"""Scale-out under SIGKILL (issue 8): three worker processes in one consumer group on the
embedded broker and PostgreSQL share 20,000 mixed messages (tests/chaos/mixed.py: new
records, updates, versions out of order, replayed old versions, redeliveries); one worker is
SIGKILLed every few seconds and started again. The store must end exactly in the state worked
out from the input, with 0 lost and 0 duplicated effects. The time from a kill until every
partition that was behind is consumed again (committed offsets of the records group moving)
is reported."""

from __future__ import annotations

import asyncio
import random
import signal
import time

import pytest

from hub.store import db
from tests.chaos import scaleout as so
from tests.chaos.conftest import record
from tests.chaos.mixed import build
from tests.helpers import wait_until

pytestmark = pytest.mark.chaos

N = 20_000
WORKERS = 3
PARTS = 4


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_three_workers_one_killed_every_few_seconds(broker: str, store_url: str) -> None:
    rng = random.Random(3)
    stream = build(N)
    engine = db.create_engine(store_url)
    await db.migrate(engine)  # the workers would race each other's migration otherwise
    sessions = db.sessionmaker(engine)
    await so.create_topics(broker)
    workers = {f"w{i}": so.start_worker(broker, store_url, f"w{i}") for i in range(WORKERS)}
    recoveries: list[float] = []
    t0 = time.monotonic()
    try:
        await asyncio.sleep(3.0)  # let the group form before the stream starts
        # The stream arrives in PARTS parts, one more after each of the first kills: on a
        # loaded machine a recovery can take half a minute, and 20,000 messages produced at
        # once were consumed after two kills.
        step = -(-len(stream.sends) // PARTS)
        parts = [stream.sends[i : i + step] for i in range(0, len(stream.sends), step)]
        await so.produce_sends(broker, parts.pop(0))
        async with so.OffsetWatch(broker) as watch:
            await watch.load_ends()

            async def started() -> bool:
                return any((await watch.committed()).values())

            await wait_until(started, timeout=120, what="the group's first commit")
            while True:
                await asyncio.sleep(rng.uniform(1.0, 3.0))
                if not await watch.lagging():
                    if not parts:
                        break
                    await so.produce_sends(broker, parts.pop(0))
                    await watch.load_ends()
                    continue
                name = rng.choice(sorted(workers))
                victim = workers[name]
                assert victim.poll() is None, f"worker {name} died on its own"
                victim.send_signal(signal.SIGKILL)
                await asyncio.to_thread(victim.wait)
                # Snapshot after the kill: the dead worker can no longer commit, so the
                # partitions it held stay put until the group hands them to the others.
                stalled = await watch.lagging()
                workers[name] = so.start_worker(broker, store_url, name)
                if parts:
                    await so.produce_sends(broker, parts.pop(0))
                    await watch.load_ends()
                if stalled:
                    recoveries.append(await watch.time_to_progress(stalled, timeout=180))
            consumed_s = time.monotonic() - t0
            assert sum(watch.ends.values()) == N
        await wait_until(lambda: so.settled(sessions, stream), timeout=180, what="settled")
        total_s = time.monotonic() - t0
        result = await so.audit(sessions, stream)
        alive = sum(p.poll() is None for p in workers.values())
    finally:
        for p in workers.values():
            await so.stop_worker(p)
        await engine.dispose()
    scenario = (
        f"{WORKERS} workers, one SIGKILLed 1-3 s after the last recovery, {N} mixed messages, "
        "PostgreSQL"
    )
    record(scenario, "messages lost", result.lost, "0")
    record(scenario, "effects duplicated (lineage rows)", result.duplicated, "0")
    record(
        scenario,
        "changes published missing / twice",
        (f"{result.changes_missing} / {result.changes_duplicated}"),
        "0 / 0",
    )
    record(scenario, "messages with an outcome other than expected", result.wrong_outcome, "0")
    record(scenario, "records differing from the expected final state", result.wrong_state, "0")
    record(
        scenario,
        "older versions (overtaken or replayed) that overwrote a newer one",
        f"{result.stale_overwrites} of {stream.kinds['overtaken'] + stream.kinds['replayed old']}",
        "0 of any",
    )
    record(
        scenario,
        "outcomes (applied / stale / unchanged)",
        (
            f"{result.outcomes['applied']} / {result.outcomes['stale']} / "
            f"{result.outcomes['unchanged']}"
        ),
        "as computed from the input",
    )
    record(scenario, "input mix", dict(stream.kinds), "reported")
    record(scenario, "kills", len(recoveries), ">= 3")
    record(
        scenario,
        "kill to partitions consumed again, median / max s",
        (
            f"{sorted(recoveries)[len(recoveries) // 2]:.1f} / {max(recoveries):.1f}"
            if recoveries
            else "-"
        ),
        f"reported (session timeout {so.SESSION_TIMEOUT_MS / 1000:.0f} s)",
    )
    record(scenario, "all consumed s / settled s", f"{consumed_s:.0f} / {total_s:.0f}", "reported")
    assert result.bad() == {}, result
    assert result.outcomes["applied"] == len(stream.applied)
    assert len(recoveries) >= 3, "the kills must land while the stream is being consumed"
    assert alive == WORKERS
