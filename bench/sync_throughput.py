"""Customer sync end to end: webhook -> records -> identity -> golden -> sync -> delivery -> the
ERP simulator, against a raw aiokafka consume-transform-produce loop on the same broker in the
same run.

1. Sustained throughput: N CRM customer cards posted to ``POST /connectors/crm/customer`` (an
   operator token, batches of 100, as fast as the hub accepts them); the clock stops when the
   ERP simulator has received every card the hub sends it. Ratio to the raw loop (aim >= 0.25).
2. Latency at a fixed rate (500 cards/s): for each card, from the start of the webhook call
   that carried it to its arrival at the ERP simulator (an ASGI wrapper timestamps each POST
   on arrival); p50 and p99 (aim p99 < 200 ms).

``python -m bench.sync_throughput [N] [sqlite|postgres ...]`` (default 5,000, both stores;
PostgreSQL in a temporary database on 127.0.0.1:5432). A 503 from the webhook (the store busy)
is retried after its Retry-After, as a system pushing records would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from bench.core_throughput import raw_baseline
from connectors.erp.simulator import create_app
from contracts import topics
from contracts.envelope import Entity
from hub.broker.embedded import EmbeddedBroker
from hub.runtime import Hub
from hub.settings import Settings
from tests.conftest import TEST_TOKEN
from tests.e2e.sync_harness import free_port
from tests.helpers import customer_env, produce_envs

N = int(sys.argv[1]) if len(sys.argv) > 1 and sys.argv[1].isdigit() else 5_000
STORES = [a for a in sys.argv[1:] if a in ("sqlite", "postgres")] or ["sqlite", "postgres"]
RATE = 500.0
BATCH = 100


def card(i: int, run: str) -> dict[str, Any]:
    """A CRM card nobody else has: its own name, phone and credit code (no merges)."""
    return {
        "cust_no": f"KH{i + 1:06d}",
        "cust_name": f"{run}测{i:05d}号客户有限公司",
        "cust_type": "01",
        "mobile": f"139{i:08d}",
        "credit_code": f"91{i:016d}",
        "status": "1",
        "frozen": "N",
        "stage": "01",
        "create_time": "2026-11-24 08:00:00",
    }


class Arrivals:
    """ASGI wrapper: the monotonic time each customer name reaches the ERP simulator."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.at: dict[str, float] = {}

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] not in ("POST", "PUT"):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        more = True
        while more:
            msg = await receive()
            chunks.append(msg.get("body", b""))
            more = msg.get("more_body", False)
        now = time.monotonic()
        body = b"".join(chunks)
        if scope["path"].startswith("/api/customers"):
            with contextlib.suppress(ValueError, KeyError):
                self.at.setdefault(json.loads(body)["NAME1"], now)
        sent = False

        async def replay() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


@contextlib.asynccontextmanager
async def store(kind: str, tmp: str) -> Any:
    if kind == "sqlite":
        yield f"sqlite+aiosqlite:///{Path(tmp) / 'hub.db'}"
        return
    import uuid

    import asyncpg

    name = f"eai_bench_{uuid.uuid4().hex[:10]}"
    admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
    try:
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()
    try:
        yield f"postgresql+asyncpg://postgres@127.0.0.1:5432/{name}"
    finally:
        admin = await asyncpg.connect(host="127.0.0.1", port=5432, user="postgres", database="test")
        try:
            await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        finally:
            await admin.close()


async def post(client: httpx.AsyncClient, url: str, chunk: list[dict[str, Any]]) -> None:
    while True:
        r = await client.post(url, json=chunk)
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))


async def hub_run(n: int, rate: float | None, tag: str, kind: str = "sqlite") -> dict[str, float]:
    """One hub on a broker of its own: a hub on a used broker would first work through the
    earlier runs' messages (its consumer groups are new) and time those too."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        async with store(kind, tmp) as database_url:
            return await _hub_run(broker.bootstrap, n, rate, f"{tag}-{kind}", tmp, database_url)


async def _hub_run(
    bootstrap: str, n: int, rate: float | None, tag: str, tmp: str, database_url: str
) -> dict[str, float]:
    erp = Arrivals(create_app(Path(tmp) / "erp.sqlite"))
    erp_port, hub_port = free_port(), free_port()
    server = uvicorn.Server(
        uvicorn.Config(erp, host="127.0.0.1", port=erp_port, log_level="warning")
    )
    serving = asyncio.create_task(server.serve())
    settings = Settings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        group_prefix=f"bench-{tag}",
        delivery_targets=f"erp=http://127.0.0.1:{erp_port}",
        admin_token=TEST_TOKEN,
        port=hub_port,
        poll_timeout_ms=20,
    )
    hub = Hub(settings, run_urge_scheduler=False)
    await hub.start()
    cards = [card(i, tag) for i in range(n)]
    posted: dict[str, float] = {}
    url = f"http://127.0.0.1:{hub_port}/connectors/crm/customer"
    step = BATCH if rate is None else max(1, int(rate / 50))  # 50 calls/s when paced
    try:
        async with httpx.AsyncClient(
            timeout=120, headers={"Authorization": f"Bearer {TEST_TOKEN}"}
        ) as client:
            t0 = time.monotonic()
            calls = []
            for k, i in enumerate(range(0, n, step)):
                chunk = cards[i : i + step]
                if rate is not None:
                    due = t0 + k * step / rate
                    await asyncio.sleep(max(0.0, due - time.monotonic()))
                start = time.monotonic()
                for c in chunk:
                    posted[c["cust_name"]] = start
                calls.append(asyncio.create_task(post(client, url, chunk)))
                if rate is None and len(calls) >= 2:  # two requests in flight
                    await calls.pop(0)
            for call in calls:
                await call
            deadline = time.monotonic() + 600
            while len(erp.at) < n and time.monotonic() < deadline:
                await asyncio.sleep(0.05)
            elapsed = max(erp.at.values()) - t0
    finally:
        await hub.stop()
        server.should_exit = True
        await serving
    latencies = sorted((erp.at[k] - posted[k]) * 1000 for k in posted if k in erp.at)
    return {
        "delivered": float(len(erp.at)),
        "elapsed": elapsed,
        "rate": len(erp.at) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
    }


async def run() -> None:
    with EmbeddedBroker() as b:
        settings = Settings(kafka_bootstrap=b.bootstrap)
        from hub.broker.kafka import ensure_topics

        await ensure_topics(settings, b.bootstrap, [*topics.all_topics(), "bench.raw.out"])
        await produce_envs(
            b.bootstrap, topics.canonical(Entity.customer), [customer_env(i) for i in range(N)]
        )
        raw = N / await raw_baseline(b.bootstrap, topics.canonical(Entity.customer), N)
        print(f"customers: {N}")
        print(f"raw aiokafka consume-transform-produce: {raw:,.0f} msg/s (baseline)")
        for kind in STORES:
            full = await hub_run(N, None, "max", kind)
            print(
                f"[{kind}] webhook -> ERP simulator, sustained: {full['rate']:,.0f} msg/s "
                f"({full['delivered']:.0f} delivered in {full['elapsed']:.1f} s), "
                f"ratio to baseline {full['rate'] / raw:.3f} (aim >= 0.25)"
            )
            n_paced = min(N, int(RATE * 10))
            paced = await hub_run(n_paced, RATE, "paced", kind)
            print(
                f"[{kind}] at {RATE:.0f} msg/s offered ({n_paced} cards): delivered "
                f"{paced['rate']:,.0f} msg/s, latency ingest -> ERP p50 {paced['p50']:.0f} ms, "
                f"p99 {paced['p99']:.0f} ms (aim p99 < 200 ms)"
            )


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
