"""The dead-letter channel: one error envelope for every kind of failure.

The original bytes go to the dead-letter topic unchanged, with the error in headers in the manner
of Kafka Connect's errors.deadletterqueue.context.headers, and an index row in the store so that
an operator can inspect, re-drive or discard it. Both are written in the caller's transaction.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts import topics
from hub.core.inbound import InboundRecord, headers_to_json
from hub.core.outbox import add_rows, outbox_values
from hub.store.models import DeadLetter

H = "eai.error."


@dataclass(frozen=True)
class Failure:
    stage: str  # receive | deserialize | validate | process | deliver
    reason: str
    error_class: str


def error_headers(
    flow: str, f: Failure, rec: InboundRecord, attempts: int, first: datetime, last: datetime
) -> list[tuple[str, bytes]]:
    pairs = {
        "flow": flow,
        "stage": f.stage,
        "reason": f.reason,
        "class": f.error_class,
        "topic": rec.topic,
        "partition": str(rec.partition),
        "offset": str(rec.offset),
        "attempts": str(attempts),
        "first_failure": first.isoformat(),
        "last_failure": last.isoformat(),
    }
    original = [(k, v) for k, v in rec.headers if not k.startswith(H)]
    return original + [(H + k, v.encode("utf-8")) for k, v in pairs.items()]


async def dead_letter(
    session: AsyncSession,
    flow: str,
    rec: InboundRecord,
    failure: Failure,
    *,
    attempts: int = 1,
    message_id: str | None = None,
    source_system: str | None = None,
    first_failure: datetime | None = None,
) -> bool:
    """Record and publish one dead letter. Returns False if this record was already there
    (a redelivery of a batch that had dead-lettered it before the offsets were committed)."""
    now = datetime.now(UTC)
    first = first_failure or now
    existing = await session.scalar(
        select(DeadLetter.id).where(
            DeadLetter.flow == flow,
            DeadLetter.topic == rec.topic,
            DeadLetter.partition == rec.partition,
            DeadLetter.offset == rec.offset,
        )
    )
    if existing is not None:
        await session.execute(
            update(DeadLetter)
            .where(DeadLetter.id == existing)
            .values(attempts=DeadLetter.attempts + 1, last_failure_at=now)
        )
        return False
    headers = error_headers(flow, failure, rec, attempts, first, now)
    session.add(
        DeadLetter(
            flow=flow,
            stage=failure.stage,
            reason=failure.reason,
            error_class=failure.error_class,
            topic=rec.topic,
            partition=rec.partition,
            offset=rec.offset,
            key=rec.key,
            value=rec.value or b"",
            headers=headers_to_json(rec.headers),
            message_id=message_id,
            source_system=source_system,
            attempts=attempts,
            first_failure_at=first,
            last_failure_at=now,
            status="new",
        )
    )
    await add_rows(session, [outbox_values(topics.DLQ, rec.value or b"", rec.key, headers)])
    return True
