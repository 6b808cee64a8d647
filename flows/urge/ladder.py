"""Pure urge scheduling: the plan of an approval and the next thing to do about it.

Nothing here reads a clock, a store or a broker: ``now`` and the state are arguments, so the
same functions run in the hub, in tests on a fake clock and in the benchmark. The hub's part
is to persist what :func:`next_action` returns (a send, or the time to look again) under a row
lease, and to feed back what was sent.

Rules, in the order :func:`next_action` applies them:

1. A decision (approved, rejected, withdrawn) stops everything.
2. Steps come from the plan; a step becomes due ``after`` its delay from the previous step's
   due time, and never sooner than ``after`` from the urge actually sent before it, so an
   approver always gets the full delay after a deferred or late urge.
3. When several steps are due at once (the hub was down, or quiet hours held an urge back),
   only the highest due level is sent, once; the skipped levels are reported, not sent.
4. Caps: at most ``max_per_approval`` urges per approval (then the ladder is over), at least
   ``min_interval`` between two urges of one approval, at most
   ``max_per_recipient_per_day`` urges per recipient per business day (then it waits).
5. Quiet hours and (optionally) non-working days defer a send; they never drop it.

Urge ids are deterministic (``uuid5`` of approval, ladder level or portal click id), so a
unique key on them in the store turns a double fire by two workers into a constraint
violation instead of a second message.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any, Literal, Protocol

from flows.urge.calendar import BusinessCalendar, CalendarError
from flows.urge.policy import ApprovalType, Channel, Duration, Tie, UrgePolicy
from flows.urge.templates import (
    CHANNEL_NAMES,
    format_amount,
    format_date,
    format_datetime,
    format_waited,
    render,
    urge_history,
)

URGE_NAMESPACE = uuid.UUID("0b6f5a52-6a1e-5c8e-9a55-2f1f6b7c0e11")
_MAX_QUIET_SCAN = 800


class PlanError(ValueError):
    """The request cannot be planned (invalid input: dead-letter it with this reason)."""


# -- input ----------------------------------------------------------------------------------


class ApprovalLike(Protocol):
    """The fields of the canonical ApprovalRequest that urging reads. Read-only properties so
    that a frozen pydantic model (with ``Literal`` ties, ``tuple`` chains, ``dict``
    attributes) satisfies it structurally."""

    @property
    def approval_id(self) -> str: ...
    @property
    def type(self) -> str: ...
    @property
    def title(self) -> str: ...
    @property
    def amount(self) -> Decimal | None: ...
    @property
    def currency(self) -> str | None: ...
    @property
    def requester(self) -> str: ...
    @property
    def requester_department(self) -> str | None: ...
    @property
    def approver(self) -> str: ...
    @property
    def approver_department(self) -> str | None: ...
    @property
    def approver_chain(self) -> Sequence[str]: ...
    @property
    def superior(self) -> str | None: ...
    @property
    def submitted_at(self) -> dt.datetime: ...
    @property
    def deadline(self) -> dt.datetime | None: ...
    @property
    def tie(self) -> str: ...
    @property
    def attributes(self) -> Mapping[str, Any]: ...


@dataclass(frozen=True, slots=True)
class ApprovalFacts:
    """A plain implementation of :class:`ApprovalLike` (tests, rows from the store)."""

    approval_id: str
    type: str
    title: str
    approver: str
    submitted_at: dt.datetime
    requester: str = ""
    amount: Decimal | None = None
    currency: str | None = "CNY"
    requester_department: str | None = None
    approver_department: str | None = None
    approver_chain: tuple[str, ...] = ()
    superior: str | None = None
    deadline: dt.datetime | None = None
    tie: str = "normal"
    attributes: Mapping[str, Any] = field(default_factory=dict)

    @classmethod
    def of(cls, source: Mapping[str, Any] | object) -> ApprovalFacts:
        """From a mapping (a store row, a message body) or any object with the attributes
        (the contracts model), tolerating UUID ids and list chains."""

        def get(name: str, default: Any = None) -> Any:
            if isinstance(source, Mapping):
                return source.get(name, default)
            return getattr(source, name, default)

        amount = get("amount")
        if amount is not None and not isinstance(amount, Decimal):
            try:
                amount = Decimal(str(amount))
            except InvalidOperation:
                raise PlanError(f"amount {amount!r} is not a number") from None
        submitted = get("submitted_at")
        deadline = get("deadline")
        return cls(
            approval_id=str(get("approval_id")),
            type=str(get("type")),
            title=str(get("title", "")),
            amount=amount,
            currency=get("currency", "CNY"),
            requester=str(get("requester", "")),
            requester_department=get("requester_department"),
            approver=str(get("approver")),
            approver_department=get("approver_department"),
            approver_chain=tuple(str(a) for a in (get("approver_chain") or ())),
            superior=get("superior"),
            submitted_at=_as_datetime(submitted, "submitted_at"),
            deadline=None if deadline is None else _as_datetime(deadline, "deadline"),
            tie=str(get("tie", "normal")),
            attributes=dict(get("attributes") or {}),
        )


def _as_datetime(value: Any, name: str) -> dt.datetime:
    if isinstance(value, dt.datetime):
        return value
    if isinstance(value, str):
        try:
            return dt.datetime.fromisoformat(value)
        except ValueError:
            pass
    raise PlanError(f"{name} {value!r} is not a datetime")


# -- plan -----------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PlannedStep:
    level: int
    channel: Channel
    after: Duration
    due_at: dt.datetime
    recipient: str
    template: str | None = None


@dataclass(frozen=True, slots=True)
class ApprovalPlan:
    approval_id: str
    type_key: str
    type_fallback: bool
    band_index: int
    authority: str
    weight: Decimal
    amount_in_policy_currency: Decimal | None
    deadline: dt.datetime
    deadline_source: Literal["policy", "request"]
    ladder: str
    tie: Tie
    steps: tuple[PlannedStep, ...]
    escalation_recipient: str | None
    calendar_approximate: bool
    policy_fingerprint: str
    warnings: tuple[str, ...] = ()

    @property
    def first_due_at(self) -> dt.datetime | None:
        return self.steps[0].due_at if self.steps else None


def plan(request: ApprovalLike, policy: UrgePolicy, calendar: BusinessCalendar) -> ApprovalPlan:
    """Authority, deadline and urge steps of one approval request.

    Deterministic in its arguments; re-planning after a policy change is how a changed policy
    reaches open approvals (compare ``policy_fingerprint``).
    """
    submitted = request.submitted_at
    if submitted.tzinfo is None or submitted.utcoffset() is None:
        raise PlanError(f"submitted_at {submitted.isoformat()} has no timezone")
    warnings: list[str] = []
    try:
        type_key, atype, fallback = policy.resolve_type(request.type)
    except LookupError as exc:
        raise PlanError(str(exc)) from None
    if fallback:
        warnings.append(f"type {request.type!r} is not in the policy; urged as {type_key!r}")

    if request.amount is not None and request.amount < 0:
        raise PlanError(f"amount {request.amount} is negative")
    amount = policy.to_policy_currency(request.amount, request.currency)
    if amount is None and request.amount is not None:
        warnings.append(
            f"no exchange rate for {request.currency}; banded as if the amount were unknown"
        )
    band_index, band = policy.band_for(atype, amount)

    policy_deadline = _policy_deadline(request, atype, band_index, calendar, warnings)
    deadline, source = _combine_deadlines(policy_deadline, request.deadline, atype)

    tie: Tie = "normal"
    if request.tie in ("weak", "normal", "strong"):
        tie = request.tie  # type: ignore[assignment]
    else:
        warnings.append(f"tie {request.tie!r} is unknown; treated as normal")

    escalation_to = _escalation_recipient(request, policy, band.authority)
    ladder = policy.ladders[atype.ladder]
    start = ladder.start_level.for_tie(tie)
    # The approver cannot be late before the request reached them.
    anchor = max(deadline, submitted)
    steps: list[PlannedStep] = []
    due = anchor
    for offset, step in enumerate(ladder.steps[start - 1 :]):
        level = start + offset
        # A firmer start changes the channel, not when the first urge goes out.
        after = ladder.steps[0].after if offset == 0 else step.after
        due = after.add_to(due, calendar)
        if step.channel == "escalation":
            if escalation_to is None:
                warnings.append(
                    "no superior (request, approval chain, org in the policy) and no "
                    "escalation_fallback_recipient: not escalated"
                )
                continue
            recipient = escalation_to
        else:
            recipient = request.approver
        steps.append(PlannedStep(level, step.channel, after, due, recipient, step.template))

    last = steps[-1].due_at if steps else deadline
    return ApprovalPlan(
        approval_id=str(request.approval_id),
        type_key=type_key,
        type_fallback=fallback,
        band_index=band_index,
        authority=band.authority,
        weight=policy.band_weight(atype, band_index),
        amount_in_policy_currency=amount,
        deadline=deadline,
        deadline_source=source,
        ladder=atype.ladder,
        tie=tie,
        steps=tuple(steps),
        escalation_recipient=escalation_to,
        calendar_approximate=calendar.is_approximate(submitted, max(last, deadline)),
        policy_fingerprint=policy.fingerprint,
        warnings=tuple(warnings),
    )


def _policy_deadline(
    request: ApprovalLike,
    atype: ApprovalType,
    band_index: int,
    calendar: BusinessCalendar,
    warnings: list[str],
) -> dt.datetime:
    rule = atype.bands[band_index].deadline or atype.deadline
    if rule is None:  # pragma: no cover - the policy validator guarantees one
        raise PlanError(f"no deadline rule for band {band_index}")
    if rule.after is not None:
        return rule.after.add_to(request.submitted_at, calendar)
    assert rule.field is not None and rule.before is not None
    raw = request.attributes.get(rule.field)
    day = _as_date(raw)
    if day is None:
        if rule.fallback is None:
            raise PlanError(f"attributes[{rule.field!r}] = {raw!r} is not a date")
        warnings.append(
            f"attributes[{rule.field!r}] = {raw!r} is not a date; deadline {rule.fallback} "
            "after submission"
        )
        return rule.fallback.add_to(request.submitted_at, calendar)
    # A notice date on a weekend moves earlier, not later: the notice must not be late.
    notice = calendar.previous_working_day(rule.before.before_date(day))
    return calendar.end_of_working_day(notice)


def _as_date(value: Any) -> dt.date | None:
    if isinstance(value, dt.datetime):
        return value.date()
    if isinstance(value, dt.date):
        return value
    if isinstance(value, str):
        try:
            return dt.date.fromisoformat(value[:10])
        except ValueError:
            return None
    return None


def _combine_deadlines(
    policy_deadline: dt.datetime, requested: dt.datetime | None, atype: ApprovalType
) -> tuple[dt.datetime, Literal["policy", "request"]]:
    if requested is None or atype.request_deadline == "policy":
        return policy_deadline, "policy"
    if requested.tzinfo is None or requested.utcoffset() is None:
        raise PlanError(f"deadline {requested.isoformat()} has no timezone")
    if atype.request_deadline == "request" or requested < policy_deadline:
        return requested, "request"
    return policy_deadline, "policy"


def _escalation_recipient(request: ApprovalLike, policy: UrgePolicy, authority: str) -> str | None:
    """Who the last rung goes to: the superior the request names, else the next approver in
    its chain, else the policy's org chart (by name, then by the band's authority), else the
    policy's fallback. Never the approver themselves: escalating to the person who is late
    would only be one more urge to them."""
    candidates: list[str] = []
    if request.superior:
        candidates.append(request.superior)
    chain = list(request.approver_chain)
    if request.approver in chain:
        i = chain.index(request.approver)
        if i + 1 < len(chain):
            candidates.append(chain[i + 1])
    candidates += policy.escalation_candidates(request.approver, authority)
    return next((c for c in candidates if c != request.approver), None)


# -- state and actions ----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class SentUrge:
    urge_id: str
    level: int
    channel: Channel
    recipient: str
    sent_at: dt.datetime
    kind: Literal["ladder", "one_click"] = "ladder"


@dataclass(frozen=True, slots=True)
class UrgeState:
    """What the store knows about one approval at ``now``.

    ``urges_today`` counts urges per recipient on the current business day
    (:meth:`BusinessCalendar.business_date`), across all approvals; recipients not present
    count as 0.
    """

    request: ApprovalLike
    plan: ApprovalPlan
    sent: tuple[SentUrge, ...] = ()
    decided: bool = False
    urges_today: Mapping[str, int] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SendUrge:
    """Send this urge now (or at ``send_at`` for a deferred one-click urge)."""

    urge_id: str
    approval_id: str
    kind: Literal["ladder", "one_click"]
    level: int
    channel: Channel
    recipient: str
    sequence: int
    previous_urge_id: str | None
    due_at: dt.datetime
    send_at: dt.datetime
    escalated_to: str | None
    template: str
    text: str
    skipped_levels: tuple[int, ...] = ()


WaitReason = Literal["not_due", "min_interval", "quiet_hours", "recipient_daily_cap"]


@dataclass(frozen=True, slots=True)
class Wait:
    """Nothing to send now; call :func:`next_action` again at ``until`` (store it as the
    approval's timer)."""

    until: dt.datetime
    reason: WaitReason
    level: int


Action = SendUrge | Wait


def ladder_urge_id(approval_id: str, level: int) -> str:
    return str(uuid.uuid5(URGE_NAMESPACE, f"{approval_id}/ladder/{level}"))


def one_click_urge_id(approval_id: str, click_id: str) -> str:
    return str(uuid.uuid5(URGE_NAMESPACE, f"{approval_id}/one_click/{click_id}"))


def next_action(
    state: UrgeState, now: dt.datetime, policy: UrgePolicy, calendar: BusinessCalendar
) -> Action | None:
    """The next thing to do for one approval: send an urge, wait until a time, or ``None``
    when nothing will ever be sent again (decided, ladder finished, or cap reached)."""
    _require_aware(now)
    if state.decided:
        return None
    pending, due = _pending_with_due(state, calendar)
    if not pending:
        return None
    if len(state.sent) >= policy.caps.max_per_approval:
        return None
    due_now = [i for i, d in enumerate(due) if d <= now]
    if not due_now:
        return Wait(due[0], "not_due", pending[0].level)
    i = due_now[-1]
    step = pending[i]

    hold = _hold(state, now, step.recipient, policy, calendar, policy.caps.min_interval)
    if hold is not None:
        return Wait(hold[0], hold[1], step.level)

    if step.template is not None:
        template = step.template
    elif step.channel == "escalation":
        template = "escalation"
    elif state.sent:
        template = "repeat"
    else:
        template = "first"
    return SendUrge(
        urge_id=ladder_urge_id(state.plan.approval_id, step.level),
        approval_id=state.plan.approval_id,
        kind="ladder",
        level=step.level,
        channel=step.channel,
        recipient=step.recipient,
        sequence=len(state.sent) + 1,
        previous_urge_id=_last(state.sent).urge_id if state.sent else None,
        due_at=due[i],
        send_at=now,
        escalated_to=step.recipient if step.channel == "escalation" else None,
        template=template,
        text=_text(state, now, policy, calendar, template, step, None),
        skipped_levels=tuple(s.level for s in pending[:i]),
    )


OneClickOutcome = Literal["send", "deferred", "rejected", "duplicate"]


@dataclass(frozen=True, slots=True)
class OneClickResult:
    """``send``: deliver ``urge`` now. ``deferred``: accepted, deliver at ``urge.send_at``
    (quiet hours; store it so it is not lost). ``rejected``: not urged, see ``reason`` and
    ``retry_after``. ``duplicate``: this click was already handled as ``urge_id``."""

    outcome: OneClickOutcome
    urge: SendUrge | None = None
    reason: str | None = None
    retry_after: dt.datetime | None = None
    urge_id: str | None = None


def one_click(
    state: UrgeState,
    now: dt.datetime,
    policy: UrgePolicy,
    calendar: BusinessCalendar,
    *,
    click_id: str,
    urged_by: str = "客户",
) -> OneClickResult:
    """A portal-triggered urge (一键催办) to the approver, now, within the caps.

    ``click_id`` is the portal's idempotency key: the same click retried returns
    ``duplicate``. One-click urges share the per-approval cap with the ladder but may only use
    its slack: the ladder's remaining steps keep their budget, so a customer pressing the
    button repeatedly can never use up the escalation to the superior.
    """
    _require_aware(now)
    approval_id = state.plan.approval_id
    urge_id = one_click_urge_id(approval_id, click_id)
    if any(u.urge_id == urge_id for u in state.sent):
        return OneClickResult("duplicate", urge_id=urge_id)
    if not policy.one_click.enabled:
        return OneClickResult("rejected", reason="one_click_disabled")
    if state.decided:
        return OneClickResult("rejected", reason="decided")
    pending, _due = _pending_with_due(state, calendar)
    if len(state.sent) + len(pending) >= policy.caps.max_per_approval:
        return OneClickResult("rejected", reason="approval_cap")

    recipient = state.request.approver
    hold = _hold(state, now, recipient, policy, calendar, policy.one_click.min_interval)
    send_at = now
    if hold is not None:
        until, reason = hold
        if reason == "min_interval":
            return OneClickResult("rejected", reason="rate_limited", retry_after=until)
        if reason == "recipient_daily_cap":
            return OneClickResult("rejected", reason="recipient_daily_cap", retry_after=until)
        send_at = until
    ladder_levels = [u.level for u in state.sent if u.kind == "ladder"]
    channel = policy.one_click.channel
    urge = SendUrge(
        urge_id=urge_id,
        approval_id=approval_id,
        kind="one_click",
        # Counted at the ladder level reached so far: analytics by level stay meaningful.
        level=max(ladder_levels, default=1),
        channel=channel,
        recipient=recipient,
        sequence=len(state.sent) + 1,
        previous_urge_id=_last(state.sent).urge_id if state.sent else None,
        due_at=now,
        send_at=send_at,
        escalated_to=None,
        template="one_click",
        text=_text(
            state,
            now,
            policy,
            calendar,
            "one_click",
            _Target(max(ladder_levels, default=1), channel, recipient),
            urged_by,
        ),
    )
    return OneClickResult("send" if send_at == now else "deferred", urge=urge, urge_id=urge_id)


def next_allowed_send_time(
    t: dt.datetime, policy: UrgePolicy, calendar: BusinessCalendar
) -> dt.datetime:
    """Earliest moment >= ``t`` outside quiet hours (and on a working day when
    ``quiet_hours.non_working_days``)."""
    _require_aware(t)
    quiet = policy.quiet_hours
    local = calendar.local(t)
    for _ in range(_MAX_QUIET_SCAN):
        if quiet.non_working_days and not calendar.is_working_day(local.date()):
            local = calendar.start_of_day(local.date() + dt.timedelta(days=1))
            continue
        window = next((w for w in quiet.windows if w.contains(local.time())), None)
        if window is None:
            return local
        end_day = local.date()
        if window.wraps and local.time() >= window.start:
            end_day += dt.timedelta(days=1)
        local = dt.datetime.combine(end_day, window.end, tzinfo=calendar.tz)
    raise CalendarError(f"no moment outside quiet hours within {_MAX_QUIET_SCAN} steps of {t}")


# -- internals ------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class _Target:
    level: int
    channel: Channel
    recipient: str


def _require_aware(t: dt.datetime) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise ValueError(f"now {t.isoformat()} is naive; pass a timezone-aware datetime")


def _last(sent: Sequence[SentUrge]) -> SentUrge:
    return max(sent, key=lambda u: u.sent_at)


def _pending_with_due(
    state: UrgeState, calendar: BusinessCalendar
) -> tuple[list[PlannedStep], list[dt.datetime]]:
    ladder_sent = [u for u in state.sent if u.kind == "ladder"]
    top = max((u.level for u in ladder_sent), default=0)
    pending = [s for s in state.plan.steps if s.level > top]
    previous = max((u.sent_at for u in ladder_sent if u.level == top), default=None)
    due: list[dt.datetime] = []
    for step in pending:
        d = step.due_at
        if previous is not None:
            d = max(d, step.after.add_to(previous, calendar))
        due.append(d)
        previous = d
    return pending, due


def _hold(
    state: UrgeState,
    now: dt.datetime,
    recipient: str,
    policy: UrgePolicy,
    calendar: BusinessCalendar,
    min_interval: Duration,
) -> tuple[dt.datetime, WaitReason] | None:
    if state.sent:
        earliest = min_interval.add_to(_last(state.sent).sent_at, calendar)
        if now < earliest:
            return earliest, "min_interval"
    allowed = next_allowed_send_time(now, policy, calendar)
    if allowed > now:
        return allowed, "quiet_hours"
    if state.urges_today.get(recipient, 0) >= policy.caps.max_per_recipient_per_day:
        tomorrow = calendar.start_of_day(calendar.business_date(now) + dt.timedelta(days=1))
        return next_allowed_send_time(tomorrow, policy, calendar), "recipient_daily_cap"
    return None


def _text(
    state: UrgeState,
    now: dt.datetime,
    policy: UrgePolicy,
    calendar: BusinessCalendar,
    template: str,
    target: PlannedStep | _Target,
    urged_by: str | None,
) -> str:
    req = state.request
    p = state.plan
    tz = calendar.tz
    atype = policy.types[p.type_key]
    rule = atype.bands[p.band_index].deadline or atype.deadline
    working = rule is not None and rule.after is not None and rule.after.working
    if working:
        waited = calendar.working_time_between(req.submitted_at, now)
        overdue = calendar.working_time_between(p.deadline, now)
    else:
        waited = now - req.submitted_at
        overdue = now - p.deadline
    day = calendar.day_length if working else None
    sent = sorted(state.sent, key=lambda u: u.sent_at)
    values = {
        "approval_id": p.approval_id,
        "type_name": atype.name,
        "title": req.title,
        "amount": format_amount(req.amount, req.currency),
        "requester": req.requester,
        "requester_department": req.requester_department or "",
        "approver": req.approver,
        "approver_department": req.approver_department or "",
        "superior": p.escalation_recipient or "",
        "recipient": target.recipient,
        "waited": format_waited(waited, working_day=day),
        "submitted": format_date(req.submitted_at, tz=tz, now=now),
        "deadline": format_datetime(p.deadline, tz=tz, now=now),
        "deadline_date": format_date(p.deadline, tz=tz, now=now),
        "overdue": format_waited(overdue, working_day=day),
        "first_sent_date": format_date(sent[0].sent_at, tz=tz, now=now) if sent else "",
        "previous_sent_date": format_date(sent[-1].sent_at, tz=tz, now=now) if sent else "",
        "previous_channel": CHANNEL_NAMES[sent[-1].channel] if sent else "",
        "urge_history": urge_history([u.sent_at for u in sent], tz=tz, now=now),
        "previous_count": str(len(sent)),
        "sequence": str(len(sent) + 1),
        "level": str(target.level),
        "channel": CHANNEL_NAMES[target.channel],
        "urged_by": urged_by or "",
    }
    return render(policy.template_text(p.type_key, template), values)


def simulate(
    state: UrgeState,
    start: dt.datetime,
    end: dt.datetime,
    policy: UrgePolicy,
    calendar: BusinessCalendar,
    *,
    max_urges: int = 1000,
) -> list[SendUrge]:
    """Run :func:`next_action` from ``start`` to ``end`` as the hub would, assuming no decision
    and no other traffic: the urges that would be sent, in order. For previews ("what will
    happen to this approval") and tests; ``state.urges_today`` seeds today's counts."""
    _require_aware(start)
    now = start
    sent = list(state.sent)
    today = calendar.business_date(now)
    counts: dict[str, int] = dict(state.urges_today)
    out: list[SendUrge] = []
    while len(out) < max_urges:
        if calendar.business_date(now) != today:
            today, counts = calendar.business_date(now), {}
        current = UrgeState(state.request, state.plan, tuple(sent), state.decided, counts)
        action = next_action(current, now, policy, calendar)
        if action is None:
            break
        if isinstance(action, Wait):
            if action.until > end:
                break
            now = max(now, action.until)
            continue
        out.append(action)
        sent.append(SentUrge(action.urge_id, action.level, action.channel, action.recipient, now))
        counts[action.recipient] = counts.get(action.recipient, 0) + 1
    return out
