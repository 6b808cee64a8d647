"""Order routing with parking (I/O): translate, credit-check, emit or park; release parked
orders when what they wait for arrives. Used by the order flow (on arrival) and by the
unparker (``hub/sync_unparker.py``), always inside the caller's store transaction, so a parked
row is deleted in the same commit that writes its outbox row: released exactly once.

Per-key order: an order whose key already has a parked message is parked behind it, and the
unparker releases a key's messages oldest first, stopping at the first that still waits.

``park``, ``parked_ahead`` and ``release_parked`` are the parking mechanics every router
shares (orders here, BOMs and ERP code write-backs in ``bom_routing``): a router is anything
with a ``release`` the unparker can call.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Protocol

from sqlalchemy import delete, func, select

from contracts import topics
from contracts.approval import ApprovalRequest
from contracts.envelope import Entity, Envelope, Op
from flows.sync import orders
from flows.sync.config import SyncConfig
from flows.sync.master_flow import DUPLICATE_MARK
from flows.sync.orders import Ref
from hub.core.processor import FlowContext
from hub.delivery import xref
from hub.store.identity_models import GoldenRecord
from hub.store.sync_models import Parked, SyncOrder

log = logging.getLogger(__name__)

NAME = "sync.orders"
ORDER = Entity.order.value


def _canonical_key(key: str) -> str:
    """A record its system holds twice (re-entered) is linked under a duplicate key; an
    order quoting it means the golden record (whose copy the target has), not the copy the
    hub quarantined there."""
    return key.split(DUPLICATE_MARK, 1)[0]


async def resolve(ctx: FlowContext, refs: Sequence[Ref], target: str) -> dict[Ref, str]:
    """The target's local id of every reference it knows."""
    s = ctx.session
    held = {
        k: _canonical_key(v)
        for k, v in (await xref.holders(s, [(r.entity, r.system, r.code) for r in refs])).items()
    }
    out: dict[Ref, str] = {}
    keyed: dict[Ref, tuple[str, str]] = {}
    for r in refs:
        key = held.get((r.entity, r.system, r.code))
        if key is None:
            continue
        if r.system == target:
            out[r] = r.code  # a code of the target itself, and the target has published it
        else:
            keyed[r] = (r.entity, key)
    if keyed:
        found = await xref.local_ids(s, target, keyed.values())
        for r, pair in keyed.items():
            if pair in found:
                out[r] = found[pair]
    return out


async def golden_customer(ctx: FlowContext, source: str, code: str) -> str | None:
    key = await xref.key_for(ctx.session, "customer", source, code)
    return None if key is None else _canonical_key(key)


class OrderRouter:
    def __init__(self, config: SyncConfig) -> None:
        self.config = config
        self.conf = config.orders

    # ------------------------------------------------------------------ arrival
    async def arrive(self, ctx: FlowContext, env: Envelope, now: datetime) -> None:
        source = env.source_system
        if source == self.conf.target:
            if self.conf.status_back:
                await self._status_back(ctx, env, now)
            return
        if source not in self.conf.sources:
            return
        key = f"{source}:{env.source_id}"
        s = ctx.session
        if await xref.local_id(s, ORDER, key, source) is None:
            await xref.upsert_many(
                s,
                [
                    {
                        "entity": ORDER,
                        "key": key,
                        "system": source,
                        "local_id": env.source_id,
                        "updated_at": now,
                    }
                ],
            )
        row = await s.scalar(select(SyncOrder).where(SyncOrder.key == key))
        status = str(env.body.get("status") or "submitted")
        values = {
            "origin_system": source,
            "origin_id": env.source_id,
            "amount": orders.amount_of(env.body),
            "currency": str(env.body.get("currency") or "CNY"),
            "status": status,
            "open": orders.is_open(status),
            "body": dict(env.body),
            "updated_at": now,
        }
        if row is None:
            s.add(SyncOrder(key=key, customer_key=None, credit_flagged=False, **values))
        else:
            for k, v in values.items():
                setattr(row, k, v)
        await s.flush()
        if await parked_ahead(ctx, self.conf.target, ORDER, key):
            await self._park(ctx, env, key, [f"{ORDER}:{key} (an earlier version is parked)"], now)
            return
        missing = await self.route(ctx, env, key, now)
        if missing:
            await self._park(ctx, env, key, [str(r) for r in missing], now)

    # ------------------------------------------------------------------ routing
    async def route(self, ctx: FlowContext, env: Envelope, key: str, now: datetime) -> list[Ref]:
        """Emit the order in the target's keys, or say what the target does not know yet."""
        target = self.conf.target
        source = env.source_system
        needed = orders.refs_of(env.body, source, self.conf)
        local = await resolve(ctx, needed, target)
        missing = orders.missing(needed, local)
        if missing:
            return missing
        body = orders.translate(env.body, source, local, self.conf, key)
        s = ctx.session
        row = await s.scalar(select(SyncOrder).where(SyncOrder.key == key))
        customer = await golden_customer(ctx, source, str(env.body["customer_ref"]))
        if row is not None:
            row.customer_key = customer
        if self.conf.credit_check and customer is not None:
            credit = await self._credit(ctx, customer, key, orders.amount_of(env.body))
            if credit.exceeded and orders.is_open(str(body.get("status"))):
                body["attributes"] = {**body["attributes"], **credit.as_attributes()}
                if row is not None and not row.credit_flagged:
                    row.credit_flagged = True
                    self._approval(ctx, env, key, credit, now)
        ctx.emit(topics.outbound(target), env.caused(body=body), key=key)
        return []

    async def _credit(
        self, ctx: FlowContext, customer: str, key: str, amount: Decimal
    ) -> orders.Credit:
        s = ctx.session
        record = await s.scalar(
            select(GoldenRecord.record).where(GoldenRecord.golden_id == customer)
        )
        exposure = await s.scalar(
            select(func.coalesce(func.sum(SyncOrder.amount), 0)).where(
                SyncOrder.customer_key == customer, SyncOrder.open.is_(True), SyncOrder.key != key
            )
        )
        return orders.Credit(orders.credit_limit_of(record), Decimal(str(exposure or 0)), amount)

    def _approval(
        self, ctx: FlowContext, env: Envelope, key: str, credit: orders.Credit, now: datetime
    ) -> None:
        c = self.conf.credit_approval
        order_no = str(env.body.get("order_no") or env.source_id)
        request = ApprovalRequest(
            approval_id=f"credit:{key}",
            type=c.type,
            title=(
                f"订单 {order_no} 超出客户信用额度: 订单金额 {credit.amount}, "
                f"剩余额度 {credit.remaining}"
            ),
            amount=credit.amount,
            requester=str(env.body.get("attributes", {}).get("sales_rep") or c.requester),
            approver=c.approver,
            submitted_at=now,
            subject_ref=key,
            attributes=credit.as_attributes(),
        )
        out = env.caused(
            entity=Entity.approval,
            op=Op.request,
            source_system="hub",
            source_id=f"credit:{key}",
            source_version=None,
            body=request.model_dump(mode="json"),
        )
        ctx.emit(topics.canonical(Entity.approval), out, key=f"hub:credit:{key}")

    async def _status_back(self, ctx: FlowContext, env: Envelope, now: datetime) -> None:
        """The target's status of an order it got from us goes back to the order's origin."""
        s = ctx.session
        key = await xref.key_for(s, ORDER, self.conf.target, env.source_id)
        if key is None:
            return  # an order entered in the target itself
        row = await s.scalar(select(SyncOrder).where(SyncOrder.key == key))
        status = env.body.get("status")
        if row is None or status is None or status == row.status:
            return
        row.status = str(status)
        row.open = orders.is_open(row.status)
        row.updated_at = now
        body = {**row.body, "status": row.status}
        row.body = body
        out = env.caused(op=Op.status, source_id=env.source_id, body=body)
        ctx.emit(topics.outbound(row.origin_system), out, key=key)

    # ------------------------------------------------------------------ parking
    async def _park(
        self, ctx: FlowContext, env: Envelope, key: str, waiting: list[str], now: datetime
    ) -> None:
        await park(ctx, NAME, self.conf.target, ORDER, key, env, waiting, now)

    async def release(
        self, ctx: FlowContext, limit: int, now: datetime, after_id: int = 0
    ) -> tuple[int, int]:
        """Route parked orders whose references the target now knows; oldest first per key.
        Looks at ``limit`` rows after ``after_id``; returns (released, last id looked at)."""
        return await release_parked(ctx, self.conf.target, ORDER, self.route, limit, now, after_id)


class Router(Protocol):
    async def release(
        self, ctx: FlowContext, limit: int, now: datetime, after_id: int = 0
    ) -> tuple[int, int]: ...


# Routes one parked message: [] when it went out, else what the target still lacks.
Route = Callable[[FlowContext, Envelope, str, datetime], Awaitable[Sequence[object]]]


def waiting_reason(target: str, waiting: Sequence[str]) -> str:
    return f"{target} does not know yet: {', '.join(waiting)}"


async def parked_ahead(ctx: FlowContext, target: str, entity: str, key: str) -> bool:
    """Whether ``key`` has a parked message for ``target``: a newer one must wait behind it."""
    n = await ctx.session.scalar(
        select(func.count())
        .select_from(Parked)
        .where(Parked.target == target, Parked.entity == entity, Parked.key == key)
    )
    return bool(n)


async def park(
    ctx: FlowContext,
    flow: str,
    target: str,
    entity: str,
    key: str,
    env: Envelope,
    waiting: list[str],
    now: datetime,
) -> None:
    ctx.session.add(
        Parked(
            flow=flow,
            target=target,
            entity=entity,
            key=key,
            message_id=str(env.message_id),
            envelope=env.to_bytes().decode("utf-8"),
            waiting_on=waiting,
            reason=waiting_reason(target, waiting),
            parked_at=now,
            checked_at=now,
            checks=0,
        )
    )
    await ctx.session.flush()


async def release_parked(
    ctx: FlowContext,
    target: str,
    entity: str,
    route: Route,
    limit: int,
    now: datetime,
    after_id: int = 0,
) -> tuple[int, int]:
    """Route the parked messages of (target, entity) whose dependencies arrived, oldest first
    per key, stopping a key at its first message that still waits. Looks at ``limit`` rows
    after ``after_id``; returns (released, last id looked at)."""
    s = ctx.session
    stmt = (
        select(Parked)
        .where(Parked.target == target, Parked.entity == entity, Parked.id > after_id)
        .order_by(Parked.id)
        .limit(limit)
    )
    if s.get_bind().dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    rows = list(await s.scalars(stmt))
    blocked: set[str] = set()
    released = 0
    if rows:
        # a key whose older message lies before this page is still blocked by it
        earlier = await s.scalars(
            select(Parked.key).where(
                Parked.target == target,
                Parked.entity == entity,
                Parked.id <= after_id,
                Parked.key.in_({r.key for r in rows}),
            )
        )
        blocked.update(earlier)
    for row in rows:
        if row.key in blocked:
            continue
        env = Envelope.from_bytes(row.envelope.encode("utf-8"))
        missing = await route(ctx, env, row.key, now)
        if missing:
            blocked.add(row.key)
            waiting = [str(r) for r in missing]
            if waiting != row.waiting_on:
                row.waiting_on = waiting
                row.reason = waiting_reason(target, waiting)
            row.checked_at = now
            row.checks += 1
            continue
        await s.execute(delete(Parked).where(Parked.id == row.id))
        released += 1
    return released, rows[-1].id if rows else after_id


__all__ = [
    "NAME",
    "OrderRouter",
    "Router",
    "park",
    "parked_ahead",
    "release_parked",
    "resolve",
]
