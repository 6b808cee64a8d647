"""Customer sync end to end: webhook -> records -> identity -> golden -> sync -> delivery -> the
ERP simulator, against a raw aiokafka consume-transform-produce loop on the same broker in the
same run.

1. Sustained throughput: N CRM customer cards posted to ``POST /connectors/crm/customer`` (an
   operator token, batches of 100, as fast as the hub accepts them); the clock stops when the
   ERP simulator has received every card the hub sends it. Ratio to the raw loop (aim >= 0.25).
2. Latency at a fixed rate (500 cards/s): for each card, from the start of the webhook call
   that carried it to its arrival at the ERP simulator (an ASGI wrapper timestamps each POST
   on arrival); p50 and p99 (aim p99 < 200 ms).

The ERP simulator (bench/erp_arrivals.py) and the CRM posting the cards
(bench/webhook_poster.py) run in child processes, so the figures are the hub's, not the hub's
and its callers' on one event loop. After each run the stages are printed
from the flows' own metrics (``hub.runners[*].metrics``): messages, batches, time applying
them, and when each stage saw its last message.

``python -m bench.sync_throughput [N] [sqlite|postgres ...] [--paced=K] [--rate=R]`` (default
5,000, both stores; PostgreSQL in a temporary database on 127.0.0.1:5432; K cards in the
latency run, default min(N, 10 s at R), 0 skips it; R cards/s offered, default 500). A 503
from the webhook (the store busy) is retried after its Retry-After, as a system pushing
records would.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from bench.core_throughput import raw_baseline
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
# --rate=R: cards per second offered in the latency run (default 500, the figure)
RATE = next((float(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--rate=")), 500.0)
# --paced=K: cards in the latency run (default min(N, 10 s at RATE)); 0 skips it
PACED = next((int(a.split("=", 1)[1]) for a in sys.argv[1:] if a.startswith("--paced=")), None)


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


async def hub_run(n: int, rate: float | None, tag: str, kind: str = "sqlite") -> dict[str, float]:
    """One hub on a broker of its own: a hub on a used broker would first work through the
    earlier runs' messages (its consumer groups are new) and time those too."""
    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker() as broker:
        async with store(kind, tmp) as database_url:
            return await _hub_run(broker.bootstrap, n, rate, f"{tag}-{kind}", tmp, database_url)


@contextlib.asynccontextmanager
async def erp_process(tmp: str) -> Any:
    """The ERP simulator in a child process (bench/erp_arrivals.py): the figure is the hub's."""
    port = free_port()
    proc = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "bench.erp_arrivals", str(port), str(Path(tmp) / "erp.sqlite")
    )
    url = f"http://127.0.0.1:{port}"
    try:
        async with httpx.AsyncClient(timeout=30) as client:
            for _ in range(200):
                with contextlib.suppress(httpx.HTTPError):
                    if (await client.get(f"{url}/_bench/count")).status_code == 200:
                        break
                await asyncio.sleep(0.05)
            yield url, client
    finally:
        proc.terminate()
        await proc.wait()


class Probe:
    """Every second, each flow's counters (hub.runners[*].metrics) and the deliverer's: when
    each stage had seen all it would see, and how long it spent applying batches."""

    def __init__(self, hub: Hub, t0: float) -> None:
        self.hub, self.t0 = hub, t0
        self.last_change: dict[str, float] = {}
        self.seen: dict[str, int] = {}

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        for r in self.hub.runners:
            if self.seen.get(r.name) != r.metrics.consumed:
                self.seen[r.name] = r.metrics.consumed
                self.last_change[r.name] = now
        if self.hub.delivery is not None:
            for system, d in self.hub.delivery.deliverers.items():
                name = f"deliverer.{system}"
                if self.seen.get(name) != d.counters.delivered:
                    self.seen[name] = d.counters.delivered
                    self.last_change[name] = now

    async def run(self) -> None:
        while True:
            self.sample()
            await asyncio.sleep(0.25)

    def report(self) -> str:
        lines = []
        for r in self.hub.runners:
            m = r.metrics
            if not m.consumed:
                continue
            lines.append(
                f"    {r.name:<16} consumed {m.consumed:>6} in {m.batches:>4} batches "
                f"(mean {m.consumed / max(m.batches, 1):5.1f}), busy {m.busy_s:6.1f} s "
                f"({1000 * m.busy_s / m.consumed:5.2f} ms/msg), last at "
                f"{self.last_change.get(r.name, 0):6.1f} s, {m.handed} from the relay"
            )
        if self.hub.delivery is not None:
            for system, d in self.hub.delivery.deliverers.items():
                c = d.counters
                lines.append(
                    f"    deliverer.{system:<6} delivered {c.delivered:>6}, attempts "
                    f"{c.attempts}, last at {self.last_change.get(f'deliverer.{system}', 0):6.1f} s"
                )
        if self.hub.relay is not None:
            lines.append(f"    outbox relay     published {self.hub.relay.published}")
        return "\n".join(lines)


async def target_ceiling(n: int, concurrency: int) -> float:
    """Calls/s the ERP simulator takes alone: customer creates straight from a Sink, as many
    in flight as the deliverer keeps (EAI_DELIVERY_CONCURRENCY). No deliverer can beat it."""
    import uuid

    from connectors.common.sink import Sink
    from connectors.registry import CONNECTORS
    from tests.helpers import customer_env

    with tempfile.TemporaryDirectory() as tmp:
        async with erp_process(tmp) as (url, _client):
            sink = Sink(CONNECTORS["erp"], url, timeout=30)
            bodies = [customer_env(i).body for i in range(n)]
            slots = asyncio.Semaphore(concurrency)

            async def one(body: Any) -> None:
                async with slots:
                    result = await sink.deliver("customer", body, str(uuid.uuid4()))
                    assert result.ok, result

            t0 = time.monotonic()
            await asyncio.gather(*(one(b) for b in bodies))
            elapsed = time.monotonic() - t0
            await sink.aclose()
    return n / elapsed


async def assigned(hub: Hub, timeout_s: float = 60) -> None:
    """Until every flow's consumer has its partitions: the group joins of a fresh hub take
    seconds, a start-up cost that is not throughput (it was 5 of 12 s at N = 1,000)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if all(r.consumer.assignment() for r in hub.runners):
            return
        await asyncio.sleep(0.1)
    raise RuntimeError("the flows' consumers got no partitions within a minute")


async def _hub_run(
    bootstrap: str, n: int, rate: float | None, tag: str, tmp: str, database_url: str
) -> dict[str, Any]:
    async with erp_process(tmp) as (erp_url, erp_client):
        return await _hub_run_with(bootstrap, n, rate, tag, database_url, erp_url, erp_client)


async def _hub_run_with(
    bootstrap: str,
    n: int,
    rate: float | None,
    tag: str,
    database_url: str,
    erp_url: str,
    erp_client: httpx.AsyncClient,
) -> dict[str, Any]:
    hub_port = free_port()
    settings = Settings(
        kafka_bootstrap=bootstrap,
        database_url=database_url,
        group_prefix=f"bench-{tag}",
        delivery_targets=f"erp={erp_url}",
        admin_token=TEST_TOKEN,
        port=hub_port,
        poll_timeout_ms=20,
    )
    hub = Hub(settings, run_urge_scheduler=False)
    await hub.start()
    await assigned(hub)
    url = f"http://127.0.0.1:{hub_port}/connectors/crm/customer"
    probe: Probe | None = None
    probing: asyncio.Task[None] | None = None
    try:
        with tempfile.TemporaryDirectory() as tmp:
            out = Path(tmp) / "posted.json"
            # the CRM in a process of its own (bench/webhook_poster.py): its client work on
            # this event loop was measured as the hub's
            poster = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "bench.webhook_poster",
                url,
                tag,
                str(n),
                str(rate or 0),
                str(out),
                env={**os.environ, "EAI_BENCH_TOKEN": TEST_TOKEN},
            )
            probe = Probe(hub, time.monotonic())
            probing = asyncio.create_task(probe.run())
            assert await poster.wait() == 0, "the webhook poster failed"
            pushed = json.loads(out.read_text())
        t0 = pushed["t0"]
        # the probe's times from when posting started, not from the poster's spawn
        probe.last_change = {k: v + probe.t0 - t0 for k, v in probe.last_change.items()}
        probe.t0 = t0
        posted: dict[str, float] = pushed["posted"]
        ingested = pushed["done"] - t0
        deadline = time.monotonic() + 1800
        while time.monotonic() < deadline:
            got = (await erp_client.get(f"{erp_url}/_bench/count")).json()["count"]
            if got >= n:
                break
            await asyncio.sleep(0.1)
        arrived: dict[str, float] = (await erp_client.get(f"{erp_url}/_bench/arrivals")).json()
        elapsed = max(arrived.values()) - t0
        probe.sample()
    finally:
        if probing is not None:
            probing.cancel()
        await hub.stop()
    latencies = sorted((arrived[k] - posted[k]) * 1000 for k in posted if k in arrived)
    return {
        "delivered": float(len(arrived)),
        "elapsed": elapsed,
        "ingested": ingested,
        "rate": len(arrived) / elapsed,
        "p50": statistics.median(latencies),
        "p99": latencies[int(len(latencies) * 0.99) - 1],
        "stages": probe.report() if probe is not None else "",
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
        concurrency = Settings().delivery_concurrency
        ceiling = await target_ceiling(min(N, 2_000), concurrency)
        print(
            f"ERP simulator alone (own process, {concurrency} calls in flight): "
            f"{ceiling:,.0f} calls/s: the most any deliverer can reach in this run"
        )
        for kind in STORES:
            full = await hub_run(N, None, "max", kind)
            print(
                f"[{kind}] webhook -> ERP simulator, sustained: {full['rate']:,.0f} msg/s "
                f"({full['delivered']:.0f} delivered in {full['elapsed']:.1f} s), "
                f"ratio to baseline {full['rate'] / raw:.3f} (aim >= 0.25); webhook took "
                f"{full['ingested']:.1f} s"
            )
            print(full["stages"])
            n_paced = min(N, int(RATE * 10)) if PACED is None else PACED
            if not n_paced:
                continue
            paced = await hub_run(n_paced, RATE, "paced", kind)
            print(
                f"[{kind}] at {RATE:.0f} msg/s offered ({n_paced} cards): delivered "
                f"{paced['rate']:,.0f} msg/s, latency ingest -> ERP p50 {paced['p50']:.0f} ms, "
                f"p99 {paced['p99']:.0f} ms (aim p99 < 200 ms)"
            )
            print(paced["stages"])


def main() -> None:
    asyncio.run(run())


if __name__ == "__main__":
    main()
