"""A duplicate a clerk edits (and so unfreezes) is frozen again by the identity flow's batch,
for sync.master, which no longer consumes ``changes.<entity>`` (decision 65).

The chain runs in-process on both stores, the flows as the hub assembles and links them:
identity -> golden event -> sync.master -> the delivery queue, fed by hand, sync.master only
ever given golden events."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select

from contracts import topics
from contracts.envelope import Entity, Envelope
from flows.identity import flow as identity
from flows.sync import master_flow
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor, FlowSpec
from hub.delivery.flow import DirectDelivery
from hub.runtime import default_flows, link_flows
from hub.settings import Settings
from hub.store.delivery_models import PENDING, Delivery, Xref
from hub.store.models import OutboxRow
from tests.helpers import customer_env

USCC = "91330200MA2H000017"
NOW = datetime(2026, 12, 7, 8, 0, tzinfo=UTC)


def change(system: str, sid: str, version: int, **extra: Any) -> Envelope:
    body = {
        "kind": "organization",
        "name": "宁波市甬江精密机械有限公司",
        "identifiers": [{"scheme": "uscc", "value": USCC}],
        **extra,
    }
    env = customer_env(0, version=version, system=system)
    return env.model_copy(update={"source_id": sid, "body": body, "trace": (system,)})


def by_name(flows: list[FlowSpec], name: str) -> FlowSpec:
    return next(f for f in flows if f.name == name)


class Chain:
    """identity and sync.master over one store; golden events carried by hand."""

    def __init__(self, sessions: Any, flows: list[FlowSpec], delivered: list[str]) -> None:
        self.sessions = sessions
        self.woken: list[str] = []
        route = DirectDelivery(delivered, self.woken.append) if delivered else None
        self.identity = BatchProcessor(
            by_name(flows, identity.NAME), sessions, max_message_bytes=1_000_000, route=route
        )
        self.master = BatchProcessor(
            by_name(flows, master_flow.NAME), sessions, max_message_bytes=1_000_000, route=route
        )
        self.offset = 0
        self.golden_seen = 0
        self.master_topics: list[str] = []

    def rec(self, topic: str, env: Envelope) -> InboundRecord:
        self.offset += 1
        return InboundRecord(topic, 0, self.offset, env.to_bytes(), env.key.encode())

    async def change(self, env: Envelope, offset: int | None = None) -> None:
        r = self.rec(topics.changes(Entity.customer), env)
        if offset is not None:  # a redelivery: the same record again
            r = InboundRecord(r.topic, 0, offset, r.value, r.key)
        await self.identity.process([r])
        await self.golden()

    async def golden(self) -> None:
        """sync.master gets the golden events the identity flow emitted, and nothing else."""
        async with self.sessions() as s:
            rows = list(
                await s.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.topic == topics.golden(Entity.customer))
                    .order_by(OutboxRow.id)
                )
            )
        fresh = rows[self.golden_seen :]
        self.golden_seen = len(rows)
        if fresh:
            recs = [self.rec(r.topic, Envelope.from_bytes(r.value)) for r in fresh]
            self.master_topics += [r.topic for r in recs]
            await self.master.process(recs)

    async def to_erp(self, key_part: str) -> list[Envelope]:
        """What the hub addressed to ERP under keys holding ``key_part``: the delivery queue
        (ERP delivered) or ``outbound.erp`` (not delivered), in order."""
        async with self.sessions() as s:
            queued = list(
                await s.scalars(
                    select(Delivery).where(Delivery.system == "erp").order_by(Delivery.id)
                )
            )
            published = list(
                await s.scalars(
                    select(OutboxRow)
                    .where(OutboxRow.topic == topics.outbound("erp"))
                    .order_by(OutboxRow.id)
                )
            )
        out = [
            Envelope.from_bytes(d.envelope.encode())
            for d in queued
            if key_part in d.key and d.status == PENDING
        ]
        out += [
            Envelope.from_bytes(o.value) for o in published if key_part in (o.key or b"").decode()
        ]
        return out


def test_sync_master_consumes_golden_events_only() -> None:
    flows = default_flows(Settings())
    assert by_name(flows, master_flow.NAME).topics == [
        topics.golden(Entity.customer),
        topics.golden(Entity.material),
    ]
    assert topics.changes(Entity.customer) in by_name(flows, identity.NAME).topics


def test_the_identity_flow_re_freezes_only_beside_sync_master() -> None:
    flows = default_flows(Settings())
    ident = identity.flow_of(by_name(flows, identity.NAME))
    assert ident is not None and ident.on_held is None
    link_flows(flows)
    master = master_flow.flow_of(by_name(flows, master_flow.NAME))
    assert master is not None and ident.on_held == master.refreeze
    # without sync.master in the hub (EAI_SYNC_ENABLED=false), nothing is re-frozen, as before
    link_flows([f for f in flows if f.name != master_flow.NAME])
    assert ident.on_held is None


@pytest.mark.parametrize("delivered", [["erp"], []], ids=["queued", "published"])
async def test_an_edited_duplicate_is_frozen_again_though_sync_master_reads_no_change(
    store_sessions: Any, delivered: list[str]
) -> None:
    store = store_sessions
    flows = default_flows(Settings())
    link_flows(flows)
    chain = Chain(store, flows, delivered)

    # A CRM card becomes a golden record; the hub's create in ERP got ERP's id E1.
    await chain.change(change("crm", "KH000010", 1))
    async with store() as s, s.begin():
        gid = await s.scalar(select(Xref.key).where(Xref.system == "crm"))
        assert gid is not None
        s.add(Xref(entity="customer", key=gid, system="erp", local_id="E1", updated_at=NOW))

    # An ERP clerk types it again (E2): it merges, and sync.master freezes that copy.
    await chain.change(change("erp", "E2", 1, name="宁波甬江精密机械有限公司"))
    dup = master_flow.duplicate_key(gid, "erp", "E2")
    [first] = await chain.to_erp("~dup~")
    assert first.body["frozen"] is True
    assert first.body["attributes"]["quarantine"] == f"duplicate of E1 (golden record {gid})"

    # The clerk edits the frozen copy, unfreezing it: the identity flow's batch freezes it
    # again, under the duplicate's own key, after the first quarantine of that key.
    edited = change("erp", "E2", 2, name="宁波甬江精密机械有限公司", frozen=False)
    await chain.change(edited)
    sent = await chain.to_erp("~dup~")
    assert len(sent) == 2
    again = sent[1]
    assert again.body["frozen"] is True
    assert again.body["attributes"]["quarantine"] == (
        f"duplicate of golden record {gid}: edited in erp, frozen again"
    )
    assert again.source_system == "hub" and again.trace == (), "not an echo: it may go to ERP"
    async with store() as s:
        seqs = list(
            await s.scalars(select(Delivery.seq).where(Delivery.key == dup).order_by(Delivery.id))
        )
    if delivered:
        assert seqs == [1, 2], "per-key order in the delivery queue"
        assert "erp" in chain.woken

    # Kafka redelivers the edit: the identity flow's ledger skips it, nothing is sent twice.
    await chain.change(edited, offset=chain.offset)
    # The frozen copy coming back from ERP is no new edit: nothing is sent.
    await chain.change(change("erp", "E2", 3, name="宁波甬江精密机械有限公司", frozen=True))
    assert len(await chain.to_erp("~dup~")) == 2

    # sync.master was only ever given golden events: the re-freeze did not need a change.
    assert chain.master_topics and set(chain.master_topics) == {topics.golden(Entity.customer)}
