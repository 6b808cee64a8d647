"""The urge ladder on a controllable clock: timings, decisions, restarts, caps, quiet hours."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

import pytest

from flows.urge.calendar import BusinessCalendar, CalendarCoverageError
from flows.urge.ladder import (
    ApprovalFacts,
    PlanError,
    SendUrge,
    SentUrge,
    UrgeState,
    Wait,
    ladder_urge_id,
    next_action,
    one_click,
    plan,
    simulate,
)
from flows.urge.policy import (
    DEFAULT_POLICY_PATH,
    Org,
    UrgePolicy,
    default_policy,
    parse_policy,
)

SH = ZoneInfo("Asia/Shanghai")
POLICY = default_policy()
CAL = POLICY.build_calendar()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SH)


class Clock:
    """The test's notion of now; the code under test never reads a real clock."""

    def __init__(self, start: dt.datetime) -> None:
        self.now = start

    def advance(self, delta: dt.timedelta) -> dt.datetime:
        self.now += delta
        return self.now

    def set(self, t: dt.datetime) -> dt.datetime:
        assert t >= self.now, "time does not go backwards"
        self.now = t
        return self.now


def request(**overrides: Any) -> ApprovalFacts:
    fields: dict[str, Any] = {
        "approval_id": "PR-2026-0930-001",
        "type": "purchase_requisition",
        "title": "刀头模具钢材 200kg",
        "amount": Decimal("12345"),
        "currency": "CNY",
        "requester": "张三",
        "requester_department": "采购部",
        "approver": "李总",
        "approver_department": "总经办",
        "approver_chain": ("李总",),
        "superior": "王董",
        "submitted_at": at(2026, 9, 30, 16),
        "tie": "normal",
    }
    fields.update(overrides)
    return ApprovalFacts(**fields)


def state_of(req: ApprovalFacts, policy: UrgePolicy = POLICY, **kw: Any) -> UrgeState:
    return UrgeState(req, plan(req, policy, CAL), **kw)


def record(state: UrgeState, urge: SendUrge, sent_at: dt.datetime | None = None) -> UrgeState:
    """What the hub does after delivering an urge: remember it."""
    sent = SentUrge(
        urge.urge_id, urge.level, urge.channel, urge.recipient, sent_at or urge.send_at, urge.kind
    )
    today = dict(state.urges_today)
    today[urge.recipient] = today.get(urge.recipient, 0) + 1
    return dataclasses.replace(state, sent=(*state.sent, sent), urges_today=today)


def timeline(urges: list[SendUrge]) -> list[tuple[dt.datetime, int, str, str]]:
    return [(u.send_at, u.level, u.channel, u.recipient) for u in urges]


# -- plan -----------------------------------------------------------------------------------


def test_plan_across_national_day_and_the_adjusted_saturday() -> None:
    # Wednesday 30 Sep 2026 16:00, 12,345 CNY: general manager, 3 working days.
    p = plan(request(), POLICY, CAL)
    assert (p.authority, p.band_index) == ("gm", 2)
    assert p.deadline == at(2026, 10, 10, 16)  # Saturday, a working day (调休)
    assert [(s.level, s.channel, s.due_at, s.recipient) for s in p.steps] == [
        (1, "email", at(2026, 10, 10, 16), "李总"),
        (2, "im", at(2026, 10, 12, 11), "李总"),  # 1.5h Sat, Sunday off, 2.5h Monday
        (3, "sms", at(2026, 10, 13, 11), "李总"),
        (4, "phone", at(2026, 10, 14, 11), "李总"),
        (5, "escalation", at(2026, 10, 16, 11), "王董"),
    ]
    assert not p.calendar_approximate
    assert p.warnings == ()


def test_ladder_timings_across_a_weekend() -> None:
    # Credit overrun of 8,000 CNY, Friday 16:00: 4 working hours -> Monday 11:00.
    req = request(type="credit_overrun", amount=Decimal(8000), submitted_at=at(2026, 11, 20, 16))
    st = state_of(req)
    assert st.plan.authority == "sales_manager"
    assert st.plan.deadline == at(2026, 11, 23, 11)
    urges = simulate(st, req.submitted_at, at(2026, 12, 31), POLICY, CAL)
    assert timeline(urges) == [
        (at(2026, 11, 23, 11), 1, "im", "李总"),
        (at(2026, 11, 23, 14, 30), 2, "sms", "李总"),  # 2 working hours over lunch
        (at(2026, 11, 23, 16, 30), 3, "phone", "李总"),
        (at(2026, 11, 24, 11, 30), 4, "escalation", "王董"),
    ]
    assert [u.sequence for u in urges] == [1, 2, 3, 4]
    assert urges[3].escalated_to == "王董"
    assert urges[1].previous_urge_id == urges[0].urge_id


def test_full_ladder_over_the_holiday_is_sent_once_per_step() -> None:
    req = request()
    urges = simulate(state_of(req), req.submitted_at, at(2026, 12, 31), POLICY, CAL)
    assert [u.send_at for u in urges] == [s.due_at for s in plan(req, POLICY, CAL).steps]
    assert len({u.urge_id for u in urges}) == 5


def test_contract_over_spring_festival() -> None:
    # 2 working days from Fri 13 Feb 10:00: 6h Fri, 7.5h Sat 14 (adjusted), 1.5h Tue 24.
    req = request(type="contract", amount=Decimal(30000), submitted_at=at(2026, 2, 13, 10))
    assert plan(req, POLICY, CAL).deadline == at(2026, 2, 24, 10)


def test_strong_ties_start_firmer_weak_ties_gentlest() -> None:
    weak = plan(request(tie="weak"), POLICY, CAL)
    strong = plan(request(tie="strong"), POLICY, CAL)
    assert (weak.steps[0].level, weak.steps[0].channel) == (1, "email")
    assert (strong.steps[0].level, strong.steps[0].channel) == (2, "im")
    # The first urge goes out at the same time; the ladder is one step shorter.
    assert strong.steps[0].due_at == weak.steps[0].due_at == at(2026, 10, 10, 16)
    assert [s.channel for s in strong.steps] == ["im", "sms", "phone", "escalation"]


def test_escalation_falls_back_to_the_next_approver_in_the_chain() -> None:
    p = plan(request(superior=None, approver_chain=("周经理", "李总", "王董")), POLICY, CAL)
    assert p.steps[-1].recipient == "王董"


def test_without_any_superior_the_escalation_is_dropped_with_a_warning() -> None:
    no_org = POLICY.model_copy(update={"org": Org()})
    p = plan(request(superior=None, approver_chain=()), no_org, CAL)
    assert [s.channel for s in p.steps] == ["email", "im", "sms", "phone"]
    assert p.escalation_recipient is None
    assert any("not escalated" in w for w in p.warnings)


@pytest.mark.parametrize(
    ("amount", "authority", "superior"),
    [
        ("800", "sales_manager", "副总经理"),
        ("5000", "vice_gm", "总经理"),
        ("12346", "gm", "董事长"),
    ],
)
def test_erp_requisitions_escalate_above_the_band_authority_in_the_shipped_policy(
    amount: str, authority: str, superior: str
) -> None:
    # An ERP requisition names only its approver (ZZAPPROVER): no superior, no chain.
    req = request(amount=Decimal(amount), superior=None, approver_chain=(), approver="张经理")
    p = plan(req, POLICY, CAL)
    assert p.authority == authority
    assert (p.steps[-1].channel, p.steps[-1].recipient) == ("escalation", superior)
    assert p.escalation_recipient == superior and not p.warnings


def test_org_chart_by_name_before_authority_and_never_the_approver_himself() -> None:
    org = Org(superiors={"李总": "王董"}, authority_superiors={"gm": "李总"})
    policy = POLICY.model_copy(update={"org": org, "escalation_fallback_recipient": "总经办"})
    bare = {"superior": None, "approver_chain": ()}
    # The request's own superior still wins over the policy.
    assert plan(request(superior="赵董"), policy, CAL).escalation_recipient == "赵董"
    assert plan(request(**bare), policy, CAL).escalation_recipient == "王董"
    # 李总 holds gm authority and is listed as its superior: skipped, so the fallback.
    other = Org(authority_superiors={"gm": "李总"})
    p = plan(request(**bare), policy.model_copy(update={"org": other}), CAL)
    assert p.escalation_recipient == "总经办"


def test_maintenance_renewal_notice_one_month_before_expiry() -> None:
    # 15 Dec - 1 month = Sunday 15 Nov -> the notice must be out by Friday 13 Nov, 17:30.
    req = request(
        type="maintenance_renewal",
        amount=Decimal(20000),
        submitted_at=at(2026, 10, 20, 9),
        attributes={"expires_on": "2026-12-15"},
        tie="weak",
    )
    p = plan(req, POLICY, CAL)
    assert p.deadline == at(2026, 11, 13, 17, 30)
    assert p.ladder == "gentle"


def test_maintenance_renewal_without_expiry_uses_the_fallback_or_fails() -> None:
    req = request(type="maintenance_renewal", submitted_at=at(2026, 11, 23, 9), attributes={})
    p = plan(req, POLICY, CAL)
    assert p.deadline == at(2026, 11, 30, 9)  # 5 working days
    assert any("expires_on" in w for w in p.warnings)
    strict = parse_policy(
        DEFAULT_POLICY_PATH.read_text(encoding="utf-8").replace(", fallback: 5 working days", "")
    )
    with pytest.raises(PlanError, match="expires_on"):
        plan(req, strict, CAL)


def test_a_type_an_operator_adds_is_planned_by_its_own_rules() -> None:
    # Service dispatch (DOMAIN.md: within 6 working hours in the city), added to the YAML.
    text = DEFAULT_POLICY_PATH.read_text(encoding="utf-8") + (
        "\n  service_dispatch:\n"
        "    name: 服务派工\n"
        "    ladder: urgent\n"
        "    bands:\n"
        "      - {authority: sales_manager, deadline: 6 working hours}\n"
    )
    policy = parse_policy(text)
    # Monday 23 Nov 2026 10:00 + 6 working hours: 2 h before lunch, 4 h after it -> 17:30.
    req = request(type="service_dispatch", amount=None, submitted_at=at(2026, 11, 23, 10))
    p = plan(req, policy, CAL)
    assert (p.type_key, p.type_fallback, p.authority) == (
        "service_dispatch",
        False,
        "sales_manager",
    )
    assert p.deadline == at(2026, 11, 23, 17, 30)
    assert p.steps[0].channel == "im"  # the urgent ladder starts on IM


def test_complaints_are_due_six_calendar_days_after_intake() -> None:
    req = request(type="complaint", amount=Decimal(800), submitted_at=at(2026, 11, 21, 22, 30))
    p = plan(req, POLICY, CAL)
    assert (p.authority, p.deadline) == ("sales_manager", at(2026, 11, 27, 22, 30))


def test_an_earlier_deadline_from_the_source_system_wins() -> None:
    p = plan(request(deadline=at(2026, 10, 8, 12)), POLICY, CAL)
    assert (p.deadline, p.deadline_source) == (at(2026, 10, 8, 12), "request")
    p = plan(request(deadline=at(2026, 12, 1, 12)), POLICY, CAL)
    assert p.deadline_source == "policy"


def test_unknown_type_uses_the_fallback_and_foreign_currency_is_converted() -> None:
    p = plan(request(type="sample_request", amount=Decimal(1000), currency="USD"), POLICY, CAL)
    assert (p.type_key, p.type_fallback, p.authority) == ("other", True, "gm")
    assert p.amount_in_policy_currency == Decimal("7100.00")


def test_invalid_requests_raise_plan_error() -> None:
    with pytest.raises(PlanError, match="negative"):
        plan(request(amount=Decimal(-1)), POLICY, CAL)
    with pytest.raises(PlanError, match="timezone"):
        plan(request(submitted_at=dt.datetime(2026, 9, 30, 16)), POLICY, CAL)


def test_plans_past_the_calendar_library_are_flagged_or_refused() -> None:
    req = request(submitted_at=at(2026, 12, 30, 16))
    assert plan(req, POLICY, CAL).calendar_approximate
    with pytest.raises(CalendarCoverageError):
        plan(req, POLICY, BusinessCalendar(beyond_coverage="error"))


def test_facts_from_a_message_body() -> None:
    body = {
        "approval_id": "X-1",
        "type": "contract",
        "title": "OEM 合同",
        "amount": "600000.00",
        "approver": "李总",
        "approver_chain": ["李总", "王董"],
        "submitted_at": "2026-11-24T09:00:00+08:00",
        "attributes": {},
    }
    facts = ApprovalFacts.of(body)
    assert facts.amount == Decimal("600000.00")
    assert plan(facts, POLICY, CAL).escalation_recipient == "王董"


# -- next_action on a clock -----------------------------------------------------------------


def test_nothing_before_the_deadline_then_the_first_urge() -> None:
    st = state_of(request())
    clock = Clock(at(2026, 10, 9, 9))
    action = next_action(st, clock.now, POLICY, CAL)
    assert action == Wait(at(2026, 10, 10, 16), "not_due", 1)
    action = next_action(st, clock.set(at(2026, 10, 10, 16)), POLICY, CAL)
    assert isinstance(action, SendUrge)
    assert (action.level, action.channel, action.recipient) == (1, "email", "李总")
    assert action.urge_id == ladder_urge_id("PR-2026-0930-001", 1)


def test_the_same_state_gives_the_same_urge_id_so_two_workers_cannot_both_send() -> None:
    st = state_of(request())
    a = next_action(st, at(2026, 10, 10, 16), POLICY, CAL)
    b = next_action(st, at(2026, 10, 10, 16, 1), POLICY, CAL)
    assert isinstance(a, SendUrge) and isinstance(b, SendUrge)
    assert a.urge_id == b.urge_id


def test_a_decision_stops_the_ladder_at_once() -> None:
    st = state_of(request())
    clock = Clock(at(2026, 10, 10, 16))
    first = next_action(st, clock.now, POLICY, CAL)
    assert isinstance(first, SendUrge)
    st = record(st, first)
    clock.set(at(2026, 10, 12, 11))
    assert isinstance(next_action(st, clock.now, POLICY, CAL), SendUrge)
    decided = dataclasses.replace(st, decided=True)
    for t in (clock.now, at(2026, 10, 16, 11), at(2026, 12, 1)):
        assert next_action(decided, t, POLICY, CAL) is None
    assert one_click(decided, clock.now, POLICY, CAL, click_id="c1").reason == "decided"


def test_restart_in_the_middle_collapses_missed_steps_to_one() -> None:
    st = state_of(request())
    first = next_action(st, at(2026, 10, 10, 16), POLICY, CAL)
    assert isinstance(first, SendUrge)
    st = record(st, first)
    # The hub was down from Saturday evening until Thursday 09:00: im, sms and phone were
    # due (Mon, Tue, Wed 11:00); only the phone urge goes out, once.
    restart = at(2026, 10, 15, 9)
    action = next_action(dataclasses.replace(st, urges_today={}), restart, POLICY, CAL)
    assert isinstance(action, SendUrge)
    assert (action.level, action.channel, action.skipped_levels) == (4, "phone", (2, 3))
    assert action.sequence == 2
    st = record(dataclasses.replace(st, urges_today={}), action)
    # Asking again right away sends nothing: no urge per missed step.
    again = next_action(st, restart, POLICY, CAL)
    assert isinstance(again, Wait)
    # The approver still gets the full 2 working days after the phone call before escalation:
    # Thu 09:00 -> 7h Thu, 7.5h Fri, weekend, 0.5h Monday 19 Oct.
    assert again == Wait(at(2026, 10, 19, 9), "not_due", 5)
    rest = simulate(st, restart, at(2026, 12, 31), POLICY, CAL)
    assert timeline(rest) == [(at(2026, 10, 19, 9), 5, "escalation", "王董")]


def test_restart_after_the_whole_ladder_sends_only_the_escalation() -> None:
    st = state_of(request())
    action = next_action(st, at(2026, 11, 2, 10), POLICY, CAL)
    assert isinstance(action, SendUrge)
    assert (action.level, action.recipient, action.skipped_levels) == (5, "王董", (1, 2, 3, 4))
    assert "此前尚未催办" in action.text
    assert next_action(record(st, action), at(2026, 11, 2, 10), POLICY, CAL) is None


def test_quiet_hours_and_weekends_defer_and_never_drop() -> None:
    # Complaint taken in on Saturday 22:30: due Friday 22:30 (calendar days), which is in the
    # quiet hours; Saturday and Sunday are not working days -> Monday 08:00.
    req = request(type="complaint", amount=Decimal(800), submitted_at=at(2026, 11, 21, 22, 30))
    st = state_of(req)
    clock = Clock(at(2026, 11, 27, 22, 30))
    assert next_action(st, clock.now, POLICY, CAL) == Wait(at(2026, 11, 30, 8), "quiet_hours", 1)
    assert next_action(st, clock.set(at(2026, 11, 29, 10)), POLICY, CAL) == Wait(
        at(2026, 11, 30, 8), "quiet_hours", 1
    )
    action = next_action(st, clock.set(at(2026, 11, 30, 8)), POLICY, CAL)
    assert isinstance(action, SendUrge) and action.level == 1
    urges = simulate(state_of(req), at(2026, 11, 27, 22, 30), at(2026, 12, 31), POLICY, CAL)
    assert all(u.send_at.astimezone(SH).time() >= dt.time(8) for u in urges)
    assert all(u.send_at.astimezone(SH).time() < dt.time(21) for u in urges)
    assert all(CAL.is_working_day(u.send_at.astimezone(SH).date()) for u in urges)
    assert [u.level for u in urges] == [1, 2, 3, 4, 5]


def test_quiet_hours_on_non_working_days_can_be_switched_off() -> None:
    policy = POLICY.model_copy(
        update={"quiet_hours": POLICY.quiet_hours.model_copy(update={"non_working_days": False})}
    )
    req = request(type="complaint", amount=Decimal(800), submitted_at=at(2026, 11, 21, 22, 30))
    action = next_action(state_of(req, policy), at(2026, 11, 27, 22, 30), policy, CAL)
    assert action == Wait(at(2026, 11, 28, 8), "quiet_hours", 1)


def test_recipient_daily_cap_waits_for_the_next_allowed_day() -> None:
    st = state_of(request(), urges_today={"李总": POLICY.caps.max_per_recipient_per_day})
    # Saturday 10 Oct is a working day; the next one is Monday 12 Oct.
    assert next_action(st, at(2026, 10, 10, 16), POLICY, CAL) == Wait(
        at(2026, 10, 12, 8), "recipient_daily_cap", 1
    )
    other = dataclasses.replace(st, urges_today={"别人": 99})
    assert isinstance(next_action(other, at(2026, 10, 10, 16), POLICY, CAL), SendUrge)


def test_cap_per_approval_ends_the_ladder() -> None:
    policy = POLICY.model_copy(
        update={"caps": POLICY.caps.model_copy(update={"max_per_approval": 2})}
    )
    st = state_of(request(), policy)
    urges = simulate(st, at(2026, 10, 10, 16), at(2026, 12, 31), policy, CAL)
    assert [u.level for u in urges] == [1, 2]


def test_min_interval_between_urges_of_one_approval() -> None:
    st = state_of(request())
    click = one_click(st, at(2026, 10, 10, 15, 50), POLICY, CAL, click_id="c1")
    assert click.outcome == "send" and click.urge is not None
    st = record(st, click.urge)
    # The ladder's first step at 16:00 waits until 30 minutes after the portal urge.
    assert next_action(st, at(2026, 10, 10, 16), POLICY, CAL) == Wait(
        at(2026, 10, 10, 16, 20), "min_interval", 1
    )
    action = next_action(st, at(2026, 10, 10, 16, 20), POLICY, CAL)
    assert isinstance(action, SendUrge)
    assert (action.level, action.sequence, action.template) == (1, 2, "repeat")


# -- one-click ------------------------------------------------------------------------------


def test_one_click_is_rate_limited_idempotent_and_within_caps() -> None:
    st = state_of(request())
    clock = Clock(at(2026, 10, 8, 9))
    r1 = one_click(st, clock.now, POLICY, CAL, click_id="c1", urged_by="深圳某经销商")
    assert r1.outcome == "send" and r1.urge is not None
    assert (r1.urge.recipient, r1.urge.channel, r1.urge.kind) == ("李总", "im", "one_click")
    assert "深圳某经销商通过客户门户发起一键催办" in r1.urge.text
    st = record(st, r1.urge)

    assert one_click(st, clock.now, POLICY, CAL, click_id="c1").outcome == "duplicate"
    r2 = one_click(st, clock.advance(dt.timedelta(minutes=10)), POLICY, CAL, click_id="c2")
    assert (r2.outcome, r2.reason, r2.retry_after) == (
        "rejected",
        "rate_limited",
        at(2026, 10, 8, 9, 30),
    )

    r3 = one_click(st, clock.set(at(2026, 10, 8, 9, 30)), POLICY, CAL, click_id="c3")
    assert r3.outcome == "send" and r3.urge is not None
    st = record(st, r3.urge)
    r4 = one_click(st, clock.advance(dt.timedelta(minutes=30)), POLICY, CAL, click_id="c4")
    assert r4.outcome == "send" and r4.urge is not None
    st = record(st, r4.urge)
    # 3 one-click urges + 5 ladder steps still to come = the cap of 8: the ladder's budget,
    # escalation included, is kept.
    r5 = one_click(st, clock.advance(dt.timedelta(hours=1)), POLICY, CAL, click_id="c5")
    assert (r5.outcome, r5.reason) == ("rejected", "approval_cap")
    urges = simulate(st, clock.now, at(2026, 12, 31), POLICY, CAL)
    assert [u.level for u in urges] == [1, 2, 3, 4, 5]


def test_one_click_in_quiet_hours_is_accepted_and_deferred() -> None:
    st = state_of(request())
    r = one_click(st, at(2026, 10, 8, 22), POLICY, CAL, click_id="late")
    assert r.outcome == "deferred" and r.urge is not None
    assert r.urge.send_at == at(2026, 10, 9, 8)


def test_one_click_respects_the_recipient_daily_cap() -> None:
    st = state_of(request(), urges_today={"李总": 6})
    r = one_click(st, at(2026, 10, 8, 10), POLICY, CAL, click_id="c")
    assert (r.outcome, r.reason, r.retry_after) == (
        "rejected",
        "recipient_daily_cap",
        at(2026, 10, 9, 8),
    )


def test_quiet_windows_split_at_midnight_still_hold_until_morning() -> None:
    quiet = POLICY.quiet_hours.model_validate(
        {"windows": ["21:00-24:00", "00:00-08:00"], "non_working_days": True}
    )
    policy = POLICY.model_copy(update={"quiet_hours": quiet})
    st = state_of(request(), policy)
    action = next_action(st, at(2026, 10, 10, 16), policy, CAL)
    assert isinstance(action, SendUrge)
    r = one_click(st, at(2026, 10, 9, 22), policy, CAL, click_id="night")
    assert r.urge is not None and r.urge.send_at == at(2026, 10, 10, 8)
