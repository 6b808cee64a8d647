"""Inbound paths through the running hub: webhook, raw native topic, table polling."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from connectors.common.simulator_base import SimStore
from connectors.crm.simulator import generate as crm_traffic
from connectors.erp.simulator import SPEC as ERP
from connectors.erp.simulator import generate as erp_traffic
from contracts import topics
from hub.broker.embedded import free_port
from hub.ingest.poller import Poller
from hub.metrics import CONSUMER_LAG
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.models import DeadLetter, RecordEvent, SourceRecord
from tests.conftest import AUTH, TEST_TOKEN
from tests.helpers import header, produce, read_topic, wait_until

pytestmark = pytest.mark.integration


def crm_customers(n: int) -> list[dict[str, Any]]:
    out = [r for e, r in itertools.islice(crm_traffic(11, 0.0), 400) if e == "customer"]
    assert len(out) >= n
    return out[:n]


@asynccontextmanager
async def api_hub(broker: str, store_url: str, **kw: Any) -> AsyncIterator[tuple[Hub, str]]:
    port = free_port()
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        port=port,
        topic_partitions=2,
        admin_token=TEST_TOKEN,
        **kw,
    )
    hub = Hub(settings)
    await hub.start()
    try:
        yield hub, f"http://127.0.0.1:{port}"
    finally:
        await hub.stop()


async def n_records(hub: Hub, system: str | None = None) -> int:
    assert hub.sessions is not None
    q = select(func.count()).select_from(SourceRecord)
    if system:
        q = q.where(SourceRecord.source_system == system)
    async with hub.sessions() as s:
        return int(await s.scalar(q) or 0)


async def test_webhook_batch_accepts_good_rejects_bad_and_retries_have_no_effect(
    broker: str, store_url: str
) -> None:
    good = crm_customers(3)
    bad = dict(good[0], create_time="2026/13/45 99:99")
    # Prometheus counters live for the process; other tests in it count too.
    applied_before = _counter("records", "applied")
    dups_before = _counter("records", "duplicate")
    async with (
        api_hub(broker, store_url) as (hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        r = await c.post(
            "/connectors/crm/customer", json=[*good, bad], headers={"Idempotency-Key": "batch-1"}
        )
        assert r.status_code == 202, r.text
        body = r.json()
        assert body["accepted"] == 3
        [rej] = body["rejected"]
        assert rej["position"] == 3 and rej["field"] == "create_time"
        assert "2026/13/45" in str(rej["value"])
        again = await c.post(
            "/connectors/crm/customer", json=[*good, bad], headers={"Idempotency-Key": "batch-1"}
        )
        # the retry gets the first answer and publishes nothing (decision 56)
        assert (again.status_code, again.json()) == (202, body)
        assert again.headers["Idempotent-Replayed"] == "true"

        async def three() -> bool:
            return await n_records(hub, "crm") == 3

        await wait_until(three, what="3 CRM customers stored")
        assert hub.sessions is not None
        async with hub.sessions() as s:
            events = await s.scalar(select(func.count()).select_from(RecordEvent))
            dead = (await s.execute(select(DeadLetter))).scalars().all()
        assert events == 3, "the retried request had no second effect"
        assert len(dead) == 1 and "create_time" in dead[0].reason
        assert dead[0].topic == "webhook:crm.customer"

        only_bad = await c.post("/connectors/crm/customer", json=bad)
        assert only_bad.status_code == 422
        audit = (await c.get("/audit", params={"action": "connectors.receive"})).json()["items"]
        # newest first: the all-bad call, the retry, the first call; never the records
        assert [(a["status"], a["detail"].split(" 20")[0]) for a in audit] == [
            (422, "accepted 0, rejected 1"),
            (202, "replayed the answer of"),  # the retry, with the first call's time
            (202, "accepted 3, rejected 1"),
        ]
        first = audit[-1]
        assert first["params"]["system"] == "crm" and first["params"]["entity"] == "customer"
        assert first["params"]["idempotency_key"] == "batch-1"
        assert good[0]["cust_name"] not in json.dumps(audit, ensure_ascii=False)
        unknown = await c.post("/connectors/sap/customer", json=good[0])
        assert unknown.status_code == 404
        status = {x["system"]: x for x in (await c.get("/connectors")).json()}
        crm = status["crm"]["status"]
        assert json.dumps(crm)  # serialisable
        assert "customer" in json.dumps(crm)

        CONSUMER_LAG.clear()  # earlier tests of this process set it
        prom = (await c.get("/metrics")).text
        assert prom_value(prom, "records", "applied") - applied_before == 3
        lag_line = 'eai_consumer_lag{flow="records",partition="0",topic="canonical.customer"} 0.0'
        assert lag_line in prom, "a scrape alone sets the consumer lag"
        assert prom_value(prom, "records", "duplicate") - dups_before == 0
        parts = [t for t in (await c.get("/topics")).json() if t["topic"] == "canonical.customer"]
        assert sum(t["end_offset"] for t in parts) == 3, "3 accepted, the retry published none"
        records = [t for t in parts if t["flow"] == "records"]
        assert records and all(t["lag"] == 0 for t in records), records


def _counter(flow: str, outcome: str) -> float:
    from hub.metrics import REGISTRY

    labels = {"flow": flow, "outcome": outcome}
    return REGISTRY.get_sample_value("eai_flow_messages_total", labels) or 0.0


def prom_value(text: str, flow: str, outcome: str) -> float:
    prefix = f'eai_flow_messages_total{{flow="{flow}",outcome="{outcome}"}} '
    line = next(ln for ln in text.splitlines() if ln.startswith(prefix))
    return float(line[len(prefix) :])


async def test_webhook_body_over_limit_is_refused(broker: str, sqlite_url: str) -> None:
    async with (
        api_hub(broker, sqlite_url, max_webhook_bytes=2048) as (_hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        r = await c.post("/connectors/crm/customer", content=b"[" + b" " * 4096 + b"]")

        async def chunked() -> AsyncIterator[bytes]:  # no Content-Length: stopped mid-stream
            yield b"["
            for _ in range(64):
                yield b" " * 1024
            yield b"]"

        streamed = await c.post("/connectors/crm/customer", content=chunked())
    assert r.status_code == 413
    assert "EAI_MAX_WEBHOOK_BYTES" in r.text
    assert streamed.status_code == 413, streamed.text
    assert "EAI_MAX_WEBHOOK_BYTES" in streamed.text


async def test_webhook_answers_503_with_retry_after_when_the_store_is_busy(
    broker: str, sqlite_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sqlite3

    from sqlalchemy.exc import OperationalError

    from hub.ingest import webhook

    async def locked(*_a: object, **_k: object) -> None:
        raise OperationalError(
            "BEGIN IMMEDIATE", {}, sqlite3.OperationalError("database is locked")
        )

    async with (
        api_hub(broker, sqlite_url) as (_hub, url),
        httpx.AsyncClient(base_url=url, headers=AUTH) as c,
    ):
        monkeypatch.setattr(webhook, "write", locked)
        key = {"Idempotency-Key": "k-503"}
        r = await c.post("/connectors/crm/customer", json=crm_customers(1), headers=key)
        assert r.status_code == 503, r.text
        assert r.headers["Retry-After"] == str(webhook.RETRY_AFTER_S)
        assert "nothing was accepted" in r.json()["detail"]
        monkeypatch.undo()
        # nothing was stored under the key either: the retry is processed, not replayed
        retry = await c.post("/connectors/crm/customer", json=crm_customers(1), headers=key)
        assert retry.status_code == 202
        assert "Idempotent-Replayed" not in retry.headers


async def test_raw_native_topic_is_mapped_and_bad_records_dead_lettered(
    broker: str, sqlite_url: str
) -> None:
    good = crm_customers(2)
    async with api_hub(broker, sqlite_url) as (hub, _url):
        topic = topics.native("crm", "customer")
        await produce(
            broker, topic, [(None, json.dumps(r, ensure_ascii=False).encode()) for r in good]
        )
        await produce(broker, topic, [(None, json.dumps({"cust_name": "无编号"}).encode())])

        async def two() -> bool:
            return await n_records(hub, "crm") == 2

        await wait_until(two, what="2 customers from the raw topic")
        await hub.relay.drain()  # type: ignore[union-attr]
    dlq = await read_topic(broker, topics.DLQ)
    assert len(dlq) == 1
    assert header(dlq[0], "eai.error.topic") == topic
    assert header(dlq[0], "eai.error.stage") == "validate"
    reason = header(dlq[0], "eai.error.reason") or ""
    assert "field 'cust_type'" in reason and "required" in reason


async def test_polling_resumes_after_restart_without_repeats(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    db = tmp_path / "erp.sqlite"
    erp = SimStore(db, ERP)
    traffic = erp_traffic(5, 0.0)
    # Rows written in each batch: a row updated after the first poll is a new change, polled
    # again by the restarted poller; within a batch its changes are polled once.
    touched: tuple[set[tuple[str, str]], set[tuple[str, str]]] = (set(), set())
    for entity, record in itertools.islice(traffic, 60):
        res = erp.write(ERP.entity(entity), record, origin="user", upsert=True)
        touched[0].add((entity, res.local_id))
    url = f"sqlite+aiosqlite:///{db}"
    async with api_hub(broker, sqlite_url) as (hub, _):
        assert hub.sessions is not None
        first = Poller(hub.sessions, "erp", url, limit=7)
        while await first.poll_once():
            pass
        await first.engine.dispose()
        before = await _polled(hub)
        assert before > 0
        for entity, record in itertools.islice(traffic, 40):
            res = erp.write(ERP.entity(entity), record, origin="user", upsert=True)
            touched[1].add((entity, res.local_id))
        second = Poller(hub.sessions, "erp", url, limit=7)  # a restarted hub
        while await second.poll_once():
            pass
        await second.engine.dispose()
        after = await _polled(hub)
    assert after > before
    assert after <= len(touched[0]) + len(touched[1]), "no change polled twice"


async def _polled(hub: Hub) -> int:
    from hub.store.models import OutboxRow

    assert hub.sessions is not None
    async with hub.sessions() as s:
        rows = (
            (await s.execute(select(OutboxRow.value).where(OutboxRow.topic.like("canonical.%"))))
            .scalars()
            .all()
        )
        dead = await s.scalar(select(func.count()).select_from(DeadLetter))
    ids = [json.loads(v)["message_id"] for v in rows]
    assert len(ids) == len(set(ids))
    return len(ids) + int(dead or 0)
