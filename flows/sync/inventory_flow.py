"""The inventory flow: ``changes.inventory`` -> ``outbound.drp`` (ERP stock as the DRP's
factory stock, by region) and ``outbound.erp`` (DRP channel stock and sell-through into the
ERP's channel-stock table). See ``inventory`` for the rules.

Keys: ``erp:<material/plant/storage location>`` and ``drp:<dealer/warehouse/sku>``, the
source record's key, so each stock position keeps its order per target and the delivery
runtime updates the record it created before.
"""

from __future__ import annotations

from contracts import topics
from contracts.envelope import Entity, Envelope
from flows.sync import inventory
from flows.sync.config import SyncConfig
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.delivery import xref

NAME = "sync.inventory"
ERP, DRP = "erp", "drp"


class InventoryRouter:
    def __init__(self, config: SyncConfig) -> None:
        self.conf = config.inventory

    async def arrive(self, ctx: FlowContext, env: Envelope) -> None:
        key = f"{env.source_system}:{env.source_id}"
        if env.source_system == ERP:
            body = inventory.to_drp(env.body, self.conf.erp_to_drp.regions)
            ctx.emit(topics.outbound(DRP), env.caused(body=body), key=key)
        elif env.source_system == DRP and self.conf.drp_to_erp:
            dealer = inventory.dealer_of(str(env.body["location"]))
            kunnr = None
            gid = await xref.key_for(ctx.session, Entity.customer.value, DRP, dealer)
            if gid is not None:
                kunnr = await xref.local_id(ctx.session, Entity.customer.value, gid, ERP)
            body = inventory.to_erp(env.body, kunnr)
            ctx.emit(topics.outbound(ERP), env.caused(body=body), key=key)


def spec(config: SyncConfig) -> FlowSpec:
    router = InventoryRouter(config)

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        for item in items:
            await router.arrive(ctx, item.env)

    return FlowSpec(name=NAME, topics=[topics.changes(Entity.inventory)], handle=handle)
