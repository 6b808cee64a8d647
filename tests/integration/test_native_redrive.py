"""Re-driving native records a connector rejected at the webhook: mapped again, optionally
patched, written to canonical.<entity> once; without a fix they stay dead with the reason."""

from __future__ import annotations

import base64
import itertools
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from connectors.crm.simulator import generate as crm_traffic
from contracts import topics
from contracts.envelope import Entity
from hub.broker.embedded import free_port
from hub.runtime import Hub
from hub.settings import Settings
from hub.store.models import OutboxRow, RecordEvent, SourceRecord
from tests.conftest import AUTH, TEST_TOKEN
from tests.helpers import header, read_topic, wait_until

pytestmark = pytest.mark.integration

CUSTOMERS = topics.canonical(Entity.customer)


def crm_customer(n: int) -> dict[str, Any]:
    out = [r for e, r in itertools.islice(crm_traffic(11, 0.0), 400) if e == "customer"]
    return out[n]


@asynccontextmanager
async def api_hub(broker: str, store_url: str) -> AsyncIterator[tuple[Hub, httpx.AsyncClient]]:
    port = free_port()
    settings = Settings(
        kafka_bootstrap=broker,
        database_url=store_url,
        port=port,
        topic_partitions=2,
        admin_token=TEST_TOKEN,
    )
    hub = Hub(settings)
    await hub.start()
    try:
        async with httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{port}", headers=AUTH, timeout=30
        ) as c:
            yield hub, c
    finally:
        await hub.stop()


async def count(hub: Hub, q: Any) -> int:
    assert hub.sessions is not None
    async with hub.sessions() as s:
        return int(await s.scalar(q) or 0)


async def dead_letter_of(c: httpx.AsyncClient, source_id: str) -> dict[str, Any]:
    page = (await c.get("/dead-letters", params={"flow": "ingest", "limit": 500})).json()
    for item in page["items"]:
        detail = (await c.get(f"/dead-letters/{item['id']}")).json()
        if source_id.encode() in base64.b64decode(detail["value_base64"]):
            return detail
    raise AssertionError(f"no ingest dead letter holds {source_id}")


async def test_webhook_rejection_redriven_with_a_fix_arrives_once(
    broker: str, store_url: str
) -> None:
    good = crm_customer(0)
    bad = dict(good, create_time="2026/13/45 99:99")  # no 13th month
    still_bad = dict(crm_customer(1), create_time="yesterday")
    async with api_hub(broker, store_url) as (hub, c):
        # One record alone, in GBK: the dead letter keeps the bytes and the charset.
        r = await c.post(
            "/connectors/crm/customer",
            content=httpx.Request("POST", "/", json=bad).content.decode().encode("gbk"),
            headers={"Content-Type": "application/json; charset=gbk"},
        )
        assert r.status_code == 422, r.text
        r = await c.post("/connectors/crm/customer", json=[still_bad])
        assert r.status_code == 422, r.text
        dl = await dead_letter_of(c, good["cust_no"])
        other = await dead_letter_of(c, still_bad["cust_no"])
        assert dl["topic"] == "webhook:crm.customer" and dl["status"] == "new"
        assert bad["cust_name"].encode("gbk") in base64.b64decode(dl["value_base64"])
        heads = {h["key"]: h["value"] for h in dl["headers"]}
        assert (heads["eai.native.system"], heads["eai.native.entity"]) == ("crm", "customer")
        assert heads["eai.native.charset"] == "gbk"

        # Without a fix: still rejected, with the field and the rule; nothing written.
        outbox = select(func.count()).select_from(OutboxRow).where(OutboxRow.topic == CUSTOMERS)
        before = await count(hub, outbox)
        r = await c.post("/dead-letters/redrive", json={"ids": [dl["id"], other["id"]]})
        assert r.status_code == 200, r.text
        items = {i["id"]: i for i in r.json()["items"]}
        for i in items.values():
            assert i["outcome"] == "invalid" and "create_time" in i["reason"], i
        assert "2026/13/45" in items[dl["id"]]["reason"]
        r = await c.post(
            "/dead-letters/redrive", json={"ids": [dl["id"]], "force": True}
        )  # force cannot send what has no canonical form
        assert r.json()["items"][0]["outcome"] == "invalid"
        assert await count(hub, outbox) == before
        assert (await c.get(f"/dead-letters/{dl['id']}")).json()["status"] == "new"

        # A dry run with the fix says what would be sent, and sends nothing.
        fix = {"create_time": good["create_time"]}
        r = await c.post(
            "/dead-letters/redrive", json={"ids": [dl["id"]], "patch": fix, "dry_run": True}
        )
        [dry] = r.json()["items"]
        assert dry["outcome"] == "would_send" and dry["topic"] == CUSTOMERS, dry
        assert dry["key"] == f"crm:{good['cust_no']}" and dry["patched"] is True
        assert await count(hub, outbox) == before

        # For real, twice: one effect.
        r = await c.post("/dead-letters/redrive", json={"ids": [dl["id"]], "patch": fix})
        [sent] = r.json()["items"]
        assert sent["outcome"] == "sent", sent
        again = await c.post("/dead-letters/redrive", json={"ids": [dl["id"]], "patch": fix})
        [second] = again.json()["items"]
        assert second["outcome"] == "skipped" and "already re-driven" in second["reason"]
        assert await count(hub, outbox) == before + 1

        stored = select(func.count()).where(SourceRecord.source_id == good["cust_no"])
        await wait_until(lambda: _is(count(hub, stored), 1), what="the customer stored")
        detail = (await c.get(f"/dead-letters/{dl['id']}")).json()
        assert detail["status"] == "redriven" and len(detail["redrives"]) == 1
        assert (await c.get(f"/dead-letters/{other['id']}")).json()["status"] == "new"
        assert hub.sessions is not None
        async with hub.sessions() as s:
            rec = await s.scalar(
                select(SourceRecord).where(SourceRecord.source_id == good["cust_no"])
            )
            events = await s.scalar(
                select(func.count()).where(RecordEvent.source_id == good["cust_no"])
            )
        assert rec is not None and rec.payload["name"] == good["cust_name"], "GBK decoded"
        assert events == 1

    on_topic = [
        x
        for x in await read_topic(broker, CUSTOMERS)
        if header(x, "eai.redrive.dead_letter_id") == str(dl["id"])
    ]
    assert len(on_topic) == 1
    assert on_topic[0].key == f"crm:{good['cust_no']}".encode()


async def _is(value: Any, expected: int) -> bool:
    return await value == expected
