"""Two writers link a golden record's copy in a system: the sync flow (a member the system's
clerk typed) and the deliverer (the id the system gave a record the hub created there). Each
decides from what it read earlier, so either may find the key linked by the other when it
writes. Whichever linked first keeps the key; the other copy is linked under a duplicate key
and quarantined there, never left linked to nothing (the 10,000-message run with a SIGKILLed
worker on PostgreSQL found 5 such orphans in ERP and the DRP)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from connectors.common.sink import DeliveryResult, Outcome
from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from flows.sync import master_flow
from flows.sync.config import load_config
from flows.sync.master import second_copy_policy
from hub.core.inbound import InboundRecord
from hub.core.processor import FlowContext, Item
from hub.delivery import queue, xref
from hub.delivery.policy import Decision, Verdict
from hub.store.models import OutboxRow

Sessions = async_sessionmaker[AsyncSession]
CUSTOMER = "customer"
NOW = datetime.now(UTC) + timedelta(days=1)


def outbound(key: str) -> Item:
    env = Envelope(
        entity=Entity.customer,
        op=Op.upsert,
        source_system="hub",
        source_id=key,
        trace=("erp", "hub"),
        body={"kind": "organization", "name": "苏州恒达机电有限公司"},
    )
    rec = InboundRecord("outbound.crm", 0, 1, env.to_bytes(), key.encode(), tuple(env.headers()))
    return Item(rec, env, None)


def golden_event(gid: str, member: str) -> Envelope:
    return Envelope(
        entity=Entity.customer,
        op=Op.upsert,
        source_system="hub",
        source_id=gid,
        source_version=2,
        trace=("erp", "hub"),
        body={
            "golden_id": gid,
            "kind": "organization",
            "name": "苏州恒达机电有限公司",
            "members": [
                {"source_system": "erp", "source_id": "0000100001"},
                {"source_system": "crm", "source_id": member},
            ],
        },
    )


def quarantines(rows: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    out = []
    for row in rows:
        if row["topic"] == topics.outbound("crm") and row["key"] == key.encode():
            out.append(json.loads(row["value"])["body"])
    return out


async def test_a_create_landing_after_the_clerks_copy_was_linked_is_quarantined(
    sessions: Sessions,
) -> None:
    gid = f"G-{uuid.uuid4().hex[:8]}"
    async with sessions() as s, s.begin():
        await queue.enqueue(s, "crm", [outbound(gid)])
    async with sessions() as s, s.begin():
        [job] = await queue.claim(s, "crm", "w1", 10, lease_s=30, now=NOW)
    assert job.target_local_id is None  # nothing linked yet: the hub creates a copy
    # meanwhile the sync flow links the CRM's own copy, typed by a clerk
    async with sessions() as s, s.begin():
        assert await xref.link_if_absent(s, CUSTOMER, gid, "crm", "KH-CLERK") == "KH-CLERK"
    result = DeliveryResult(Outcome.delivered, "crm", CUSTOMER, 201, "KH-HUB")
    policy = second_copy_policy(load_config().master)
    async with sessions() as s, s.begin():
        assert await queue.finish(
            s, job, "w1", result, Decision(Verdict.delivered), now=NOW, second_copy=policy
        )
        dup = xref.duplicate_key(gid, "crm", "KH-HUB")
        assert await xref.local_id(s, CUSTOMER, gid, "crm") == "KH-CLERK"
        assert await xref.key_for(s, CUSTOMER, "crm", "KH-HUB") == dup
    async with sessions() as s:
        rows = [
            {"topic": r.topic, "key": r.key, "value": r.value}
            for r in await s.scalars(select(OutboxRow))
        ]
    [body] = quarantines(rows, dup)
    assert body["frozen"] is True
    assert "KH-CLERK" in body["attributes"]["quarantine"]


async def test_the_sync_flow_keeps_a_copy_the_deliverer_linked_while_its_batch_ran(
    sessions: Sessions,
) -> None:
    gid = f"G-{uuid.uuid4().hex[:8]}"
    env = golden_event(gid, "KH-CLERK")
    config = load_config()
    flow = master_flow.MasterSyncFlow(config)
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow=master_flow.NAME)
        batch = await master_flow._Batch.load(s, [(CUSTOMER, gid, env)])
        # the deliverer's create of the hub's CRM copy committed after the batch was read
        # (on PostgreSQL another transaction; SQLite has one writer, so the same one here)
        row = {"entity": CUSTOMER, "key": gid, "system": "crm", "local_id": "KH-HUB"}
        await xref.upsert_many(s, [{**row, "updated_at": NOW}])
        flow._one(ctx, batch, env, CUSTOMER, gid, config.master["customer"], NOW)
        # the batch's cross-references are written at its end (decision 19b)
        await flow._write(ctx, batch, [(CUSTOMER, gid, env)])
        dup = xref.duplicate_key(gid, "crm", "KH-CLERK")
        assert await xref.local_id(s, CUSTOMER, gid, "crm") == "KH-HUB"
        assert await xref.key_for(s, CUSTOMER, "crm", "KH-CLERK") == dup
    [body] = quarantines(ctx.outbox, dup)
    assert body["frozen"] is True
    assert "KH-HUB" in body["attributes"]["quarantine"]
