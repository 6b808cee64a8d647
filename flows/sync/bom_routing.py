"""BOM routing with parking (I/O), after ``routing.OrderRouter``: a PDM design BOM becomes
the ERP's manufacturing BOM in ERP material codes, or waits in ``parked`` until the ERP knows
every part; the ERP's material codes go back to the PDM.

``BomRouter``: per BOM (key ``pdm:<parent drawing no>``) and target, ``sync_boms`` holds the
lines last sent, in the target's codes; a new revision sends only what changed
(``boms.plan``). The row is written in the same transaction as the outbox row, so what is
stored is exactly what was sent. The change number (the ECO that released the revision,
``change_order``) travels with it: the ERP applies the change under it (AENNR).

``CodeWriteback``: when a golden material has a PDM member and the ERP has a material
number for it, the PDM part gets that number (``attributes.erp.material_no``, the PDM's ERP
code field). Until the ERP has numbered it, the write-back waits in ``parked`` (target pdm,
entity material, key = golden id), released by the unparker when the cross-reference appears;
one write-back per golden record waits at a time and it sends the record as it is then.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import select

from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from flows.sync import boms, master
from flows.sync.config import SyncConfig
from flows.sync.routing import park, parked_ahead, release_parked, resolve
from hub.core.processor import FlowContext
from hub.delivery import xref
from hub.store.identity_models import GoldenRecord
from hub.store.sync_models import SyncBom, SyncState

NAME = "sync.boms"
CODES = "sync.codes"
BOM = Entity.bom.value
MATERIAL = Entity.material.value
ERP_CODE = "erp.material_no"
# sync_state rows of the write-back: the ERP code last sent to the PDM, per golden id
CODE_STATE = "pdm_code"


class BomRouter:
    def __init__(self, config: SyncConfig) -> None:
        self.conf = config.bom

    async def arrive(self, ctx: FlowContext, env: Envelope, now: datetime) -> None:
        source = env.source_system
        if source != self.conf.source:
            return  # the ERP's own manufacturing BOMs stay there
        key = f"{source}:{env.source_id}"
        target = self.conf.target
        if await parked_ahead(ctx, target, BOM, key):
            waiting = [f"{BOM}:{key} (an earlier revision is parked)"]
            await park(ctx, NAME, target, BOM, key, env, waiting, now)
            return
        missing = await self.route(ctx, env, key, now)
        if missing:
            await park(ctx, NAME, target, BOM, key, env, [str(r) for r in missing], now)

    async def route(self, ctx: FlowContext, env: Envelope, key: str, now: datetime) -> list[Any]:
        """Emit the BOM (or its change) in the target's codes, or say which parts the target
        does not know yet."""
        target = self.conf.target
        source = env.source_system
        needed = boms.refs_of(env.body, source)
        local = await resolve(ctx, needed, target)
        missing = [r for r in needed if r not in local]
        if missing:
            return missing
        s = ctx.session
        new = boms.translate_lines(env.body, source, local)
        row = await s.scalar(select(SyncBom).where(SyncBom.key == key, SyncBom.target == target))
        last = boms.loaded(row.lines) if row is not None else None
        parent = local[needed[0]]
        body = boms.plan(env.body, parent, new, last, row.revision if row else None, key)
        if body is None:
            return []  # the target holds this revision already
        ctx.emit(topics.outbound(target), env.caused(body=body), key=key)
        revision = str(env.body["revision"])
        if row is None:
            s.add(
                SyncBom(
                    key=key,
                    target=target,
                    revision=revision,
                    lines=boms.stored(new),
                    updated_at=now,
                )
            )
        else:
            row.revision = revision
            row.lines = boms.stored(new)
            row.updated_at = now
        await s.flush()
        return []

    async def release(
        self, ctx: FlowContext, limit: int, now: datetime, after_id: int = 0
    ) -> tuple[int, int]:
        return await release_parked(ctx, self.conf.target, BOM, self.route, limit, now, after_id)


def _pdm_members(body: dict[str, Any], source: str) -> list[str]:
    return [
        str(m["source_id"])
        for m in body.get("members") or []
        if isinstance(m, dict) and m.get("source_system") == source and m.get("source_id")
    ]


class CodeWriteback:
    """The ERP's material numbers back to the PDM parts they were given to."""

    def __init__(self, config: SyncConfig) -> None:
        self.conf = config.bom
        self.enabled = config.bom.code_writeback

    async def arrive(self, ctx: FlowContext, env: Envelope, now: datetime) -> None:
        if not self.enabled or env.body.get("merged_into"):
            return
        if not _pdm_members(env.body, self.conf.source):
            return
        gid = str(env.body.get("golden_id") or env.source_id)
        pdm = self.conf.source
        if await parked_ahead(ctx, pdm, MATERIAL, gid):
            return  # one waits already and will send the record as it is then
        missing = await self.route(ctx, env, gid, now)
        if missing:
            await park(ctx, CODES, pdm, MATERIAL, gid, env, missing, now)

    async def route(self, ctx: FlowContext, env: Envelope, gid: str, now: datetime) -> list[str]:
        s = ctx.session
        pdm, erp = self.conf.source, self.conf.target
        known = await xref.systems_of(s, MATERIAL, gid)
        missing = [f"{MATERIAL}:{gid}@{system}" for system in (erp, pdm) if system not in known]
        if missing:
            return missing
        code = known[erp]
        state = await s.scalar(
            select(SyncState).where(SyncState.entity == CODE_STATE, SyncState.key == gid)
        )
        if state is not None and state.body.get(erp) == code:
            return []  # the PDM has it
        record = await s.scalar(select(GoldenRecord.record).where(GoldenRecord.golden_id == gid))
        if not record:
            return []  # gone (merged away): the survivor's event brings it
        body = master.record_of(record)
        body["attributes"] = {**(body.get("attributes") or {}), ERP_CODE: code}
        out = Envelope(
            entity=Entity.material,
            op=Op.upsert,
            source_system=master.HUB,
            source_id=gid,
            source_ts=env.source_ts,
            correlation_id=env.correlation_id or env.message_id,
            body=body,
        )
        ctx.emit(topics.outbound(pdm), out, key=gid)
        if state is None:
            s.add(
                SyncState(
                    entity=CODE_STATE,
                    key=gid,
                    body={erp: code},
                    quarantined=False,
                    targets=[pdm],
                    version=1,
                    updated_at=now,
                )
            )
        else:
            state.body = {erp: code}
            state.version += 1
            state.updated_at = now
        await s.flush()
        return []

    async def release(
        self, ctx: FlowContext, limit: int, now: datetime, after_id: int = 0
    ) -> tuple[int, int]:
        return await release_parked(
            ctx, self.conf.source, MATERIAL, self.route, limit, now, after_id
        )


__all__ = ["BOM", "CODES", "NAME", "BomRouter", "CodeWriteback"]
