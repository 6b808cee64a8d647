"""The master sync flow writes a batch's cross-references and sync states in a few statements
whatever the batch size, with the same effect as writing them event by event: a copy that
moves from one golden record to another (in one batch or across two) ends up with the new
one only."""

from __future__ import annotations

from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.sync import master_flow
from flows.sync.config import load_config
from hub.core.processor import FlowContext, Item
from hub.delivery import xref
from hub.store.sync_models import SyncState
from tests.helpers import counting_statements
from tests.unit.test_sync_subscriber_filter import golden

Sessions = async_sessionmaker[AsyncSession]


def owned(gid: str, *crm_ids: str) -> Item:
    item = golden(gid, "customer", f"客户{gid}")
    body = dict(item.env.body)
    body["members"] = [{"source_system": "crm", "source_id": c} for c in crm_ids]
    env = item.env.model_copy(update={"body": body})
    return Item(item.rec, env, None)


async def apply(sessions: Sessions, items: list[Item]) -> tuple[int, FlowContext]:
    flow = master_flow.MasterSyncFlow(load_config())
    async with sessions() as s, s.begin():
        ctx = FlowContext(session=s, flow=master_flow.NAME)
        with counting_statements(sessions.kw["bind"]) as statements:
            await flow.handle(ctx, items)
            await s.flush()
    return statements.n, ctx


async def crm_key(sessions: Sessions, crm_id: str) -> str | None:
    async with sessions() as s:
        return await xref.key_for(s, "customer", "crm", crm_id)


async def test_a_batch_costs_a_few_statements_whatever_its_size(sessions: Sessions) -> None:
    small, _ = await apply(sessions, [owned(f"A{i}", f"KA{i}") for i in range(5)])
    # each golden record has two CRM cards: one copy, one re-entered duplicate quarantined
    large, ctx = await apply(sessions, [owned(f"B{i}", f"KB{i}", f"KB{i}-2") for i in range(200)])
    assert large <= small + 2, f"{small} statements for 5 events, {large} for 200"
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(SyncState)) == 205
    assert await crm_key(sessions, "KB7") == "B7"
    assert await crm_key(sessions, "KB7-2") == master_flow.duplicate_key("B7", "crm", "KB7-2")
    assert sum(row["topic"] == "outbound.erp" for row in ctx.outbox) == 200


async def test_a_copy_that_moves_in_one_batch_ends_with_the_new_golden_record(
    sessions: Sessions,
) -> None:
    await apply(sessions, [owned("G1", "K1"), owned("G2", "K1")])
    assert await crm_key(sessions, "K1") == "G2"
    async with sessions() as s:
        assert await xref.local_id(s, "customer", "G1", "crm") is None


async def test_a_copy_that_moves_across_batches_leaves_its_old_row_first(
    sessions: Sessions,
) -> None:
    await apply(sessions, [owned("G1", "K1")])
    # the old row must go before the new one is written: (entity, system, local_id) is unique
    await apply(sessions, [owned("G2", "K1")])
    assert await crm_key(sessions, "K1") == "G2"
    async with sessions() as s:
        assert await xref.local_id(s, "customer", "G1", "crm") is None
