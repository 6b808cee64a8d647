"""A subscriber that keeps only some records (``only`` in the sync configuration) gets only
those: the DRP keeps dealers, so a golden customer that is not a distributor is not sent there
(it used to be, and every such delivery ended as a permanent refusal in the dead letters)."""

from __future__ import annotations

from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from flows.sync import master_flow
from flows.sync.config import SyncConfigError, load_config, parse_config
from hub.core.inbound import InboundRecord
from hub.core.processor import FlowContext, Item


def golden(gid: str, kind: str, name: str, version: int = 1) -> Item:
    body: dict[str, Any] = {
        "golden_id": gid,
        "kind": "organization",
        "name": name,
        "type": kind,
        "members": [{"source_system": "crm", "source_id": f"KH{gid}"}],
    }
    env = Envelope(
        entity=Entity.customer,
        op=Op.upsert,
        source_system="hub",
        source_id=gid,
        source_version=version,
        trace=["crm", "hub"],
        body=body,
    )
    rec = InboundRecord(topics.golden(Entity.customer), 0, version, env.to_bytes(), gid.encode())
    return Item(rec, env, None)


async def sent_to(sessions: async_sessionmaker[AsyncSession], item: Item) -> list[str]:
    flow = master_flow.MasterSyncFlow(load_config())
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow=master_flow.NAME)
        await flow.handle(ctx, [item])
    return sorted(str(row["topic"]).removeprefix("outbound.") for row in ctx.outbox)


async def test_drp_gets_distributors_only(sessions: Any) -> None:
    # the CRM typed both: ERP gets both, the DRP only the dealer
    assert await sent_to(sessions, golden("1", "customer", "苏州恒达机电")) == ["erp"]
    assert await sent_to(sessions, golden("2", "distributor", "华东电器经销")) == ["drp", "erp"]
    # one that stops being a dealer stays in the DRP as last sent (the DRP would refuse it)
    changed = golden("2", "customer", "华东电器经销", version=2)
    assert await sent_to(sessions, changed) == ["erp"]


def test_only_must_name_subscribers() -> None:
    with pytest.raises(SyncConfigError, match="not subscribers"):
        parse_config({"master": {"customer": {"subscribers": ["crm"], "only": {"drp": {}}}}})
    conf = load_config().master["customer"]
    assert conf.wants("drp", {"type": "distributor"})
    assert not conf.wants("drp", {"type": "customer"})
    assert conf.wants("erp", {"type": "customer"})
