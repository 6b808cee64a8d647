"""Delivery to real simulators over HTTP, from the embedded broker over TCP, on a real store.

Each test serves the simulators it needs with uvicorn on free ports, runs a hub whose flows
are the delivery flows, and judges by the simulators' own counters (``/_sim/stats``): records
created, idempotency-key collisions, rows stored twice.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Entity, Envelope
from hub.delivery import DeliveryConfig, DeliveryService, xref
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.delivery_models import Delivery
from hub.store.models import DeadLetter
from tests.helpers import header, produce, read_topic, wait_until

pytestmark = pytest.mark.integration

SIMULATORS = {s: f"connectors.{s}.simulator" for s in ("crm", "erp", "pdm", "oa", "drp")}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class Sim:
    system: str
    url: str
    client: httpx.AsyncClient

    async def stats(self) -> dict[str, Any]:
        r = await self.client.get("/_sim/stats")
        r.raise_for_status()
        return dict(r.json())

    async def fault(self, mode: str, **kw: Any) -> None:
        r = await self.client.post("/_sim/faults", json={"mode": mode, **kw})
        assert r.status_code == 200, r.text

    async def customer(self, local_id: str) -> dict[str, Any]:
        r = await self.client.get(f"/api/customers/{local_id}")
        r.raise_for_status()
        return dict(r.json()["record"])


@contextlib.asynccontextmanager
async def simulator(system: str, tmp_path: Path) -> AsyncIterator[Sim]:
    import importlib

    app = importlib.import_module(SIMULATORS[system]).create_app(tmp_path / f"{system}.sqlite")
    port = free_port()
    server = uvicorn.Server(
        uvicorn.Config(app, host="127.0.0.1", port=port, log_level="warning", lifespan="on")
    )
    task = asyncio.create_task(server.serve())
    for _ in range(250):
        if server.started or task.done():
            break
        await asyncio.sleep(0.02)
    assert server.started, f"{system} simulator did not start"
    url = f"http://127.0.0.1:{port}"
    try:
        # a fresh connection per call: a kept-alive one that the server closes after its idle
        # timeout, just as the next call goes out, fails with "Server disconnected" (seen after
        # a long settle in the delivery chaos test)
        no_keepalive = httpx.Limits(max_keepalive_connections=0)
        async with httpx.AsyncClient(base_url=url, timeout=5, limits=no_keepalive) as client:
            yield Sim(system, url, client)
    finally:
        server.should_exit = True
        await asyncio.wait_for(task, 10)


@dataclass
class Running:
    hub: Hub
    delivery: DeliveryService

    async def rows(self, system: str | None = None) -> list[Delivery]:
        assert self.hub.sessions is not None
        q = select(Delivery).order_by(Delivery.id)
        if system:
            q = q.where(Delivery.system == system)
        async with self.hub.sessions() as s:
            return list((await s.execute(q)).scalars())

    async def status(self) -> dict[str, dict[str, Any]]:
        return {s["system"]: s for s in await self.delivery.status()}

    async def delivered(self, system: str, n: int, timeout: float = 20) -> None:
        async def done() -> bool:
            return bool((await self.status())[system]["delivered"] >= n)

        await wait_until(done, timeout, f"{n} messages delivered to {system}")


@contextlib.asynccontextmanager
async def running(
    broker: str, store_url: str, sims: list[Sim], **config: Any
) -> AsyncIterator[Running]:
    cfg = DeliveryConfig(
        targets={s.system: s.url for s in sims},
        **{
            "backoff_initial_ms": 100,
            "backoff_max_ms": 400,
            "timeout_s": 3.0,
            "lease_s": 10.0,
            "poll_interval_ms": 100,
            **config,
        },
    )
    svc = DeliveryService(cfg)
    settings = Settings(
        kafka_bootstrap=broker, database_url=store_url, topic_partitions=3, poll_timeout_ms=100
    )
    hub = Hub(settings, flows=svc.flows(), serve_api=False)
    await hub.start()
    assert hub.sessions is not None
    svc.start(hub.sessions)
    try:
        yield Running(hub, svc)
    finally:
        await svc.aclose()
        await hub.stop()


def customer(key: str, name: str, *, source: str = "hub", version: int = 1) -> Envelope:
    return Envelope(
        entity=Entity.customer,
        source_system=source,
        source_id=key,
        source_version=version,
        body={"kind": "organization", "name": name},
    )


async def publish(broker: str, system: str, keyed: list[tuple[str, Envelope]]) -> None:
    await produce(broker, topics.outbound(system), [(k.encode(), e.to_bytes()) for k, e in keyed])


def created(stats: dict[str, Any]) -> int:
    return int(stats["created"].get("customer", 0))


async def test_each_message_is_delivered_once(broker: str, store_url: str, tmp_path: Path) -> None:
    msgs = [(f"G-{i}", customer(f"G-{i}", f"深圳市送达{i}有限公司")) for i in range(12)]
    echo = ("G-99", customer("C00099", "深圳市回声有限公司", source="crm"))
    async with simulator("crm", tmp_path) as crm, running(broker, store_url, [crm]) as run:
        # Every message twice (a producer retry, a replay): the ledger keeps one effect.
        await publish(broker, "crm", [*msgs, echo, *msgs])
        await run.delivered("crm", 12)

        async def echo_seen() -> bool:
            return bool((await run.status())["crm"]["suppressed"] == 1)

        await wait_until(echo_seen, 10, "the echo recorded as suppressed")
        st = (await run.status())["crm"]
        assert (st["delivered"], st["dead"], st["pending"], st["retrying"]) == (12, 0, 0, 0)
        assert st["oldest_pending_age_s"] is None and st["failed"] == 0
        stats = await crm.stats()
        assert created(stats) == 12 and stats["received"] == {"customer": 12}
        assert stats["idempotency_collisions"] == {} and stats["duplicate_records"]["customer"] == 0
        assert stats["records"]["customer"] == 12
        rows = await run.rows()
        assert len(rows) == 13, "one row per distinct message"
        assert run.hub.sessions is not None
        async with run.hub.sessions() as s:
            for key, env in msgs:
                row = next(r for r in rows if r.message_id == str(env.message_id))
                assert row.status == "delivered" and row.attempts == 1 and row.local_id
                assert await xref.local_id(s, "customer", key, "crm") == row.local_id
                stored = await crm.customer(row.local_id)
                assert stored["cust_name"] == env.body["name"]
            assert await xref.local_id(s, "customer", "G-99", "crm") is None


async def test_5xx_is_retried_until_delivered_and_never_applied_twice(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    lost = [(f"G-{i}", customer(f"G-{i}", f"杭州市重试{i}有限公司")) for i in range(5)]
    failed = [(f"G-{i}", customer(f"G-{i}", f"杭州市失败{i}有限公司")) for i in range(5, 10)]
    async with simulator("crm", tmp_path) as crm, running(broker, sqlite_url, [crm]) as run:
        # The worst 5xx: the system stores the record, then answers 500 (the answer is lost).
        # The retry repeats the request with the same idempotency key: the system answers 409
        # with the local id, which counts as delivered.
        await crm.fault("error5xx", after_commit=True)
        await publish(broker, "crm", lost)
        await run.delivered("crm", 5)
        # A plain 5xx: nothing stored; retried with backoff until the system recovers.
        await crm.fault("error5xx")
        await publish(broker, "crm", failed)

        async def all_retrying() -> bool:
            return bool((await run.status())["crm"]["retrying"] == 5)

        await wait_until(all_retrying, 15, "the second five failing and waiting")
        await asyncio.sleep(0.5)
        assert (await run.status())["crm"]["delivered"] == 5
        await crm.fault("none")
        await run.delivered("crm", 10)
        stats = await crm.stats()
        assert created(stats) == 10 and stats["records"]["customer"] == 10
        assert stats["duplicate_records"]["customer"] == 0
        assert stats["idempotency_collisions"] == {"customer": 5}
        assert stats["idempotency_mismatches"] == {}
        rows = {r.message_id: r for r in await run.rows()}
        for _, env in lost:
            r = rows[str(env.message_id)]
            assert (r.status, r.attempts, r.last_status_code) == ("delivered", 2, 409)
            assert r.local_id, "the 409 carried the local id"
        for _, env in failed:
            r = rows[str(env.message_id)]
            assert r.status == "delivered" and r.attempts >= 2 and r.last_status_code == 201
        assert len({r.local_id for r in rows.values()}) == 10
        st = (await run.status())["crm"]
        assert st["failed"] >= 10 and st["retrying"] == 0 and st["dead"] == 0


async def test_a_target_down_holds_back_no_other_system(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    to_crm = [(f"G-{i}", customer(f"G-{i}", f"广州市客户{i}有限公司")) for i in range(5)]
    to_erp = [(f"G-{i}", customer(f"G-{i}", f"广州市客户{i}有限公司")) for i in range(5)]
    async with (
        simulator("crm", tmp_path) as crm,
        simulator("erp", tmp_path) as erp,
        running(broker, sqlite_url, [crm, erp]) as run,
    ):
        await crm.fault("down")
        await publish(broker, "crm", to_crm)

        async def crm_retrying() -> bool:
            return bool((await run.status())["crm"]["retrying"] == 5)

        await wait_until(crm_retrying, 15, "every CRM message failing and waiting")
        await publish(broker, "erp", to_erp)
        await run.delivered("erp", 5)
        st = (await run.status())["crm"]
        assert st["delivered"] == 0 and st["pending"] == 5
        assert st["oldest_pending_age_s"] is not None and st["oldest_pending_age_s"] > 0
        assert "HTTP 503" in (st["last_error"] or "")
        await crm.fault("none")
        await run.delivered("crm", 5)
        for sim in (crm, erp):
            stats = await sim.stats()
            assert created(stats) == 5 and stats["duplicate_records"]["customer"] == 0
        assert created(await crm.stats()) == 5 and (await crm.stats())["faults"]["down"] >= 5


async def test_refusals_and_exhausted_retries_are_dead_lettered(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    refused = customer("G-404", "已删除客户有限公司")
    later = customer("G-1", "后来的客户有限公司")
    async with simulator("crm", tmp_path) as crm:
        async with running(broker, sqlite_url, [crm], max_attempts=3) as run:
            assert run.hub.sessions is not None
            async with run.hub.sessions() as s, s.begin():
                # The hub believes CRM has this customer; CRM lost it: PUT -> 404.
                await xref.record(s, "customer", "G-404", "crm", "KH999999")
            await publish(broker, "crm", [("G-404", refused), ("G-1", later)])
            await run.delivered("crm", 1)

            async def one_dead() -> bool:
                return bool((await run.status())["crm"]["dead"] == 1)

            await wait_until(one_dead, 10, "the refused message dead-lettered")
            await crm.fault("down")
            gone = customer("G-2", "总是失败有限公司")
            await publish(broker, "crm", [("G-2", gone)])

            async def two_dead() -> bool:
                return bool((await run.status())["crm"]["dead"] == 2)

            await wait_until(two_dead, 15, "retries exhausted")
            await run.hub.relay.drain()  # type: ignore[union-attr]
            async with run.hub.sessions() as s:
                dls = {d.message_id: d for d in (await s.execute(select(DeadLetter))).scalars()}
            st = (await run.status())["crm"]
            assert (st["delivered"], st["dead"], st["pending"]) == (1, 2, 0)
        first = dls[str(refused.message_id)]
        assert (first.flow, first.stage, first.attempts) == ("deliver.crm", "deliver", 1)
        assert "HTTP 404" in first.reason and "refused permanently at attempt 1" in first.reason
        assert first.value == refused.to_bytes() and first.key == b"G-404"
        last = dls[str(gone.message_id)]
        assert last.attempts == 3 and last.error_class == "DeliveryRetriesExhausted"
        assert "HTTP 503" in last.reason and "gave up after 3 attempts" in last.reason
        assert (await crm.stats())["received"].get("customer", 0) == 2, "404 + the delivered one"
    dlq = await read_topic(broker, topics.DLQ)
    assert len(dlq) == 2
    by_value = {r.value: r for r in dlq}
    assert header(by_value[gone.to_bytes()], "eai.error.attempts") == "3"
    assert header(by_value[gone.to_bytes()], "eai.error.stage") == "deliver"
    assert header(by_value[refused.to_bytes()], "eai.error.topic") == topics.outbound("crm")
    assert header(by_value[refused.to_bytes()], "eai.error.flow") == "deliver.crm"


async def test_a_target_that_stores_twice_is_caught_by_its_counters(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    msgs = [(f"G-{i}", customer(f"G-{i}", f"成都市双写{i}有限公司")) for i in range(3)]
    async with simulator("crm", tmp_path) as crm, running(broker, sqlite_url, [crm]) as run:
        await crm.fault("double")
        await publish(broker, "crm", msgs)
        await run.delivered("crm", 3)
        stats = await crm.stats()
    # The hub sent each message once (3 requests, no repeated key); the target's bug shows
    # up as rows stored twice, which is exactly what a chaos run must report as non-zero.
    assert stats["received"] == {"customer": 3} and stats["idempotency_collisions"] == {}
    assert stats["double_stored"] == {"customer": 3}
    assert stats["duplicate_records"]["customer"] == 3


async def test_per_key_order_holds_while_the_first_version_is_retried(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    v1 = customer("G-A", "西安市甲公司", version=1)
    v2 = customer("G-A", "西安市甲集团有限公司", version=2)
    other = customer("G-B", "西安市乙有限公司")
    async with (
        simulator("crm", tmp_path) as crm,
        running(broker, sqlite_url, [crm], backoff_initial_ms=3000, backoff_max_ms=3000) as run,
    ):
        await crm.fault("error5xx", count=1)  # v1's first attempt fails, nothing stored
        await publish(broker, "crm", [("G-A", v1)])

        async def v1_failed() -> bool:
            rows = await run.rows()
            return bool(rows) and rows[0].first_failure_at is not None

        await wait_until(v1_failed, 10, "v1's first attempt failed")
        await publish(broker, "crm", [("G-A", v2), ("G-B", other)])
        await run.delivered("crm", 3, timeout=20)
        rows = {r.message_id: r for r in await run.rows()}
        r1, r2, rb = (rows[str(e.message_id)] for e in (v1, v2, other))
        assert (r1.seq, r2.seq, r1.attempts, r2.attempts) == (1, 2, 2, 1)
        assert r1.finished_at and r2.finished_at and rb.finished_at
        assert rb.finished_at < r1.finished_at, "G-B did not wait for G-A's retry"
        assert r1.finished_at < r2.finished_at, "v2 went out only after v1"
        assert r2.target_local_id == r1.local_id, "v2 updated the record v1 created"
        stored = await crm.customer(r1.local_id or "")
        assert stored["cust_name"] == "西安市甲集团有限公司"
        stats = await crm.stats()
        assert created(stats) == 2 and stats["updated"] == {"customer": 1}
        assert stats["duplicate_records"]["customer"] == 0
        assert run.hub.sessions is not None
        async with run.hub.sessions() as s:
            assert await s.scalar(select(func.count()).select_from(Delivery)) == 3


async def test_two_workers_share_one_queue_without_sending_anything_twice(
    store_url: str, tmp_path: Path
) -> None:
    """Two deliverers (two worker processes' worth) on one store: disjoint claims, per-key
    order across them, every message sent exactly once."""
    from connectors.common.sink import Sink
    from connectors.registry import CONNECTORS
    from hub.core.inbound import InboundRecord
    from hub.core.processor import Item
    from hub.delivery import queue
    from hub.delivery.deliverer import Deliverer
    from hub.store import db

    engine = db.create_engine(store_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    items: list[Item] = []
    for version in (1, 2, 3):
        for i in range(10):
            env = customer(f"G-{i}", f"武汉市并发{i}第{version}版有限公司", version=version)
            rec = InboundRecord("outbound.crm", 0, len(items), env.to_bytes(), f"G-{i}".encode())
            items.append(Item(rec, env, None))
    async with sessions() as s, s.begin():
        await queue.enqueue(s, "crm", items)
    # claim-ahead as deep as the calls (the default, 128, lets the first worker's round
    # claim all ten keys of so small a queue, and the second would have nothing to do)
    cfg = DeliveryConfig(
        concurrency=4, claim_ahead=4, timeout_s=3.0, lease_s=10.0, poll_interval_ms=20
    )
    async with simulator("crm", tmp_path) as crm:
        workers = [
            Deliverer("crm", Sink(CONNECTORS["crm"], crm.url), sessions, cfg) for _ in range(2)
        ]
        tasks = [asyncio.create_task(w.run()) for w in workers]
        try:

            async def all_delivered() -> bool:
                async with sessions() as s:
                    c = (await queue.counts(s, ["crm"]))["crm"]
                return c.delivered == 30

            await wait_until(all_delivered, 30, "30 messages delivered by two workers")
        finally:
            for w in workers:
                w.stop()
            await asyncio.gather(*tasks)
            for w in workers:
                await w.sink.aclose()
        stats = await crm.stats()
        assert stats["received"] == {"customer": 30}, "no message was sent twice"
        assert created(stats) == 10 and stats["updated"] == {"customer": 20}
        assert stats["idempotency_collisions"] == {} and stats["duplicate_records"]["customer"] == 0
        assert all(w.counters.delivered > 0 for w in workers), "both workers took part"
        async with sessions() as s:
            rows = list((await s.execute(select(Delivery))).scalars())
        for i in range(10):
            mine = sorted((r for r in rows if r.key == f"G-{i}"), key=lambda r: r.seq)
            assert [r.finished_at for r in mine] == sorted(r.finished_at for r in mine)  # type: ignore[type-var]
            assert len({r.local_id for r in mine}) == 1
            stored = await crm.customer(mine[0].local_id or "")
            assert stored["cust_name"] == f"武汉市并发{i}第3版有限公司"
    await engine.dispose()


async def test_a_timed_out_call_that_landed_is_not_applied_twice(
    sqlite_url: str, tmp_path: Path
) -> None:
    """'slow': the system takes longer than the hub waits, then stores the record anyway. The
    repeat carries the same idempotency key and is answered 409 with the local id."""
    from connectors.common.sink import Sink
    from connectors.registry import CONNECTORS
    from hub.core.inbound import InboundRecord
    from hub.core.processor import Item
    from hub.delivery import queue
    from hub.delivery.deliverer import Deliverer
    from hub.store import db

    engine = db.create_engine(sqlite_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    env = customer("G-1", "慢系统有限公司")
    rec = InboundRecord("outbound.crm", 0, 0, env.to_bytes(), b"G-1")
    async with sessions() as s, s.begin():
        await queue.enqueue(s, "crm", [Item(rec, env, None)])
    cfg = DeliveryConfig(
        timeout_s=0.3, lease_s=5, backoff_initial_ms=1000, backoff_max_ms=1000, poll_interval_ms=20
    )
    async with simulator("crm", tmp_path) as crm:
        await crm.fault("slow", delay_s=0.6, count=1)
        d = Deliverer("crm", Sink(CONNECTORS["crm"], crm.url, timeout=cfg.timeout_s), sessions, cfg)
        task = asyncio.create_task(d.run())
        try:

            async def delivered() -> bool:
                return d.counters.delivered == 1

            await wait_until(delivered, 10, "delivered after the timeout")
            await asyncio.sleep(0.5)  # the slow request has certainly finished by now
        finally:
            d.stop()
            await task
            await d.sink.aclose()
        stats = await crm.stats()
    assert d.counters.failed_transient == 1 and "timeout" in (d.counters.last_error or "")
    # Whichever of the two requests reached the store second (normally the retry, answered
    # 409 with the local id) was recognised by its key: one record, one collision.
    assert created(stats) == 1 and stats["idempotency_collisions"] == {"customer": 1}
    assert stats["duplicate_records"]["customer"] == 0 and stats["received"] == {"customer": 2}
    async with sessions() as s:
        row = (await s.execute(select(Delivery))).scalar_one()
        assert (row.status, row.attempts) == ("delivered", 2)
        assert row.local_id and await xref.local_id(s, "customer", "G-1", "crm") == row.local_id
    await engine.dispose()


async def test_with_a_retry_timeout_a_down_target_is_retried_for_that_long_then_dead_lettered(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    gone = customer("G-3", "一直宕机有限公司")
    # one attempt would be the budget without the timeout; the timeout replaces it
    async with (
        simulator("crm", tmp_path) as crm,
        running(broker, sqlite_url, [crm], max_attempts=1, retry_timeout_s=2.0) as run,
    ):
        assert run.hub.sessions is not None
        await crm.fault("down")
        started = time.monotonic()
        await publish(broker, "crm", [("G-3", gone)])

        async def dead() -> bool:
            return bool((await run.status())["crm"]["dead"] == 1)

        await wait_until(dead, 20, "given up after the retry timeout")
        waited = time.monotonic() - started
        async with run.hub.sessions() as s:
            [dl] = (await s.execute(select(DeadLetter))).scalars().all()
    assert waited >= 2.0, "not before the retry timeout"
    assert dl.attempts > 1, "retried past max_attempts while within the timeout"
    assert dl.error_class == "DeliveryRetriesExhausted"
    assert "HTTP 503" in dl.reason and "retry timeout 2s" in dl.reason
