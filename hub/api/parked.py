"""Parked messages: what waits for a dependency in a target system, and for how long.

An order whose customer or material the target does not know yet is parked, never dropped
(DESIGN rule 5); one that waits longer than ``parking.overdue_after_s`` of the sync
configuration is overdue and listed first. Reading needs the viewer role.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, Request
from pydantic import BaseModel
from sqlalchemy import func, select

from hub.api.params import INT32_MAX, PathId
from hub.metrics import PARKED, PARKED_OVERDUE
from hub.store.sync_models import Parked

router = APIRouter(tags=["parked"])


class ParkedOut(BaseModel):
    id: int
    flow: str
    target: str
    entity: str
    key: str
    message_id: str
    waiting_on: list[str]
    reason: str
    parked_at: datetime
    age_s: float
    overdue: bool
    checks: int
    checked_at: datetime


class ParkedPage(BaseModel):
    total: int
    overdue: int
    overdue_after_s: float
    items: list[ParkedOut]


class ParkedDetail(ParkedOut):
    envelope: dict[str, Any]


def _overdue_after_s(request: Request) -> float:
    cached = getattr(request.app.state, "parking_overdue_s", None)
    if cached is None:
        from hub.runtime import load_sync_config

        cached = float(load_sync_config(request.app.state.hub.settings).parking.overdue_after_s)
        request.app.state.parking_overdue_s = cached
    return float(cached)


def _sessions(request: Request) -> Any:
    sessions = getattr(request.app.state.hub, "sessions", None)
    if sessions is None:
        raise HTTPException(503, "the store is not open yet")
    return sessions


def _out(row: Parked, now: datetime, overdue_s: float) -> dict[str, Any]:
    age = (now - row.parked_at).total_seconds()
    return {
        "id": row.id,
        "flow": row.flow,
        "target": row.target,
        "entity": row.entity,
        "key": row.key,
        "message_id": row.message_id,
        "waiting_on": list(row.waiting_on or []),
        "reason": row.reason,
        "parked_at": row.parked_at,
        "age_s": round(age, 3),
        "overdue": age > overdue_s,
        "checks": row.checks,
        "checked_at": row.checked_at,
    }


@router.get("/parked", response_model=ParkedPage)
async def list_parked(
    request: Request,
    target: Annotated[str | None, Query(max_length=64)] = None,
    entity: Annotated[str | None, Query(max_length=32)] = None,
    key: Annotated[str | None, Query(max_length=300)] = None,
    overdue: bool | None = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
    offset: Annotated[int, Query(ge=0, le=INT32_MAX)] = 0,
) -> dict[str, Any]:
    """Parked messages, oldest first, with what each waits for; ``overdue=true`` lists only
    those parked longer than the configured time."""
    overdue_s = _overdue_after_s(request)
    now = datetime.now(UTC)
    cutoff = now - timedelta(seconds=overdue_s)
    q = select(Parked)
    if target:
        q = q.where(Parked.target == target)
    if entity:
        q = q.where(Parked.entity == entity)
    if key:
        q = q.where(Parked.key == key)
    if overdue is True:
        q = q.where(Parked.parked_at < cutoff)
    elif overdue is False:
        q = q.where(Parked.parked_at >= cutoff)
    async with _sessions(request)() as s:
        total = await s.scalar(select(func.count()).select_from(q.subquery()))
        late = await s.scalar(
            select(func.count()).select_from(Parked).where(Parked.parked_at < cutoff)
        )
        everything = await s.scalar(select(func.count()).select_from(Parked))
        rows = list(await s.scalars(q.order_by(Parked.id).limit(limit).offset(offset)))
    PARKED.set(int(everything or 0))
    PARKED_OVERDUE.set(int(late or 0))
    return {
        "total": int(total or 0),
        "overdue": int(late or 0),
        "overdue_after_s": overdue_s,
        "items": [_out(r, now, overdue_s) for r in rows],
    }


@router.get("/parked/{parked_id}", response_model=ParkedDetail)
async def show_parked(request: Request, parked_id: PathId) -> dict[str, Any]:
    """One parked message with its envelope (as it will be routed once released)."""
    import json

    async with _sessions(request)() as s:
        row = await s.get(Parked, parked_id)
    if row is None:
        raise HTTPException(404, f"no parked message {parked_id} (released, or never parked)")
    out = _out(row, datetime.now(UTC), _overdue_after_s(request))
    out["envelope"] = json.loads(row.envelope)
    return out
