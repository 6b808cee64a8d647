"""Dead letters: list, inspect, re-drive (optionally patched, optionally as a dry run), discard.

Reading needs the viewer role, changing the operator role; every change is audited.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Request
from pydantic import BaseModel, Field, model_validator
from sqlalchemy import select

from hub.api.audit import Audit, audited, aware
from hub.api.auth import Principal, Role, require
from hub.api.params import INT64_MAX, PathId, RowId
from hub.core.inbound import headers_from_json
from hub.redrive import STATUSES, Filter, Outcome, discard, redrive
from hub.store.admin_models import DeadLetterRedrive
from hub.store.models import DeadLetter

router = APIRouter(prefix="/dead-letters", tags=["dead letters"])

MAX_IDS = 1000
MAX_PATCH_CHARS = 256_000
Status = Literal["new", "redriven", "discarded"]
assert set(STATUSES) == {"new", "redriven", "discarded"}


def _text(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        return None


class DeadLetterOut(BaseModel):
    id: int
    flow: str
    stage: str
    reason: str
    error_class: str
    topic: str
    partition: int
    offset: int
    key: str | None = Field(description="the Kafka key as UTF-8 text (replacement characters)")
    message_id: str | None
    source_system: str | None
    attempts: int
    first_failure_at: datetime
    last_failure_at: datetime
    status: Status
    value_bytes: int

    @classmethod
    def of(cls, r: DeadLetter) -> DeadLetterOut:
        return cls(
            id=r.id,
            flow=r.flow,
            stage=r.stage,
            reason=r.reason,
            error_class=r.error_class,
            topic=r.topic,
            partition=r.partition,
            offset=r.offset,
            key=r.key.decode("utf-8", "replace") if r.key is not None else None,
            message_id=r.message_id,
            source_system=r.source_system,
            attempts=r.attempts,
            first_failure_at=r.first_failure_at,
            last_failure_at=r.last_failure_at,
            status=r.status,
            value_bytes=len(r.value),
        )


class HeaderOut(BaseModel):
    key: str
    value: str | None = Field(description="the header value as UTF-8 text, null if not UTF-8")
    value_base64: str


class RedriveOut(BaseModel):
    id: int
    at: datetime
    actor: str
    topic: str
    message_id: str | None
    patch: dict[str, Any] | None
    forced: bool


class DeadLetterDetail(DeadLetterOut):
    key_base64: str | None
    value_base64: str = Field(description="the original bytes")
    value_text: str | None = Field(description="the original bytes as text when UTF-8")
    headers: list[HeaderOut] = Field(description="the original record's headers")
    redrives: list[RedriveOut]


class DeadLetterPage(BaseModel):
    items: list[DeadLetterOut]
    next_before: int | None = Field(description="pass as `before` for the next page")


class FilterIn(BaseModel):
    model_config = {"extra": "forbid"}
    topic: str | None = Field(None, max_length=255)
    flow: str | None = Field(None, max_length=128)
    stage: str | None = Field(None, max_length=32)
    reason: str | None = Field(None, max_length=500, description="substring, case-insensitive")
    status: Status | None = Field("new", description="default: only dead letters not yet handled")
    source_system: str | None = Field(None, max_length=64)
    since: datetime | None = None
    until: datetime | None = None

    def to_filter(self) -> Filter:
        return Filter(
            topic=self.topic,
            flow=self.flow,
            stage=self.stage,
            reason=self.reason,
            status=self.status,
            source_system=self.source_system,
            since=aware(self.since) if self.since else None,
            until=aware(self.until) if self.until else None,
        )


class RedriveIn(BaseModel):
    model_config = {"extra": "forbid"}
    ids: list[RowId] | None = Field(None, min_length=1, max_length=MAX_IDS)
    filter: FilterIn | None = Field(None, description="instead of ids: every match, oldest first")
    limit: int = Field(100, ge=1, le=MAX_IDS, description="most dead letters a filter selects")
    patch: dict[str, Any] | None = Field(
        None, description="RFC 7386 JSON merge patch applied to the JSON value"
    )
    dry_run: bool = Field(False, description="report what would be sent; write nothing")
    force: bool = Field(False, description="send even when the result fails validation")

    @model_validator(mode="after")
    def _one_selector(self) -> RedriveIn:
        if (self.ids is None) == (self.filter is None):
            raise ValueError("give either ids or filter")
        if self.patch is not None and len(json.dumps(self.patch)) > MAX_PATCH_CHARS:
            raise ValueError(f"patch larger than {MAX_PATCH_CHARS} characters")
        return self


class OutcomeOut(BaseModel):
    id: int
    outcome: Literal["sent", "would_send", "invalid", "skipped", "missing", "discarded"]
    reason: str | None = None
    topic: str | None = None
    key: str | None = None
    message_id: str | None = None
    valid: bool | None = None
    validation: str | None = None
    patched: bool = False
    warnings: list[str] = []
    headers: list[tuple[str, str]] | None = Field(None, description="dry run: headers to send")
    value_text: str | None = Field(None, description="dry run: the value to send (preview)")

    @classmethod
    def of(cls, o: Outcome) -> OutcomeOut:
        return cls(**o.__dict__)


class RedriveResultOut(BaseModel):
    dry_run: bool
    selected: int
    sent: int
    would_send: int
    invalid: int
    skipped: int
    items: list[OutcomeOut]


class DiscardIn(BaseModel):
    model_config = {"extra": "forbid"}
    ids: list[RowId] = Field(min_length=1, max_length=MAX_IDS)
    reason: str | None = Field(None, max_length=500, description="why (kept in the audit log)")


class DiscardResultOut(BaseModel):
    discarded: int
    items: list[OutcomeOut]


@router.get("", response_model=DeadLetterPage)
async def list_dead_letters(
    request: Request,
    topic: str | None = Query(None, max_length=255),
    flow: str | None = Query(None, max_length=128),
    stage: str | None = Query(None, max_length=32),
    reason: str | None = Query(None, max_length=500, description="substring, case-insensitive"),
    status: Status | None = None,
    source_system: str | None = Query(None, max_length=64),
    message_id: str | None = Query(None, max_length=36),
    since: datetime | None = Query(None, description="dead-lettered at or after"),
    until: datetime | None = Query(None, description="dead-lettered before"),
    before: int | None = Query(None, ge=1, le=INT64_MAX, description="cursor: ids below this one"),
    limit: int = Query(50, ge=1, le=500),
    _p: Principal = Depends(require(Role.viewer)),
) -> DeadLetterPage:
    """Dead letters, newest first, without their bytes (GET /dead-letters/{id} has them)."""
    f = Filter(
        topic,
        flow,
        stage,
        reason,
        status,
        source_system,
        message_id,
        aware(since) if since else None,
        aware(until) if until else None,
    )
    cols = [c for c in DeadLetter.__table__.c if c.name != "value"]
    from sqlalchemy import func

    q = f.apply(select(*cols, func.length(DeadLetter.value).label("value_bytes")))
    if before:
        q = q.where(DeadLetter.id < before)
    q = q.order_by(DeadLetter.id.desc()).limit(limit)
    async with request.app.state.hub.sessions() as s:
        rows = list((await s.execute(q)).mappings())
    items = []
    for r in rows:
        key = r["key"]
        items.append(
            DeadLetterOut(
                **{k: r[k] for k in DeadLetterOut.model_fields if k not in ("key",)},
                key=key.decode("utf-8", "replace") if key is not None else None,
            )
        )
    return DeadLetterPage(items=items, next_before=rows[-1]["id"] if len(rows) == limit else None)


@router.get("/{dl_id}", response_model=DeadLetterDetail)
async def get_dead_letter(
    request: Request, dl_id: PathId, _p: Principal = Depends(require(Role.viewer))
) -> DeadLetterDetail:
    """One dead letter: the original bytes (base64, and text when UTF-8), headers, error,
    attempts, and every re-drive of it."""
    async with request.app.state.hub.sessions() as s:
        r = await s.get(DeadLetter, dl_id)
        if r is None:
            raise HTTPException(404, f"no dead letter {dl_id}")
        redrives = (
            await s.execute(
                select(DeadLetterRedrive)
                .where(DeadLetterRedrive.dead_letter_id == dl_id)
                .order_by(DeadLetterRedrive.id)
            )
        ).scalars()
        history = [
            RedriveOut(
                id=x.id,
                at=x.at,
                actor=x.actor,
                topic=x.topic,
                message_id=x.message_id,
                patch=x.patch,
                forced=x.forced,
            )
            for x in redrives
        ]
    headers = [
        HeaderOut(key=k, value=_text(v), value_base64=base64.b64encode(v).decode())
        for k, v in headers_from_json(r.headers)
    ]
    return DeadLetterDetail(
        **DeadLetterOut.of(r).model_dump(),
        key_base64=base64.b64encode(r.key).decode() if r.key is not None else None,
        value_base64=base64.b64encode(r.value).decode(),
        value_text=_text(r.value),
        headers=headers,
        redrives=history,
    )


@router.post("/redrive", response_model=RedriveResultOut)
async def redrive_dead_letters(
    request: Request,
    body: RedriveIn,
    audit: Audit = Depends(audited("dead_letters.redrive", Role.operator)),
) -> RedriveResultOut:
    """Publish dead letters again to their original topic (through the outbox), with the
    original key and headers minus ``eai.error.*``, plus ``eai.redrive.*``; optionally patched
    (RFC 7386 merge patch on the JSON value). The message_id is kept, so the flow's ledger
    gives a re-driven message exactly-once effect. ``dry_run`` reports what would be sent and
    whether it validates, and writes nothing but the audit row."""
    hub = request.app.state.hub
    async with hub.sessions() as s, s.begin():
        if body.ids is not None:
            ids = list(dict.fromkeys(body.ids))
        else:
            assert body.filter is not None
            q = body.filter.to_filter().apply(select(DeadLetter.id))
            ids = list((await s.execute(q.order_by(DeadLetter.id).limit(body.limit))).scalars())
        result = await redrive(
            s,
            ids,
            flows=hub.flows,
            actor=audit.principal.name,
            patch=body.patch,
            dry_run=body.dry_run,
            force=body.force,
        )
        audit.params["selected"] = ids
        audit.params["outcomes"] = {o.id: o.outcome for o in result.outcomes}
        audit.add(s)
    if result.count("sent"):
        hub.relay.wake()
    return RedriveResultOut(
        dry_run=body.dry_run,
        selected=len(ids),
        sent=result.count("sent"),
        would_send=result.count("would_send"),
        invalid=result.count("invalid"),
        skipped=result.count("skipped") + result.count("missing"),
        items=[OutcomeOut.of(o) for o in result.outcomes],
    )


@router.post("/discard", response_model=DiscardResultOut)
async def discard_dead_letters(
    request: Request,
    body: DiscardIn,
    audit: Audit = Depends(audited("dead_letters.discard", Role.operator)),
) -> DiscardResultOut:
    """Mark dead letters discarded: they stay in the store (and in the audit log), and a
    filter-based re-drive no longer selects them."""
    async with request.app.state.hub.sessions() as s, s.begin():
        outcomes = await discard(s, list(dict.fromkeys(body.ids)))
        audit.add(s)
    return DiscardResultOut(
        discarded=sum(1 for o in outcomes if o.outcome == "discarded"),
        items=[OutcomeOut.of(o) for o in outcomes],
    )
