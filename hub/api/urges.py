"""Admin API: approvals, their urges, the one-click urge (一键催办) and urge statistics.

Reading needs the viewer role. The one-click urge needs the operator role (give the customer
portal an operator token of its own) and is audited in the transaction that records the urge.
"""

from __future__ import annotations

import datetime as dt
from functools import lru_cache
from typing import Any, Literal, cast

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field
from sqlalchemy import ColumnElement, func, or_, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.urge import analytics
from flows.urge.calendar import BusinessCalendar
from flows.urge.policy import UrgePolicy, default_policy
from hub.api.audit import Audit, audited
from hub.api.auth import Principal, Role, require
from hub.api.params import INT64_MAX
from hub.store.urge_models import Approval, UrgeRecord
from hub.urge_scheduler import ClickResult, UrgeScheduler

router = APIRouter(tags=["approvals"])

Status = Literal["open", "approved", "rejected", "withdrawn"]


# -- response models ------------------------------------------------------------------------


class ApprovalOut(BaseModel):
    key: str
    origin_system: str
    approval_id: str
    type: str
    title: str
    amount: str | None
    currency: str | None
    requester: str
    requester_department: str | None
    approver: str
    approver_department: str | None
    superior: str | None
    authority: str
    status: str
    submitted_at: dt.datetime
    deadline: dt.datetime
    overdue: bool
    decided_at: dt.datetime | None
    decided_by: str | None
    next_due_at: dt.datetime | None
    urge_count: int
    last_urged_at: dt.datetime | None
    round: int
    last_error: str | None


class UrgeOut(BaseModel):
    urge_id: str
    kind: str
    status: str
    level: int
    channel: str
    recipient: str
    escalated_to: str | None
    sequence: int
    previous_urge_id: str | None
    skipped_levels: list[int]
    urged_by: str | None
    due_at: dt.datetime
    send_at: dt.datetime
    sent_at: dt.datetime | None
    round: int
    text: str


class ApprovalDetail(ApprovalOut):
    plan: dict[str, Any]
    urges: list[UrgeOut]


class ApprovalPage(BaseModel):
    total: int
    items: list[ApprovalOut]


class ClickIn(BaseModel):
    click_id: str = Field(
        min_length=1, max_length=128, description="the portal's idempotency key for this click"
    )
    urged_by: str = Field(
        "客户", min_length=1, max_length=128, description="who pressed the button"
    )


class ClickOut(BaseModel):
    outcome: Literal["send", "deferred", "rejected", "duplicate"]
    urge_id: str | None = None
    reason: str | None = None
    retry_after: dt.datetime | None = None
    send_at: dt.datetime | None = None


class DurationOut(BaseModel):
    count: int
    median_s: float | None
    p90_s: float | None


class OverdueOut(BaseModel):
    key: str
    type: str
    approver: str
    approver_department: str
    deadline: dt.datetime
    overdue_s: float
    urges: int


class DifficultyOut(BaseModel):
    key: str
    type: str
    approver: str
    approver_department: str
    urges: int
    band_index: int | None
    weight: str
    score: str


class StatsOut(BaseModel):
    since: dt.datetime
    approvals: int
    urges: int
    by_type: dict[str, int]
    by_approver: dict[str, int]
    by_department: dict[str, int]
    by_level: dict[int, int]
    by_channel: dict[str, int]
    time_to_decision_working: bool
    time_to_decision: DurationOut
    time_to_decision_by_type: dict[str, DurationOut]
    overdue: list[OverdueOut]
    difficulty: list[DifficultyOut]


# -- plumbing -------------------------------------------------------------------------------


def _hub(request: Request) -> Any:
    return request.app.state.hub


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions = getattr(_hub(request), "sessions", None)
    if sessions is None:
        raise HTTPException(503, "the store is not open yet")
    return sessions  # type: ignore[no-any-return]


def _scheduler(request: Request) -> UrgeScheduler | None:
    found = getattr(_hub(request), "urge_scheduler", None)
    return found if isinstance(found, UrgeScheduler) else None


@lru_cache(maxsize=1)
def _default() -> tuple[UrgePolicy, BusinessCalendar]:
    policy = default_policy()
    return policy, policy.build_calendar()


def _policy(request: Request) -> tuple[UrgePolicy, BusinessCalendar]:
    sched = _scheduler(request)
    return (sched.policy, sched.calendar) if sched is not None else _default()


def _now(request: Request) -> dt.datetime:
    sched = _scheduler(request)
    return sched.clock() if sched is not None else dt.datetime.now(dt.UTC)


def _approval_out(a: Approval, now: dt.datetime) -> dict[str, Any]:
    fields = ApprovalOut.model_fields.keys() - {"overdue"}
    out = {name: getattr(a, name) for name in fields}
    out["overdue"] = a.status == "open" and a.deadline < now
    return out


def _urge_out(u: UrgeRecord) -> UrgeOut:
    return UrgeOut.model_validate(
        {name: getattr(u, name) for name in UrgeOut.model_fields}, from_attributes=False
    )


# -- endpoints ------------------------------------------------------------------------------


@router.get("/approvals", response_model=ApprovalPage)
async def list_approvals(
    request: Request,
    status: Status | None = None,
    type: str | None = None,
    approver: str | None = None,
    department: str | None = Query(None, description="the approver's department"),
    overdue: bool = Query(False, description="only open approvals past their deadline"),
    limit: int = Query(100, ge=1, le=1000),
    offset: int = Query(0, ge=0, le=INT64_MAX),
    _p: Principal = Depends(require(Role.viewer)),
) -> ApprovalPage:
    """Approvals the hub watches, newest first (most overdue first with ``overdue``)."""
    now = _now(request)
    conds: list[Any] = []
    if status is not None:
        conds.append(Approval.status == status)
    if type is not None:
        conds.append(or_(Approval.type == type, Approval.type_key == type))
    if approver is not None:
        conds.append(Approval.approver == approver)
    if department is not None:
        conds.append(Approval.approver_department == department)
    if overdue:
        conds += [Approval.status == "open", Approval.deadline < now]
    order = Approval.deadline.asc() if overdue else Approval.submitted_at.desc()
    async with _sessions(request)() as s:
        total = await s.scalar(select(func.count()).select_from(Approval).where(*conds))
        rows = (
            await s.execute(
                select(Approval)
                .where(*conds)
                .order_by(order, Approval.id)
                .limit(limit)
                .offset(offset)
            )
        ).scalars()
        items = [ApprovalOut.model_validate(_approval_out(a, now)) for a in rows]
    return ApprovalPage(total=int(total or 0), items=items)


@router.get("/approvals/{key:path}", response_model=ApprovalDetail)
async def get_approval(
    request: Request, key: str, _p: Principal = Depends(require(Role.viewer))
) -> ApprovalDetail:
    """One approval (key ``origin_system:approval_id``) with its plan and every urge."""
    now = _now(request)
    async with _sessions(request)() as s:
        a = await s.scalar(select(Approval).where(Approval.key == key))
        if a is None:
            raise HTTPException(404, f"no approval {key!r}")
        urges = (
            await s.execute(
                select(UrgeRecord)
                .where(UrgeRecord.approval_key == key)
                .order_by(UrgeRecord.round, UrgeRecord.sequence, UrgeRecord.id)
            )
        ).scalars()
        return ApprovalDetail.model_validate(
            {**_approval_out(a, now), "plan": a.plan, "urges": [_urge_out(u) for u in urges]}
        )


@router.post(
    "/approvals/{key:path}/urge",
    response_model=ClickOut,
    responses={404: {}, 409: {}, 429: {}, 503: {}},
)
async def urge_now(
    request: Request,
    key: str,
    click: ClickIn,
    audit: Audit = Depends(audited("approvals.urge", Role.operator)),
) -> Any:
    """One-click urge (一键催办) from a customer portal: urges the approver now, within the
    caps. 200 sent, deferred (quiet hours: delivered at ``send_at``) or duplicate (this
    ``click_id`` was handled before); 429 rate-limited or capped (see ``retry_after``);
    409 decided or switched off; 404 unknown approval."""
    sched = _scheduler(request)
    if sched is None:
        raise HTTPException(503, "the urge scheduler is not running in this process")

    def record(session: AsyncSession, res: ClickResult) -> None:
        audit.params.update(outcome=res.outcome, urge_id=res.urge_id)
        audit.add(session, _status(res), res.reason)

    res = await sched.one_click(key, click.click_id, urged_by=click.urged_by, on_result=record)
    status = _status(res)
    if status == 404:
        raise HTTPException(404, f"no approval {key!r}")
    out = ClickOut(
        outcome=res.outcome,
        urge_id=res.urge_id,
        reason=res.reason,
        retry_after=res.retry_after,
        send_at=res.send_at,
    )
    if status == 200:
        return out
    headers = {}
    if res.retry_after is not None:
        wait = (res.retry_after - sched.clock()).total_seconds()
        headers["Retry-After"] = str(max(1, int(wait + 0.999)))
    return JSONResponse(out.model_dump(mode="json"), status_code=status, headers=headers)


_LIMITED = ("rate_limited", "recipient_daily_cap", "approval_cap")


def _status(res: ClickResult) -> int:
    if res.outcome == "not_found":
        return 404
    if res.outcome != "rejected":
        return 200
    return 429 if res.reason in _LIMITED else 409


_STATS_COLS = (
    Approval.key,
    Approval.type,
    Approval.amount,
    Approval.currency,
    Approval.approver,
    Approval.approver_department,
    Approval.submitted_at,
    Approval.deadline,
    Approval.decided_at,
)


@router.get("/urges/stats", response_model=StatsOut)
async def urge_stats(
    request: Request,
    days: int = Query(90, ge=1, le=3660, description="approvals submitted in the last N days"),
    top: int = Query(20, ge=1, le=500, description="length of the overdue and difficulty lists"),
    _p: Principal = Depends(require(Role.viewer)),
) -> StatsOut:
    """催办次数 by type, approver, department, ladder level and channel; time to decision
    (working time); the overdue list; approvals that needed the most urging, weighted by
    amount band (difficulty)."""
    policy, calendar = _policy(request)
    now = _now(request)
    since = now - dt.timedelta(days=days)
    # The store aggregates: counts are GROUP BYs, and only three kinds of approvals are read
    # row by row: decided ones (type and two times, for working-time percentiles, which need
    # the business calendar), the overdue ones that make the top list, and the urged ones
    # (difficulty weights come from the policy's amount bands).
    window = or_(Approval.submitted_at >= since, Approval.status == "open")
    sent = (
        UrgeRecord.status == "sent",
        UrgeRecord.sent_at >= since,
        UrgeRecord.approval_key == Approval.key,
        window,
    )
    per_approval = func.count(UrgeRecord.id).label("n")
    async with _sessions(request)() as s:
        total = await s.scalar(select(func.count()).select_from(Approval).where(window))
        groups = (
            await s.execute(
                select(
                    Approval.type,
                    Approval.approver,
                    Approval.approver_department,
                    UrgeRecord.level,
                    UrgeRecord.channel,
                    func.count(),
                )
                .where(*sent)
                .group_by(
                    Approval.type,
                    Approval.approver,
                    Approval.approver_department,
                    UrgeRecord.level,
                    UrgeRecord.channel,
                )
            )
        ).tuples()
        counts = analytics.urge_counts_from_groups(groups)
        decided = (
            await s.execute(
                select(Approval.type, Approval.submitted_at, Approval.decided_at).where(
                    window, Approval.decided_at.is_not(None)
                )
            )
        ).mappings()
        ttd = analytics.time_to_decision(
            cast(list[analytics.Row], decided.all()), calendar=calendar
        )
        # Working time overdue only grows as the deadline is earlier, so the top list is
        # among the earliest deadlines: those up to the top-th one (ties included) are read.
        late_where: list[ColumnElement[bool]] = [
            window,
            Approval.decided_at.is_(None),
            Approval.deadline < now,
        ]
        cutoff = await s.scalar(
            select(Approval.deadline)
            .where(*late_where)
            .order_by(Approval.deadline)
            .offset(top - 1)
            .limit(1)
        )
        if cutoff is not None:
            late_where.append(Approval.deadline <= cutoff)
        late_rows = [
            {**dict(r), "approval_id": r["key"]}
            for r in (await s.execute(select(*_STATS_COLS).where(*late_where))).mappings()
        ]
        late_counts: dict[str, int] = {}
        if late_rows:
            found = await s.execute(
                select(Approval.key, per_approval)
                .where(*sent, Approval.key.in_([r["key"] for r in late_rows]))
                .group_by(Approval.key)
            )
            late_counts = {key: n for key, n in found.tuples()}
        urged = [
            {**dict(r), "approval_id": r["key"]}
            for r in (
                await s.execute(
                    select(*_STATS_COLS, per_approval).where(*sent).group_by(*_STATS_COLS)
                )
            ).mappings()
        ]
    late = analytics.overdue(late_rows, now, calendar=calendar, counts=late_counts)[:top]
    hard = analytics.difficulty_ranking(
        urged, (), policy, limit=top, counts={a["key"]: a["n"] for a in urged}
    )
    return StatsOut(
        since=since,
        approvals=total or 0,
        urges=counts.total,
        by_type=counts.by_type,
        by_approver=counts.by_approver,
        by_department=counts.by_department,
        by_level=counts.by_level,
        by_channel=counts.by_channel,
        time_to_decision_working=ttd.working,
        time_to_decision=_duration(ttd.overall),
        time_to_decision_by_type={k: _duration(v) for k, v in ttd.by_type.items()},
        overdue=[
            OverdueOut(
                key=i.approval_id,
                type=i.type,
                approver=i.approver,
                approver_department=i.approver_department,
                deadline=i.deadline,
                overdue_s=i.overdue_by.total_seconds(),
                urges=i.urges,
            )
            for i in late
        ],
        difficulty=[
            DifficultyOut(
                key=i.approval_id,
                type=i.type,
                approver=i.approver,
                approver_department=i.approver_department,
                urges=i.urges,
                band_index=i.band_index,
                weight=str(i.weight),
                score=str(i.score),
            )
            for i in hard
        ],
    )


def _duration(d: analytics.DurationStats) -> DurationOut:
    return DurationOut(
        count=d.count,
        median_s=None if d.median is None else d.median.total_seconds(),
        p90_s=None if d.p90 is None else d.p90.total_seconds(),
    )
