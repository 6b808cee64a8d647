"""Replay jobs: create (operator), list and follow (viewer), cancel (operator). See hub.replay."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select, update

from hub.api.audit import Audit, audited, aware
from hub.api.auth import Principal, Role, require
from hub.api.params import INT32_MAX, INT64_MAX, PathId
from hub.redrive import is_topic
from hub.replay import TERMINAL, new_counters
from hub.store.admin_models import ReplayJob
from hub.store.models import JournalEntry

router = APIRouter(prefix="/replays", tags=["replay"])

Status = Literal["queued", "running", "done", "cancelled", "failed"]
TOPIC = r"^[A-Za-z0-9._-]{1,249}$"


class ReplayIn(BaseModel):
    model_config = {"extra": "forbid"}
    topic: str = Field(pattern=TOPIC, description="the topic to read")
    partitions: list[Annotated[int, Field(ge=0, le=INT32_MAX)]] | None = Field(
        None, min_length=1, max_length=10_000, description="default: every partition"
    )
    from_offset: int | None = Field(
        None, ge=0, le=INT64_MAX, description="first offset, per partition"
    )
    from_time: datetime | None = Field(None, description="or: from the first record at/after")
    to_offset: int | None = Field(None, ge=0, le=INT64_MAX, description="stop before this offset")
    to_time: datetime | None = Field(None, description="or: stop at the first record at/after")
    key: str | None = Field(
        None, min_length=1, max_length=512, description="exact key, or a glob: crm:C00*"
    )
    source_system: str | None = Field(None, min_length=1, max_length=64)
    target_flow: str | None = Field(None, max_length=128, description="replay into this flow")
    target_topic: str | None = Field(None, pattern=TOPIC, description="or re-publish to this topic")
    dry_run: bool = Field(False, description="report what would change; write nothing")
    force: bool = Field(
        False, description="flow target: bypass the flow's ledger (a ledger of this job's own)"
    )
    rate_limit: float | None = Field(None, gt=0, le=1_000_000, description="messages/second")

    @model_validator(mode="after")
    def _consistent(self) -> ReplayIn:
        if self.from_offset is not None and self.from_time is not None:
            raise ValueError("give from_offset or from_time, not both")
        if self.to_offset is not None and self.to_time is not None:
            raise ValueError("give to_offset or to_time, not both")
        if (self.target_flow is None) == (self.target_topic is None):
            raise ValueError("give exactly one target: target_flow or target_topic")
        if self.force and self.target_flow is None:
            raise ValueError("force applies to a flow target (it bypasses the flow's ledger)")
        if self.partitions is not None and any(p < 0 for p in self.partitions):
            raise ValueError("partitions are >= 0")
        if self.from_time is not None:
            self.from_time = aware(self.from_time)
        if self.to_time is not None:
            self.to_time = aware(self.to_time)
        start, end = self.from_offset or 0, self.to_offset
        if end is not None and end <= start:
            raise ValueError("to_offset must be above from_offset")
        if self.from_time and self.to_time and self.to_time <= self.from_time:
            raise ValueError("to_time must be after from_time")
        return self


class ReplayOut(BaseModel):
    id: int
    topic: str
    partitions: list[int] | None
    from_offset: int | None
    from_time: datetime | None
    to_offset: int | None
    to_time: datetime | None
    key: str | None
    source_system: str | None
    target_flow: str | None
    target_topic: str | None
    dry_run: bool
    force: bool
    rate_limit: float | None
    status: Status
    cancel_requested: bool
    counters: dict[str, int]
    report: dict[str, Any]
    progress: float = Field(description="read / total, 0..1")
    error: str | None
    created_by: str
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None

    @classmethod
    def of(cls, j: ReplayJob) -> ReplayOut:
        counters = {**new_counters(), **(j.counters or {})}
        total = counters.get("total", 0)
        progress = 1.0 if j.status == "done" else min(1.0, counters["read"] / total if total else 0)
        return cls(
            id=j.id,
            topic=j.topic,
            partitions=j.partitions,
            from_offset=j.from_offset,
            from_time=j.from_time,
            to_offset=j.to_offset,
            to_time=j.to_time,
            key=j.key_filter,
            source_system=j.source_system,
            target_flow=j.target_flow,
            target_topic=j.target_topic,
            dry_run=j.dry_run,
            force=j.force,
            rate_limit=j.rate_limit,
            status=j.status,
            cancel_requested=j.cancel_requested,
            counters=counters,
            report=j.report or {},
            progress=progress,
            error=j.error,
            created_by=j.created_by,
            created_at=j.created_at,
            started_at=j.started_at,
            finished_at=j.finished_at,
        )


class ReplayPage(BaseModel):
    items: list[ReplayOut]
    next_before: int | None


def _runner(request: Request) -> Any:
    return getattr(request.app.state.hub, "replayer", None)


async def _topic_known(request: Request, topic: str) -> bool:
    hub = request.app.state.hub
    async with hub.sessions() as s:
        if await s.scalar(select(JournalEntry.id).where(JournalEntry.topic == topic).limit(1)):
            return True
    if hub.producer is None:
        return True  # cannot tell: the runner will say
    try:
        meta = await asyncio.wait_for(hub.producer.client.fetch_all_metadata(), 5.0)
    except Exception:
        return True
    return topic in meta.topics()


@router.post("", response_model=ReplayOut, status_code=201)
async def create_replay(
    request: Request,
    body: ReplayIn,
    audit: Audit = Depends(audited("replays.create", Role.operator)),
) -> ReplayOut:
    """Queue a replay job. Dry runs report per target what would change; real runs go
    through the flow's ledger (exactly-once effect) unless ``force``."""
    hub = request.app.state.hub
    if body.target_flow is not None:
        names = [f.name for f in hub.flows]
        if body.target_flow not in names:
            raise HTTPException(
                400, f"no flow {body.target_flow!r}; flows: {', '.join(names) or 'none'}"
            )
    if body.target_topic is not None and not is_topic(body.target_topic):
        raise HTTPException(400, f"{body.target_topic!r} is not a valid topic name")
    if not await _topic_known(request, body.topic):
        raise HTTPException(404, f"topic {body.topic!r} is neither on the broker nor journaled")
    if body.target_topic is not None and not body.dry_run:
        from hub.broker.kafka import ensure_topics

        # created as the hub creates its own (partitions, replication, retention), not with
        # whatever a broker's auto-creation defaults to when the relay first publishes to it
        await ensure_topics(hub.settings, hub.bootstrap, [body.target_topic])
    async with hub.sessions() as s, s.begin():
        job = ReplayJob(
            topic=body.topic,
            partitions=sorted(set(body.partitions)) if body.partitions else None,
            from_offset=body.from_offset,
            from_time=body.from_time,
            to_offset=body.to_offset,
            to_time=body.to_time,
            key_filter=body.key,
            source_system=body.source_system,
            target_flow=body.target_flow,
            target_topic=body.target_topic,
            dry_run=body.dry_run,
            force=body.force,
            rate_limit=body.rate_limit,
            status="queued",
            cancel_requested=False,
            counters=new_counters(),
            report={},
            positions={},
            created_by=audit.principal.name,
            created_at=datetime.now(UTC),
        )
        s.add(job)
        await s.flush()
        audit.params["id"] = job.id
        audit.add(s, 201)
    runner = _runner(request)
    if runner is not None:
        runner.wake()
    return ReplayOut.of(job)


@router.get("", response_model=ReplayPage)
async def list_replays(
    request: Request,
    status: Status | None = None,
    before: int | None = Query(None, ge=1, le=INT64_MAX, description="cursor: ids below this one"),
    limit: int = Query(50, ge=1, le=500),
    _p: Principal = Depends(require(Role.viewer)),
) -> ReplayPage:
    """Replay jobs, newest first."""
    q = select(ReplayJob).order_by(ReplayJob.id.desc()).limit(limit)
    if status:
        q = q.where(ReplayJob.status == status)
    if before:
        q = q.where(ReplayJob.id < before)
    async with request.app.state.hub.sessions() as s:
        rows = list((await s.execute(q)).scalars())
    return ReplayPage(
        items=[ReplayOut.of(j) for j in rows],
        next_before=rows[-1].id if len(rows) == limit else None,
    )


@router.get("/{job_id}", response_model=ReplayOut)
async def get_replay(
    request: Request, job_id: PathId, _p: Principal = Depends(require(Role.viewer))
) -> ReplayOut:
    """One job with its counters, progress and (dry run) report."""
    async with request.app.state.hub.sessions() as s:
        job = await s.get(ReplayJob, job_id)
    if job is None:
        raise HTTPException(404, f"no replay job {job_id}")
    return ReplayOut.of(job)


@router.post("/{job_id}/cancel", response_model=ReplayOut)
async def cancel_replay(
    request: Request,
    job_id: PathId,
    audit: Audit = Depends(audited("replays.cancel", Role.operator)),
) -> ReplayOut:
    """A queued job is cancelled at once; a running one stops after its current chunk
    (``cancel_requested`` until then). 409 for a job that has already ended."""
    async with request.app.state.hub.sessions() as s, s.begin():
        job = await s.get(ReplayJob, job_id)
        if job is None:
            raise HTTPException(404, f"no replay job {job_id}")
        if job.status in TERMINAL:
            raise HTTPException(409, f"replay job {job_id} already {job.status}")
        await s.execute(
            update(ReplayJob)
            .where(ReplayJob.id == job_id, ReplayJob.status == "queued")
            .values(status="cancelled", finished_at=datetime.now(UTC))
        )
        await s.execute(
            update(ReplayJob)
            .where(ReplayJob.id == job_id, ReplayJob.status == "running")
            .values(cancel_requested=True)
        )
        await s.refresh(job)
        audit.add(s)
    runner = _runner(request)
    if runner is not None and job.status == "running":
        runner.cancel(job_id)
    return ReplayOut.of(job)
