"""The BOM flows: ``changes.bom`` -> the target's ``outbound`` topic through
``bom_routing.BomRouter`` (part translation, parking, only changed lines), and
``golden.material`` -> ``outbound.pdm`` through ``bom_routing.CodeWriteback`` (the ERP's
material numbers back to the PDM parts)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import topics
from contracts.envelope import Entity
from flows.sync.bom_routing import CODES, NAME, BomRouter, CodeWriteback
from flows.sync.config import SyncConfig
from hub.core.processor import FlowContext, FlowSpec, Item


def spec(config: SyncConfig) -> FlowSpec:
    router = BomRouter(config)

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        now = datetime.now(UTC)
        for item in items:
            await router.arrive(ctx, item.env, now)

    return FlowSpec(name=NAME, topics=[topics.changes(Entity.bom)], handle=handle)


def codes_spec(config: SyncConfig) -> FlowSpec:
    writeback = CodeWriteback(config)

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        now = datetime.now(UTC)
        for item in items:
            await writeback.arrive(ctx, item.env, now)

    return FlowSpec(
        name=CODES,
        topics=[topics.golden(Entity.material)],
        handle=handle,
        # golden events carry golden_id/members/winners beside the record's fields
        validate_body=False,
    )
