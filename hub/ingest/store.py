"""Writing accepted envelopes and rejections in one transaction."""

from __future__ import annotations

import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from connectors.common.errors import Rejection
from contracts import topics
from contracts.envelope import Envelope
from hub.core.dlq import Failure, dead_letter
from hub.core.inbound import InboundRecord
from hub.core.outbox import add_rows, envelope_values

NAMESPACE = uuid.UUID("5b0e7f5e-6a55-4f5e-9d7e-2f1f3f7e0a11")


@dataclass
class Accepted:
    message_ids: list[str] = field(default_factory=list)
    rejected: list[dict[str, Any]] = field(default_factory=list)


def stable_id(*parts: object) -> uuid.UUID:
    return uuid.uuid5(NAMESPACE, "/".join(str(p) for p in parts))


async def write(
    session: AsyncSession,
    results: Sequence[Envelope | Rejection],
    *,
    origin: str,
    flow: str,
    id_parts: tuple[object, ...] | None = None,
    charset: str | None = None,
) -> Accepted:
    """``origin`` names where the records came from (webhook:crm.customer, poll:erp.material);
    with ``id_parts`` the message ids are derived from them, so a retried delivery of the
    same request yields the same ids and the ledger drops the repeat. A rejection is dead-
    lettered with its native bytes and ``eai.native.*`` headers (system, entity, charset), so
    that it can be re-driven through the connector's mapping (hub.ingest.redrive)."""
    out = Accepted()
    rows: list[dict[str, object]] = []
    base = time.time_ns()
    for i, res in enumerate(results):
        if isinstance(res, Rejection):
            pos = res.position if res.position is not None else i
            # The whole body (position None) is in the request's charset; a record cut out of
            # an array was re-serialised as UTF-8 JSON by the connector.
            headers = native_headers(res, charset=charset if res.position is None else None)
            rec = InboundRecord(
                topic=origin, partition=0, offset=base + i, value=res.raw, headers=headers
            )
            await dead_letter(
                session,
                flow,
                rec,
                Failure("validate", res.reason, "Rejection"),
                source_system=res.system,
                # The id the record would have had: re-drives of two dead letters of one
                # retried request give envelopes with the same ids (hub.ingest.redrive).
                message_id=str(stable_id(*id_parts, i)) if id_parts is not None else None,
            )
            out.rejected.append(
                {
                    "position": pos,
                    "field": res.field,
                    "value": _short(res.value),
                    "rule": res.rule,
                    "reason": res.reason,
                }
            )
            continue
        env = res
        if id_parts is not None:
            env = env.model_copy(update={"message_id": stable_id(*id_parts, i)})
        rows.append(envelope_values(topics.canonical(env.entity), env))
        out.message_ids.append(str(env.message_id))
    await add_rows(session, rows)
    return out


NATIVE = "eai.native."


def native_headers(res: Rejection, *, charset: str | None = None) -> tuple[tuple[str, bytes], ...]:
    """What a re-drive needs to map the dead letter's bytes again."""
    pairs = {"system": res.system, "entity": res.entity, "source": res.source}
    if charset:
        pairs["charset"] = charset
    if "truncated_from_bytes" in res.extra:
        pairs["truncated_from_bytes"] = str(res.extra["truncated_from_bytes"])
    return tuple((NATIVE + k, v.encode()) for k, v in pairs.items() if v)


def _short(value: Any) -> Any:
    text = repr(value)
    return value if len(text) <= 200 else text[:197] + "..."
