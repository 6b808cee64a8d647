"""The urge flow and scheduler on a real SQLite store and a controllable clock."""

from __future__ import annotations

import asyncio
import datetime as dt
import json
import logging
import uuid
from collections.abc import Iterator
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import func, select

from contracts import topics
from contracts.approval import ApprovalDecision, ApprovalRequest, Urge
from contracts.envelope import Entity, Envelope, Op
from flows.urge import flow as urge_flow
from flows.urge import ladder_urge_id, one_click_urge_id
from flows.urge.policy import UrgePolicy, default_policy
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor
from hub.store import db
from hub.store.models import DeadLetter, OutboxRow
from hub.store.urge_models import Approval, PendingDecision, UrgeRecipientDay, UrgeRecord
from hub.urge_scheduler import UrgeScheduler

SH = ZoneInfo("Asia/Shanghai")
POLICY = default_policy()
CAL = POLICY.build_calendar()
OA = topics.outbound("oa")


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SH)


class Clock:
    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def __call__(self) -> dt.datetime:
        return self.now

    def set(self, t: dt.datetime) -> dt.datetime:
        assert t >= self.now, "time does not go backwards"
        self.now = t
        return t


def hours(start: dt.datetime, end: dt.datetime, step_min: int = 60) -> Iterator[dt.datetime]:
    t = start
    while t <= end:
        yield t
        t += dt.timedelta(minutes=step_min)


def request_env(
    approval_id: str = "PR-2026-0930-001", *, system: str = "erp", **overrides: Any
) -> Envelope:
    fields: dict[str, Any] = {
        "approval_id": approval_id,
        "type": "purchase_requisition",
        "title": "刀头模具钢材 200kg",
        "amount": Decimal("12345"),
        "currency": "CNY",
        "requester": "张三",
        "requester_department": "采购部",
        "approver": "李总",
        "approver_department": "总经办",
        "superior": "王董",
        "submitted_at": at(2026, 9, 30, 16),
    }
    fields.update(overrides)
    body = ApprovalRequest(**fields)
    return Envelope(
        entity=Entity.approval,
        op=Op.request,
        source_system=system,
        source_id=approval_id,
        body=body.model_dump(mode="json"),
    )


def decision_env(
    approval_id: str = "PR-2026-0930-001",
    decided_at: dt.datetime | None = None,
    *,
    system: str = "oa",
    decision: str = "approved",
) -> Envelope:
    body = ApprovalDecision(
        approval_id=approval_id,
        decision=decision,  # type: ignore[arg-type]
        decided_by="李总",
        decided_at=decided_at or at(2026, 10, 12, 9),
    )
    return Envelope(
        entity=Entity.approval,
        op=Op.decide,
        source_system=system,
        source_id=approval_id,
        body=body.model_dump(mode="json"),
    )


class Feed:
    """Messages into the urge flow through the real batch processor (ledger, DLQ)."""

    def __init__(self, sessions: Any, policy: UrgePolicy = POLICY) -> None:
        spec = urge_flow.spec(policy, CAL)
        self.processor = BatchProcessor(spec, sessions, max_message_bytes=1_000_000)
        self.offset = 0

    async def __call__(self, *envs: Envelope) -> None:
        recs = []
        for env in envs:
            recs.append(
                InboundRecord(
                    topics.changes(Entity.approval),
                    0,
                    self.offset,
                    env.to_bytes(),
                    env.key.encode(),
                )
            )
            self.offset += 1
        await self.processor.process(recs)


def scheduler(sessions: Any, clock: Clock, policy: UrgePolicy = POLICY, **kw: Any) -> UrgeScheduler:
    return UrgeScheduler(sessions, policy, CAL, clock=clock, **kw)


async def sent_urges(sessions: Any) -> list[tuple[dt.datetime, int, str, str, Urge]]:
    """The outbox for outbound.oa, in order: (sent_at, level, channel, recipient, body)."""
    async with sessions() as s:
        rows = (
            await s.execute(select(OutboxRow).where(OutboxRow.topic == OA).order_by(OutboxRow.id))
        ).scalars()
        out = []
        for r in rows:
            env = Envelope.from_bytes(r.value)
            if env.entity is not Entity.urge:
                continue  # the request forwarded to OA's workflow
            u = Urge.model_validate(env.body)
            assert u.sent_at is not None
            out.append((u.sent_at.astimezone(SH), u.level, u.channel, u.recipient, u))
        return out


async def run_clock(sched: UrgeScheduler, clock: Clock, times: Iterator[dt.datetime]) -> int:
    n = 0
    for t in times:
        clock.set(t)
        n += await sched.tick()
    return n


async def run_due(sessions: Any, clock: Clock, end: dt.datetime, *scheds: UrgeScheduler) -> int:
    """Jump the clock from one due time to the next (all schedulers tick together) until
    nothing is due before ``end``."""
    n = 0
    for _ in range(10_000):
        async with sessions() as s:
            t = await s.scalar(
                select(func.min(Approval.next_due_at)).where(Approval.status == "open")
            )
        if t is None or t > end:
            return n
        clock.set(max(t, clock.now))
        n += sum(await asyncio.gather(*(s.tick() for s in scheds)))
    raise AssertionError("the schedulers do not make progress")


async def approval(sessions: Any, key: str = "erp:PR-2026-0930-001") -> Approval:
    async with sessions() as s:
        row = await s.scalar(select(Approval).where(Approval.key == key))
        assert row is not None
        return row


EXPECTED = [
    (at(2026, 10, 10, 16), 1, "email", "李总"),  # Saturday 10 Oct: an adjusted working day
    (at(2026, 10, 12, 11), 2, "im", "李总"),  # 1.5 h Sat, Sunday off, 2.5 h Monday
    (at(2026, 10, 13, 11), 3, "sms", "李总"),
    (at(2026, 10, 14, 11), 4, "phone", "李总"),
    (at(2026, 10, 16, 11), 5, "escalation", "王董"),
]


async def test_ladder_across_the_national_day_holiday_and_a_weekend(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    row = await approval(sessions)
    # 3 working days from Wed 30 Sep 16:00 skip the National Day holiday (1-8 Oct).
    assert row.deadline == at(2026, 10, 10, 16)
    assert row.next_due_at == at(2026, 10, 10, 16)
    assert (row.authority, row.status, row.plan["steps"][-1]["recipient"]) == ("gm", "open", "王董")

    clock = Clock(at(2026, 9, 30, 16))
    sched = scheduler(sessions, clock)
    assert await run_clock(sched, clock, hours(at(2026, 9, 30, 16), at(2026, 10, 31))) == 5

    urges = await sent_urges(sessions)
    assert [u[:4] for u in urges] == EXPECTED
    bodies = [u[4] for u in urges]
    assert [b.sequence for b in bodies] == [1, 2, 3, 4, 5]
    assert [b.urge_id for b in bodies] == [
        ladder_urge_id("erp:PR-2026-0930-001", level) for level in range(1, 6)
    ]
    assert all(b.approval_id == "PR-2026-0930-001" and b.origin_system == "erp" for b in bodies)
    assert bodies[1].previous_urge_id == bodies[0].urge_id
    assert "再次提醒：我于 10月10日 发送的催办" in bodies[1].text
    assert bodies[4].escalated_to == "王董"
    assert bodies[4].text.startswith("王董您好")
    assert "请您督办" in bodies[4].text
    row = await approval(sessions)
    assert (row.urge_count, row.next_due_at, row.lease_until) == (5, None, None)


async def test_requests_and_urges_go_to_oa_each_under_its_own_key(sessions: Any) -> None:
    feed = Feed(sessions)
    erp = request_env()
    await feed(erp)
    clock = Clock(at(2026, 10, 10, 16))
    await scheduler(sessions, clock).tick()
    async with sessions() as s:
        rows = list(
            (
                await s.execute(
                    select(OutboxRow).where(OutboxRow.topic == OA).order_by(OutboxRow.id)
                )
            ).scalars()
        )
    request, urge = (Envelope.from_bytes(r.value) for r in rows)
    # The request under the approval's key (OA's form), the urge under its own (a reminder of
    # its own in OA, not an update of an earlier one).
    assert [r.key for r in rows] == [b"erp:PR-2026-0930-001", f"hub:{urge.source_id}".encode()]
    # The requisition itself, as OA's connector maps it to a form: same body, caused by it.
    assert (request.entity, request.op, request.source_system) == (
        Entity.approval,
        Op.request,
        "erp",
    )
    assert request.body == erp.body and request.causation_id == erp.message_id
    assert request.message_id == uuid.uuid5(
        uuid.UUID("0b6f5a52-6a1e-5c8e-9a55-2f1f6b7c0e11"), f"forward/{erp.message_id}"
    )
    assert (urge.entity, urge.source_system) == (Entity.urge, "hub")
    assert urge.message_id == uuid.uuid5(
        uuid.UUID("0b6f5a52-6a1e-5c8e-9a55-2f1f6b7c0e11"), f"message/{urge.source_id}"
    )


async def test_oa_forms_and_closed_requests_are_not_sent_to_oa(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(
        request_env("SP202609300001", system="oa"),
        request_env("PR-CLOSED", attributes={"status": "approved"}),
    )
    async with sessions() as s:
        n = await s.scalar(select(func.count()).where(OutboxRow.topic == OA))
        keys = set((await s.execute(select(Approval.key))).scalars())
    assert n == 0
    assert keys == {"oa:SP202609300001", "erp:PR-CLOSED"}


async def test_a_decision_stops_the_ladder_at_once(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 10, 10, 16))
    sched = scheduler(sessions, clock)
    assert await sched.tick() == 1
    # OA decides about the ERP requisition: another source system, the same approval id.
    await feed(decision_env(decided_at=at(2026, 10, 12, 9)))
    row = await approval(sessions)
    assert (row.status, row.decided_by, row.next_due_at) == ("approved", "李总", None)
    assert await run_clock(sched, clock, hours(at(2026, 10, 12, 9), at(2026, 10, 31))) == 0
    assert len(await sent_urges(sessions)) == 1
    assert (await sched.one_click(row.key, "late", at(2026, 10, 13, 10))).reason == "decided"


async def test_a_decision_before_its_request_is_kept_and_applied(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(decision_env(decided_at=at(2026, 10, 1, 9)))
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PendingDecision)) == 1
    await feed(request_env())
    row = await approval(sessions)
    assert (row.status, row.next_due_at) == ("approved", None)
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PendingDecision)) == 0
    clock = Clock(at(2026, 10, 10, 16))
    assert (
        await run_clock(scheduler(sessions, clock), clock, hours(clock.now, at(2026, 10, 20))) == 0
    )


async def test_decision_and_request_in_one_batch_in_either_order(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(decision_env("A-1", at(2026, 10, 1, 9)), request_env("A-1"))
    await feed(request_env("A-2"), decision_env("A-2", at(2026, 10, 1, 9), decision="rejected"))
    assert (await approval(sessions, "erp:A-1")).status == "approved"
    assert (await approval(sessions, "erp:A-2")).status == "rejected"
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(PendingDecision)) == 0


async def test_oa_copies_of_one_approval_are_one_approval(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    # OA's form for the ERP requisition: same approval id (OA keeps the origin's number),
    # source oa; later the form shows it approved.
    await feed(request_env(system="oa", attributes={"oa.status": "in_approval"}))
    async with sessions() as s:
        assert (await s.execute(select(Approval.key))).scalars().all() == ["erp:PR-2026-0930-001"]
    await feed(request_env(system="oa", attributes={"oa.status": "approved"}))
    row = await approval(sessions)
    assert (row.status, row.next_due_at, row.decided_by) == ("approved", None, "李总")


async def test_resubmission_after_a_decision_starts_a_new_round(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 10, 10, 16))
    sched = scheduler(sessions, clock)
    assert await sched.tick() == 1
    await feed(decision_env(decided_at=at(2026, 10, 10, 17), decision="withdrawn"))
    await feed(request_env(submitted_at=at(2026, 10, 12, 9), title="刀头模具钢材 250kg"))
    row = await approval(sessions)
    assert (row.status, row.round, row.title) == ("open", 2, "刀头模具钢材 250kg")
    # 3 working days from Monday 12 Oct 09:00: Thursday 09:00; the new round's ladder starts
    # at level 1 again with ids of its own.
    clock.set(at(2026, 10, 15, 9))
    assert await sched.tick() == 1
    urges = await sent_urges(sessions)
    assert urges[-1][4].urge_id == ladder_urge_id("erp:PR-2026-0930-001#2", 1)
    assert urges[-1][4].sequence == 1


async def test_restart_in_the_middle_sends_the_missed_fire_once(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 9, 30, 16))
    first = scheduler(sessions, clock, worker_id="before")
    assert await run_clock(first, clock, hours(clock.now, at(2026, 10, 10, 20))) == 1
    # Down from Saturday evening until Thursday 09:00: im, sms and phone were due. A new
    # scheduler on the same store sends only the phone urge, once.
    clock.set(at(2026, 10, 15, 9))
    second = scheduler(sessions, clock, worker_id="after")
    assert await second.tick() == 1
    assert await second.tick() == 0
    assert await run_clock(second, clock, hours(at(2026, 10, 15, 9), at(2026, 10, 31))) == 1
    urges = await sent_urges(sessions)
    assert [u[:4] for u in urges] == [
        EXPECTED[0],
        (at(2026, 10, 15, 9), 4, "phone", "李总"),
        # The full 2 working days after the phone call, then the superior.
        (at(2026, 10, 19, 9), 5, "escalation", "王董"),
    ]
    async with sessions() as s:
        skipped = await s.scalar(select(UrgeRecord.skipped_levels).where(UrgeRecord.level == 4))
    assert skipped == [2, 3]


async def test_a_worker_killed_after_claiming_leaves_a_lease_that_expires(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 10, 10, 16))
    dead = scheduler(sessions, clock, worker_id="dead", lease_s=60)
    rows, _token, _urges = await dead._claim(clock.now)  # claims, then "SIGKILL"
    assert len(rows) == 1
    alive = scheduler(sessions, clock, worker_id="alive")
    assert await alive.tick() == 0  # leased
    clock.set(at(2026, 10, 10, 16, 2))
    assert await alive.tick() == 1
    assert len(await sent_urges(sessions)) == 1


async def test_a_stale_worker_cannot_write_after_its_lease_was_taken_over(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    slow_clock = Clock(at(2026, 10, 10, 16))
    slow = scheduler(sessions, slow_clock, worker_id="slow", lease_s=60)
    gate = asyncio.Event()
    counts = slow._counts

    async def paused(recipients: set[str], day: dt.date) -> dict[str, int]:
        await gate.wait()  # a GC pause between computing and writing
        return await counts(recipients, day)

    slow._counts = paused  # type: ignore[method-assign]
    task = asyncio.create_task(slow.tick())
    await asyncio.sleep(0.2)
    fast_clock = Clock(at(2026, 10, 10, 16, 5))
    assert await scheduler(sessions, fast_clock, worker_id="fast").tick() == 1
    gate.set()
    assert await task == 0
    assert slow.metrics.stale == 1
    assert len(await sent_urges(sessions)) == 1


async def test_two_schedulers_ticking_concurrently_never_urge_twice(
    sessions: Any, sqlite_url: str
) -> None:
    feed = Feed(sessions)
    await feed(
        *[request_env(f"PR-{i:03d}", approver=f"审批人{i}", superior=f"上级{i}") for i in range(40)]
    )
    other_engine = db.create_engine(sqlite_url)
    try:
        clock = Clock(at(2026, 10, 10, 15))
        a = scheduler(sessions, clock, worker_id="a", max_per_tick=7)
        b = scheduler(db.sessionmaker(other_engine), clock, worker_id="b", max_per_tick=7)
        # Both claim from the same backlog of 40 due approvals, 7 at a time, concurrently.
        await run_due(sessions, clock, at(2026, 10, 31), a, b)
    finally:
        await other_engine.dispose()
    urges = await sent_urges(sessions)
    ids = [u[4].urge_id for u in urges]
    assert len(ids) == len(set(ids)) == 40 * 5
    assert a.metrics.sent > 0 and b.metrics.sent > 0, "both workers did part of the work"
    async with sessions() as s:
        assert await s.scalar(select(func.count()).select_from(UrgeRecord)) == 200
        per_approval = (
            await s.execute(select(Approval.urge_count).where(Approval.urge_count != 5))
        ).all()
    assert per_approval == []


async def test_urge_ids_are_unique_in_the_store(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 10, 10, 16))
    sched = scheduler(sessions, clock)
    assert await sched.tick() == 1
    async with sessions() as s, s.begin():
        values = {
            c.key: getattr(await s.scalar(select(UrgeRecord)), c.key)
            for c in UrgeRecord.__table__.columns
            if c.key != "id"
        }
        assert not await sched._insert_urge(s, values), "a second insert of one step is a no-op"


async def test_quiet_hours_and_weekends_defer_and_never_drop(sessions: Any) -> None:
    feed = Feed(sessions)
    # A complaint taken in on Saturday 22:30 is due 6 calendar days later, Friday 22:30: in
    # the quiet hours, then the weekend; the first urge goes out Monday 08:00.
    await feed(
        request_env(
            "CP-1", type="complaint", amount=Decimal(800), submitted_at=at(2026, 11, 21, 22, 30)
        )
    )
    clock = Clock(at(2026, 11, 27, 20))
    sched = scheduler(sessions, clock)
    assert await run_clock(sched, clock, hours(clock.now, at(2026, 11, 30, 7, 30), 30)) == 0
    assert await run_clock(sched, clock, hours(at(2026, 11, 30, 8), at(2026, 11, 30, 9))) == 1
    assert await run_due(sessions, clock, at(2026, 12, 31), sched) == 4
    urges = await sent_urges(sessions)
    assert urges[0][:2] == (at(2026, 11, 30, 8), 1)
    for sent_at, *_ in urges:
        assert dt.time(8) <= sent_at.time() < dt.time(21)
        assert CAL.is_working_day(sent_at.date())


async def test_the_recipient_daily_cap_holds_across_approvals(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(*[request_env(f"PR-{i}") for i in range(8)])
    clock = Clock(at(2026, 10, 10, 16))
    sched = scheduler(sessions, clock)
    assert await sched.tick() == 6  # the cap: 6 urges per recipient per day
    assert await run_clock(sched, clock, hours(at(2026, 10, 10, 17), at(2026, 10, 12, 8))) == 2
    urges = await sent_urges(sessions)
    assert [u[0] for u in urges[6:]] == [at(2026, 10, 12, 8)] * 2  # Sunday is not a working day
    await run_clock(sched, clock, hours(at(2026, 10, 12, 9), at(2026, 10, 31)))
    per_day: dict[tuple[str, dt.date], int] = {}
    for sent_at, _level, _channel, recipient, _u in await sent_urges(sessions):
        per_day[(recipient, sent_at.date())] = per_day.get((recipient, sent_at.date()), 0) + 1
    assert max(per_day.values()) == 6
    async with sessions() as s:
        stored = {
            (r.recipient, r.business_date): r.count
            for r in (await s.execute(select(UrgeRecipientDay))).scalars()
        }
    assert stored == per_day


async def test_one_click_is_rate_limited_idempotent_and_deferred_in_quiet_hours(
    sessions: Any,
) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    key = "erp:PR-2026-0930-001"
    clock = Clock(at(2026, 10, 9, 9))
    sched = scheduler(sessions, clock)
    r1 = await sched.one_click(key, "c1", urged_by="深圳某经销商")
    assert (r1.outcome, r1.urge_id) == ("send", one_click_urge_id(key, "c1"))
    assert (await sched.one_click(key, "c1")).outcome == "duplicate"
    clock.set(at(2026, 10, 9, 9, 10))
    r2 = await sched.one_click(key, "c2")
    assert (r2.outcome, r2.reason, r2.retry_after) == (
        "rejected",
        "rate_limited",
        at(2026, 10, 9, 9, 30),
    )
    assert (await sched.one_click("erp:nope", "c9")).outcome == "not_found"
    # At 22:00 the click is accepted and delivered at 08:00 the next (working) morning.
    clock.set(at(2026, 10, 9, 22))
    r3 = await sched.one_click(key, "c3")
    assert (r3.outcome, r3.send_at) == ("deferred", at(2026, 10, 10, 8))
    urges = await sent_urges(sessions)
    assert len(urges) == 1
    assert "深圳某经销商通过客户门户发起一键催办" in urges[0][4].text
    assert urges[0][2] == "im"
    assert await run_clock(sched, clock, hours(at(2026, 10, 9, 23), at(2026, 10, 10, 15))) == 1
    # The ladder's first step at 16:00 comes after the portal urges and refers to them.
    assert await run_clock(sched, clock, hours(at(2026, 10, 10, 16), at(2026, 10, 10, 18))) == 1
    urges = await sent_urges(sessions)
    assert [(u[0], u[1], u[2], u[4].sequence) for u in urges] == [
        (at(2026, 10, 9, 9), 1, "im", 1),
        (at(2026, 10, 10, 8), 1, "im", 2),
        (at(2026, 10, 10, 16), 1, "email", 3),
    ]
    assert urges[2][4].previous_urge_id == r3.urge_id
    row = await approval(sessions)
    assert row.urge_count == 3


async def test_an_unplannable_request_is_dead_lettered_with_the_reason(sessions: Any) -> None:
    strict = POLICY.model_copy(update={"fallback_type": None})
    feed = Feed(sessions, strict)
    await feed(request_env("EX-1", type="expense"), request_env("PR-9"))
    async with sessions() as s:
        dl = (await s.execute(select(DeadLetter))).scalar_one()
        keys = (await s.execute(select(Approval.key))).scalars().all()
    assert "approval type 'expense' is not in the urge policy" in dl.reason
    assert dl.flow == "urges"
    assert keys == ["erp:PR-9"]


async def test_a_new_approver_gets_a_ladder_of_its_own(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 10, 10, 16))
    sched = scheduler(sessions, clock)
    assert await sched.tick() == 1
    # The request moves on to the next approver in the chain.
    await feed(request_env(approver="赵总", superior="王董"))
    clock.set(at(2026, 10, 10, 17))
    assert await sched.tick() == 1
    urges = await sent_urges(sessions)
    assert [(u[1], u[3], u[4].sequence) for u in urges] == [(1, "李总", 1), (1, "赵总", 1)]


@pytest.mark.parametrize("policy_change", [True, False])
async def test_a_changed_policy_reaches_open_approvals(sessions: Any, policy_change: bool) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    clock = Clock(at(2026, 10, 1, 9))
    policy = POLICY
    if policy_change:
        data = json.loads(POLICY.model_dump_json())
        data["types"]["purchase_requisition"]["bands"][2]["deadline"] = {
            "after": {"value": 1, "unit": "days", "working": True}
        }
        policy = UrgePolicy.model_validate(data)
    sched = scheduler(sessions, clock, policy)
    assert await sched.replan_stale() == (1 if policy_change else 0)
    await sched.tick()
    row = await approval(sessions)
    # 1 working day after Wed 30 Sep 16:00 is Thursday 8 Oct 16:00 (holiday 1-7 Oct).
    expected = at(2026, 10, 8, 16) if policy_change else at(2026, 10, 10, 16)
    assert (row.deadline, row.next_due_at) == (expected, expected)


async def test_one_broken_approval_does_not_hold_up_the_others(
    sessions: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    import hub.urge_scheduler as module

    feed = Feed(sessions)
    await feed(request_env("BAD"), request_env("GOOD"), request_env("EX-1", type="expense"))
    real = module.next_action

    def flaky(state: Any, *args: Any) -> Any:
        if state.plan.approval_id == "erp:BAD":
            raise RuntimeError("corrupt state")
        return real(state, *args)

    monkeypatch.setattr(module, "next_action", flaky)
    clock = Clock(at(2026, 10, 10, 16))
    # The policy changed: "expense" is no longer urged (no fallback type any more).
    strict = POLICY.model_copy(update={"fallback_type": None})
    assert await scheduler(sessions, clock, strict).tick() == 1
    bad = await approval(sessions, "erp:BAD")
    assert bad.next_due_at == at(2026, 10, 10, 16, 15)
    assert bad.last_error == "RuntimeError: corrupt state"
    gone = await approval(sessions, "erp:EX-1")
    assert gone.next_due_at is None and "not in the urge policy" in (gone.last_error or "")
    assert (await approval(sessions, "erp:GOOD")).urge_count == 1


async def test_run_loop_urges_and_stops_promptly(sessions: Any) -> None:
    feed = Feed(sessions)
    await feed(request_env())
    woken: list[int] = []
    sched = scheduler(
        sessions, Clock(at(2026, 10, 10, 16)), tick_s=30, on_committed=lambda: woken.append(1)
    )
    task = asyncio.create_task(sched.run())
    for _ in range(100):
        if sched.metrics.sent:
            break
        await asyncio.sleep(0.02)
    sched.stop()
    await asyncio.wait_for(task, 2)
    assert (sched.metrics.sent, woken) == (1, [1])
    assert len(await sent_urges(sessions)) == 1


def test_the_configured_policy_is_loaded_once_per_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Any
) -> None:
    from flows.urge.policy import DEFAULT_POLICY_PATH, PolicyError

    monkeypatch.delenv("EAI_URGE_POLICY", raising=False)
    assert urge_flow.configured_policy() is urge_flow.configured_policy(DEFAULT_POLICY_PATH)
    bad = tmp_path / "urge.yaml"
    bad.write_text(
        DEFAULT_POLICY_PATH.read_text().replace("max_per_approval: 8", "max_per_approval: 2")
    )
    monkeypatch.setenv("EAI_URGE_POLICY", str(bad))
    with pytest.raises(PolicyError, match=r"caps\.max_per_approval"):
        urge_flow.spec()


# -- admin API ------------------------------------------------------------------------------


async def test_the_admin_api_lists_urges_and_accepts_one_click(sessions: Any) -> None:
    import httpx
    from fastapi import FastAPI

    from hub.api.auth import create_token
    from hub.api.urges import router
    from hub.store.admin_models import AuditEntry

    feed = Feed(sessions)
    await feed(request_env("0010000123/00010"), request_env("PR-2", approver="赵总"))
    await feed(decision_env("PR-2", at(2026, 10, 9, 10), decision="rejected"))
    clock = Clock(at(2026, 10, 10, 16))
    sched = scheduler(sessions, clock)
    await run_clock(sched, clock, hours(clock.now, at(2026, 10, 12, 11)))

    class FakeHub:
        def __init__(self) -> None:
            self.sessions = sessions
            self.urge_scheduler = sched

    app = FastAPI()
    app.state.hub = FakeHub()
    app.include_router(router)
    async with sessions() as s, s.begin():
        row1, viewer = await create_token(s, "dashboard", "viewer", "test")
        row2, portal = await create_token(s, "customer-portal", "operator", "test")
        # (hub.api.auth's lookup cannot stamp a never-used token yet: it begins a transaction
        # on a session that already has one.)
        row1.last_used_at = row2.last_used_at = dt.datetime.now(dt.UTC)
    key = "erp:0010000123/00010"
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {viewer}"}
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=auth) as c:
        assert (await c.get("/approvals", headers={"Authorization": ""})).status_code == 401
        denied = await c.post(f"/approvals/{key}/urge", json={"click_id": "v"})
        assert denied.status_code == 403, "a viewer cannot urge"
        page = (await c.get("/approvals", params={"overdue": True})).json()
        assert page["total"] == 1
        assert page["items"][0]["key"] == key and page["items"][0]["overdue"] is True
        assert (await c.get("/approvals", params={"status": "rejected"})).json()["total"] == 1
        assert (await c.get("/approvals", params={"approver": "李总"})).json()["total"] == 1

        detail = (await c.get(f"/approvals/{key}")).json()
        assert [u["level"] for u in detail["urges"]] == [1, 2]
        assert detail["plan"]["steps"][-1]["channel"] == "escalation"
        assert (await c.get("/approvals/erp:nope")).status_code == 404

        c.headers["Authorization"] = f"Bearer {portal}"
        clock.set(at(2026, 10, 12, 11, 10))
        r = await c.post(f"/approvals/{key}/urge", json={"click_id": "p1", "urged_by": "经销商"})
        assert (r.status_code, r.json()["outcome"], r.headers["retry-after"]) == (
            429,
            "rejected",
            "1200",  # 30 minutes after the urge at 11:00
        )
        clock.set(at(2026, 10, 12, 11, 30))
        r = await c.post(f"/approvals/{key}/urge", json={"click_id": "p1"})
        assert (r.status_code, r.json()["outcome"]) == (200, "send")
        r = await c.post(f"/approvals/{key}/urge", json={"click_id": "p1"})
        assert (r.status_code, r.json()["outcome"]) == (200, "duplicate")
        r = await c.post("/approvals/erp:PR-2/urge", json={"click_id": "p2"})
        assert (r.status_code, r.json()["reason"]) == (409, "decided")
        assert (await c.post("/approvals/erp:x/urge", json={"click_id": "p"})).status_code == 404

        async with sessions() as s:
            audited = (
                await s.execute(
                    select(AuditEntry.actor, AuditEntry.status, AuditEntry.params)
                    .where(AuditEntry.action == "approvals.urge")
                    .order_by(AuditEntry.id)
                )
            ).all()
        assert [(a, st, p.get("outcome")) for a, st, p in audited] == [
            ("dashboard", 403, None),
            ("customer-portal", 429, "rejected"),
            ("customer-portal", 200, "send"),
            ("customer-portal", 200, "duplicate"),
            ("customer-portal", 409, "rejected"),
            ("customer-portal", 404, "not_found"),
        ]
        stats = (await c.get("/urges/stats")).json()
        assert stats["urges"] == 3
        assert stats["by_level"] == {"1": 1, "2": 2}  # a one-click urge counts at the level reached
        assert stats["by_approver"] == {"李总": 3}
        assert stats["by_department"] == {"总经办": 3}
        assert stats["by_type"] == {"purchase_requisition": 3}
        assert stats["time_to_decision"]["count"] == 1
        assert stats["overdue"][0]["key"] == key
        assert stats["difficulty"][0] == {
            **stats["difficulty"][0],
            "key": key,
            "urges": 3,
            "band_index": 2,
        }


async def test_urge_stats_aggregated_in_sql_answer_as_the_rows_read_into_memory(
    sessions: Any,
) -> None:
    """/urges/stats against the analytics over every row of the window (what it computed
    before the store aggregated): overdue ties at the cut of the top list, urges outside the
    window or not sent, approvals without department, decided and open ones."""
    import random

    import httpx
    from fastapi import FastAPI

    from flows.urge import analytics
    from hub.api.auth import create_token
    from hub.api.urges import router

    rnd = random.Random(7)
    now = at(2026, 10, 12, 11)
    approvals: list[dict[str, Any]] = []
    urges: list[dict[str, Any]] = []
    async with sessions() as s, s.begin():
        for i in range(60):
            submitted = now - dt.timedelta(days=rnd.choice([1, 5, 30, 80, 120]), hours=i)
            decided = submitted + dt.timedelta(hours=rnd.randint(1, 90)) if i % 3 == 0 else None
            deadline = now - dt.timedelta(hours=rnd.choice([-5, 2, 2, 30, 200]))  # ties
            row = {
                "key": f"erp:A{i:03d}",
                "type": rnd.choice(["purchase_requisition", "contract", "expense"]),
                "amount": str(rnd.choice([300, 8000, 250000])),
                "currency": "CNY",
                "approver": rnd.choice(["李总", "王总", "赵总"]),
                "approver_department": rnd.choice(["总经办", "财务部", None]),
                "submitted_at": submitted,
                "deadline": deadline,
                "decided_at": decided,
                "status": "approved" if decided else "open",
            }
            s.add(
                Approval(
                    **row,
                    origin_system="erp",
                    approval_id=row["key"][4:],
                    type_key=row["type"],
                    title="t",
                    requester="张三",
                    tie="none",
                    band_index=0,
                    authority="approver",
                    request={},
                    plan={},
                    policy_fingerprint="f",
                    created_at=submitted,
                    updated_at=submitted,
                )
            )
            approvals.append({**row, "approval_id": row["key"]})
            for j in range(rnd.choice([0, 0, 1, 3, 6])):
                sent_at = now - dt.timedelta(days=rnd.choice([1, 10, 100]), minutes=j)
                status = "sent" if j != 4 else "scheduled"
                level, channel = rnd.randint(1, 3), rnd.choice(["im", "sms", "escalation"])
                s.add(
                    UrgeRecord(
                        urge_id=str(uuid.uuid4()),
                        approval_key=row["key"],
                        kind="ladder",
                        status=status,
                        level=level,
                        channel=channel,
                        recipient="r",
                        text="催",
                        sequence=j,
                        due_at=sent_at,
                        send_at=sent_at,
                        sent_at=sent_at,
                        created_at=sent_at,
                    )
                )
                if status == "sent":
                    urges.append(
                        {"approval_id": row["key"], "level": level, "channel": channel,
                         "recipient": "r", "sent_at": sent_at}
                    )  # fmt: skip
        _, viewer = await create_token(s, "dashboard", "viewer", "test")

    class FakeHub:
        def __init__(self) -> None:
            self.sessions = sessions
            self.urge_scheduler = scheduler(sessions, Clock(now))

    app = FastAPI()
    app.state.hub = FakeHub()
    app.include_router(router)
    transport = httpx.ASGITransport(app=app)
    auth = {"Authorization": f"Bearer {viewer}"}
    calendar = app.state.hub.urge_scheduler.calendar
    policy = app.state.hub.urge_scheduler.policy
    async with httpx.AsyncClient(transport=transport, base_url="http://t", headers=auth) as c:
        for days, top in ((90, 5), (30, 20), (3660, 3)):
            got = (await c.get("/urges/stats", params={"days": days, "top": top})).json()
            since = now - dt.timedelta(days=days)
            window = [a for a in approvals if a["submitted_at"] >= since or a["status"] == "open"]
            keys = {a["key"] for a in window}
            sent = [u for u in urges if u["sent_at"] >= since and u["approval_id"] in keys]
            counts = analytics.urge_counts(window, sent)
            late = analytics.overdue(window, now, urges=sent, calendar=calendar)[:top]
            hard = analytics.difficulty_ranking(window, sent, policy, limit=top)
            ttd = analytics.time_to_decision(window, calendar=calendar)
            assert got["approvals"] == len(window) and got["urges"] == counts.total
            assert got["by_type"] == counts.by_type and got["by_approver"] == counts.by_approver
            assert got["by_department"] == counts.by_department
            assert got["by_level"] == {str(k): v for k, v in counts.by_level.items()}
            assert got["by_channel"] == counts.by_channel
            assert [(o["key"], o["urges"]) for o in got["overdue"]] == [
                (i.approval_id, i.urges) for i in late
            ]
            assert [(d["key"], d["urges"], d["score"]) for d in got["difficulty"]] == [
                (i.approval_id, i.urges, str(i.score)) for i in hard
            ]
            assert got["time_to_decision"]["count"] == ttd.overall.count
            assert got["time_to_decision"]["p90_s"] == ttd.overall.p90.total_seconds()  # type: ignore[union-attr]
            assert len(got["overdue"]) == min(top, len(late)) and len(late) > 0


async def test_a_scheduler_starting_near_the_end_of_the_holiday_data_warns(
    sessions: Any, caplog: pytest.LogCaptureFixture
) -> None:
    sched = scheduler(sessions, Clock(at(2026, 12, 6, 9)), tick_s=30)
    with caplog.at_level(logging.WARNING, logger="hub.urge_scheduler"):
        task = asyncio.create_task(sched.run())
        for _ in range(100):
            if sched.metrics.ticks:
                break
            await asyncio.sleep(0.02)
        sched.stop()
        await asyncio.wait_for(task, 2)
    [warning] = [r for r in caplog.records if "chinesecalendar" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "only up to 2026-12-31" in warning.getMessage()


async def test_an_approval_that_can_no_longer_be_planned_is_reported_not_silently_dropped(
    sessions: Any, caplog: pytest.LogCaptureFixture
) -> None:
    from hub.metrics import REGISTRY

    def unplannable() -> float:
        return REGISTRY.get_sample_value("eai_urge_unplannable_total") or 0.0

    feed = Feed(sessions)
    await feed(request_env("EX-1", type="expense"), request_env("GOOD"))
    before = unplannable()
    # The policy changed: "expense" is no longer urged (no fallback type any more).
    strict = POLICY.model_copy(update={"fallback_type": None})
    sched = scheduler(sessions, Clock(at(2026, 10, 10, 16)), strict)
    with caplog.at_level(logging.INFO, logger="hub.urge_scheduler"):
        assert await sched.tick() == 1
    gone = await approval(sessions, "erp:EX-1")
    assert gone.next_due_at is None and "not in the urge policy" in (gone.last_error or "")
    assert (sched.metrics.unplannable, unplannable() - before) == (1, 1.0)
    [warning] = [r for r in caplog.records if "erp:EX-1" in r.getMessage()]
    assert warning.levelno == logging.WARNING
    assert "not urged again" in warning.getMessage()
    # names the approval, not the people or the item
    for personal in ("李总", "张三", "王董", "刀头模具钢材"):
        assert personal not in warning.getMessage()


async def test_the_scheduler_counters_are_on_metrics(sessions: Any) -> None:
    from prometheus_client import generate_latest

    from hub.metrics import REGISTRY

    sent_before = REGISTRY.get_sample_value("eai_urge_sent_total") or 0.0
    feed = Feed(sessions)
    await feed(request_env())
    assert await scheduler(sessions, Clock(at(2026, 10, 10, 16))).tick() == 1
    assert REGISTRY.get_sample_value("eai_urge_sent_total") == sent_before + 1
    exposed = generate_latest(REGISTRY).decode()
    for name in (
        "eai_urge_sent_total",
        "eai_urge_conflicts_total",
        "eai_urge_stale_total",
        "eai_urge_capped_total",
        "eai_urge_unplannable_total",
    ):
        assert f"\n{name} " in exposed
    assert 'eai_urge_errors_total{stage="tick"}' in exposed
    assert 'eai_urge_errors_total{stage="approval"}' in exposed
