"""Chinese urge texts: amounts, waiting time, the second urge, the deadline, escalation."""

from __future__ import annotations

import dataclasses
import datetime as dt
from decimal import Decimal
from zoneinfo import ZoneInfo

import pytest

from flows.urge.ladder import ApprovalFacts, SendUrge, SentUrge, UrgeState, next_action, plan
from flows.urge.policy import default_policy
from flows.urge.templates import (
    format_amount,
    format_date,
    format_datetime,
    format_waited,
    render,
    template_problems,
)

SH = ZoneInfo("Asia/Shanghai")
POLICY = default_policy()
CAL = POLICY.build_calendar()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SH)


@pytest.mark.parametrize(
    ("amount", "currency", "text"),
    [
        (Decimal("12345"), "CNY", "¥12,345.00"),
        (Decimal("0.5"), "CNY", "¥0.50"),
        (Decimal("1234567.895"), "CNY", "¥1,234,567.90"),
        (Decimal("980"), "USD", "US$980.00"),
        (Decimal("980"), "CHF", "980.00 CHF"),
        (None, "CNY", "未注明金额"),
    ],
)
def test_format_amount(amount: Decimal | None, currency: str, text: str) -> None:
    assert format_amount(amount, currency) == text


@pytest.mark.parametrize(
    ("waited", "working", "text"),
    [
        (dt.timedelta(hours=7, minutes=30) * 2 + dt.timedelta(hours=3), True, "2 个工作日3小时"),
        (dt.timedelta(hours=7, minutes=30), True, "1 个工作日"),
        (dt.timedelta(hours=3, minutes=20), True, "3小时20分钟"),
        (dt.timedelta(minutes=45), True, "45分钟"),
        (dt.timedelta(days=3, hours=5, minutes=10), False, "3天5小时"),
    ],
)
def test_format_waited(waited: dt.timedelta, working: bool, text: str) -> None:
    day = dt.timedelta(hours=7, minutes=30) if working else None
    assert format_waited(waited, working_day=day) == text


def test_dates_name_the_year_only_when_it_differs() -> None:
    now = at(2026, 11, 25, 10)
    assert format_date(at(2026, 11, 24, 9), tz=SH, now=now) == "11月24日"
    assert format_date(at(2025, 12, 30, 9), tz=SH, now=now) == "2025年12月30日"
    assert format_datetime(at(2026, 11, 24, 17, 30), tz=SH, now=now) == "11月24日（周二）17:30"


def test_template_problems() -> None:
    assert template_problems("{requester}提交的「{title}」") == []
    assert "unknown placeholder {requster}" in template_problems("{requster}")[0]
    assert "positional" in template_problems("{}")[0]
    assert "attribute or index" in template_problems("{title[0]}")[0]
    assert "not a valid template" in template_problems("{title")[0]


def _request() -> ApprovalFacts:
    # Friday 20 Nov 2026 09:00, 1 working day: due Monday 23 Nov 09:00.
    return ApprovalFacts(
        approval_id="PR-9",
        type="purchase_requisition",
        title="剃须刀电机 500只",
        amount=Decimal("980"),
        requester="张三",
        requester_department="采购部",
        approver="周经理",
        approver_department="销售部",
        superior="李总",
        submitted_at=at(2026, 11, 20, 9),
    )


def _urge(state: UrgeState, now: dt.datetime) -> SendUrge:
    action = next_action(state, now, POLICY, CAL)
    assert isinstance(action, SendUrge), action
    return action


def _sent(state: UrgeState, urge: SendUrge) -> UrgeState:
    s = SentUrge(urge.urge_id, urge.level, urge.channel, urge.recipient, urge.send_at)
    return dataclasses.replace(state, sent=(*state.sent, s))


def test_first_urge_names_requester_item_amount_wait_and_deadline_date() -> None:
    req = _request()
    st = UrgeState(req, plan(req, POLICY, CAL))
    first = _urge(st, at(2026, 11, 23, 9))
    assert first.template == "first"
    assert first.text == (
        "周经理您好：张三（采购部）提交的请购单「剃须刀电机 500只」，金额 ¥980.00，"
        "已等待 1 个工作日，审批期限 11月23日（周一）09:00 已到，请尽快审批。"
    )


def test_second_urge_refers_to_the_first() -> None:
    req = _request()
    st = UrgeState(req, plan(req, POLICY, CAL))
    st = _sent(st, _urge(st, at(2026, 11, 23, 9)))
    second = _urge(st, at(2026, 11, 23, 14, 30))  # 4 working hours later, over lunch
    assert second.template == "repeat"
    assert second.text.startswith(
        "周经理您好：再次提醒：我于 11月23日 发送的催办尚未处理（本次为第 2 次催办）"
    )
    assert "已等待 1 个工作日4小时" in second.text
    assert "已逾期 4小时" in second.text


def test_escalation_is_addressed_to_the_superior_and_tells_the_history() -> None:
    req = _request()
    st = UrgeState(req, plan(req, POLICY, CAL))
    times = [
        at(2026, 11, 23, 9),
        at(2026, 11, 23, 14, 30),
        at(2026, 11, 24, 14, 30),
        at(2026, 11, 25, 14, 30),
    ]
    for t in times:
        st = _sent(st, _urge(st, t))
    escalation = _urge(st, at(2026, 11, 27, 14, 30))
    assert (escalation.channel, escalation.recipient, escalation.template) == (
        "escalation",
        "李总",
        "escalation",
    )
    assert escalation.text.startswith(
        "李总您好：张三（采购部）提交的请购单「剃须刀电机 500只」（¥980.00）在周经理（销售部）处"
    )
    assert "我已于 11月23日 起催办 4 次" in escalation.text


def test_a_type_can_override_a_template() -> None:
    types = dict(POLICY.types)
    types["purchase_requisition"] = types["purchase_requisition"].model_copy(
        update={"templates": {"first": "请购提醒：{title}，{amount}，期限 {deadline_date}"}}
    )
    policy = POLICY.model_copy(update={"types": types})
    req = _request()
    action = next_action(UrgeState(req, plan(req, policy, CAL)), at(2026, 11, 23, 9), policy, CAL)
    assert isinstance(action, SendUrge)
    assert action.text == "请购提醒：剃须刀电机 500只，¥980.00，期限 11月23日"


def test_an_erp_requisition_without_departments_reads_without_empty_brackets() -> None:
    # An ERP requisition names no approver department (and may name no requester's): the
    # escalation must not read 在张经理（）处.
    req = dataclasses.replace(
        _request(), approver="张经理", approver_department=None, requester_department=None
    )
    st = UrgeState(req, plan(req, POLICY, CAL))
    for t in (
        at(2026, 11, 23, 9),
        at(2026, 11, 23, 14, 30),
        at(2026, 11, 24, 14, 30),
        at(2026, 11, 25, 14, 30),
    ):
        st = _sent(st, _urge(st, t))
    escalation = _urge(st, at(2026, 11, 27, 14, 30))
    assert escalation.text.startswith(
        "李总您好：张三提交的请购单「剃须刀电机 500只」（¥980.00）在张经理处已等待"
    )
    assert "（）" not in escalation.text


@pytest.mark.parametrize(
    ("template", "values", "text"),
    [
        ("在{a}（{b}）处", {"a": "张经理", "b": ""}, "在张经理处"),
        ("在{a}（{b}）处", {"a": "张经理", "b": "销售部"}, "在张经理（销售部）处"),
        ("{a} ({b}) [{b}] 【{b}】", {"a": "x", "b": ""}, "x   "),
        # only brackets around the placeholder alone go; other text keeps its brackets
        ("（部门：{b}）（{a}）", {"a": "", "b": ""}, "（部门：）"),
        ("（{b}", {"b": ""}, "（"),
        ("{{{b}}}", {"b": ""}, "{}"),
    ],
)
def test_an_empty_placeholder_takes_its_brackets_with_it(
    template: str, values: dict[str, str], text: str
) -> None:
    assert render(template, values) == text
