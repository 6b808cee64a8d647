"""The records flow handler: I/O edge around ``staleness.compare``."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import select

from contracts import topics
from contracts.envelope import Entity, Envelope
from flows.records.staleness import Verdict, Version, compare
from hub.core.processor import FlowContext, FlowSpec
from hub.store.models import RecordEvent, SourceRecord

NAME = "records"


def _version(env: Envelope) -> Version:
    return Version(env.source_version, env.source_ts or env.occurred_at)


async def handle(ctx: FlowContext, env: Envelope, body: BaseModel | None) -> None:
    payload: dict[str, Any] = body.model_dump(mode="json") if body is not None else dict(env.body)
    s = ctx.session
    row = await s.scalar(
        select(SourceRecord).where(
            SourceRecord.entity == env.entity.value,
            SourceRecord.source_system == env.source_system,
            SourceRecord.source_id == env.source_id,
        )
    )
    now = datetime.now(UTC)
    if row is None:
        verdict, detail = Verdict.newer, "first version"
        s.add(
            SourceRecord(
                entity=env.entity.value,
                source_system=env.source_system,
                source_id=env.source_id,
                source_version=env.source_version,
                source_ts=env.source_ts or env.occurred_at,
                op=env.op.value,
                payload=payload,
                revision=1,
                last_message_id=str(env.message_id),
                updated_at=now,
            )
        )
    else:
        stored = Version(row.source_version, row.source_ts or row.updated_at)
        same = row.payload == payload and row.op == env.op.value
        verdict, detail = compare(_version(env), stored, same)
        if verdict is Verdict.newer:
            row.source_version = env.source_version
            row.source_ts = env.source_ts or env.occurred_at
            row.op = env.op.value
            row.payload = payload
            row.revision += 1
            row.last_message_id = str(env.message_id)
            row.updated_at = now
    s.add(
        RecordEvent(
            message_id=str(env.message_id),
            entity=env.entity.value,
            source_system=env.source_system,
            source_id=env.source_id,
            outcome=verdict.value,
            detail=detail,
            source_version=env.source_version,
            source_ts=env.source_ts,
            at=now,
        )
    )
    if verdict is Verdict.newer:
        ctx.emit(topics.changes(env.entity), env.caused(body=payload))


def spec() -> FlowSpec:
    return FlowSpec(
        name=NAME,
        topics=[topics.canonical(e) for e in Entity],
        handle=handle,
        journal=True,
    )
