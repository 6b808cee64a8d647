"""The order flow: ``changes.order`` -> the target's ``outbound`` topic, through
``routing.OrderRouter`` (translation, credit check, parking, status back)."""

from __future__ import annotations

from datetime import UTC, datetime

from contracts import topics
from contracts.envelope import Entity
from flows.sync.config import SyncConfig
from flows.sync.routing import NAME, OrderRouter
from hub.core.processor import FlowContext, FlowSpec, Item


def spec(config: SyncConfig) -> FlowSpec:
    router = OrderRouter(config)

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        now = datetime.now(UTC)
        for item in items:
            await router.arrive(ctx, item.env, now)

    return FlowSpec(name=NAME, topics=[topics.changes(Entity.order)], handle=handle)
