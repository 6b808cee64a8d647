"""The embedded broker killed and started again (issue 8). It keeps everything in memory, so it
comes back empty: whatever the hub had published and not yet consumed is gone from it. The hub
must not lose what it accepted from a webhook: its outbox still holds every message, and the
broker epoch watch (hub/broker/epoch.py) republishes it. The hub runs as `eai-hub run`, which
starts a fresh hub in its own process when the broker lost its data, under a supervisor as
well (as in docker-compose.yml: restart on exit), once against a Tansu we start ourselves and
once with its own embedded broker."""

from __future__ import annotations

import asyncio
import itertools
import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from connectors.crm.simulator import generate as crm_traffic
from hub.broker.embedded import EmbeddedBroker, free_port
from hub.store import db
from hub.store.models import OutboxRow, RecordEvent, SourceRecord
from tests.chaos.conftest import record
from tests.conftest import AUTH, hub_env
from tests.helpers import wait_until

pytestmark = pytest.mark.chaos

N, BATCH = 2_000, 100


def cards(start: int, stop: int) -> list[dict[str, Any]]:
    base = [r for e, r in itertools.islice(crm_traffic(11, 0.0), 400) if e == "customer"]
    out = []
    for i in range(start, stop):
        card = {
            k: v for k, v in base[i % len(base)].items() if k not in ("credit_code", "contacts")
        }
        out.append(
            dict(card, cust_no=f"KH{700_000 + i:06d}", cust_name=f"沈阳市断网{i}电器有限公司")
        )
    return out


def start_hub(bootstrap: str | None, store_url: str, api: int) -> subprocess.Popen[bytes]:
    env = {
        "EAI_DATABASE_URL": store_url,
        "EAI_PORT": str(api),
        "EAI_SYNC_ENABLED": "false",
        "EAI_TOPIC_PARTITIONS": "3",
        "EAI_LOG_LEVEL": "WARNING",
        "EAI_BROKER_CHECK_INTERVAL_S": "1",
    }
    if bootstrap:
        env["EAI_KAFKA_BOOTSTRAP"] = bootstrap
    return subprocess.Popen([sys.executable, "-m", "hub.cli", "run"], env=hub_env(**env))


def child_of(pid: int) -> int:
    """The hub's embedded broker: its only child process (started from a worker thread, so
    listed under that thread's task)."""
    kids = [k for t in Path(f"/proc/{pid}/task").glob("*/children") for k in t.read_text().split()]
    assert len(kids) == 1, kids
    return int(kids[0])


class Supervisor:
    """What Docker's restart policy or systemd does: start the hub again when it exits."""

    def __init__(self, bootstrap: str | None, store_url: str) -> None:
        self.bootstrap, self.store_url, self.api = bootstrap, store_url, free_port()
        self.proc = start_hub(bootstrap, store_url, self.api)
        self.restarts: list[int] = []
        self._task = asyncio.create_task(self._watch())

    async def _watch(self) -> None:
        while True:
            code = await asyncio.to_thread(self.proc.wait)
            self.restarts.append(code)
            self.proc = start_hub(self.bootstrap, self.store_url, self.api)

    async def stop(self) -> None:
        self._task.cancel()
        self.proc.send_signal(signal.SIGTERM)
        try:
            await asyncio.to_thread(self.proc.wait, 30)
        except subprocess.TimeoutExpired:
            self.proc.kill()


@pytest.mark.parametrize("mode", ["external", "embedded"])
async def test_broker_killed_and_restarted_loses_nothing_accepted(
    sqlite_url: str, mode: str
) -> None:
    """external: a Tansu we run is SIGKILLed, down 5 s, started again empty on its port; the
    hub notices (epoch), marks the outbox for republishing and starts a fresh hub in its
    process. embedded: the hub's own broker child is SIGKILLed; the process starts a fresh hub
    with a new empty embedded broker, whose epoch check at start republishes."""
    port = free_port()
    broker = EmbeddedBroker(port) if mode == "external" else None
    if broker is not None:
        broker.start()
    sup = Supervisor(broker.bootstrap if broker else None, sqlite_url)
    engine = db.create_engine(sqlite_url)
    sessions = db.sessionmaker(engine)
    accepted: dict[int, int] = {}  # batch start -> records accepted
    retries = 0

    async def applied() -> tuple[int, int, int]:
        async with sessions() as s:
            recs = await s.scalar(select(func.count()).select_from(SourceRecord))
            events = await s.scalar(
                select(func.count())
                .select_from(RecordEvent)
                .where(RecordEvent.outcome == "applied")
            )
            pending = await s.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
            )
        return int(recs or 0), int(events or 0), int(pending or 0)

    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{sup.api}", headers=AUTH, timeout=60
        ) as c:

            async def up() -> bool:
                try:
                    return (await c.get("/health")).status_code == 200
                except httpx.HTTPError:
                    return False

            await wait_until(up, timeout=120, what="hub up")

            async def post(start: int) -> None:
                """A well-behaved client: retries until accepted, with an idempotency key."""
                nonlocal retries
                for _ in range(300):
                    try:
                        r = await c.post(
                            "/connectors/crm/customer",
                            json=cards(start, start + BATCH),
                            headers={"Idempotency-Key": f"batch-{start}"},
                        )
                        if r.status_code == 202:
                            accepted[start] = int(r.json()["accepted"])
                            return
                    except httpx.HTTPError:
                        pass
                    retries += 1
                    await asyncio.sleep(0.5)
                raise AssertionError(f"batch {start} never accepted")

            starts = list(range(0, N, BATCH))
            third = len(starts) // 3
            for s in starts[:third]:
                await post(s)

            async def some_applied() -> bool:
                return (await applied())[0] >= sum(accepted.values()) // 3

            # Kill with part of it applied and the rest on the broker: both must come out once.
            await wait_until(some_applied, timeout=120, what="a third applied")
            # one batch more right before the kill: accepted, not applied yet when it dies
            await post(starts[third])
            before = (await applied())[0]
            accepted_at_kill = sum(accepted.values())
            killed = time.monotonic()
            if broker is not None:
                broker.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
                await asyncio.to_thread(broker.proc.wait)  # type: ignore[union-attr]
                for s in starts[third + 1 : 2 * third]:
                    await post(s)  # the broker is down: the store still accepts
                await asyncio.sleep(max(0.0, 5 - (time.monotonic() - killed)))
                broker = EmbeddedBroker(port)
                await asyncio.to_thread(broker.start)
            else:
                os.kill(child_of(sup.proc.pid), signal.SIGKILL)
                for s in starts[third + 1 : 2 * third]:
                    await post(s)
            for s in starts[2 * third :]:
                await post(s)

            async def all_applied() -> bool:
                recs, _, pending = await applied()
                return recs == sum(accepted.values()) and pending == 0

            await wait_until(all_applied, timeout=240, what="every accepted record applied")
            recovered_s = time.monotonic() - killed
            recs, events, _ = await applied()
            metrics = (await c.get("/metrics")).text
            in_process = sum(
                int(float(line.split()[-1]))
                for line in metrics.splitlines()
                if line.startswith("eai_hub_restarts_total ")
            )
    finally:
        await sup.stop()
        if broker is not None:
            broker.stop()
        await engine.dispose()
    total = sum(accepted.values())
    scenario = f"broker ({mode}) SIGKILLed, comes back empty, {N} webhook records, SQLite"
    record(scenario, "records accepted by the webhook", total, str(N))
    record(scenario, "accepted records lost", total - recs, "0")
    record(scenario, "records applied twice", events - recs, "0")
    record(
        scenario, "applied before the kill (of accepted)", f"{before} ({accepted_at_kill})", "> 0"
    )
    record(
        scenario,
        "hub restarts: in its process / process exits restarted by the supervisor",
        f"{in_process} / {len(sup.restarts)}",
        ">= 1 in all",
    )
    record(scenario, "webhook calls the client had to retry", retries, "reported")
    record(scenario, "kill to all accepted records applied s", f"{recovered_s:.0f}", "reported")
    assert (total, total - recs, events - recs) == (N, 0, 0)
    assert in_process + len(sup.restarts) >= 1
    # Usually some of the last batch is still on the broker at the kill; a quick hub may have
    # applied all of it, and the records posted while the broker is down still go through the
    # outbox to the new broker.
    assert 0 < before <= accepted_at_kill, "the kill must land after records were applied"
