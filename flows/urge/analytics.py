"""Urge analytics (催办次数 and friends) as pure aggregations over store rows.

Rows are plain mappings so the API can pass SQL results straight in.

Approval rows: ``approval_id, type, amount, currency, approver, approver_department,
submitted_at, deadline, decided_at`` (``decided_at`` None while open). Urge rows:
``approval_id, level, channel, recipient, sent_at``. Datetimes may be ``datetime`` objects or
ISO strings; amounts ``Decimal``, numbers or strings.

Counts are attributed to the approval's approver and the approver's department even when an
urge went to the superior: the question managers ask is where things stall.
"""

from __future__ import annotations

import datetime as dt
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from flows.urge.calendar import BusinessCalendar
from flows.urge.policy import UrgePolicy

Row = Mapping[str, Any]
UNKNOWN = "(unknown)"


@dataclass(frozen=True, slots=True)
class UrgeCounts:
    total: int
    by_type: dict[str, int]
    by_approver: dict[str, int]
    by_department: dict[str, int]
    by_level: dict[int, int]
    by_channel: dict[str, int]


@dataclass(frozen=True, slots=True)
class DurationStats:
    count: int
    median: dt.timedelta | None
    p90: dt.timedelta | None


@dataclass(frozen=True, slots=True)
class TimeToDecision:
    """``working`` tells whether the durations are working time (a calendar was given)."""

    working: bool
    overall: DurationStats
    by_type: dict[str, DurationStats]


@dataclass(frozen=True, slots=True)
class OverdueItem:
    approval_id: str
    type: str
    approver: str
    approver_department: str
    deadline: dt.datetime
    overdue_by: dt.timedelta
    urges: int


@dataclass(frozen=True, slots=True)
class DifficultyItem:
    approval_id: str
    type: str
    approver: str
    approver_department: str
    urges: int
    band_index: int | None
    weight: Decimal
    score: Decimal


def urge_counts(approvals: Iterable[Row], urges: Iterable[Row]) -> UrgeCounts:
    """催办次数 by approval type, approver, approver department, ladder level and channel.
    Each dict is ordered by count, highest first, then by name."""
    index = {str(a["approval_id"]): a for a in approvals}
    return urge_counts_from_groups(
        (
            _field(a, "type"),
            _field(a, "approver"),
            _field(a, "approver_department"),
            u.get("level"),
            u.get("channel"),
            1,
        )
        for u in urges
        for a in (index.get(str(u.get("approval_id"))),)
    )


def _field(row: Row | None, key: str) -> str | None:
    value = None if row is None else row.get(key)
    return None if value is None else str(value)


UrgeGroup = tuple[str | None, str | None, str | None, int | None, str | None, int]
"""(approval type, approver, approver department, level, channel, number of urges): one row
of the store's GROUP BY over the urges joined with their approvals."""


def urge_counts_from_groups(groups: Iterable[UrgeGroup]) -> UrgeCounts:
    """``urge_counts`` from counts the store aggregated, so that the urges are not read one by
    one."""
    by_type: Counter[str] = Counter()
    by_approver: Counter[str] = Counter()
    by_department: Counter[str] = Counter()
    by_level: Counter[int] = Counter()
    by_channel: Counter[str] = Counter()
    total = 0
    for atype, approver, department, level, channel, n in groups:
        total += n
        by_type[_name(atype)] += n
        by_approver[_name(approver)] += n
        by_department[_name(department)] += n
        by_level[int(level or 0)] += n
        by_channel[str(channel or UNKNOWN)] += n

    def ranked(c: Counter[str]) -> dict[str, int]:
        return dict(sorted(c.items(), key=lambda kv: (-kv[1], kv[0])))

    return UrgeCounts(
        total=total,
        by_type=ranked(by_type),
        by_approver=ranked(by_approver),
        by_department=ranked(by_department),
        by_level=dict(sorted(by_level.items())),
        by_channel=ranked(by_channel),
    )


def time_to_decision(
    approvals: Iterable[Row], *, calendar: BusinessCalendar | None = None
) -> TimeToDecision:
    """Median and p90 of submission-to-decision time of decided approvals, overall and per
    type. With a calendar the times are working time, which is what a deadline in working
    days is compared with; without, wall-clock time."""
    overall: list[dt.timedelta] = []
    per_type: dict[str, list[dt.timedelta]] = {}
    for a in approvals:
        decided = _dt(a.get("decided_at"))
        submitted = _dt(a.get("submitted_at"))
        if decided is None or submitted is None:
            continue
        if calendar is not None:
            took = calendar.working_time_between(submitted, decided)
        else:
            took = decided - submitted
        overall.append(took)
        per_type.setdefault(_text(a, "type"), []).append(took)
    return TimeToDecision(
        working=calendar is not None,
        overall=_stats(overall),
        by_type={k: _stats(v) for k, v in sorted(per_type.items())},
    )


def overdue(
    approvals: Iterable[Row],
    now: dt.datetime,
    *,
    urges: Iterable[Row] = (),
    calendar: BusinessCalendar | None = None,
    counts: Mapping[str, int] | None = None,
) -> list[OverdueItem]:
    """Open approvals past their deadline, most overdue first (working time with a
    calendar). ``counts``: urges per approval id, instead of the urge rows."""
    if counts is None:
        counts = Counter(str(u.get("approval_id")) for u in urges)
    items: list[OverdueItem] = []
    for a in approvals:
        if a.get("decided_at") is not None:
            continue
        deadline = _dt(a.get("deadline"))
        if deadline is None or deadline >= now:
            continue
        if calendar is not None:
            late = calendar.working_time_between(deadline, now)
        else:
            late = now - deadline
        aid = str(a["approval_id"])
        items.append(
            OverdueItem(
                approval_id=aid,
                type=_text(a, "type"),
                approver=_text(a, "approver"),
                approver_department=_text(a, "approver_department"),
                deadline=deadline,
                overdue_by=late,
                urges=counts.get(aid, 0),
            )
        )
    items.sort(key=lambda i: (-i.overdue_by, i.deadline, i.approval_id))
    return items


def difficulty_ranking(
    approvals: Iterable[Row],
    urges: Iterable[Row],
    policy: UrgePolicy,
    *,
    limit: int | None = None,
    counts: Mapping[str, int] | None = None,
) -> list[DifficultyItem]:
    """Approvals that needed the most urging, each urge weighted by the approval's amount
    band (band weight from the policy, by default 1, 2, 3 ... from the lowest band): ten
    urges for a 300-yuan requisition say less about difficulty than ten for a contract the
    general manager must sign. Approvals never urged are left out. ``counts``: urges per
    approval id, instead of the urge rows."""
    if counts is None:
        counts = Counter(str(u.get("approval_id")) for u in urges)
    items: list[DifficultyItem] = []
    for a in approvals:
        aid = str(a["approval_id"])
        n = counts.get(aid, 0)
        if not n:
            continue
        band_index: int | None
        try:
            _key, atype, _fb = policy.resolve_type(_text(a, "type"))
        except LookupError:
            band_index, weight = None, Decimal(1)
        else:
            amount = policy.to_policy_currency(_decimal(a.get("amount")), a.get("currency"))
            band_index, _band = policy.band_for(atype, amount)
            weight = policy.band_weight(atype, band_index)
        items.append(
            DifficultyItem(
                approval_id=aid,
                type=_text(a, "type"),
                approver=_text(a, "approver"),
                approver_department=_text(a, "approver_department"),
                urges=n,
                band_index=band_index,
                weight=weight,
                score=weight * n,
            )
        )
    items.sort(key=lambda i: (-i.score, -i.urges, i.approval_id))
    return items if limit is None else items[:limit]


def _stats(values: Sequence[dt.timedelta]) -> DurationStats:
    if not values:
        return DurationStats(0, None, None)
    ordered = sorted(values)
    # Nearest-rank p90: an observed value, not an interpolation, so "90 % of approvals were
    # decided within X" is literally true of the data.
    rank = max(1, math.ceil(0.9 * len(ordered)))
    mid, odd = divmod(len(ordered), 2)
    median = ordered[mid] if odd else (ordered[mid - 1] + ordered[mid]) / 2
    return DurationStats(len(ordered), median, ordered[rank - 1])


def _name(value: str | None) -> str:
    return UNKNOWN if value in (None, "") else str(value)


def _text(row: Row | None, key: str) -> str:
    if row is None:
        return UNKNOWN
    value = row.get(key)
    return UNKNOWN if value in (None, "") else str(value)


def _dt(value: Any) -> dt.datetime | None:
    if value is None:
        return None
    result = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))
    if result.tzinfo is None:
        # Naive timestamps come from stores that save UTC without an offset (SQLite).
        result = result.replace(tzinfo=dt.UTC)
    return result


def _decimal(value: Any) -> Decimal | None:
    if value is None or value == "":
        return None
    try:
        return Decimal(str(value))
    except InvalidOperation:
        return None
