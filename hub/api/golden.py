"""Admin API of identity resolution: golden records, their members and history, the review
queue, and reversible merge / unmerge.

Reading needs the viewer role; every change needs the operator role and is audited in the
transaction that makes it. Merge, unmerge and review decisions write identity events and put
golden.<entity> events (op merge / unmerge) in the outbox, so the sync flow carries them to the
systems. Each can be undone: unmerge a merged member (it gets its own golden id back), or merge
again.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, ConfigDict, Field
from sqlalchemy import func, or_, select, tuple_
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from flows.identity.config import IdentityConfig
from flows.identity.normalize import fold
from flows.identity.store_index import Outcome, Steward, StewardError
from flows.identity.survivorship import SurvivorshipConfig
from hub.api.audit import Audit, audited
from hub.api.auth import Principal, Role, require
from hub.api.params import INT64_MAX, PathId
from hub.core.outbox import add_rows, envelope_values
from hub.store.identity_models import GoldenMember, GoldenRecord, IdentityEvent, ReviewItem
from hub.store.models import RecordEvent

router = APIRouter(tags=["golden records"])

EntityName = Literal["customer", "material"]
LINEAGE_MAX = 1000
COUNT_CAP = 1_000  # golden list: counted up to this many matches
TRIGRAM = 3  # pg_trgm serves substring patterns of at least this many characters


# -- models -----------------------------------------------------------------------------------


class GoldenSummary(BaseModel):
    golden_id: str
    entity: str
    name: str | None
    status: str
    merged_into: str | None
    member_count: int
    version: int
    updated_at: datetime


class GoldenPage(BaseModel):
    total: int = Field(description=f"matches, counted up to {COUNT_CAP:,}")
    total_exact: bool = Field(
        True, description=f"false when more than {COUNT_CAP:,} match (total is then the cap)"
    )
    items: list[GoldenSummary]


class MemberOut(BaseModel):
    source_system: str
    source_id: str
    action: str
    score: float
    message_id: str | None
    linked_at: datetime
    evidence: dict[str, Any]


class XrefOut(BaseModel):
    system: str
    local_id: str
    updated_at: datetime


class IdentityEventOut(BaseModel):
    id: int
    kind: str
    golden_id: str
    other_golden_id: str | None
    source_system: str | None
    source_id: str | None
    evidence: dict[str, Any]
    message_id: str | None
    actor: str | None
    at: datetime


class LineageOut(BaseModel):
    message_id: str
    source_system: str
    source_id: str
    outcome: str
    detail: str | None
    source_version: int | None
    source_ts: datetime | None
    at: datetime


class GoldenDetail(GoldenSummary):
    created_at: datetime
    record: dict[str, Any]
    winners: dict[str, Any]
    members: list[MemberOut]
    cross_references: list[XrefOut] = Field(
        description="local ids the target systems gave this golden record (sync deliveries)"
    )
    events: list[IdentityEventOut]
    lineage: list[LineageOut] = Field(
        description="what every message of every member did (records flow), newest first"
    )


class ReviewOut(BaseModel):
    id: int
    entity: str
    source_system: str
    source_id: str
    golden_id: str
    golden_name: str | None
    candidate_id: str
    candidate_name: str | None
    score: float
    evidence: dict[str, Any]
    status: str
    message_id: str | None
    created_at: datetime
    decided_by: str | None
    decided_at: datetime | None


class ReviewPage(BaseModel):
    total: int
    items: list[ReviewOut]


class MergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    golden_ids: list[str] = Field(min_length=2, max_length=100)
    into: str | None = Field(None, description="the golden id to keep; default the oldest")
    reason: str | None = Field(None, max_length=1000)


class UnmergeIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    source_system: str = Field(min_length=1, max_length=64)
    source_id: str = Field(min_length=1, max_length=256)
    reason: str | None = Field(None, max_length=1000)


class ReviewDecisionIn(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reason: str | None = Field(None, max_length=1000)


class ActionOut(BaseModel):
    golden_ids: list[str]
    events: int
    review: ReviewOut | None = None


# -- plumbing ---------------------------------------------------------------------------------


def _hub(request: Request) -> Any:
    return request.app.state.hub


def _sessions(request: Request) -> async_sessionmaker[AsyncSession]:
    sessions = getattr(_hub(request), "sessions", None)
    if sessions is None:
        raise HTTPException(503, "the store is not open yet")
    return sessions  # type: ignore[no-any-return]


def _configs(request: Request) -> tuple[IdentityConfig, SurvivorshipConfig]:
    """The running identity flow's configuration, so operators and the flow agree."""
    from flows.identity.flow import flow_of

    for spec in getattr(_hub(request), "flows", None) or ():
        if getattr(spec, "name", None) == "identity":
            flow = flow_of(spec)
            if flow is not None:
                return flow.config, flow.survivorship
    return IdentityConfig(), SurvivorshipConfig()


def _steward(request: Request, s: AsyncSession, entity: str, actor: str) -> Steward:
    config, rules = _configs(request)
    return Steward(
        s,
        entity,
        cap=config.block_cap,
        default_country=config.default_country,
        limit=config.max_values_per_field,
        rules=rules,
        actor=actor,
        now=datetime.now(UTC),
    )


async def _publish(s: AsyncSession, outcome: Outcome) -> None:
    rows = [envelope_values(topic, env, env.source_id) for topic, env in outcome.events]
    await add_rows(s, rows)


def _wake(request: Request) -> None:
    relay = getattr(_hub(request), "relay", None)
    if relay is not None:
        relay.wake()


def _summary(r: GoldenRecord) -> GoldenSummary:
    return GoldenSummary(
        golden_id=r.golden_id,
        entity=r.entity,
        name=r.name,
        status=r.status,
        merged_into=r.merged_into,
        member_count=r.member_count,
        version=r.version,
        updated_at=r.updated_at,
    )


async def _names(s: AsyncSession, ids: set[str]) -> dict[str, str | None]:
    if not ids:
        return {}
    rows = await s.execute(
        select(GoldenRecord.golden_id, GoldenRecord.name).where(
            GoldenRecord.golden_id.in_(sorted(ids))
        )
    )
    return {gid: name for gid, name in rows}


def _review_out(r: ReviewItem, names: dict[str, str | None]) -> ReviewOut:
    return ReviewOut(
        id=r.id,
        entity=r.entity,
        source_system=r.source_system,
        source_id=r.source_id,
        golden_id=r.golden_id,
        golden_name=names.get(r.golden_id),
        candidate_id=r.candidate_id,
        candidate_name=names.get(r.candidate_id),
        score=r.score,
        evidence=r.evidence,
        status=r.status,
        message_id=r.message_id,
        created_at=r.created_at,
        decided_by=r.decided_by,
        decided_at=r.decided_at,
    )


async def _xrefs(s: AsyncSession, entity: str, golden_id: str) -> list[XrefOut]:
    """Local ids target systems gave this golden record (the delivery feature's xrefs)."""
    try:
        from hub.store.delivery_models import Xref
    except ImportError:  # the delivery feature is not installed
        return []
    rows = (
        await s.execute(
            select(Xref).where(Xref.entity == entity, Xref.key == golden_id).order_by(Xref.system)
        )
    ).scalars()
    return [XrefOut(system=x.system, local_id=x.local_id, updated_at=x.updated_at) for x in rows]


# -- reading ----------------------------------------------------------------------------------


@router.get("/golden/{entity}", response_model=GoldenPage)
async def list_golden(
    request: Request,
    entity: EntityName,
    q: str | None = Query(
        None, max_length=256, description="substring of a member name, code or identifier"
    ),
    status: Literal["active", "retired", "all"] = "active",
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=INT64_MAX),
    _p: Principal = Depends(require(Role.viewer)),
) -> GoldenPage:
    """Golden records, newest change first. `q` is folded like the matcher folds names
    (width, Traditional/Simplified, case), so 華為 finds 华为."""
    where = [GoldenRecord.entity == entity]
    if status != "all":
        where.append(GoldenRecord.status == status)
    folded = fold(q) if q and q.strip() else ""
    async with _sessions(request)() as s:
        dialect = s.get_bind().dialect.name
        if folded and len(folded) < TRIGRAM and dialect == "postgresql":
            # Too short for the trigram index, which PostgreSQL would still pick and then
            # recheck every row (seconds at a million); strpos keeps it on the list index,
            # newest first, stopping at the page.
            where.append(func.strpos(GoldenRecord.search_text, folded) > 0)
        elif folded:
            where.append(GoldenRecord.search_text.contains(folded, autoescape=True))
        # only the summary's columns: profile, record and winners are JSON documents of a
        # few KB each, decoded for nothing on a list page
        cols = [getattr(GoldenRecord, f) for f in GoldenSummary.model_fields]
        rows = list(
            (
                await s.execute(
                    select(*cols)
                    .where(*where)
                    # both descending: ix_golden_records_list read backwards gives this order
                    .order_by(GoldenRecord.updated_at.desc(), GoldenRecord.golden_id.desc())
                    .limit(limit)
                    .offset(offset)
                )
            ).mappings()
        )
        if offset == 0 and len(rows) < limit:
            total = len(rows)  # the page holds every match: nothing to count
        else:
            # The count stops at COUNT_CAP: counting a million rows per page view took longer
            # than the page itself (bench/api_latency.py).
            capped = select(GoldenRecord.golden_id).where(*where).limit(COUNT_CAP + 1).subquery()
            total = int(await s.scalar(select(func.count()).select_from(capped)) or 0)
        return GoldenPage(
            total=min(total, COUNT_CAP),
            total_exact=total <= COUNT_CAP,
            items=[GoldenSummary(**r) for r in rows],
        )


@router.get("/golden/{entity}/{golden_id}", response_model=GoldenDetail)
async def get_golden(
    request: Request,
    entity: EntityName,
    golden_id: str,
    _p: Principal = Depends(require(Role.viewer)),
) -> GoldenDetail:
    """A golden record with its members, the winner of each field, the local ids target
    systems gave it, its identity events and the lineage of every member message."""
    async with _sessions(request)() as s:
        row = await s.get(GoldenRecord, golden_id)
        if row is None or row.entity != entity:
            raise HTTPException(404, f"no {entity} golden record {golden_id}")
        members = list(
            (
                await s.execute(
                    select(GoldenMember)
                    .where(GoldenMember.entity == entity, GoldenMember.golden_id == golden_id)
                    .order_by(GoldenMember.linked_at, GoldenMember.id)
                )
            ).scalars()
        )
        xrefs = await _xrefs(s, entity, golden_id)
        events = (
            await s.execute(
                select(IdentityEvent)
                .where(
                    or_(
                        IdentityEvent.golden_id == golden_id,
                        IdentityEvent.other_golden_id == golden_id,
                    )
                )
                .order_by(IdentityEvent.id.desc())
                .limit(LINEAGE_MAX)
            )
        ).scalars()
        lineage: list[RecordEvent] = []
        pairs = [(m.source_system, m.source_id) for m in members]
        for i in range(0, len(pairs), 500):
            lineage += (
                await s.execute(
                    select(RecordEvent)
                    .where(
                        RecordEvent.entity == entity,
                        tuple_(RecordEvent.source_system, RecordEvent.source_id).in_(
                            pairs[i : i + 500]
                        ),
                    )
                    .order_by(RecordEvent.id.desc())
                    .limit(LINEAGE_MAX)
                )
            ).scalars()
        lineage.sort(key=lambda e: e.id, reverse=True)
        return GoldenDetail(
            **_summary(row).model_dump(),
            created_at=row.created_at,
            record=row.record,
            winners=row.winners,
            members=[
                MemberOut(
                    source_system=m.source_system,
                    source_id=m.source_id,
                    action=m.action,
                    score=m.score,
                    message_id=m.message_id,
                    linked_at=m.linked_at,
                    evidence=m.evidence,
                )
                for m in members
            ],
            cross_references=xrefs,
            events=[
                IdentityEventOut(
                    id=e.id,
                    kind=e.kind,
                    golden_id=e.golden_id,
                    other_golden_id=e.other_golden_id,
                    source_system=e.source_system,
                    source_id=e.source_id,
                    evidence=e.evidence,
                    message_id=e.message_id,
                    actor=e.actor,
                    at=e.at,
                )
                for e in events
            ],
            lineage=[
                LineageOut(
                    message_id=e.message_id,
                    source_system=e.source_system,
                    source_id=e.source_id,
                    outcome=e.outcome,
                    detail=e.detail,
                    source_version=e.source_version,
                    source_ts=e.source_ts,
                    at=e.at,
                )
                for e in lineage[:LINEAGE_MAX]
            ],
        )


@router.get("/review", response_model=ReviewPage)
async def list_review(
    request: Request,
    entity: EntityName | None = None,
    status: Literal["open", "accepted", "rejected", "all"] = "open",
    limit: int = Query(50, ge=1, le=500),
    offset: int = Query(0, ge=0, le=INT64_MAX),
    _p: Principal = Depends(require(Role.viewer)),
) -> ReviewPage:
    """The dedup review queue: records scored between the thresholds, with the candidate
    they may be the same as and the evidence per field, oldest first."""
    where = []
    if entity is not None:
        where.append(ReviewItem.entity == entity)
    if status != "all":
        where.append(ReviewItem.status == status)
    async with _sessions(request)() as s:
        total = await s.scalar(select(func.count()).select_from(ReviewItem).where(*where))
        items = list(
            (
                await s.execute(
                    select(ReviewItem)
                    .where(*where)
                    .order_by(ReviewItem.id)
                    .limit(limit)
                    .offset(offset)
                )
            ).scalars()
        )
        names = await _names(s, {i.golden_id for i in items} | {i.candidate_id for i in items})
        return ReviewPage(total=int(total or 0), items=[_review_out(i, names) for i in items])


# -- changing ---------------------------------------------------------------------------------


async def _review_decision(
    request: Request, review_id: int, accept: bool, reason: str | None, audit: Audit
) -> ActionOut:
    async with _sessions(request)() as s, s.begin():
        entity = await s.scalar(select(ReviewItem.entity).where(ReviewItem.id == review_id))
        if entity is None:
            raise HTTPException(404, f"no review item {review_id}")
        steward = _steward(request, s, entity, audit.principal.name)
        try:
            item, outcome = await steward.decide_review(review_id, accept, reason)
        except StewardError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        await _publish(s, outcome)
        await s.flush()
        names = await _names(s, {item.golden_id, item.candidate_id})
        out = ActionOut(
            golden_ids=outcome.golden_ids,
            events=len(outcome.events),
            review=_review_out(item, names),
        )
        audit.add(s)
    _wake(request)
    return out


@router.post("/review/{review_id}/accept", response_model=ActionOut)
async def accept_review(
    request: Request,
    review_id: PathId,
    body: ReviewDecisionIn | None = None,
    audit: Audit = Depends(audited("golden.review.accept", Role.operator)),
) -> ActionOut:
    """The record is the same as the candidate: merge it into the candidate's golden record."""
    return await _review_decision(request, review_id, True, body.reason if body else None, audit)


@router.post("/review/{review_id}/reject", response_model=ActionOut)
async def reject_review(
    request: Request,
    review_id: PathId,
    body: ReviewDecisionIn | None = None,
    audit: Audit = Depends(audited("golden.review.reject", Role.operator)),
) -> ActionOut:
    """The record is not the candidate: it keeps its own golden record."""
    return await _review_decision(request, review_id, False, body.reason if body else None, audit)


@router.post("/golden/{entity}/merge", response_model=ActionOut)
async def merge_golden(
    request: Request,
    entity: EntityName,
    body: MergeIn,
    audit: Audit = Depends(audited("golden.merge", Role.operator)),
) -> ActionOut:
    """Merge golden records into one (the oldest, or `into`); the others are retired with
    `merged_into` set. Undo with unmerge of the moved members."""
    async with _sessions(request)() as s, s.begin():
        steward = _steward(request, s, entity, audit.principal.name)
        try:
            outcome = await steward.merge(body.golden_ids, body.into, body.reason)
        except StewardError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        await _publish(s, outcome)
        audit.add(s)
    _wake(request)
    return ActionOut(golden_ids=outcome.golden_ids, events=len(outcome.events))


@router.post("/golden/{entity}/{golden_id}/unmerge", response_model=ActionOut)
async def unmerge_golden(
    request: Request,
    entity: EntityName,
    golden_id: str,
    body: UnmergeIn,
    audit: Audit = Depends(audited("golden.unmerge", Role.operator)),
) -> ActionOut:
    """Split one member off into a golden record of its own (its original golden id when that
    one was merged away, so merge followed by unmerge restores both records)."""
    async with _sessions(request)() as s, s.begin():
        steward = _steward(request, s, entity, audit.principal.name)
        try:
            outcome = await steward.unmerge(
                golden_id, (body.source_system, body.source_id), body.reason
            )
        except StewardError as exc:
            raise HTTPException(exc.status, exc.message) from exc
        await _publish(s, outcome)
        audit.add(s)
    _wake(request)
    return ActionOut(golden_ids=outcome.golden_ids, events=len(outcome.events))
