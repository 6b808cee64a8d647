"""Urge analytics over plain rows."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any
from zoneinfo import ZoneInfo

from flows.urge.analytics import difficulty_ranking, overdue, time_to_decision, urge_counts
from flows.urge.policy import default_policy

SH = ZoneInfo("Asia/Shanghai")
POLICY = default_policy()
CAL = POLICY.build_calendar()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SH)


APPROVALS: list[dict[str, Any]] = [
    {
        "approval_id": "A",
        "type": "purchase_requisition",
        "amount": Decimal("300"),
        "approver": "周经理",
        "approver_department": "销售部",
        "submitted_at": at(2026, 11, 2, 9),
        "deadline": at(2026, 11, 3, 9),
        "decided_at": at(2026, 11, 4, 9),
    },
    {
        "approval_id": "B",
        "type": "contract",
        "amount": "800000",
        "approver": "李总",
        "approver_department": "总经办",
        "submitted_at": "2026-11-02T09:00:00+08:00",
        "deadline": at(2026, 11, 9, 9),
        "decided_at": None,
    },
    {
        "approval_id": "C",
        "type": "purchase_requisition",
        "amount": 4000,
        "approver": "李总",
        "approver_department": "总经办",
        "submitted_at": at(2026, 11, 16, 9),
        "deadline": at(2026, 11, 18, 9),
        "decided_at": None,
    },
    {
        "approval_id": "D",
        "type": "complaint",
        "amount": None,
        "approver": "周经理",
        "approver_department": "销售部",
        "submitted_at": at(2026, 11, 20, 9),
        "deadline": at(2026, 11, 26, 9),
        "decided_at": None,
    },
]


def urge(aid: str, level: int, channel: str = "email") -> dict[str, Any]:
    return {"approval_id": aid, "level": level, "channel": channel, "recipient": "x"}


URGES = [
    urge("A", 1),
    urge("A", 2, "im"),
    urge("A", 3, "sms"),
    urge("B", 1),
    urge("B", 2, "im"),
    urge("C", 1),
    urge("C", 2, "im"),
    urge("C", 3, "sms"),
    urge("C", 4, "phone"),
    urge("ZZ", 1),  # an urge whose approval row is gone
]


def test_urge_counts_by_type_approver_department_level() -> None:
    c = urge_counts(APPROVALS, URGES)
    assert c.total == 10
    assert c.by_type == {"purchase_requisition": 7, "contract": 2, "(unknown)": 1}
    assert c.by_approver == {"李总": 6, "周经理": 3, "(unknown)": 1}
    assert c.by_department == {"总经办": 6, "销售部": 3, "(unknown)": 1}
    assert c.by_level == {1: 4, 2: 3, 3: 2, 4: 1}
    assert c.by_channel["email"] == 4


def test_time_to_decision_median_and_p90() -> None:
    rows = [
        {
            "approval_id": str(i),
            "type": "t",
            "submitted_at": at(2026, 11, 2, 9),
            "decided_at": at(2026, 11, 2, 9) + dt.timedelta(hours=h),
        }
        for i, h in enumerate([1, 2, 3, 4, 5, 6, 7, 8, 9, 100])
    ]
    r = time_to_decision(rows)
    assert r.overall.count == 10
    assert r.overall.median == dt.timedelta(hours=5, minutes=30)
    assert r.overall.p90 == dt.timedelta(hours=9)  # nearest rank: the 9th of 10
    assert r.by_type["t"].count == 10


def test_time_to_decision_in_working_time() -> None:
    # Friday 16:00 -> Monday 10:00 is 1.5h + 1.5h of working time.
    rows = [
        {
            "approval_id": "x",
            "type": "t",
            "submitted_at": at(2026, 11, 20, 16),
            "decided_at": at(2026, 11, 23, 10),
        }
    ]
    r = time_to_decision(rows, calendar=CAL)
    assert r.working and r.overall.median == dt.timedelta(hours=3)


def test_overdue_list_most_overdue_first_with_urge_counts() -> None:
    items = overdue(APPROVALS, at(2026, 11, 25, 9), urges=URGES)
    assert [(i.approval_id, i.urges) for i in items] == [("B", 2), ("C", 4)]
    assert items[0].overdue_by == dt.timedelta(days=16)
    working = overdue(APPROVALS, at(2026, 11, 25, 9), calendar=CAL)
    assert working[1].overdue_by == CAL.working_time_between(
        at(2026, 11, 18, 9), at(2026, 11, 25, 9)
    )


def test_difficulty_weights_urges_by_amount_band() -> None:
    ranking = difficulty_ranking(APPROVALS, URGES, POLICY)
    # B: 2 urges x band 3 (general manager contract) = 6 beats A: 3 urges x band 1 = 3;
    # C: 4 urges x band 2 (vice GM) = 8 is first.
    assert [(i.approval_id, i.score) for i in ranking] == [
        ("C", Decimal(8)),
        ("B", Decimal(6)),
        ("A", Decimal(3)),
    ]
    assert difficulty_ranking(APPROVALS, URGES, POLICY, limit=1)[0].approval_id == "C"
