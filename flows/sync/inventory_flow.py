"""The inventory flow: ``changes.inventory`` -> ``outbound.drp`` (ERP stock as the DRP's
factory stock, by region) and ``outbound.erp`` (DRP channel stock and sell-through into the
ERP's channel-stock table). See ``inventory`` for the rules.

Keys: ``erp:<material/plant/storage location>`` and ``drp:<dealer/warehouse/sku>``, the
source record's key, so each stock position keeps its order per target and the delivery
runtime updates the record it created before.

Which ERP stock the DRP gets depends on the ERP's material record (``inventory.drp_sells``):
the materials of a batch are read in one statement from ``source_records``, where the records
flow keeps the newest version each system sent. Stock whose material record has not arrived is
parked for the DRP (``routing.park``, per key behind any parked earlier version) until it does
or ``material_wait_s`` has passed; the unparker releases it through ``release``.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select

from contracts import topics
from contracts.envelope import Entity, Envelope
from flows.sync import inventory
from flows.sync.config import SyncConfig
from flows.sync.routing import park, release_parked
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.delivery import xref
from hub.store.models import SourceRecord
from hub.store.sync_models import Parked

NAME = "sync.inventory"
ERP, DRP = "erp", "drp"
INVENTORY = Entity.inventory.value


class InventoryRouter:
    def __init__(self, config: SyncConfig) -> None:
        self.conf = config.inventory

    async def erp_materials(
        self, ctx: FlowContext, items: list[Item]
    ) -> dict[str, Mapping[str, Any]]:
        """The ERP's material records of the batch's ERP stock, when a filter needs them."""
        codes = {str(i.env.body["material"]) for i in items if i.env.source_system == ERP}
        return await self._materials(ctx, codes)

    async def _materials(self, ctx: FlowContext, codes: set[str]) -> dict[str, Mapping[str, Any]]:
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

    async def parked_keys(self, ctx: FlowContext, items: list[Item]) -> set[str]:
        """The batch's ERP stock positions that have a parked posting (one statement; nothing
        is parked unless stock may wait, so then none is sent)."""
        keys = {i.env.key for i in items if i.env.source_system == ERP}
        if not keys or not self._may_wait():
            return set()
        rows = await ctx.session.scalars(
            select(Parked.key).where(
                Parked.target == DRP, Parked.entity == INVENTORY, Parked.key.in_(sorted(keys))
            )
        )
        return set(rows)

    async def arrive(
        self,
        ctx: FlowContext,
        env: Envelope,
        materials: Mapping[str, Mapping[str, Any]],
        parked: set[str],
        now: datetime,
    ) -> None:
        """``parked``: the positions with a parked posting, kept up to date as this parks."""
        key = env.key
        if env.source_system == ERP:
            if key in parked:
                waiting = [f"{INVENTORY}:{key} (an earlier version is parked)"]
                await park(ctx, NAME, DRP, INVENTORY, key, env, waiting, now)
                return
            material = materials.get(str(env.body["material"]))
            missing = self._to_drp(ctx, env, key, material, now)
            if missing:
                await park(ctx, NAME, DRP, INVENTORY, key, env, missing, now)
                parked.add(key)
        elif env.source_system == DRP and self.conf.drp_to_erp:
            dealer = inventory.dealer_of(str(env.body["location"]))
            kunnr = None
            gid = await xref.key_for(ctx.session, Entity.customer.value, DRP, dealer)
            if gid is not None:
                kunnr = await xref.local_id(ctx.session, Entity.customer.value, gid, ERP)
            body = inventory.to_erp(env.body, kunnr)
            ctx.emit(topics.outbound(ERP), env.caused(body=body), key=key)

    def _may_wait(self) -> bool:
        c = self.conf.erp_to_drp
        return bool(c.only) and c.material_wait_s > 0

    def _to_drp(
        self,
        ctx: FlowContext,
        env: Envelope,
        key: str,
        material: Mapping[str, Any] | None,
        now: datetime,
    ) -> list[str]:
        """Send ERP stock the DRP sells; [] when decided, else what it waits for."""
        c = self.conf.erp_to_drp
        if inventory.waits_for_material(material, c.only, c.material_wait_s, env.occurred_at, now):
            return [f"{Entity.material.value}:{ERP}:{env.body['material']}"]
        if inventory.drp_sells(material, c.only):
            body = inventory.to_drp(env.body, c.regions)
            ctx.emit(topics.outbound(DRP), env.caused(body=body), key=key)
        return []

    async def route(self, ctx: FlowContext, env: Envelope, key: str, now: datetime) -> list[str]:
        """A parked stock message again: sent, filtered out, or still waiting."""
        code = str(env.body["material"])
        materials = await self._materials(ctx, {code})
        return self._to_drp(ctx, env, key, materials.get(code), now)

    async def release(
        self, ctx: FlowContext, limit: int, now: datetime, after_id: int = 0
    ) -> tuple[int, int]:
        return await release_parked(ctx, DRP, INVENTORY, self.route, limit, now, after_id)


def spec(config: SyncConfig) -> FlowSpec:
    router = InventoryRouter(config)

    async def handle(ctx: FlowContext, items: list[Item]) -> None:
        now = datetime.now(UTC)
        materials = await router.erp_materials(ctx, items)
        parked = await router.parked_keys(ctx, items)
        for item in items:
            await router.arrive(ctx, item.env, materials, parked, now)

    return FlowSpec(name=NAME, topics=[topics.changes(Entity.inventory)], handle=handle)
