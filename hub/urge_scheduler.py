"""The urge scheduler: timers in the store, fired once, delivered through the outbox.

Each tick:

1. claim due approvals (``next_due_at <= now``, open, lease free or expired) with a row lease;
   on PostgreSQL the claim uses ``FOR UPDATE SKIP LOCKED`` so workers never wait for each
   other, on SQLite the claim transaction (``BEGIN IMMEDIATE``) is serialised;
2. load what was sent (urges of the approval's current round) and today's count per
   recipient, and ask the pure :func:`flows.urge.next_action` what to do;
3. in ONE transaction, after checking the row is still the version computed from (a decision,
   a new request or a one-click urge in between wins): raise the recipient's day counter (a
   conditional upsert, so concurrent workers cannot exceed the cap), insert the urge row
   (``urge_id`` is deterministic and unique: a second fire of the same step inserts nothing
   and sends nothing), write the Urge envelope to the outbox for ``outbound.oa``, set
   ``next_due_at`` to the next moment anything could be due (NULL when the ladder is over)
   and release the lease.

A fire missed while the hub was down is sent once: :func:`flows.urge.next_action` collapses
overdue steps to the highest one. The clock is injected, so tests run the ladder on a fake one.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import datetime as dt
import logging
import time
import uuid
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

from sqlalchemy import or_, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from contracts import topics
from contracts.approval import Urge
from contracts.envelope import Entity, Envelope, Op
from flows.urge import (
    ApprovalFacts,
    ApprovalPlan,
    BusinessCalendar,
    PlanError,
    SendUrge,
    SentUrge,
    UrgePolicy,
    UrgeState,
    Wait,
    next_action,
    next_allowed_send_time,
)
from flows.urge import one_click as one_click_action
from flows.urge.flow import OPEN, plan_columns, plan_for, urge_scope
from flows.urge.ladder import URGE_NAMESPACE
from flows.urge.policy import Channel
from hub import metrics as prom
from hub.core.outbox import add_rows, envelope_values
from hub.store.urge_models import Approval, UrgeRecipientDay, UrgeRecord

log = logging.getLogger(__name__)

Clock = Callable[[], dt.datetime]
_CHUNK = 500  # rows per multi-row statement (bind parameter limits)
RETRY_AFTER_ERROR = dt.timedelta(minutes=15)
ClickOutcome = Literal["send", "deferred", "rejected", "duplicate", "not_found"]


def utc_now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class ClickResult:
    """What happened to a one-click urge (一键催办). ``send``: delivered now; ``deferred``:
    accepted, delivered at ``send_at`` (quiet hours); ``rejected``: see ``reason`` and
    ``retry_after``; ``duplicate``: this click id was handled before (as ``urge_id``)."""

    outcome: ClickOutcome
    urge_id: str | None = None
    reason: str | None = None
    retry_after: dt.datetime | None = None
    send_at: dt.datetime | None = None


@dataclass
class SchedulerMetrics:
    ticks: int = 0
    claimed: int = 0
    sent: int = 0
    conflicts: int = 0  # urges another worker had already inserted
    stale: int = 0  # results dropped because the approval changed meanwhile
    capped: int = 0  # sends held back by the recipient's daily cap at write time
    errors: int = 0  # whole ticks that failed
    approval_errors: int = 0  # single approvals that failed (looked at again later)
    unplannable: int = 0  # approvals left without a timer: the policy cannot plan them
    last_error: str | None = None
    last_tick_s: float = 0.0
    last_find_s: float = 0.0  # finding (and leasing) the due approvals, in the last tick


@dataclass
class _Send:
    """An urge row to insert (or a scheduled one to deliver) and its envelope fields."""

    values: dict[str, Any]
    scheduled: bool = False  # deliver an existing scheduled row instead of inserting


@dataclass
class _Outcome:
    row: Approval
    next_due_at: dt.datetime | None
    sends: list[_Send] = field(default_factory=list)
    plan: ApprovalPlan | None = None
    error: str | None = None


class UrgeScheduler:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        policy: UrgePolicy,
        calendar: BusinessCalendar | None = None,
        *,
        clock: Clock = utc_now,
        tick_s: float = 1.0,
        max_per_tick: int = 500,
        worker_id: str | None = None,
        lease_s: float = 60.0,
        target_system: str = "oa",
        on_committed: Callable[[], None] | None = None,
    ) -> None:
        self.sessions = sessions
        self.policy = policy
        self.calendar = calendar or policy.build_calendar()
        self.clock = clock
        self.tick_s = tick_s
        self.max_per_tick = max_per_tick
        self.worker_id = worker_id or f"urge-{uuid.uuid4().hex[:8]}"
        self.lease = dt.timedelta(seconds=lease_s)
        self.topic = topics.outbound(target_system)
        self.on_committed = on_committed
        self.metrics = SchedulerMetrics()
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()

    # -- loop -----------------------------------------------------------------------------

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    def wake(self) -> None:
        self._wake.set()

    async def run(self) -> None:
        # Loud once per process: past the holiday data every plan is approximate (or fails),
        # and nothing else tells the operator that a dependency needs an upgrade.
        notice = self.calendar.coverage_warning(self.calendar.business_date(self.clock()))
        if notice is not None:
            log.warning("%s", notice)
        try:
            await self.replan_stale()
        except Exception as exc:  # the ticks still run; a stale plan only delays a re-plan
            log.warning("urge scheduler: re-planning after a policy change failed: %r", exc)
        while not self._stopping.is_set():
            claimed = 0
            try:
                claimed, _sent = await self._tick()
            except Exception as exc:
                self.metrics.errors += 1
                prom.URGE_ERRORS.labels("tick").inc()
                self.metrics.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("urge scheduler: %s", self.metrics.last_error)
                await asyncio.sleep(min(5.0, self.tick_s * 5))
            if claimed >= self.max_per_tick:
                continue  # a backlog (after a restart): go on at once
            self._wake.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.tick_s)

    async def tick(self) -> int:
        """One round: claim what is due, urge, set the next times. Returns urges delivered."""
        _claimed, sent = await self._tick()
        return sent

    async def replan_stale(self) -> int:
        """Approvals planned under another policy are looked at again on the next ticks
        (where they are re-planned): a changed policy reaches open approvals."""
        async with self.sessions() as s, s.begin():
            res = await s.execute(
                update(Approval)
                .where(
                    Approval.status == OPEN,
                    Approval.policy_fingerprint != self.policy.fingerprint,
                )
                .values(next_due_at=self.clock())
            )
        n = int(getattr(res, "rowcount", 0) or 0)
        if n:
            log.info("urge scheduler: %d open approvals planned under another policy", n)
        return n

    # -- one tick -------------------------------------------------------------------------

    async def _tick(self) -> tuple[int, int]:
        now = self.clock()
        t0 = asyncio.get_running_loop().time()
        rows, token, urges = await self._claim(now)
        self.metrics.ticks += 1
        if not rows:
            return 0, 0
        self.metrics.claimed += len(rows)
        today = self.calendar.business_date(now)
        plans: dict[int, tuple[ApprovalFacts, ApprovalPlan] | str] = {}
        recipients: set[str] = set()
        for row in rows:
            try:
                facts, p = plan_for(
                    row.request, urge_scope(row.key, row.round), self.policy, self.calendar
                )
            except PlanError as exc:
                plans[row.id] = str(exc)
                continue
            plans[row.id] = (facts, p)
            recipients.add(row.approver)
            recipients.update(s.recipient for s in p.steps)
        counts = await self._counts(recipients, today)
        outcomes: list[_Outcome] = []
        for row in rows:
            planned = plans[row.id]
            if isinstance(planned, str):
                # No timer from here on, so this is the last word about the approval until a
                # new request or policy: say so at WARNING and count it. The reason stays in
                # last_error (API), out of the log: it can quote the request's own values.
                self.metrics.unplannable += 1
                prom.URGE_UNPLANNABLE.inc()
                log.warning(
                    "urges: approval %s (type %s) cannot be planned under the current policy; "
                    "it is not urged again until a new request message or a policy change "
                    "(the reason: last_error in GET /approvals/<key>)",
                    row.key,
                    row.type,
                )
                outcomes.append(_Outcome(row, None, error=planned))
                continue
            try:
                outcomes.append(self._decide(row, planned, urges.get(row.key, []), counts, now))
            except Exception as exc:  # one broken approval must not hold up the others
                self.metrics.approval_errors += 1
                prom.URGE_ERRORS.labels("approval").inc()
                log.exception("urges: approval %s failed; looked at again later", row.key)
                error = f"{type(exc).__name__}: {exc}"
                outcomes.append(_Outcome(row, now + RETRY_AFTER_ERROR, error=error))
        sent = await self._write(outcomes, token, now)
        self.metrics.sent += sent
        prom.URGES_SENT.inc(sent)
        self.metrics.last_tick_s = asyncio.get_running_loop().time() - t0
        if sent and self.on_committed is not None:
            self.on_committed()
        return len(rows), sent

    def _is_pg(self, s: AsyncSession) -> bool:
        return s.get_bind().dialect.name == "postgresql"

    async def _claim(
        self, now: dt.datetime
    ) -> tuple[list[Approval], str, dict[str, list[UrgeRecord]]]:
        token = f"{self.worker_id}/{uuid.uuid4().hex[:12]}"
        async with self.sessions() as s, s.begin():
            t0 = time.perf_counter()
            # Find: ids only, on the next_due_at index. No status condition: decided
            # approvals have no next_due_at (the write below heals any that do), and an
            # equality on status would make SQLite scan every open approval instead of the
            # index range.
            q = (
                select(Approval.id)
                .where(
                    Approval.next_due_at <= now,
                    or_(Approval.lease_until.is_(None), Approval.lease_until < now),
                )
                .order_by(Approval.next_due_at)
                .limit(self.max_per_tick)
            )
            if self._is_pg(s):
                q = q.with_for_update(skip_locked=True)
            ids = list((await s.execute(q)).scalars())
            if ids:
                await s.execute(
                    update(Approval)
                    .where(Approval.id.in_(ids))
                    .values(lease_until=now + self.lease, leased_by=token)
                    .execution_options(synchronize_session=False)
                )
            self.metrics.last_find_s = time.perf_counter() - t0
            if not ids:
                return [], token, {}
            # Load: the leased rows and what was sent for them (the decision's inputs).
            rows = list(
                (
                    await s.execute(
                        select(Approval).where(Approval.id.in_(ids)).order_by(Approval.next_due_at)
                    )
                ).scalars()
            )
            urges = await self._urges_of(s, rows)
        return rows, token, urges

    async def _urges_of(
        self, s: AsyncSession, rows: Sequence[Approval]
    ) -> dict[str, list[UrgeRecord]]:
        rounds = {r.key: r.round for r in rows}
        out: dict[str, list[UrgeRecord]] = {}
        found = await s.execute(select(UrgeRecord).where(UrgeRecord.approval_key.in_(list(rounds))))
        for u in found.scalars():
            if u.round == rounds[u.approval_key]:
                out.setdefault(u.approval_key, []).append(u)
        return out

    async def _counts(self, recipients: set[str], day: dt.date) -> dict[str, int]:
        if not recipients:
            return {}
        async with self.sessions() as s:
            found = await s.execute(
                select(UrgeRecipientDay.recipient, UrgeRecipientDay.count).where(
                    UrgeRecipientDay.business_date == day,
                    UrgeRecipientDay.recipient.in_(list(recipients)),
                )
            )
            return {r: int(c) for r, c in found.tuples()}

    def _decide(
        self,
        row: Approval,
        planned: tuple[ApprovalFacts, ApprovalPlan],
        stored: list[UrgeRecord],
        counts: dict[str, int],
        now: dt.datetime,
    ) -> _Outcome:
        facts, p = planned
        out = _Outcome(row, None, plan=p)
        cap = self.policy.caps.max_per_recipient_per_day
        sent: list[SentUrge] = []
        later: list[dt.datetime] = []  # when to look again for scheduled one-click urges
        for u in sorted(stored, key=lambda u: (u.sent_at or u.send_at, u.sequence)):
            when = u.sent_at or u.send_at
            if u.status == "scheduled" and u.send_at <= now:
                # A one-click urge accepted during quiet hours: its time has come.
                if out.sends:
                    later.append(now)  # one urge per approval per tick
                elif counts.get(u.recipient, 0) >= cap:
                    tomorrow = self.calendar.start_of_day(
                        self.calendar.business_date(now) + dt.timedelta(days=1)
                    )
                    later.append(next_allowed_send_time(tomorrow, self.policy, self.calendar))
                else:
                    out.sends.append(_Send(_record_values(u), scheduled=True))
                    counts[u.recipient] = counts.get(u.recipient, 0) + 1
                    when = now
            elif u.status == "scheduled":
                later.append(u.send_at)
            sent.append(_sent(u.urge_id, u.level, u.channel, u.recipient, when, u.kind))
        state = UrgeState(facts, p, tuple(sent), decided=False, urges_today=counts)
        action = next_action(state, now, self.policy, self.calendar)
        if isinstance(action, SendUrge) and not out.sends:
            out.sends.append(_Send(self._urge_values(row, action, now)))
            counts[action.recipient] = counts.get(action.recipient, 0) + 1
            sent.append(
                SentUrge(action.urge_id, action.level, action.channel, action.recipient, now)
            )
            state = dataclasses.replace(state, sent=tuple(sent), urges_today=counts)
            action = next_action(state, now, self.policy, self.calendar)
        if isinstance(action, Wait):
            later.append(action.until)
        elif isinstance(action, SendUrge):
            later.append(now)  # more is due (no min_interval): look again next tick
        out.next_due_at = min(later, default=None)
        return out

    def _urge_values(self, row: Approval, a: SendUrge, now: dt.datetime) -> dict[str, Any]:
        return {
            "urge_id": a.urge_id,
            "approval_key": row.key,
            "round": row.round,
            "kind": a.kind,
            "status": "sent",
            "level": a.level,
            "channel": a.channel,
            "recipient": a.recipient,
            "escalated_to": a.escalated_to,
            "text": a.text,
            "sequence": a.sequence,
            "previous_urge_id": a.previous_urge_id,
            "skipped_levels": list(a.skipped_levels),
            "urged_by": None,
            "due_at": a.due_at,
            "send_at": a.send_at,
            "sent_at": now,
            "business_date": self.calendar.business_date(now),
            "created_at": utc_now(),
        }

    async def _write(self, outcomes: list[_Outcome], token: str, now: dt.datetime) -> int:
        """Everything of one tick in one transaction, in a handful of statements."""
        day = self.calendar.business_date(now)
        async with self.sessions() as s, s.begin():
            q = select(Approval.id, Approval.leased_by, Approval.version, Approval.status).where(
                Approval.id.in_([o.row.id for o in outcomes])
            )
            if self._is_pg(s):
                q = q.with_for_update()
            current = {i: (lb, v, st) for i, lb, v, st in (await s.execute(q)).tuples()}
            live: list[_Outcome] = []
            release: list[int] = []
            closed: list[int] = []  # decided meanwhile: the timer is off for good
            for o in outcomes:
                leased_by, version, status = current.get(o.row.id, (None, None, None))
                if (leased_by, version, status) == (token, o.row.version, OPEN):
                    live.append(o)
                    continue
                # Decided, updated or urged by a one-click meanwhile (or our lease was taken
                # over): drop this result; the row's own next_due_at stands.
                self.metrics.stale += 1
                prom.URGE_STALE.inc()
                if leased_by == token:
                    release.append(o.row.id)
                    if status != OPEN:
                        closed.append(o.row.id)

            # 1. The recipients' day counters, all at once; a recipient another worker took
            #    to the cap meanwhile gets nothing this tick and is looked at again.
            wanted = Counter(send.values["recipient"] for o in live for send in o.sends)
            allowed = await self._count_many(s, wanted, day)
            # 2. The urge rows: a step some other worker already inserted is not sent again.
            fresh = [
                send.values
                for o in live
                for send in o.sends
                if not send.scheduled and send.values["recipient"] in allowed
            ]
            inserted = await self._insert_urges(s, fresh)
            delivered: dict[int, list[dict[str, Any]]] = {}
            give_back: Counter[str] = Counter()
            for o in live:
                for send in o.sends:
                    v = send.values
                    if v["recipient"] not in allowed:
                        self.metrics.capped += 1
                        prom.URGE_CAPPED.inc()
                        o.next_due_at = now
                        continue
                    if send.scheduled:
                        # 3. A one-click urge deferred out of the quiet hours goes out now.
                        done = await s.execute(
                            update(UrgeRecord)
                            .where(
                                UrgeRecord.urge_id == v["urge_id"],
                                UrgeRecord.status == "scheduled",
                            )
                            .values(status="sent", sent_at=now, business_date=day)
                        )
                        ok = bool(getattr(done, "rowcount", 0))
                        v = {**v, "sent_at": now}
                    else:
                        ok = v["urge_id"] in inserted
                    if not ok:
                        self.metrics.conflicts += 1
                        prom.URGE_CONFLICTS.inc()
                        give_back[v["recipient"]] += 1
                        continue
                    delivered.setdefault(o.row.id, []).append(v)
            for recipient, n in give_back.items():
                await self._uncount(s, recipient, day, n)

            # 4. The outbox and the timers.
            outbox: list[dict[str, object]] = []
            updates: list[dict[str, Any]] = []
            sent_total = 0
            for o in live:
                row = o.row
                mine = delivered.get(row.id, [])
                outbox += [self._envelope_row(row, v, now) for v in mine]
                values: dict[str, Any] = {
                    "id": row.id,
                    "next_due_at": o.next_due_at,
                    "lease_until": None,
                    "leased_by": None,
                    "last_error": o.error,
                }
                if mine:
                    values.update(
                        version=row.version + 1,
                        urge_count=row.urge_count + len(mine),
                        last_urged_at=now,
                    )
                if o.plan is not None and o.plan.policy_fingerprint != row.policy_fingerprint:
                    values.update(plan_columns(o.plan))
                updates.append(values)
                sent_total += len(mine)
            if updates:
                await s.execute(update(Approval), updates)
            if release:
                await s.execute(
                    update(Approval)
                    .where(Approval.id.in_(release), Approval.leased_by == token)
                    .values(lease_until=None, leased_by=None)
                )
            if closed:
                await s.execute(
                    update(Approval)
                    .where(Approval.id.in_(closed), Approval.status != OPEN)
                    .values(next_due_at=None)
                )
            await add_rows(s, outbox)
        return sent_total

    # -- store primitives -----------------------------------------------------------------

    def _insert_stmt(self, s: AsyncSession) -> Any:
        dialect = postgresql if self._is_pg(s) else sqlite
        return dialect.insert

    async def _insert_urge(self, s: AsyncSession, values: dict[str, Any]) -> bool:
        """Insert unless this urge id exists: True when this call inserted it."""
        return values["urge_id"] in await self._insert_urges(s, [values])

    async def _insert_urges(self, s: AsyncSession, rows: list[dict[str, Any]]) -> set[str]:
        """Insert the urges whose ids do not exist yet; the ids this call inserted."""
        done: set[str] = set()
        for i in range(0, len(rows), _CHUNK):
            stmt = (
                self._insert_stmt(s)(UrgeRecord)
                .values(rows[i : i + _CHUNK])
                .on_conflict_do_nothing(index_elements=["urge_id"])
                .returning(UrgeRecord.urge_id)
            )
            done.update((await s.execute(stmt)).scalars())
        return done

    async def _count_one(self, s: AsyncSession, recipient: str, day: dt.date) -> bool:
        """Raise the recipient's counter for ``day`` unless it is at the cap."""
        return recipient in await self._count_many(s, {recipient: 1}, day)

    async def _count_many(
        self, s: AsyncSession, wanted: Mapping[str, int], day: dt.date
    ) -> set[str]:
        """Raise each recipient's counter by its number of urges, unless that would pass the
        daily cap (a concurrent worker got there first); the recipients raised. One
        conditional upsert per chunk, atomic per row on both stores."""
        t = UrgeRecipientDay
        cap = self.policy.caps.max_per_recipient_per_day
        items = sorted(wanted.items())  # a fixed lock order: no deadlock between workers
        raised: set[str] = set()
        for i in range(0, len(items), _CHUNK):
            ins = self._insert_stmt(s)(t).values(
                [
                    {"recipient": r, "business_date": day, "count": n}
                    for r, n in items[i : i + _CHUNK]
                ]
            )
            stmt = ins.on_conflict_do_update(
                index_elements=["recipient", "business_date"],
                set_={"count": t.count + ins.excluded.count},
                where=t.count + ins.excluded.count <= cap,
            ).returning(t.recipient)
            raised.update((await s.execute(stmt)).scalars())
        return raised

    async def _uncount(self, s: AsyncSession, recipient: str, day: dt.date, n: int = 1) -> None:
        t = UrgeRecipientDay
        await s.execute(
            update(t)
            .where(t.recipient == recipient, t.business_date == day, t.count >= n)
            .values(count=t.count - n)
        )

    def _envelope_row(
        self, row: Approval, v: dict[str, Any], now: dt.datetime
    ) -> dict[str, object]:
        body = Urge(
            urge_id=v["urge_id"],
            approval_id=row.approval_id,
            origin_system=row.origin_system,
            level=v["level"],
            channel=v["channel"],
            recipient=v["recipient"],
            text=v["text"],
            sequence=v["sequence"],
            previous_urge_id=v["previous_urge_id"],
            due_at=v["due_at"],
            sent_at=v["sent_at"],
            escalated_to=v["escalated_to"],
        )
        env = Envelope(
            # Deterministic: should an urge ever be written twice, consumers' ledgers drop it.
            message_id=uuid.uuid5(URGE_NAMESPACE, f"message/{v['urge_id']}"),
            entity=Entity.urge,
            op=Op.upsert,
            source_system="hub",
            source_id=v["urge_id"],
            source_ts=now,
            occurred_at=now,
            correlation_id=uuid.UUID(row.correlation_id) if row.correlation_id else None,
            body=body.model_dump(mode="json"),
        )
        # Keyed by the urge itself (hub:<urge_id>): each urge is a reminder of its own in OA.
        # Delivery keeps one cross-reference per (entity, key), so urges sharing the
        # approval's key would each overwrite the first reminder (PUT) instead of adding one.
        return envelope_values(self.topic, env)

    # -- one-click urge (一键催办) ---------------------------------------------------------

    async def one_click(
        self,
        approval_key: str,
        click_id: str,
        now: dt.datetime | None = None,
        *,
        urged_by: str = "客户",
        on_result: Callable[[AsyncSession, ClickResult], None] | None = None,
    ) -> ClickResult:
        """Urge the approver now, within the caps (rate limit = ``one_click.min_interval``).
        ``click_id`` is the portal's idempotency key: a retried click is a ``duplicate``.
        ``on_result`` runs inside the transaction, whatever the outcome (the API records its
        audit row there, so the urge and its audit row commit together)."""
        now = now or self.clock()
        async with self.sessions() as s, s.begin():
            res = await self._one_click(s, approval_key, click_id, now, urged_by)
            if on_result is not None:
                on_result(s, res)
        if res.outcome == "send":
            self.metrics.sent += 1
            prom.URGES_SENT.inc()
            if self.on_committed is not None:
                self.on_committed()
        return res

    async def _one_click(
        self, s: AsyncSession, approval_key: str, click_id: str, now: dt.datetime, urged_by: str
    ) -> ClickResult:
        q = select(Approval).where(Approval.key == approval_key)
        if self._is_pg(s):
            q = q.with_for_update()
        row = (await s.execute(q)).scalar_one_or_none()
        if row is None:
            return ClickResult("not_found", reason="unknown approval")
        try:
            facts, p = plan_for(
                row.request, urge_scope(row.key, row.round), self.policy, self.calendar
            )
        except PlanError as exc:
            return ClickResult("rejected", reason=f"cannot be planned: {exc}")
        stored = (await self._urges_of(s, [row])).get(row.key, [])
        sent = [
            _sent(u.urge_id, u.level, u.channel, u.recipient, u.sent_at or u.send_at, u.kind)
            for u in stored
        ]
        day = self.calendar.business_date(now)
        count = await s.scalar(
            select(UrgeRecipientDay.count).where(
                UrgeRecipientDay.recipient == row.approver,
                UrgeRecipientDay.business_date == day,
            )
        )
        state = UrgeState(
            facts,
            p,
            tuple(sent),
            decided=row.status != OPEN,
            urges_today={row.approver: int(count or 0)},
        )
        res = one_click_action(
            state, now, self.policy, self.calendar, click_id=click_id, urged_by=urged_by
        )
        if res.outcome in ("rejected", "duplicate") or res.urge is None:
            return ClickResult(
                res.outcome, urge_id=res.urge_id, reason=res.reason, retry_after=res.retry_after
            )
        urge = res.urge
        values = self._urge_values(row, urge, now)
        values["urged_by"] = urged_by[:128]
        changes: dict[str, Any] = {"version": row.version + 1}
        if res.outcome == "deferred":
            # Accepted now, delivered by the scheduler at send_at: stored, so not lost.
            values.update(status="scheduled", sent_at=None, business_date=None)
            if not await self._insert_urge(s, values):
                return ClickResult("duplicate", urge_id=urge.urge_id)
            if row.next_due_at is None or row.next_due_at > urge.send_at:
                changes["next_due_at"] = urge.send_at
        else:
            if not await self._count_one(s, urge.recipient, day):
                tomorrow = self.calendar.start_of_day(day + dt.timedelta(days=1))
                return ClickResult(
                    "rejected",
                    reason="recipient_daily_cap",
                    retry_after=next_allowed_send_time(tomorrow, self.policy, self.calendar),
                )
            if not await self._insert_urge(s, values):
                await self._uncount(s, urge.recipient, day)
                return ClickResult("duplicate", urge_id=urge.urge_id)
            await add_rows(s, [self._envelope_row(row, values, now)])
            changes.update(urge_count=row.urge_count + 1, last_urged_at=now)
        await s.execute(update(Approval).where(Approval.id == row.id).values(**changes))
        return ClickResult(res.outcome, urge_id=urge.urge_id, send_at=urge.send_at)


def _record_values(u: UrgeRecord) -> dict[str, Any]:
    return {c.key: getattr(u, c.key) for c in UrgeRecord.__table__.columns if c.key != "id"}


def _sent(
    urge_id: str, level: int, channel: str, recipient: str, at: dt.datetime, kind: str
) -> SentUrge:
    return SentUrge(
        urge_id,
        level,
        cast(Channel, channel),
        recipient,
        at,
        "one_click" if kind == "one_click" else "ladder",
    )
