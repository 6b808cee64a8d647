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


async def test_a_replay_dry_run_reports_what_the_records_flow_then_does(sessions: Any) -> None:
    """Versions, timestamps and content ties, against the store and against earlier messages
    of the same job, in two chunks: the dry run's counts, pipelined or not, are the outcomes
    the records flow then records when it applies the same messages."""
    from datetime import UTC, datetime

    from flows.records.flow import spec
    from hub.replay import FlowDryRun
    from hub.store.models import RecordEvent

    t0, t1, t2 = (datetime(2026, 11, 24, h, tzinfo=UTC) for h in (8, 9, 10))

    def env(sid: str, version: int | None, name: str, ts: datetime = t1) -> Envelope:
        e = customer_env(0, version=version or 1, name=name)
        return e.model_copy(update={"source_id": sid, "source_version": version, "source_ts": ts})

    stored = [env("A", 2, "甲"), env("B", None, "乙", t1)]
    await BatchProcessor(spec(), sessions, max_message_bytes=100_000).process(
        [rec(e, i) for i, e in enumerate(stored)]
    )
    d1 = env("D", 1, "丁")
    replayed = [
        env("A", 1, "甲"),  # stale: older than the stored version
        env("A", 2, "甲"),  # unchanged: the stored version, same content
        env("A", 2, "甲改"),  # stale: the stored version number, other content
        env("A", 3, "甲三"),  # update
        env("B", None, "乙", t0),  # stale by timestamp
        env("B", None, "乙", t1),  # unchanged: same timestamp and content as stored
        d1,  # create
        # second chunk: compared with what the first chunk left
        env("A", 3, "甲三"),  # unchanged: the same version and content as the replayed one
        env("A", 3, "甲四"),  # stale: that version with other content
        env("B", None, "乙二", t2),  # update
        env("D", 1, "丁"),  # unchanged (another message id, same content)
        d1,  # the same message again: counted as already applied
    ]
    chunks = [[rec(e, i) for i, e in enumerate(replayed[:7])]]
    chunks.append([rec(e, 7 + i) for i, e in enumerate(replayed[7:])])
    expected = {"would_create": 1, "would_update": 2, "unchanged": 5, "stale": 4}
    for pipeline in (False, True):
        dry = FlowDryRun(sessions, spec(), force=False, pipeline=pipeline)
        for chunk in chunks:
            await dry.submit(chunk)
        await dry.settle()
        assert dry.per_entity["customer"] == expected, (pipeline, dry.per_entity)
        assert dry.already_applied == 1

    await BatchProcessor(spec(), sessions, max_message_bytes=100_000).process(
        [r for chunk in chunks for r in chunk]
    )
    async with sessions() as s:
        outcomes = (
            await s.execute(
                select(RecordEvent.outcome, func.count())
                .where(RecordEvent.message_id.in_([str(e.message_id) for e in replayed]))
                .group_by(RecordEvent.outcome)
            )
        ).tuples()
        real = dict(outcomes.all())
    # The flow skips the repeated message (its ledger), so 11 outcomes for 12 messages.
    assert real == {"applied": 3, "unchanged": 4, "stale": 4}, real


async def test_a_replay_dry_run_counts_an_oversize_message_invalid_as_the_flow_dead_letters_it(
    sessions: Any,
) -> None:
    from flows.records.flow import spec
    from hub.replay import FlowDryRun

    # a valid customer, only larger: 60 more characters of name, 180 more bytes
    small, big = customer_env(1), customer_env(2, name="苏州恒达" + "大" * 60)
    limit = len(rec(small, 0).value or b"") + 100
    stats = await BatchProcessor(spec(), sessions, max_message_bytes=limit).process([rec(big, 0)])
    assert stats.dead_lettered == 1  # what the flow does with it
    dry = FlowDryRun(sessions, spec(), force=False, max_message_bytes=limit)
    await dry.deliver([rec(small, 1), rec(big, 2)])
    assert dry.invalid == 1
    assert dry.per_entity["customer"]["would_create"] == 1


async def test_a_replay_dry_run_is_not_held_up_by_a_write_transaction(sessions: Any) -> None:
    """The dry run only reads: a flow's or the relay's transaction that holds the store's
    write lock meanwhile must not stall it (it used to wait for the lock, up to 30 s)."""
    import asyncio

    from sqlalchemy import update

    from flows.records.flow import spec
    from hub.replay import FlowDryRun

    await BatchProcessor(spec(), sessions, max_message_bytes=100_000).process(
        [rec(customer_env(1), 0)]
    )
    async with sessions() as writer, writer.begin():
        await writer.execute(update(ProcessedMessage).values(consumer="records"))
        dry = FlowDryRun(sessions, spec(), force=False)
        await asyncio.wait_for(
            dry.deliver([rec(customer_env(1, version=2), 1), rec(customer_env(2), 2)]), 5
        )
    assert dry.per_entity["customer"]["would_update"] == 1
    assert dry.per_entity["customer"]["would_create"] == 1
