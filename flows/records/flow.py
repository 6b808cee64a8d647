"""The records flow handler: I/O edge around ``staleness.compare``."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select, tuple_

from contracts import topics
from contracts.envelope import Entity, Envelope, Op
from flows.records.staleness import Verdict, Version, compare
from hub.core.processor import FlowContext, FlowSpec, Item
from hub.store.bulk import insert_rows, update_by_id
from hub.store.models import RecordEvent, SourceRecord

NAME = "records"


def record_kind(env: Envelope) -> str:
    """What is versioned together. An approval's decision is not a newer version of its
    request: both share the source id, and the later one must not make the other stale."""
    return f"{env.entity.value}.decision" if env.op is Op.decide else env.entity.value


def _version(env: Envelope) -> Version:
    return Version(env.source_version, env.source_ts or env.occurred_at)


Key = tuple[str, str, str]


@dataclass
class _Held:
    """The stored state of one record as the batch sees it (after earlier messages)."""

    id: int | None
    version: Version
    op: str
    payload: dict[str, Any]
    revision: int
    row: dict[str, Any] | None = None  # pending insert or update values


async def handle(ctx: FlowContext, items: list[Item]) -> None:
    """One query for the batch's stored records, the decisions in memory in message order,
    then one bulk insert, one bulk update and one lineage insert."""
    s = ctx.session
    keys = list({(record_kind(i.env), i.env.source_system, i.env.source_id) for i in items})
    held: dict[Key, _Held] = {}
    if keys:
        cols = (SourceRecord.entity, SourceRecord.source_system, SourceRecord.source_id)
        rows = await s.execute(
            select(
                *cols,
                SourceRecord.id,
                SourceRecord.source_version,
                SourceRecord.source_ts,
                SourceRecord.updated_at,
                SourceRecord.op,
                SourceRecord.payload,
                SourceRecord.revision,
            ).where(tuple_(*cols).in_(keys))
        )
        for e, sysname, sid, rid, ver, ts, upd, op, stored_payload, rev in rows:
            held[(e, sysname, sid)] = _Held(rid, Version(ver, ts or upd), op, stored_payload, rev)
    now = datetime.now(UTC)
    events: list[dict[str, Any]] = []
    for item in items:
        env = item.env
        payload: dict[str, Any] = (
            item.body.model_dump(mode="json") if item.body is not None else dict(env.body)
        )
        key = (record_kind(env), env.source_system, env.source_id)
        cur = held.get(key)
        if cur is None:
            verdict, detail = Verdict.newer, "first version"
        else:
            same = cur.payload == payload and cur.op == env.op.value
            verdict, detail = compare(_version(env), cur.version, same)
        if verdict is Verdict.newer:
            revision = 1 if cur is None else cur.revision + 1
            values: dict[str, Any] = {
                "source_version": env.source_version,
                "source_ts": env.source_ts or env.occurred_at,
                "op": env.op.value,
                "payload": payload,
                "revision": revision,
                "last_message_id": str(env.message_id),
                "updated_at": now,
            }
            nxt = _Held(
                cur.id if cur else None,
                _version(env),
                env.op.value,
                payload,
                revision,
                values,
            )
            held[key] = nxt
            ctx.emit(topics.changes(env.entity), env.caused(body=payload))
        events.append(
            {
                "message_id": str(env.message_id),
                "entity": key[0],
                "source_system": env.source_system,
                "source_id": env.source_id,
                "outcome": verdict.value,
                "detail": detail,
                "source_version": env.source_version,
                "source_ts": env.source_ts,
                "at": now,
            }
        )
    inserts = [
        {"entity": k[0], "source_system": k[1], "source_id": k[2], **h.row}
        for k, h in held.items()
        if h.row is not None and h.id is None
    ]
    updates = [{"id": h.id, **h.row} for h in held.values() if h.row is not None and h.id]
    # Core executemany, not the ORM's bulk persistence (decision 50)
    await insert_rows(s, SourceRecord, inserts)
    await update_by_id(s, SourceRecord, updates)
    await insert_rows(s, RecordEvent, events)


def spec() -> FlowSpec:
    return FlowSpec(
        name=NAME,
        topics=[topics.canonical(e) for e in Entity],
        handle=handle,
        journal=True,
    )
