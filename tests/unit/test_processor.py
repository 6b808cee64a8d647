"""The batch processor against a real SQLite store, without Kafka: ledger, savepoints, DLQ."""

from __future__ import annotations

from typing import Any

from sqlalchemy import func, select

from contracts import topics
from contracts.envelope import Envelope
from hub.core.errors import PermanentError, TransientError
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor, FlowContext, FlowSpec, Item
from hub.store.models import DeadLetter, OutboxRow, ProcessedMessage
from tests.helpers import customer_env

applied: list[str] = []


async def handler(ctx: FlowContext, items: list[Item]) -> None:
    for item in items:
        env = item.env
        if env.body.get("name") == "boom":
            ctx.emit("out", env)  # must be rolled back with the savepoint
            raise PermanentError("field 'body.name' value 'boom': refused by the test rule")
        if env.body.get("name") == "db-down":
            raise TransientError("store unavailable")
        applied.append(env.source_id)
        ctx.emit("out", env.caused())


def rec(env: Envelope, offset: int) -> InboundRecord:
    return InboundRecord("canonical.customer", 0, offset, env.to_bytes(), env.key.encode())


def processor(sessions: Any) -> BatchProcessor:
    spec = FlowSpec("t", ["canonical.customer"], handler)
    return BatchProcessor(spec, sessions, max_message_bytes=10_000)


async def counts(sessions: Any) -> tuple[int, int, int]:
    async with sessions() as s:
        return (
            await s.scalar(select(func.count()).select_from(ProcessedMessage)),
            await s.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.topic == "out")
            ),
            await s.scalar(select(func.count()).select_from(DeadLetter)),
        )


async def test_duplicates_in_and_across_batches_apply_once(sessions: Any) -> None:
    applied.clear()
    a, b = customer_env(1), customer_env(2)
    p = processor(sessions)
    s1 = await p.process([rec(a, 0), rec(a, 1), rec(b, 2)])
    s2 = await p.process([rec(a, 3), rec(b, 4)])
    assert (s1.applied, s1.duplicates, s2.applied, s2.duplicates) == (2, 1, 0, 2)
    assert applied == ["C00001", "C00002"]
    assert await counts(sessions) == (2, 2, 0)


async def test_failing_message_is_dead_lettered_and_its_effects_rolled_back(sessions: Any) -> None:
    applied.clear()
    good, bad = customer_env(1), customer_env(2, name="boom")
    stats = await processor(sessions).process([rec(bad, 0), rec(good, 1)])
    assert (stats.applied, stats.dead_lettered) == (1, 1)
    assert applied == ["C00001"], "the good message applied once: the failed fast path left nothing"
    ledger, out, dead = await counts(sessions)
    assert (ledger, out, dead) == (1, 1, 1), "only the good message's emit survives"
    async with sessions() as s:
        dl = await s.scalar(select(DeadLetter))
        dlq_rows = await s.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.topic == topics.DLQ)
        )
    assert dl.stage == "process" and "refused by the test rule" in dl.reason
    assert dl.message_id == str(bad.message_id)
    assert dlq_rows == 1


async def test_redelivered_batch_does_not_duplicate_dead_letters(sessions: Any) -> None:
    raw = InboundRecord("canonical.customer", 0, 9, b"\xff\xfe not utf8")
    p = processor(sessions)
    await p.process([raw])
    await p.process([raw])
    async with sessions() as s:
        dl = (await s.execute(select(DeadLetter))).scalar_one()
    assert dl.attempts == 2 and dl.stage == "deserialize"


async def test_transient_error_rolls_back_the_whole_batch(sessions: Any) -> None:
    applied.clear()
    good, flaky = customer_env(1), customer_env(2, name="db-down")
    try:
        await processor(sessions).process([rec(good, 0), rec(flaky, 1)])
    except TransientError:
        pass
    else:
        raise AssertionError("TransientError expected")
    assert await counts(sessions) == (0, 0, 0), "nothing committed: the batch is retried whole"


async def test_an_approval_decision_does_not_make_its_request_stale(sessions: Any) -> None:
    from datetime import UTC, datetime

    from contracts.envelope import Entity, Op
    from flows.records.flow import spec
    from hub.store.models import RecordEvent

    common = {"entity": Entity.approval, "source_system": "erp", "source_id": "PR-1"}
    decision = Envelope(
        **common,
        op=Op.decide,
        source_version=2,
        body={
            "approval_id": "PR-1",
            "decision": "approved",
            "decided_by": "王总",
            "decided_at": datetime(2026, 11, 24, 9, tzinfo=UTC).isoformat(),
        },
    )
    request = Envelope(
        **common,
        op=Op.request,
        source_version=1,
        body={
            "approval_id": "PR-1",
            "type": "purchase_requisition",
            "title": "请购 电机",
            "amount": "8000",
            "requester": "李工",
            "approver": "王总",
            "submitted_at": datetime(2026, 11, 23, 9, tzinfo=UTC).isoformat(),
        },
    )
    p = BatchProcessor(spec(), sessions, max_message_bytes=100_000)
    await p.process([rec(decision, 0), rec(request, 1)])
    async with sessions() as s:
        outcomes = dict(
            (await s.execute(select(RecordEvent.entity, RecordEvent.outcome))).tuples().all()
        )
    assert outcomes == {"approval.decision": "applied", "approval": "applied"}


async def test_a_replay_dry_run_keys_decisions_like_the_records_flow(sessions: Any) -> None:
    from datetime import UTC, datetime

    from contracts.envelope import Entity, Op
    from flows.records.flow import spec
    from hub.replay import FlowDryRun

    common = {"entity": Entity.approval, "source_system": "erp", "source_id": "PR-2"}
    decision = Envelope(
        **common,
        op=Op.decide,
        source_version=2,
        body={"approval_id": "PR-2", "decision": "approved", "decided_by": "王总",
              "decided_at": datetime(2026, 11, 24, 9, tzinfo=UTC).isoformat()},
    )  # fmt: skip
    request = Envelope(
        **common,
        op=Op.request,
        source_version=1,
        body={"approval_id": "PR-2", "type": "purchase_requisition", "title": "请购 轴承",
              "amount": "6000", "requester": "李工", "approver": "王总",
              "submitted_at": datetime(2026, 11, 23, 9, tzinfo=UTC).isoformat()},
    )  # fmt: skip
    dry = FlowDryRun(sessions, spec(), force=False)
    await dry.deliver([rec(decision, 0), rec(request, 1)])
    counts = dry.per_entity["approval"]
    assert (counts["would_create"], counts["stale"]) == (2, 0), counts
