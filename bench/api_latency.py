"""Admin API latency under load, with 1,000,000 golden records in PostgreSQL.

Setup: a temporary PostgreSQL database (127.0.0.1:5432, like tests/conftest.py) migrated by
the hub, then loaded with COPY: N golden customers (one member each) and 20,000 dead letters.
The hub (``eai-hub run``: embedded broker, flows, admin API) runs in its own process on that
database; this process drives the load over loopback with C clients (httpx, one connection
each), in three phases:

1. service time: one client, sequential, 30 requests per endpoint;
2. operators: C clients as C operators' dashboards use the API: each sends a request, waits
   for the answer, then thinks ``--think`` ms (uniformly 0.5-1.5 times that), for
   ``--think-seconds``; each client goes round the endpoints from its own starting point, so
   every endpoint, /health included, is measured at the same time under the same offered
   load (C / think requests per second) that the hub can serve;
3. saturation: C clients calling one endpoint back to back (closed loop, no think time) for
   ``--seconds``, endpoint after endpoint: what queueing does when the offered load exceeds
   what one process serves.

Reported per endpoint: requests/s, p50 and p99 latency, and p99 as a ratio to /health (no store
work) measured in the same phase.

Usage: ``python -m bench.api_latency [N] [--clients C] [--seconds S] [--think MS]
[--think-seconds S] [--keep] [--db NAME]`` (defaults 1,000,000, 50 clients, 8 s per endpoint
at saturation, 1,000 ms think time for 120 s; ``--keep`` leaves the database for EXPLAIN,
``--db NAME`` measures again on such a database; N must match what it holds).
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

PG = {"host": "127.0.0.1", "port": 5432, "user": "postgres"}
TOKEN = "eai_bench-admin-token-not-a-secret"


def _arg(name: str, default: int) -> int:
    if name in sys.argv:
        return int(sys.argv[sys.argv.index(name) + 1])
    return default


POSITIONAL = [
    a for i, a in enumerate(sys.argv[1:], 1) if a.isdigit() and not sys.argv[i - 1].startswith("--")
]
N = int(POSITIONAL[0]) if POSITIONAL else 1_000_000
CLIENTS = _arg("--clients", 50)
SECONDS = _arg("--seconds", 8)
THINK_MS = _arg("--think", 1000)
THINK_SECONDS = _arg("--think-seconds", 120)
DEAD_LETTERS = 20_000
SURNAMES = "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗"
CITIES = ["深圳", "上海", "北京", "广州", "杭州", "成都", "武汉", "沈阳", "西安", "南京"]


def golden_id(i: int) -> str:
    return f"G-{uuid.UUID(int=i):}"


async def load(url_db: str) -> None:
    """COPY the golden records, their members and some dead letters."""
    import asyncpg

    conn = await asyncpg.connect(**PG, database=url_db)
    try:
        now = datetime.now(UTC)
        t0 = time.perf_counter()

        def golden_rows() -> Any:
            for i in range(N):
                name = f"{CITIES[i % 10]}市{SURNAMES[i % 20]}氏{i}号贸易有限公司"
                record = json.dumps({"kind": "organization", "name": name}, ensure_ascii=False)
                yield (
                    golden_id(i),
                    "customer",
                    "{}",
                    record,
                    "{}",
                    "active",
                    None,
                    name,
                    f"{name} crm:c{i:07d}".casefold(),
                    1,
                    1,
                    now - timedelta(seconds=N - i),
                    now - timedelta(seconds=N - i),
                )

        await conn.copy_records_to_table(
            "golden_records",
            records=golden_rows(),
            columns=[
                "golden_id",
                "entity",
                "profile",
                "record",
                "winners",
                "status",
                "merged_into",
                "name",
                "search_text",
                "member_count",
                "version",
                "created_at",
                "updated_at",
            ],
        )
        await conn.copy_records_to_table(
            "golden_members",
            records=(
                ("customer", "crm", f"C{i:07d}", golden_id(i), "new", 1.0, "{}", None, now)
                for i in range(N)
            ),
            columns=[
                "entity",
                "source_system",
                "source_id",
                "golden_id",
                "action",
                "score",
                "evidence",
                "message_id",
                "linked_at",
            ],
        )
        await conn.copy_records_to_table(
            "dead_letters",
            records=(
                (
                    "records",
                    "validate",
                    f"field 'body.name' value '' : must not be blank (#{i})",
                    "ContractError",
                    "canonical.customer",
                    i % 6,
                    i,
                    b"crm:C1",
                    b'{"x": 1}',
                    "[]",
                    None,
                    "crm",
                    1,
                    now,
                    now,
                    "new",
                )
                for i in range(DEAD_LETTERS)
            ),
            columns=[
                "flow",
                "stage",
                "reason",
                "error_class",
                "topic",
                "partition",
                "offset",
                "key",
                "value",
                "headers",
                "message_id",
                "source_system",
                "attempts",
                "first_failure_at",
                "last_failure_at",
                "status",
            ],
        )
        await conn.execute("ANALYZE")
        print(
            f"loaded {N:,} golden records + members, {DEAD_LETTERS:,} dead letters "
            f"in {time.perf_counter() - t0:.0f}s",
            flush=True,
        )
    finally:
        await conn.close()


def endpoints() -> list[tuple[str, str]]:
    mid = golden_id(N // 2)
    return [
        ("/health (baseline, no store)", "/health"),
        ("/flows", "/flows"),
        ("/topics", "/topics"),
        ("/deliveries", "/deliveries"),
        ("/golden/customer (first page)", "/golden/customer?limit=50"),
        ("/golden/customer?q= (search)", f"/golden/customer?q=crm:c{N // 3:07d}&limit=50"),
        ("/golden/customer?q= (common)", "/golden/customer?q=深圳&limit=50"),
        ("/golden/customer/{id}", f"/golden/customer/{mid}"),
        ("/review", "/review?limit=50"),
        ("/dead-letters (first page)", "/dead-letters?limit=50"),
        ("/dead-letters?reason=", "/dead-letters?reason=%2312345&limit=50"),
        ("/urges/stats", "/urges/stats"),
        ("/approvals", "/approvals?limit=50"),
        ("/metrics", "/metrics"),
    ]


async def drive(clients: list[httpx.AsyncClient], path: str) -> tuple[list[float], int]:
    """Every client calling ``path`` back to back for SECONDS; latencies in seconds, errors."""
    lat: list[float] = []
    errors = 0
    deadline = time.perf_counter() + SECONDS

    async def one(c: httpx.AsyncClient) -> None:
        nonlocal errors
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            r = await c.get(path)
            lat.append(time.perf_counter() - t)
            if r.status_code != 200:
                errors += 1

    await asyncio.gather(*(one(c) for c in clients))
    return lat, errors


async def operators(
    clients: list[httpx.AsyncClient], paths: list[str]
) -> tuple[dict[str, list[float]], int, float]:
    """Every client: request, answer, think (THINK_MS, 0.5-1.5x), next endpoint round the
    list from its own start, for THINK_SECONDS. Latencies per path, errors, seconds."""
    lat: dict[str, list[float]] = {p: [] for p in paths}
    errors = 0
    rnd = random.Random(7)
    t0 = time.perf_counter()
    deadline = t0 + THINK_SECONDS
    SLOW.clear()

    async def one(c: httpx.AsyncClient, start: int, first_wait: float) -> None:
        nonlocal errors
        i = start
        await asyncio.sleep(first_wait)  # the operators do not all click at once
        while time.perf_counter() < deadline:
            path = paths[i % len(paths)]
            i += 1
            t = time.perf_counter()
            r = await c.get(path)
            took = time.perf_counter() - t
            lat[path].append(took)
            if took > SLOW_S:
                SLOW.append((t - t0, took))
            if r.status_code != 200:
                errors += 1
            await asyncio.sleep(THINK_MS / 1000 * rnd.uniform(0.5, 1.5))

    probe = asyncio.create_task(lag_probe(deadline))
    await asyncio.gather(
        *(
            one(c, k * len(paths) // len(clients), rnd.uniform(0, THINK_MS / 1000))
            for k, c in enumerate(clients)
        )
    )
    LAG[:] = await probe
    return lat, errors, time.perf_counter() - t0


SLOW_S = 0.1
SLOW: list[tuple[float, float]] = []  # (start, latency) of requests slower than SLOW_S
LAG: list[float] = []


async def lag_probe(deadline: float) -> list[float]:
    """How late this process's own event loop wakes a 10 ms sleep: a request measured slow
    while the driver itself was late says nothing about the hub."""
    late: list[float] = []
    while time.perf_counter() < deadline:
        t = time.perf_counter()
        await asyncio.sleep(0.01)
        late.append(time.perf_counter() - t - 0.01)
    return late


async def hub_lag(c: httpx.AsyncClient) -> dict[float, float]:
    """The hub's own event-loop lag histogram (``eai_event_loop_lag_seconds``, cumulative
    counts by upper bound): the hub process stalled, or this driver did."""
    text = (await c.get("/metrics")).text
    out: dict[float, float] = {}
    for line in text.splitlines():
        if line.startswith("eai_event_loop_lag_seconds_bucket{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            out[float(le)] = float(line.rsplit(" ", 1)[1])
    return out


def lag_summary(before: dict[float, float], after: dict[float, float]) -> str:
    delta = {le: after.get(le, 0.0) - before.get(le, 0.0) for le in after}
    total = delta.get(float("inf"), 0.0)
    if not total:
        return "hub event loop: no lag probe on /metrics"
    over = [(le, total - n) for le, n in sorted(delta.items()) if le in (0.025, 0.05, 0.1, 0.25)]
    # the smallest bound that holds every probe: the worst lag was at most that
    worst = min(le for le, n in delta.items() if n >= total)
    return (
        f"hub event loop ({total:.0f} probes every 50 ms): late over "
        + ", ".join(f"{le * 1000:.0f} ms: {n:.0f}" for le, n in over)
        + (f"; all under {worst * 1000:.0f} ms" if worst != float("inf") else "; some over 2.5 s")
    )


def stalls(slow: list[tuple[float, float]]) -> list[tuple[float, int]]:
    """Slow requests grouped by overlap in time: (start of the group, requests in it). Many
    requests to different endpoints slow at the same moment point at the process or the
    machine (a stall), not at one endpoint's work."""
    groups: list[tuple[float, float, int]] = []  # start, end, count
    for start, took in sorted(slow):
        if groups and start <= groups[-1][1]:
            g0, g1, n = groups[-1]
            groups[-1] = (g0, max(g1, start + took), n + 1)
        else:
            groups.append((start, start + took, 1))
    return [(g0, n) for g0, _g1, n in groups]


def make_clients(base: str) -> list[httpx.AsyncClient]:
    """Made before any clock starts: an AsyncClient loads a TLS context when it is created
    (tens of ms of CPU), which inside the timed loop measured the driver, not the hub."""
    return [
        httpx.AsyncClient(
            base_url=base,
            headers={"Authorization": f"Bearer {TOKEN}"},
            timeout=60,
            limits=httpx.Limits(max_connections=1),
        )
        for _ in range(CLIENTS)
    ]


def pct(values: list[float], q: float) -> float:
    return statistics.quantiles(values, n=1000)[int(q * 1000) - 1] if len(values) > 1 else 0.0


async def create_and_load() -> tuple[str, str]:
    import asyncpg

    from hub.store import db

    name = f"eai_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(**PG, database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    url = f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    engine = db.create_engine(url)
    await db.migrate(engine)
    await engine.dispose()
    await load(name)
    return name, url


async def drop(name: str) -> None:
    import asyncpg

    admin = await asyncpg.connect(**PG, database="test")
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
    finally:
        await admin.close()


def start_hub(url: str, port: int, log: Any) -> subprocess.Popen[bytes]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EAI_")}
    env.update(
        EAI_DATABASE_URL=url, EAI_ADMIN_TOKEN=TOKEN, EAI_PORT=str(port), EAI_LOG_LEVEL="WARNING"
    )
    return subprocess.Popen(
        [sys.executable, "-m", "hub.cli", "run"], env=env, stdout=log, stderr=log
    )


async def measure(base: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient(base_url=base) as c:
        for _ in range(600):
            try:
                if (await c.get("/health")).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None:
                raise RuntimeError("the hub exited before answering /health")
            await asyncio.sleep(0.1)
    print(
        f"{CLIENTS} clients, {SECONDS}s per endpoint, hub in its own process "
        "(one uvicorn worker), PostgreSQL",
        flush=True,
    )
    # Service time first: one client, one request at a time (no queueing in the hub).
    print("one client, sequential, 30 requests each (service time):")
    serial: dict[str, float] = {}
    async with httpx.AsyncClient(
        base_url=base, headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60
    ) as c:
        for label, path in endpoints():
            await c.get(path)
            ts = []
            for _ in range(30):
                t = time.perf_counter()
                r = await c.get(path)
                ts.append(time.perf_counter() - t)
                assert r.status_code == 200, (path, r.status_code, r.text[:200])
            serial[path] = statistics.median(ts) * 1000
            base_ms = serial.get("/health", serial[path])
            print(
                f"  {label:<32} median {serial[path]:7.1f} ms  "
                f"ratio to /health {serial[path] / base_ms:5.1f}",
                flush=True,
            )
    clients = make_clients(base)
    await asyncio.gather(*(c.get("/health") for c in clients))  # connections open
    offered = CLIENTS / (THINK_MS / 1000)
    print(
        f"{CLIENTS} operators, each: request, answer, think {THINK_MS} ms (0.5-1.5x), "
        f"next endpoint; {THINK_SECONDS}s, offered ~{offered:.0f} req/s over all endpoints:"
    )
    print(f"{'endpoint':<32} {'n':>5} {'p50 ms':>8} {'p99 ms':>8} {'p99/health':>10}")
    labels = {path: label for label, path in endpoints()}
    lag_before = await hub_lag(clients[0])
    by_path, errors, took = await operators(clients, list(labels))
    lag_after = await hub_lag(clients[0])
    health = pct(by_path["/health"], 0.99) * 1000
    for path, lat in by_path.items():
        p50, p99 = pct(lat, 0.5) * 1000, pct(lat, 0.99) * 1000
        print(
            f"{labels[path]:<32} {len(lat):>5} {p50:>8.1f} {p99:>8.1f} {p99 / health:>10.2f}",
            flush=True,
        )
    served = sum(len(v) for v in by_path.values()) / took
    print(f"  served {served:.0f} req/s, errors {errors}", flush=True)
    groups = stalls(SLOW)
    print(
        f"  requests over {SLOW_S * 1000:.0f} ms: {len(SLOW)} of "
        f"{sum(len(v) for v in by_path.values())}, in {len(groups)} groups overlapping in "
        f"time (largest: {max((n for _, n in groups), default=0)} requests); this driver's "
        f"event loop late by p99 {pct(LAG, 0.99) * 1000:.1f} ms, max "
        f"{max(LAG, default=0) * 1000:.1f} ms",
        flush=True,
    )
    print(f"  {lag_summary(lag_before, lag_after)}", flush=True)
    print(f"{CLIENTS} clients at once, each calling back to back (saturation):")
    print(f"{'endpoint':<32} {'req/s':>7} {'p50 ms':>8} {'p99 ms':>8} {'p99/health':>10} errors")
    health_p99 = 0.0
    for label, path in endpoints():
        lat, errors = await drive(clients, path)
        p50, p99 = pct(lat, 0.5) * 1000, pct(lat, 0.99) * 1000
        if path == "/health":
            health_p99 = p99
        ratio = p99 / health_p99 if health_p99 else 0.0
        print(
            f"{label:<32} {len(lat) / SECONDS:>7.0f} {p50:>8.1f} {p99:>8.1f} {ratio:>10.2f}"
            f" {errors}",
            flush=True,
        )
    for c in clients:
        await c.aclose()


def main() -> None:
    from hub.broker.embedded import free_port

    reuse = sys.argv[sys.argv.index("--db") + 1] if "--db" in sys.argv else None
    if reuse:  # a database kept by an earlier --keep run, already loaded
        name, url = reuse, f"postgresql+asyncpg://postgres@127.0.0.1:5432/{reuse}"
    else:
        name, url = asyncio.run(create_and_load())
    try:
        with tempfile.TemporaryFile() as log:
            port = free_port()
            proc = start_hub(url, port, log)
            try:
                asyncio.run(measure(f"http://127.0.0.1:{port}", proc))
            except Exception:
                log.seek(0)
                print(log.read().decode("utf-8", "replace")[-3000:])
                print(f"hub process exit code: {proc.poll()}")
                raise
            finally:
                proc.terminate()
                try:
                    proc.wait(20)
                except subprocess.TimeoutExpired:
                    proc.kill()
    finally:
        if "--keep" in sys.argv or reuse:
            print(f"kept database {name}")
        else:
            asyncio.run(drop(name))


if __name__ == "__main__":
    main()
