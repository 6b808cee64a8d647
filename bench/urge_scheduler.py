"""Urge scheduler benchmark: 100,000 open approvals in the store, an hour of simulated time.

The real :class:`hub.urge_scheduler.UrgeScheduler` runs on a real store (SQLite file and, when
one answers on 127.0.0.1:5432, PostgreSQL) against 100,000 open approvals planned by the real
policy. A controllable clock steps through one simulated hour (default: a step every 10 s,
360 steps); at every step the scheduler ticks the way its loop does (again at once while a
tick claims a full batch), and a few approvals are decided meanwhile, as the urge flow would.

Measured per tick, in the same run:

- **find due**: the scheduler's find step (``metrics.last_find_s``): the indexed
  ``next_due_at <= now`` select of ids with its row lease (``FOR UPDATE SKIP LOCKED`` on
  PostgreSQL) and the lease update, in one transaction; the target is < 50 ms per tick;
- **baseline**: a bare ``SELECT id ... WHERE next_due_at <= now ORDER BY next_due_at LIMIT n``
  on the same index and connection pool, just before the tick: what finding the due rows costs
  at the least; the ratio find / baseline says what the lease adds;
- **find + load rows**: the whole claim, i.e. also loading the claimed rows and their urges;
- **whole tick**: claim + plan and next_action per approval + the one write transaction
  (urge rows, day counters, outbox, timers);

Ticks are reported apart for the first step (the restart backlog: every approval overdue at
the start is claimed, at most ``--batch`` per tick) and the rest of the hour (steady state).

- **RSS** of this process (scheduler, driver, SQLAlchemy) at every step: first, last, max
  and the least-squares slope over the hour (MiB per simulated hour; flat means the slope is
  within noise, a fraction of a MiB, not growing with ticks).

    .venv/bin/python -m bench urge_scheduler
    .venv/bin/python bench/urge_scheduler.py [--approvals 100000] [--hours 1] [--step 10]
                                             [--stores sqlite,postgres]
"""

from __future__ import annotations

import argparse
import asyncio
import datetime as dt
import gc
import os
import random
import resource
import socket
import statistics
import sys
import tempfile
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import func, insert, select, text, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts.approval import ApprovalRequest
from flows.urge import default_policy
from flows.urge import flow as urge_flow
from hub.store import db
from hub.store.urge_models import Approval, UrgeRecord
from hub.urge_scheduler import UrgeScheduler

TYPES = [
    ("purchase_requisition", 0.35),
    ("customer_status_upgrade", 0.10),
    ("contract", 0.15),
    ("credit_overrun", 0.10),
    ("replenishment", 0.15),
    ("complaint", 0.10),
    ("maintenance_renewal", 0.05),
]
TARGET_MS = 50.0
PG = ("127.0.0.1", 5432)
POLICY = default_policy()
CAL = POLICY.build_calendar()
# Monday 09:00, a working day: the ladder has work to do during the simulated hour.
SIM_START = dt.datetime(2026, 11, 23, 9, 0, tzinfo=CAL.tz)


def rss_mib() -> float:
    try:
        with open("/proc/self/statm") as f:
            pages = int(f.read().split()[1])
        return pages * resource.getpagesize() / 2**20
    except OSError:  # not Linux: the peak, which can only show growth
        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(p * len(ordered)))]


def slope_per_hour(points: list[tuple[float, float]]) -> float:
    """Least-squares slope of (simulated seconds, MiB), in MiB per simulated hour."""
    xs = [x for x, _ in points]
    ys = [y for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    den = sum((x - mx) ** 2 for x in xs)
    return 0.0 if den == 0 else sum((x - mx) * (y - my) for x, y in points) / den * 3600


# -- data -----------------------------------------------------------------------------------


def approval_rows(n: int, seed: int) -> list[dict[str, Any]]:
    """``n`` open approvals as the urge flow stores them (same helpers, same plan)."""
    rng = random.Random(seed)
    names, weights = zip(*TYPES, strict=True)
    approvers = [f"审批人{i:05d}" for i in range(max(1, n // 20))]
    now = dt.datetime.now(dt.UTC)
    rows = []
    for i in range(n):
        kind = rng.choices(names, weights)[0]
        # Submitted over the last two weeks: some are overdue at the start (the restart
        # backlog), most come due later; the hour sees a steady trickle.
        submitted = SIM_START - dt.timedelta(minutes=rng.randint(0, 60 * 24 * 14))
        attributes: dict[str, Any] = {}
        if kind == "maintenance_renewal":
            expires = SIM_START.date() + dt.timedelta(days=rng.randint(20, 60))
            attributes["expires_on"] = expires.isoformat()
        body = ApprovalRequest(
            approval_id=f"A{i:06d}",
            type=kind,
            title=f"事项 {i}",
            amount=Decimal(int(10 ** rng.uniform(2, 6))),
            requester="张三",
            requester_department="采购部",
            approver=rng.choice(approvers),
            approver_department="总经办",
            superior="王董",
            submitted_at=submitted,
            tie=rng.choice(("weak", "normal", "normal", "strong")),
            attributes=attributes,
        )
        data = body.model_dump(mode="json")
        key = urge_flow.approval_key("erp", body.approval_id)
        _facts, p = urge_flow.plan_for(data, key, POLICY, CAL)
        rows.append(
            {
                "key": key,
                "origin_system": "erp",
                "approval_id": body.approval_id,
                "round": 1,
                **urge_flow._fact_columns(body),
                **urge_flow.plan_columns(p),
                "request": data,
                "status": urge_flow.OPEN,
                "next_due_at": p.first_due_at,
                "version": 1,
                "urge_count": 0,
                "correlation_id": str(uuid.uuid4()),
                "created_at": now,
                "updated_at": now,
            }
        )
    return rows


async def load(sessions: async_sessionmaker[AsyncSession], rows: list[dict[str, Any]]) -> None:
    for i in range(0, len(rows), 500):
        async with sessions() as s, s.begin():
            await s.execute(insert(Approval), rows[i : i + 500])
    async with sessions() as s, s.begin():
        await s.execute(text("ANALYZE"))  # planner statistics, as a live store would have


# -- one store ------------------------------------------------------------------------------


class SimClock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now


async def bench_store(
    label: str, url: str, rows: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, Any]:
    engine = db.create_engine(url)
    try:
        await db.migrate(engine)
        sessions = db.sessionmaker(engine)
        t0 = time.perf_counter()
        await load(sessions, rows)
        load_s = time.perf_counter() - t0
        clock = SimClock(SIM_START)
        sched = UrgeScheduler(sessions, POLICY, CAL, clock=clock, max_per_tick=args.batch)

        claim_ms: list[float] = []
        real_claim = sched._claim

        async def timed_claim(now: dt.datetime) -> Any:
            t = time.perf_counter()
            try:
                return await real_claim(now)
            finally:
                claim_ms.append((time.perf_counter() - t) * 1000)

        sched._claim = timed_claim  # type: ignore[method-assign]

        async def bare_select(now: dt.datetime) -> float:
            bare = (
                select(Approval.id)
                .where(Approval.next_due_at <= now)
                .order_by(Approval.next_due_at)
                .limit(args.batch)
            )
            t = time.perf_counter()
            async with sessions() as s:
                (await s.execute(bare)).all()
            return (time.perf_counter() - t) * 1000

        async with sessions() as s:
            overdue = await s.scalar(select(func.count()).where(Approval.next_due_at <= SIM_START))
        rng = random.Random(args.seed)
        base_ms: list[float] = []
        find_ms: list[float] = []
        tick_step: list[int] = []  # the simulated step of each tick (0: the restart backlog)
        tick_ms: list[float] = []
        claimed_rows: list[int] = []
        rss: list[tuple[float, float]] = []
        sent = decided = 0
        steps = int(args.hours * 3600 / args.step)
        gc.collect()
        for step in range(steps + 1):
            clock.now = SIM_START + dt.timedelta(seconds=step * args.step)
            # Decisions arrive meanwhile (the urge flow's effect: status set, timer off).
            ids = [rng.randint(1, len(rows)) for _ in range(int(args.decide_rate * args.step))]
            async with sessions() as s, s.begin():
                await s.execute(
                    update(Approval)
                    .where(Approval.id.in_(ids), Approval.status == urge_flow.OPEN)
                    .values(status="approved", next_due_at=None)
                )
            decided += len(ids)
            while True:  # the scheduler loop: again at once while a tick claims a full batch
                base_ms.append(await bare_select(clock.now))
                n_claims = len(claim_ms)
                t = time.perf_counter()
                claimed, n_sent = await sched._tick()
                tick_ms.append((time.perf_counter() - t) * 1000)
                assert len(claim_ms) == n_claims + 1
                claimed_rows.append(claimed)
                find_ms.append(sched.metrics.last_find_s * 1000)
                tick_step.append(step)
                sent += n_sent
                if claimed < args.batch:
                    break
            rss.append((step * args.step, rss_mib()))
        async with sessions() as s:
            urges = await s.scalar(select(func.count()).select_from(UrgeRecord))
            urges_distinct = await s.scalar(select(func.count(func.distinct(UrgeRecord.urge_id))))
        return {
            "label": label,
            "load_s": load_s,
            "overdue": int(overdue or 0),
            "ticks": len(tick_ms),
            "steps": steps,
            "claim": claim_ms,
            "find": find_ms,
            "tick_step": tick_step,
            "base": base_ms,
            "tick": tick_ms,
            "claimed": claimed_rows,
            "sent": sent,
            "urges": int(urges or 0),
            "urges_distinct": int(urges_distinct or 0),
            "decided": decided,
            "rss": rss,
            "errors": sched.metrics.errors,
            "loadavg": " ".join(f"{x:.1f}" for x in os.getloadavg()),
        }
    finally:
        await engine.dispose()


def pg_reachable() -> bool:
    try:
        socket.create_connection(PG, 0.5).close()
        return True
    except OSError:
        return False


async def pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG[0], port=PG[1], user="postgres", database="test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


# -- report ---------------------------------------------------------------------------------


def ms(values: list[float]) -> str:
    return (
        f"p50 {statistics.median(values):7.2f}  p99 {pct(values, 0.99):7.2f}  "
        f"max {max(values):7.2f} ms"
    )


def report(r: dict[str, Any], n: int) -> bool:
    find, claim, base, tick = r["find"], r["claim"], r["base"], r["tick"]
    # Ticks that found nothing due show the index probe alone; ticks that claimed rows show
    # the claim with its lease and urge lookup. Both are reported.
    busy = [c for c in r["claimed"] if c]
    print(
        f"\n[{r['label']}] {n:,} open approvals loaded in {r['load_s']:.1f} s "
        f"(load average {r['loadavg']}); "
        f"{r['overdue']:,} overdue at the start (restart backlog)"
    )
    print(
        f"  {r['steps']} steps of {r['step']:g} s simulated, {r['ticks']} ticks "
        f"({len(busy)} claimed something), {r['sent']:,} urges sent, "
        f"{r['decided']:,} decisions applied meanwhile"
    )
    restart = [i for i, st in enumerate(r["tick_step"]) if st == 0]
    steady = [i for i, st in enumerate(r["tick_step"]) if st > 0]
    for name, idx in (("restart backlog", restart), ("steady state", steady)):
        rows = [r["claimed"][i] for i in idx]
        print(
            f"  {name}: {len(idx)} ticks, {sum(rows):,} approvals claimed "
            f"(mean {statistics.fmean(rows):.0f} per tick)"
        )
        f = [find[i] for i in idx]
        b = [base[i] for i in idx]
        ratios = [x / max(y, 1e-6) for x, y in zip(f, b, strict=True)]
        print(f"    find due (ids+lease): {ms(f)}")
        print(f"    baseline bare SELECT: {ms(b)}")
        print(
            f"    ratio find/baseline:  p50 {statistics.median(ratios):.2f}x  "
            f"p99 {pct(ratios, 0.99):.2f}x (same tick)"
        )
        print(f"    find + load rows:     {ms([claim[i] for i in idx])}")
        print(f"    whole tick:           {ms([tick[i] for i in idx])}")
    rss = r["rss"]
    values = [m for _, m in rss]
    half = rss[len(rss) // 2 :]
    print(
        f"  RSS MiB: first {values[0]:.1f}  last {values[-1]:.1f}  max {max(values):.1f}  "
        f"slope {slope_per_hour(rss):+.2f} MiB/h (second half {slope_per_hour(half):+.2f} MiB/h)"
    )
    ok_unique = r["urges"] == r["urges_distinct"] == r["sent"]
    worst = max(find[i] for i in steady)
    over = sum(1 for x in find if x >= TARGET_MS)
    verdict = worst < TARGET_MS
    print(
        f"  find due < {TARGET_MS:.0f} ms on every steady-state tick: "
        f"{'PASS' if verdict else 'FAIL'} (worst {worst:.2f} ms); ticks >= {TARGET_MS:.0f} ms "
        f"over the whole run: {over} of {len(find)}; urges stored once each: "
        f"{'yes' if ok_unique else 'NO'}; scheduler errors: {r['errors']}"
    )
    return verdict and ok_unique and r["errors"] == 0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--approvals", type=int, default=100_000)
    ap.add_argument("--hours", type=float, default=1.0, help="simulated time")
    ap.add_argument("--step", type=float, default=10.0, help="simulated seconds per step")
    ap.add_argument("--batch", type=int, default=500, help="max_per_tick of the scheduler")
    ap.add_argument("--decide-rate", type=float, default=0.5, help="decisions per sim second")
    ap.add_argument("--stores", default="sqlite,postgres")
    ap.add_argument("--seed", type=int, default=6)
    args = ap.parse_args(sys.argv[2:] if sys.argv[1:2] == ["urge_scheduler"] else None)

    t0 = time.perf_counter()
    rows = approval_rows(args.approvals, args.seed)
    print(
        f"urge scheduler: planned {args.approvals:,} approvals with the default policy in "
        f"{time.perf_counter() - t0:.1f} s"
    )
    ok = True
    for store in args.stores.split(","):
        if store == "sqlite":
            with tempfile.TemporaryDirectory() as tmp:
                url = f"sqlite+aiosqlite:///{tmp}/bench.db"
                r = asyncio.run(bench_store("SQLite", url, rows, args))
        elif store == "postgres":
            if not pg_reachable():
                print(f"\n[PostgreSQL] skipped: nothing answers on {PG[0]}:{PG[1]}")
                continue
            name = f"eai_bench_urge_{uuid.uuid4().hex[:10]}"
            asyncio.run(pg_admin(f'CREATE DATABASE "{name}"'))
            try:
                url = f"postgresql+asyncpg://postgres@{PG[0]}:{PG[1]}/{name}"
                r = asyncio.run(bench_store("PostgreSQL", url, rows, args))
            finally:
                asyncio.run(pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        else:
            raise SystemExit(f"unknown store {store!r}: sqlite or postgres")
        r["step"] = args.step
        ok = report(r, args.approvals) and ok
    if not ok:
        raise SystemExit(1)


if __name__ == "__main__":
    main()
