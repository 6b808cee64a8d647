"""Re-driving dead letters: the original (or patched) bytes go back to their topic.

A re-drive is an outbox row for the dead letter's original topic, with its original key and
headers (minus ``eai.error.*`` and any earlier ``eai.redrive.*``) plus ``eai.redrive.*``
headers saying which dead letter, which attempt, by whom and whether it was patched. It is
written in one transaction with the dead letter's new status, a ``dead_letter_redrives`` row
and the audit row. The message keeps its ``message_id`` (a patch may not change it), so the
flow's ledger turns a second re-drive of something already applied into a duplicate: re-driving
has exactly-once effect like everything else.

The optional patch is an RFC 7386 JSON merge patch applied to the JSON value. Before anything is
sent the result is validated the way the dead-lettering flow decodes it (for canonical topics
``Envelope.from_bytes`` and ``contracts.registry.validate_body``); an invalid result is not
sent unless ``force``: it would only come back as a new dead letter.

A native record a connector rejected at the hub's edge (webhook, polling, file import) has no
topic to go back to: it is mapped again by its connector (hub.ingest.redrive) and, when it
maps, its canonical envelopes are written to the outbox once (the dead letter is claimed with
a conditional update, and the envelope ids derive from the dead letter).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Select, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from contracts.errors import ContractError
from hub.core.dlq import H as ERROR_PREFIX
from hub.core.errors import PermanentError
from hub.core.inbound import InboundRecord, headers_from_json, headers_to_json
from hub.core.outbox import add_rows, envelope_values, outbox_values
from hub.core.processor import FlowSpec, decode_envelope
from hub.ingest.redrive import NativeOrigin, native_origin, remap
from hub.store.admin_models import DeadLetterRedrive
from hub.store.models import DeadLetter

REDRIVE_PREFIX = "eai.redrive."
KAFKA_TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
PREVIEW_CHARS = 4000
STATUSES = ("new", "redriven", "discarded")


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386 JSON merge patch: objects merge recursively, null deletes, anything else
    replaces. Neither argument is modified."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = dict(target) if isinstance(target, dict) else {}
    for k, v in patch.items():
        if v is None:
            result.pop(k, None)
        else:
            result[k] = merge_patch(result.get(k), v)
    return result


def is_topic(name: str) -> bool:
    return bool(KAFKA_TOPIC.match(name)) and name not in (".", "..")


@dataclass(frozen=True)
class Filter:
    topic: str | None = None
    flow: str | None = None
    stage: str | None = None
    reason: str | None = None
    status: str | None = None
    source_system: str | None = None
    message_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None

    def apply(self, q: Select[Any]) -> Select[Any]:
        D = DeadLetter
        for col, val in (
            (D.topic, self.topic),
            (D.flow, self.flow),
            (D.stage, self.stage),
            (D.status, self.status),
            (D.source_system, self.source_system),
            (D.message_id, self.message_id),
        ):
            if val is not None:
                q = q.where(col == val)
        if self.reason:
            q = q.where(func.lower(D.reason).contains(self.reason.lower(), autoescape=True))
        if self.since is not None:
            q = q.where(D.first_failure_at >= self.since)
        if self.until is not None:
            q = q.where(D.first_failure_at < self.until)
        return q


@dataclass
class Outcome:
    id: int
    outcome: str  # sent | would_send | invalid | skipped | missing
    reason: str | None = None
    topic: str | None = None
    key: str | None = None
    message_id: str | None = None
    valid: bool | None = None
    validation: str | None = None
    patched: bool = False
    warnings: list[str] = field(default_factory=list)
    headers: list[tuple[str, str]] | None = None
    value_text: str | None = None


@dataclass
class RedriveResult:
    dry_run: bool
    outcomes: list[Outcome]

    def count(self, outcome: str) -> int:
        return sum(1 for o in self.outcomes if o.outcome == outcome)


def redrive_headers(
    original: list[Any], dl_id: int, attempt: int, actor: str, at: datetime, patched: bool
) -> list[tuple[str, bytes]]:
    kept = [
        (k, v)
        for k, v in headers_from_json(original)
        if not k.startswith(ERROR_PREFIX) and not k.startswith(REDRIVE_PREFIX)
    ]
    extra = {
        "dead_letter_id": str(dl_id),
        "attempt": str(attempt),
        "at": at.isoformat(),
        "by": actor,
        "patched": "true" if patched else "false",
    }
    return kept + [(REDRIVE_PREFIX + k, v.encode("utf-8")) for k, v in extra.items()]


def validate(spec: FlowSpec | None, rec: InboundRecord) -> tuple[bool, str, str | None, str | None]:
    """(valid, validation text, message_id, envelope key) as the flow would decode it."""
    decode = spec.decode if spec is not None else decode_envelope
    try:
        env = decode(rec)
    except ContractError as exc:
        return False, exc.reason, None, None
    except PermanentError as exc:
        return False, str(exc), None, None
    if spec is None or spec.validate_body:
        from contracts.registry import validate_body

        try:
            validate_body(env)
        except ContractError as exc:
            return False, exc.reason, str(env.message_id), env.key
    return True, "ok", str(env.message_id), env.key


def _patch_value(value: bytes, patch: dict[str, Any]) -> bytes:
    try:
        doc = json.loads(value.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as exc:
        raise ValueError(f"the value is not JSON, a JSON merge patch cannot apply: {exc}") from exc
    patched = merge_patch(doc, patch)
    before = doc.get("message_id") if isinstance(doc, dict) else None
    after = patched.get("message_id") if isinstance(patched, dict) else None
    if before != after:
        raise ValueError(
            "the patch may not change message_id: the ledger recognises a re-driven message "
            "by it (that is what keeps its effect exactly-once)"
        )
    return json.dumps(patched, ensure_ascii=False, separators=(",", ":")).encode("utf-8")


def flow_spec(flows: Sequence[FlowSpec], name: str) -> FlowSpec | None:
    for spec in flows:
        if spec.name == name or name.startswith(spec.name + ".replay."):
            return spec
    return None


async def redrive(
    session: AsyncSession,
    ids: Sequence[int],
    *,
    flows: Sequence[FlowSpec],
    actor: str,
    patch: dict[str, Any] | None,
    dry_run: bool,
    force: bool,
) -> RedriveResult:
    """Re-drive these dead letters in the caller's transaction (see the module docstring).

    Rows are loaded one at a time so that a thousand large dead letters do not sit in memory
    together. Discarded dead letters are skipped; already re-driven ones may be re-driven
    again (harmless: the ledger drops what was applied).
    """
    now = datetime.now(UTC)
    outcomes: list[Outcome] = []
    for dl_id in ids:
        dl = await session.get(DeadLetter, dl_id)
        if dl is None:
            outcomes.append(Outcome(dl_id, "missing", reason="no such dead letter"))
            continue
        out = Outcome(dl.id, "skipped", topic=dl.topic)
        out.key = dl.key.decode("utf-8", "replace") if dl.key is not None else None
        outcomes.append(out)
        try:
            if dl.status == "discarded":
                out.reason = "discarded"
                continue
            if not is_topic(dl.topic):
                native = native_origin(headers_from_json(dl.headers))
                if native is None:
                    out.reason = (
                        f"its origin {dl.topic!r} is not a Kafka topic and it names no "
                        "connector mapping: send the corrected record to the hub again"
                    )
                    continue
                await _redrive_native(session, dl, out, native, patch, actor, now, dry_run)
                continue
            value = dl.value
            if patch:
                try:
                    value = _patch_value(value, patch)
                except ValueError as exc:
                    out.reason = str(exc)
                    continue
                out.patched = True
            attempt = 1 + int(
                await session.scalar(
                    select(func.count())
                    .select_from(DeadLetterRedrive)
                    .where(DeadLetterRedrive.dead_letter_id == dl.id)
                )
                or 0
            )
            headers = redrive_headers(dl.headers, dl.id, attempt, actor, now, out.patched)
            rec = InboundRecord(dl.topic, dl.partition, dl.offset, value, dl.key, tuple(headers))
            spec = flow_spec(flows, dl.flow)
            out.valid, out.validation, out.message_id, env_key = validate(spec, rec)
            if env_key is not None and out.key is not None and env_key != out.key:
                out.warnings.append(
                    f"the Kafka key {out.key!r} differs from the envelope's key {env_key!r}; "
                    "the original key is kept"
                )
            if dry_run:
                out.headers = [(k, v.decode("utf-8", "replace")) for k, v in headers]
                text = value.decode("utf-8", "replace")
                out.value_text = text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")
            if not out.valid and not force:
                out.outcome = "invalid"
                out.reason = "validation failed (force=true sends it anyway)"
                continue
            if dry_run:
                out.outcome = "would_send"
                continue
            if dl.flow.startswith("deliver.") and dl.stage == "deliver":
                # The delivery flow's ledger already holds this message: a re-publish would be
                # dropped. It goes back into the delivery queue instead, with its idempotency key.
                from hub.delivery.queue import redrive as requeue

                try:
                    await requeue(
                        session,
                        dl.flow.removeprefix("deliver."),
                        dl.message_id or "",
                        force=force,
                        value=value if out.patched else None,
                    )
                except ValueError as exc:
                    out.reason = str(exc)
                    continue
            else:
                await add_rows(session, [outbox_values(dl.topic, value, dl.key, headers)])
            dl.status = "redriven"
            session.add(
                DeadLetterRedrive(
                    dead_letter_id=dl.id,
                    at=now,
                    actor=actor,
                    topic=dl.topic,
                    message_id=out.message_id,
                    patch=patch,
                    forced=bool(force and not out.valid),
                )
            )
            out.outcome = "sent"
        finally:
            await session.flush()
            session.expunge(dl)
    return RedriveResult(dry_run, outcomes)


async def _redrive_native(
    session: AsyncSession,
    dl: DeadLetter,
    out: Outcome,
    native: NativeOrigin,
    patch: dict[str, Any] | None,
    actor: str,
    now: datetime,
    dry_run: bool,
) -> None:
    """A connector's rejected native record: map it again (hub.ingest.redrive); if it maps,
    its envelopes go to the outbox once. ``force`` cannot help: an unmappable record has no
    canonical form to send."""
    from contracts import topics

    if dl.status == "redriven":
        # Its envelopes were written once; a second re-drive would be a second effect.
        out.reason = "already re-driven: its records were written once"
        return
    out.patched = bool(patch)
    result = remap(native, dl.value, patch, id_base=dl.message_id or f"dead-letter/{dl.id}")
    out.valid = result.error is None
    out.validation = result.error or "ok"
    if result.envelopes:
        out.topic = topics.canonical(result.envelopes[0].entity)
        out.key = result.envelopes[0].key
        out.message_id = str(result.envelopes[0].message_id)
    if dry_run:
        text = result.value.decode(native.charset if not out.patched else "utf-8", "replace")
        out.value_text = text[:PREVIEW_CHARS] + ("…" if len(text) > PREVIEW_CHARS else "")
    if result.error is not None:
        out.outcome = "invalid"
        out.reason = f"the connector still rejects it: {result.error}"
        return
    if dry_run:
        out.outcome = "would_send"
        return
    # Claim the dead letter: of two concurrent re-drives only one writes (the ids are stable
    # too, so even a copy that got through would be a duplicate for the ledger).
    claimed = await session.execute(
        update(DeadLetter)
        .where(DeadLetter.id == dl.id, DeadLetter.status == "new")
        .values(status="redriven")
        .execution_options(synchronize_session=False)
    )
    if getattr(claimed, "rowcount", 0) != 1:
        out.reason = "already re-driven: its records were written once"
        return
    extra = [
        (REDRIVE_PREFIX + "dead_letter_id", str(dl.id).encode()),
        (REDRIVE_PREFIX + "by", actor.encode()),
        (REDRIVE_PREFIX + "patched", b"true" if out.patched else b"false"),
    ]
    rows = []
    for env in result.envelopes:
        row = envelope_values(topics.canonical(env.entity), env)
        row["headers"] = [*row["headers"], *headers_to_json(extra)]  # type: ignore[misc]
        rows.append(row)
    await add_rows(session, rows)
    session.add(
        DeadLetterRedrive(
            dead_letter_id=dl.id,
            at=now,
            actor=actor,
            topic=out.topic or "",
            message_id=out.message_id,
            patch=patch,
            forced=False,
        )
    )
    out.outcome = "sent"


async def discard(session: AsyncSession, ids: Sequence[int]) -> list[Outcome]:
    outcomes: list[Outcome] = []
    rows = {
        r.id: r
        for r in (
            await session.execute(
                select(DeadLetter.id, DeadLetter.status, DeadLetter.topic).where(
                    DeadLetter.id.in_(list(ids))
                )
            )
        )
    }
    todo: list[int] = []
    for dl_id in ids:
        r = rows.get(dl_id)
        if r is None:
            outcomes.append(Outcome(dl_id, "missing", reason="no such dead letter"))
        elif r.status == "discarded":
            outcomes.append(Outcome(dl_id, "skipped", reason="already discarded", topic=r.topic))
        else:
            todo.append(dl_id)
            outcomes.append(Outcome(dl_id, "discarded", topic=r.topic))
    if todo:
        from sqlalchemy import update

        await session.execute(
            update(DeadLetter).where(DeadLetter.id.in_(todo)).values(status="discarded")
        )
    return outcomes
