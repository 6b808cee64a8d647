"""The ledger lookup on PostgreSQL with the hub's engine (plans made for each run, decision 31)
against PostgreSQL's default plan caching, in the same run.

A flow checks each batch's message ids against the ledger (`hub/core/ledger.py`:
`message_id IN (500 ids)`) and then records them. asyncpg prepares the statement; by default
PostgreSQL switches a prepared statement to a generic plan after five runs, made while the
ledger was small and not analyzed yet. ``python -m bench.ledger_plans [BATCHES]`` (default
120 batches of 500, i.e. a ledger growing to 60,000 rows, in a temporary database on
127.0.0.1:5432) prints the lookup times of both engines and their ratio.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import time
import uuid

import asyncpg
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hub.core.ledger import already_processed, mark_processed
from hub.store import db

BATCH = 500


async def lookups(engine: AsyncEngine, batches: int) -> list[float]:
    """Milliseconds of each batch's lookup, the ledger growing by one batch each time."""
    sessions = db.sessionmaker(engine)
    out = []
    for _ in range(batches):
        ids = [str(uuid.uuid4()) for _ in range(BATCH)]
        async with sessions() as s, s.begin():
            t = time.perf_counter()
            await already_processed(s, "records", ids)
            out.append((time.perf_counter() - t) * 1000)
            await mark_processed(s, "records", ids)
    return out


async def one(mode: str, batches: int) -> list[float]:
    name = f"eai_bench_plans_{uuid.uuid4().hex[:8]}"
    admin = await asyncpg.connect(host="127.0.0.1", user="postgres", database="test")
    await admin.execute(f'CREATE DATABASE "{name}"')
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    try:
        if mode == "hub":
            engine = db.create_engine(url)
        else:  # PostgreSQL's default: generic plans after five runs
            settings = {"plan_cache_mode": "auto"}
            engine = create_async_engine(url, connect_args={"server_settings": settings})
        await db.migrate(engine)
        try:
            return await lookups(engine, batches)
        finally:
            await engine.dispose()
    finally:
        await admin.execute(f'DROP DATABASE "{name}" WITH (FORCE)')
        await admin.close()


def describe(label: str, ms: list[float]) -> str:
    later = sorted(ms[10:])
    return (
        f"{label}: first 10 median {statistics.median(ms[:10]):.1f} ms; from batch 10 median "
        f"{statistics.median(later):.1f} ms, p90 {later[int(len(later) * 0.9)]:.1f} ms, "
        f"max {later[-1]:.1f} ms"
    )


async def run(batches: int) -> None:
    results: dict[str, list[list[float]]] = {"auto": [], "hub": []}
    for _ in range(2):  # interleaved, so that machine load falls on both alike
        for mode in ("auto", "hub"):
            results[mode].append(await one(mode, batches))
    for mode, runs in results.items():
        label = "hub engine (force_custom_plan)" if mode == "hub" else "default plan caching"
        for i, ms in enumerate(runs):
            print(describe(f"{label}, run {i + 1}", ms))
    auto = statistics.median(x for r in results["auto"] for x in r[10:])
    hub = statistics.median(x for r in results["hub"] for x in r[10:])
    print(
        f"ledger lookup of {BATCH} ids, ledger growing to {batches * BATCH:,} rows: default / "
        f"hub median {auto:.1f} / {hub:.1f} ms = {auto / hub:.0f}x"
    )


def main() -> None:
    batches = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 120
    asyncio.run(run(batches))


if __name__ == "__main__":
    main()
