"""The inventory flow: ``changes.inventory`` -> ``outbound.drp`` (ERP stock as the DRP's
factory stock, by region) and ``outbound.erp`` (DRP channel stock and sell-through into the
ERP's channel-stock table). See ``inventory`` for the rules.

Keys: ``erp:<material/plant/storage location>`` and ``drp:<dealer/warehouse/sku>``, the
source record's key, so each stock position keeps its order per target and the delivery
runtime updates the record it created before.

Which ERP stock the DRP gets depends on the ERP's material record (``inventory.drp_sells``):
the materials of a batch are read in one statement from ``source_records``, where the records
flow keeps the newest version each system sent.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from sqlalchemy import select

from contracts import topics
from contracts.envelope import Entity, Envelope
from flows.sync import inventory
from flows.sync.config import SyncConfig
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.delivery import xref
from hub.store.models import SourceRecord

NAME = "sync.inventory"
ERP, DRP = "erp", "drp"


class InventoryRouter:
    def __init__(self, config: SyncConfig) -> None:
        self.conf = config.inventory

    async def erp_materials(
        self, ctx: FlowContext, items: list[Item]
    ) -> dict[str, Mapping[str, Any]]:
        """The ERP's material records of the batch's ERP stock, when a filter needs them."""
        codes = {str(i.env.body["material"]) for i in items if i.env.source_system == ERP}
        if not codes or not self.conf.erp_to_drp.only:
            return {}
        rows = await ctx.session.execute(
            select(SourceRecord.source_id, SourceRecord.payload).where(
                SourceRecord.entity == Entity.material.value,
                SourceRecord.source_system == ERP,
                SourceRecord.source_id.in_(sorted(codes)),
            )
        )
        return {sid: payload for sid, payload in rows.tuples()}

    async def arrive(
        self, ctx: FlowContext, env: Envelope, materials: Mapping[str, Mapping[str, Any]]
    ) -> None:
        key = f"{env.source_system}:{env.source_id}"
        if env.source_system == ERP:
            material = materials.get(str(env.body["material"]))
            if not inventory.drp_sells(material, self.conf.erp_to_drp.only):
                return
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
        materials = await router.erp_materials(ctx, items)
        for item in items:
            await router.arrive(ctx, item.env, materials)

    return FlowSpec(name=NAME, topics=[topics.changes(Entity.inventory)], handle=handle)
