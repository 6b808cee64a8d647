"""The urge policy: what counts as late, who is chased, how, and how often.

The policy is YAML (see ``default_policy.yaml``) validated into frozen pydantic models when the
hub starts. Every problem is reported at once, each naming the path in the file, the line, the
offending value and the rule, for example::

    line 61: types.complaint.bands[1].min_amount: 5000 overlaps band 0 (0-6000)

because an operator editing this file at a customer site has no debugger, and a policy that
half-loads would chase the wrong people.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from flows.urge.calendar import BeyondCoverage, BusinessCalendar
from flows.urge.templates import REQUIRED_TEMPLATES, template_problems

Channel = Literal["email", "im", "sms", "phone", "escalation"]
Tie = Literal["weak", "normal", "strong"]
TimeUnit = Literal["minutes", "hours", "days", "weeks", "months"]

CHANNELS: tuple[Channel, ...] = ("email", "im", "sms", "phone", "escalation")
TIES: tuple[Tie, ...] = ("weak", "normal", "strong")
# Intensity order of the ladder: a ladder may repeat a channel but never get gentler.
CHANNEL_RANK: Mapping[str, int] = {c: i for i, c in enumerate(CHANNELS)}

DEFAULT_POLICY_PATH = Path(__file__).with_name("default_policy.yaml")

_NAME_RE = r"^[a-z][a-z0-9_]*$"
Name = Annotated[str, Field(pattern=_NAME_RE, max_length=64)]

Loc = tuple[str | int, ...]


# -- errors ---------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PolicyIssue:
    """One problem in the policy: where, what value, which rule."""

    loc: Loc
    value: object
    rule: str
    line: int | None = None

    @property
    def path(self) -> str:
        return format_loc(self.loc)

    def __str__(self) -> str:
        where = f"line {self.line}: " if self.line is not None else ""
        if self.value is NO_VALUE:
            return f"{where}{self.path}: {self.rule}"
        return f"{where}{self.path}: {_show(self.value)} {self.rule}"


class _Missing:
    def __repr__(self) -> str:
        return "(missing)"


MISSING: Any = _Missing()
NO_VALUE: Any = object()  # an issue about the whole file: nothing to quote


class PolicyError(ValueError):
    """The policy file is invalid; ``issues`` lists every problem found."""

    def __init__(self, source: str, issues: Sequence[PolicyIssue]) -> None:
        self.source = source
        self.issues = tuple(issues)
        n = len(self.issues)
        head = f"invalid urge policy {source} ({n} problem{'s' if n != 1 else ''}):"
        super().__init__("\n".join([head, *(f"  {i}" for i in self.issues)]))


class _SemanticErrors(ValueError):
    # Carries structured issues through pydantic, which wraps ValueErrors from validators.
    def __init__(self, issues: list[PolicyIssue]) -> None:
        self.issues = issues
        super().__init__("; ".join(str(i) for i in issues))


class UnknownApprovalType(LookupError):
    """The request's type is not in the policy and no ``fallback_type`` is configured."""


def format_loc(loc: Loc) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part == "[key]":
            out += " (key)"
        else:
            out += f".{part}" if out else str(part)
    return out or "(top level)"


def _show(value: object) -> str:
    if isinstance(value, str):
        text = repr(value) if len(value) <= 60 else repr(value[:57] + "...")
    elif isinstance(value, Decimal):
        text = format(value.normalize(), "f")
    elif isinstance(value, Mapping | list | tuple):
        text = repr(value)
        if len(text) > 60:
            text = text[:57] + "..."
    elif isinstance(value, _Missing):
        text = repr(value)
    else:
        text = str(value)
    return text


# -- value types ----------------------------------------------------------------------------

_EN_DURATION = re.compile(
    r"^(?P<n>\d+)\s*(?P<working>working\s+|business\s+)?"
    r"(?P<unit>minutes?|mins?|hours?|hrs?|h|days?|d|weeks?|w|months?)$",
    re.IGNORECASE,
)
_ZH_DURATION = re.compile(
    r"^(?P<n>\d+)\s*个?\s*(?P<working>工作)?\s*(?P<unit>分钟|小时|日|天|周|星期|月)$"
)
_EN_UNITS: Mapping[str, TimeUnit] = {
    "minute": "minutes",
    "minutes": "minutes",
    "min": "minutes",
    "mins": "minutes",
    "hour": "hours",
    "hours": "hours",
    "hr": "hours",
    "hrs": "hours",
    "h": "hours",
    "day": "days",
    "days": "days",
    "d": "days",
    "week": "weeks",
    "weeks": "weeks",
    "w": "weeks",
    "month": "months",
    "months": "months",
}
_ZH_UNITS: Mapping[str, TimeUnit] = {
    "分钟": "minutes",
    "小时": "hours",
    "日": "days",
    "天": "days",
    "周": "weeks",
    "星期": "weeks",
    "月": "months",
}
_DURATION_HELP = (
    "is not a duration; write e.g. '6 working hours', '3 working days', '6 days', "
    "'30 minutes', '1 month' (or 6个工作小时, 3个工作日, 6天)"
)


class Duration(BaseModel):
    """A span of working time (counted on the business calendar) or of calendar time."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    value: int = Field(ge=0)
    unit: TimeUnit
    working: bool = False

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, int | float):  # bool is an int too
            raise ValueError(f"{_DURATION_HELP} (a bare number has no unit)")
        if not isinstance(data, str):
            return data
        text = data.strip()
        m = _EN_DURATION.match(text)
        if m is not None:
            unit = _EN_UNITS[m["unit"].lower()]
        else:
            m = _ZH_DURATION.match(text)
            if m is None:
                raise ValueError(_DURATION_HELP)
            unit = _ZH_UNITS[m["unit"]]
        return {"value": int(m["n"]), "unit": unit, "working": bool(m["working"])}

    @model_validator(mode="after")
    def _working_units(self) -> Duration:
        if self.working and self.unit in ("weeks", "months"):
            raise ValueError(
                f"'{self.value} working {self.unit}' is ambiguous; count working days instead"
            )
        return self

    def __str__(self) -> str:
        unit = self.unit[:-1] if self.value == 1 else self.unit
        return f"{self.value} {'working ' if self.working else ''}{unit}"

    def add_to(self, start: dt.datetime, calendar: BusinessCalendar) -> dt.datetime:
        """``start`` + this duration. Working durations are counted on the calendar; calendar
        days, weeks and months keep the local clock time ("6 days" from Monday 10:00 is
        Sunday 10:00); calendar minutes and hours are absolute."""
        if self.working:
            if self.unit == "days":
                return calendar.add_working_days(start, self.value)
            return calendar.add_working_time(start, self._fixed())
        local = calendar.local(start)
        if self.unit == "months":
            return _shift_months(local, self.value)
        if self.unit in ("days", "weeks"):
            naive = local.replace(tzinfo=None) + self._fixed()
            return naive.replace(tzinfo=calendar.tz)
        return (start.astimezone(dt.UTC) + self._fixed()).astimezone(calendar.tz)

    def before_date(self, day: dt.date) -> dt.date:
        """The date this calendar duration before ``day`` (for notice periods)."""
        if self.unit == "months":
            return _shift_months(dt.datetime.combine(day, dt.time(0)), -self.value).date()
        return day - self._fixed()

    def _fixed(self) -> dt.timedelta:
        if self.unit == "minutes":
            return dt.timedelta(minutes=self.value)
        if self.unit == "hours":
            return dt.timedelta(hours=self.value)
        if self.unit == "days":
            return dt.timedelta(days=self.value)
        return dt.timedelta(weeks=self.value)


def _shift_months(t: dt.datetime, months: int) -> dt.datetime:
    # Clamp to the month's last day: one month before 31 March is 28/29 February.
    index = t.year * 12 + (t.month - 1) + months
    year, month = divmod(index, 12)
    month += 1
    last = (dt.date(year + (month == 12), month % 12 + 1, 1) - dt.timedelta(days=1)).day
    return t.replace(year=year, month=month, day=min(t.day, last))


_TIME_RANGE = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


class TimeRange(BaseModel):
    """A daily window such as ``08:30-12:00``; quiet-hour windows may wrap midnight."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    start: dt.time
    end: dt.time

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: Any) -> Any:
        if isinstance(data, int) and not isinstance(data, bool):
            raise ValueError(
                f"is a number: YAML reads an unquoted time like 13:30 as the base-60 number "
                f"{data}; write the window as a quoted string, e.g. '13:30-17:30'"
            )
        if not isinstance(data, str):
            return data
        m = _TIME_RANGE.match(data)
        if m is None:
            raise ValueError("is not a time window; write 'HH:MM-HH:MM', e.g. '08:30-12:00'")
        h1, m1, h2, m2 = (int(g) for g in m.groups())
        if h1 > 23 or h2 > 24 or m1 > 59 or m2 > 59 or (h2 == 24 and m2):
            raise ValueError("has an hour or minute out of range")
        # "21:00-24:00" means until midnight: stored as a window wrapping to 00:00.
        end = dt.time(0) if h2 == 24 else dt.time(h2, m2)
        return {"start": dt.time(h1, m1), "end": end}

    @model_validator(mode="after")
    def _not_empty(self) -> TimeRange:
        if self.start == self.end:
            raise ValueError("starts and ends at the same time (an empty window)")
        return self

    @property
    def wraps(self) -> bool:
        return self.end < self.start

    def contains(self, t: dt.time) -> bool:
        if self.wraps:
            return t >= self.start or t < self.end
        return self.start <= t < self.end

    def __str__(self) -> str:
        return f"{self.start:%H:%M}-{self.end:%H:%M}"


# -- sections -------------------------------------------------------------------------------


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class CalendarSettings(_Model):
    timezone: str = "Asia/Shanghai"
    working_hours: list[TimeRange] = Field(min_length=1)
    beyond_coverage: BeyondCoverage = "weekends"
    extra_holidays: list[dt.date] = []
    extra_workdays: list[dt.date] = []

    @field_validator("timezone")
    @classmethod
    def _known_tz(cls, v: str) -> str:
        try:
            ZoneInfo(v)
        except (ZoneInfoNotFoundError, ValueError):
            raise ValueError(
                "is not a known IANA timezone (e.g. Asia/Shanghai); if it is, install tzdata"
            ) from None
        return v


class QuietHours(_Model):
    windows: list[TimeRange] = []
    non_working_days: bool = True


class Caps(_Model):
    max_per_approval: int = Field(ge=1)
    max_per_recipient_per_day: int = Field(ge=1)
    min_interval: Duration = Duration(value=0, unit="minutes")


class OneClick(_Model):
    enabled: bool = True
    min_interval: Duration
    channel: Channel = "im"


# A person as OA's reminder inbox holds them: ``to_user`` has room for 20 characters there.
Person = Annotated[str, Field(min_length=1, max_length=20)]


class Org(_Model):
    """The excerpt of the org chart escalations need (审批人上级). Requests from OA name the
    approver's superior or carry an approval chain; an ERP requisition names only its approver
    (``ZZAPPROVER``), so without this its last rung would have nobody to go to."""

    # approver -> their superior, by the name the source systems use
    superiors: dict[Person, Person] = {}
    # a band's authority -> who is above whoever holds it (the approver is not listed above)
    authority_superiors: dict[Name, Person] = {}


class LadderStep(_Model):
    after: Duration
    channel: Channel
    template: str | None = None


class StartLevels(_Model):
    weak: int = Field(default=1, ge=1)
    normal: int = Field(default=1, ge=1)
    strong: int = Field(default=1, ge=1)

    def for_tie(self, tie: Tie) -> int:
        return {"weak": self.weak, "normal": self.normal, "strong": self.strong}[tie]


class Ladder(_Model):
    start_level: StartLevels = StartLevels()
    steps: list[LadderStep] = Field(min_length=1)


class DeadlineRule(_Model):
    """Either ``after`` submission, or ``before`` a date found in the request's attributes
    (``field``), e.g. a renewal notice one month before ``expires_on``."""

    after: Duration | None = None
    field: str | None = None
    before: Duration | None = None
    fallback: Duration | None = None

    @model_validator(mode="before")
    @classmethod
    def _shorthand(cls, data: Any) -> Any:
        if isinstance(data, str):
            return {"after": data}
        if isinstance(data, int | float):
            raise ValueError(f"{_DURATION_HELP} (a bare number has no unit)")
        return data

    @model_validator(mode="after")
    def _one_form(self) -> DeadlineRule:
        if self.after is not None and (self.field is not None or self.before is not None):
            raise ValueError("give either 'after' or 'field' + 'before', not both")
        if self.after is None and (self.field is None or self.before is None):
            raise ValueError("needs 'after: <duration>' or both 'field' and 'before'")
        if self.before is not None and (
            self.before.working or self.before.unit in ("minutes", "hours")
        ):
            raise ValueError(
                f"'before: {self.before}' must be calendar days, weeks or months "
                "(the notice date is a date)"
            )
        if self.fallback is not None and self.after is not None:
            raise ValueError("'fallback' only applies to a 'field' + 'before' deadline")
        return self


class Band(_Model):
    """An amount band: ``[min_amount, max_amount)``, or ``[min, max]`` with ``include_max``
    (then the next band starts just above max). That reproduces the usual wording "below
    1,000 / 1,000-5,000 / above 5,000" exactly: 1,000 and 5,000 both go to the vice GM."""

    min_amount: Decimal = Decimal(0)
    max_amount: Decimal | None = None
    include_max: bool = False
    authority: Name
    deadline: DeadlineRule | None = None
    weight: Decimal | None = Field(default=None, gt=0)

    def describe(self) -> str:
        hi = "" if self.max_amount is None else _show(self.max_amount)
        return f"{_show(self.min_amount)}-{hi}" if hi else f"{_show(self.min_amount)} and above"


class ApprovalType(_Model):
    name: str = Field(min_length=1, description="display name used in texts, e.g. 请购单")
    source: str | None = None
    ladder: str
    deadline: DeadlineRule | None = None
    request_deadline: Literal["earliest", "request", "policy"] = "earliest"
    bands: list[Band] = Field(min_length=1)
    band_if_no_amount: int | None = None
    templates: dict[str, str] = {}


class UrgePolicy(_Model):
    version: Literal[1] = 1
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")
    exchange_rates: dict[
        Annotated[str, Field(pattern=r"^[A-Z]{3}$")], Annotated[Decimal, Field(gt=0)]
    ] = {}
    calendar: CalendarSettings
    quiet_hours: QuietHours = QuietHours()
    caps: Caps
    one_click: OneClick
    org: Org = Org()
    escalation_fallback_recipient: Person | None = None
    ladders: dict[Name, Ladder] = Field(min_length=1)
    templates: dict[Name, str]
    types: dict[Name, ApprovalType] = Field(min_length=1)
    fallback_type: str | None = None
    # Systems that take the workflow system's decision back on a request they started (the
    # ERP releases or rejects its requisition with it). Others learn it in OA only: a decision
    # sent to a system without a place for it would be refused there, a dead letter each time.
    decisions_back_to: tuple[Name, ...] = ()

    @model_validator(mode="after")
    def _semantics(self) -> UrgePolicy:
        issues = _semantic_issues(self)
        if issues:
            raise _SemanticErrors(issues)
        return self

    # -- lookups used by the ladder and analytics ----------------------------------------

    def build_calendar(self) -> BusinessCalendar:
        c = self.calendar
        return BusinessCalendar(
            timezone=c.timezone,
            working_hours=[(r.start, r.end) for r in c.working_hours],
            beyond_coverage=c.beyond_coverage,
            extra_holidays=c.extra_holidays,
            extra_workdays=c.extra_workdays,
        )

    @property
    def fingerprint(self) -> str:
        """Stable hash of the effective policy, to notice plans made under an older one."""
        # Not a cached_property: model_copy(update=...) would carry a stale value along.
        cached = _FINGERPRINTS.get(id(self))
        if cached is not None and cached[0] is self:
            return cached[1]
        value = hashlib.sha256(self.model_dump_json().encode()).hexdigest()[:16]
        if len(_FINGERPRINTS) >= 16:
            _FINGERPRINTS.pop(next(iter(_FINGERPRINTS)))
        _FINGERPRINTS[id(self)] = (self, value)
        return value

    def resolve_type(self, type_name: str) -> tuple[str, ApprovalType, bool]:
        """``(key, type, used_fallback)`` for a request's type."""
        found = self.types.get(type_name)
        if found is not None:
            return type_name, found, False
        if self.fallback_type is not None:
            return self.fallback_type, self.types[self.fallback_type], True
        raise UnknownApprovalType(
            f"approval type {type_name!r} is not in the urge policy and no fallback_type is set"
        )

    def to_policy_currency(self, amount: Decimal | None, currency: str | None) -> Decimal | None:
        """The amount in the policy currency, or None when unknown (no amount, or no rate)."""
        if amount is None:
            return None
        code = (currency or self.currency).upper()
        if code == self.currency or (code == "RMB" and self.currency == "CNY"):
            return amount
        rate = self.exchange_rates.get(code)
        return None if rate is None else amount * rate

    def band_for(self, approval_type: ApprovalType, amount: Decimal | None) -> tuple[int, Band]:
        """The band an amount (in the policy currency) falls in; ``band_if_no_amount`` (by
        default the last, most senior band) when the amount is unknown, because an unknown
        amount must not be decided by the most junior authority."""
        bands = approval_type.bands
        if amount is None:
            i = approval_type.band_if_no_amount
            i = len(bands) - 1 if i is None else i
            return i, bands[i]
        previous_inclusive = False
        for i, band in enumerate(bands):
            above_min = (
                amount > band.min_amount if previous_inclusive else amount >= band.min_amount
            )
            if band.max_amount is None:
                below_max = True
            elif band.include_max:
                below_max = amount <= band.max_amount
            else:
                below_max = amount < band.max_amount
            if above_min and below_max:
                return i, band
            previous_inclusive = band.include_max
        # Amounts below the first band (negative) land in the first band.
        return 0, bands[0]

    def escalation_candidates(self, approver: str, authority: str) -> list[str]:
        """The policy's answers to "who is above this approver", most specific first:
        ``org.superiors`` by name, ``org.authority_superiors`` by the band's authority,
        ``escalation_fallback_recipient``."""
        found = [
            self.org.superiors.get(approver),
            self.org.authority_superiors.get(authority),
            self.escalation_fallback_recipient,
        ]
        return [c for c in found if c]

    def band_weight(self, approval_type: ApprovalType, index: int) -> Decimal:
        w = approval_type.bands[index].weight
        return Decimal(index + 1) if w is None else w

    def template_text(self, type_key: str, name: str) -> str:
        t = self.types.get(type_key)
        if t is not None and name in t.templates:
            return t.templates[name]
        return self.templates[name]


# Holding the policy itself keeps its id from being reused while the entry exists.
_FINGERPRINTS: dict[int, tuple[UrgePolicy, str]] = {}


# -- semantic validation --------------------------------------------------------------------


def _semantic_issues(p: UrgePolicy) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []

    def add(loc: Loc, value: object, rule: str) -> None:
        issues.append(PolicyIssue(loc, value, rule))

    hours = p.calendar.working_hours
    for i in range(len(hours)):
        r = hours[i]
        if r.wraps:
            add(("calendar", "working_hours", i), str(r), "wraps midnight; working hours must not")
        elif i and r.start < hours[i - 1].end:
            add(
                ("calendar", "working_hours", i),
                str(r),
                f"overlaps or precedes working_hours[{i - 1}] ({hours[i - 1]})",
            )
    for d in sorted(set(p.calendar.extra_holidays) & set(p.calendar.extra_workdays)):
        idx = p.calendar.extra_workdays.index(d)
        add(("calendar", "extra_workdays", idx), d, "is also listed in extra_holidays")

    for code in p.exchange_rates:
        if code == p.currency:
            add(("exchange_rates", code), code, "is the policy currency itself")

    if p.one_click.channel == "escalation":
        add(
            ("one_click", "channel"),
            "escalation",
            "is not allowed: a one-click urge goes to the approver",
        )

    for name in REQUIRED_TEMPLATES:
        if name not in p.templates:
            add(
                ("templates", name),
                MISSING,
                f"is required (templates needed: {', '.join(REQUIRED_TEMPLATES)})",
            )
    for name, text in p.templates.items():
        for problem in template_problems(text):
            add(("templates", name), text, problem)

    for lname, ladder in p.ladders.items():
        steps = ladder.steps
        for i, step in enumerate(steps):
            if step.channel == "escalation" and i != len(steps) - 1:
                add(
                    ("ladders", lname, "steps", i, "channel"),
                    "escalation",
                    "must be the last step: nothing comes after escalating to the superior",
                )
            if i and CHANNEL_RANK[step.channel] < CHANNEL_RANK[steps[i - 1].channel]:
                add(
                    ("ladders", lname, "steps", i, "channel"),
                    step.channel,
                    f"is gentler than steps[{i - 1}] ({steps[i - 1].channel}); a ladder must not "
                    f"get gentler (order: {' < '.join(CHANNELS)})",
                )
            if step.template is not None and step.template not in p.templates:
                add(
                    ("ladders", lname, "steps", i, "template"),
                    step.template,
                    f"is not a template; known: {', '.join(sorted(p.templates))}",
                )
        for tie in TIES:
            level = ladder.start_level.for_tie(tie)
            loc: Loc = ("ladders", lname, "start_level", tie)
            if level > len(steps):
                add(loc, level, f"is beyond the ladder's {len(steps)} steps")
            elif steps[level - 1].channel == "escalation":
                add(loc, level, "starts at the escalation step; start at a channel to the approver")
        if ladder.start_level.weak > ladder.start_level.normal or (
            ladder.start_level.normal > ladder.start_level.strong
        ):
            add(
                ("ladders", lname, "start_level"),
                ladder.start_level.model_dump(),
                "must satisfy weak <= normal <= strong (weaker ties start gentler)",
            )
        if len(steps) > p.caps.max_per_approval:
            add(
                ("caps", "max_per_approval"),
                p.caps.max_per_approval,
                f"is below the {len(steps)} steps of ladder '{lname}': "
                "its last steps could never fire",
            )

    for approver, superior in p.org.superiors.items():
        if approver == superior:
            add(
                ("org", "superiors", approver),
                superior,
                "is the approver themselves; an escalation must go to someone else",
            )
    authorities = sorted({b.authority for t in p.types.values() for b in t.bands})
    for authority in p.org.authority_superiors:
        if authority not in authorities:
            add(
                ("org", "authority_superiors", authority),
                authority,
                f"is not the authority of any band; known: {', '.join(authorities)}",
            )

    if p.fallback_type is not None and p.fallback_type not in p.types:
        add(
            ("fallback_type",),
            p.fallback_type,
            f"is not a type; known: {', '.join(sorted(p.types))}",
        )

    for tname, t in p.types.items():
        base: Loc = ("types", tname)
        if t.ladder not in p.ladders:
            add(
                (*base, "ladder"),
                t.ladder,
                f"is not a ladder; known: {', '.join(sorted(p.ladders))}",
            )
        for name, text in t.templates.items():
            if name not in p.templates:
                add(
                    (*base, "templates", name),
                    name,
                    f"overrides no template; known: {', '.join(sorted(p.templates))}",
                )
            for problem in template_problems(text):
                add((*base, "templates", name), text, problem)
        if t.band_if_no_amount is not None and not 0 <= t.band_if_no_amount < len(t.bands):
            add(
                (*base, "band_if_no_amount"),
                t.band_if_no_amount,
                f"is not a band index (0-{len(t.bands) - 1})",
            )
        _band_issues(base, t, add)
    return issues


def _band_issues(base: Loc, t: ApprovalType, add: Any) -> None:
    bands = t.bands
    if bands[0].min_amount != 0:
        add(
            (*base, "bands", 0, "min_amount"),
            bands[0].min_amount,
            "must be 0: the bands must cover every amount",
        )
    for i, band in enumerate(bands):
        loc: Loc = (*base, "bands", i)
        last = i == len(bands) - 1
        if band.deadline is None and t.deadline is None:
            add(
                (*loc, "deadline"),
                MISSING,
                f"is required here or as {format_loc((*base, 'deadline'))}",
            )
        if band.max_amount is None:
            if not last:
                add(
                    (*loc, "max_amount"),
                    MISSING,
                    "is required: only the last band may be open-ended",
                )
        else:
            if last:
                add(
                    (*loc, "max_amount"),
                    band.max_amount,
                    "must be omitted on the last band, or amounts above it would have no authority",
                )
            if band.max_amount <= band.min_amount:
                add(
                    (*loc, "max_amount"),
                    band.max_amount,
                    f"is not above min_amount {_show(band.min_amount)}",
                )
        if i:
            prev = bands[i - 1]
            if prev.max_amount is None:
                continue
            if band.min_amount < prev.max_amount:
                add(
                    (*loc, "min_amount"),
                    band.min_amount,
                    f"overlaps band {i - 1} ({prev.describe()})",
                )
            elif band.min_amount > prev.max_amount:
                add(
                    (*loc, "min_amount"),
                    band.min_amount,
                    f"leaves a gap after band {i - 1} ({prev.describe()}); "
                    f"set it to {_show(prev.max_amount)}",
                )


# -- loading --------------------------------------------------------------------------------


def load_policy(path: str | os.PathLike[str] = DEFAULT_POLICY_PATH) -> UrgePolicy:
    """Read and validate a policy file; raises :class:`PolicyError` listing every problem."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise PolicyError(
            str(p), [PolicyIssue(("file",), NO_VALUE, f"cannot be read: {exc.strerror or exc}")]
        ) from None
    except UnicodeDecodeError as exc:
        raise PolicyError(
            str(p), [PolicyIssue(("file",), NO_VALUE, f"is not UTF-8 text (byte {exc.start})")]
        ) from None
    return parse_policy(text, source=str(p))


def default_policy() -> UrgePolicy:
    return load_policy(DEFAULT_POLICY_PATH)


def parse_policy(text: str, *, source: str = "<policy>") -> UrgePolicy:
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        line = None if mark is None else mark.line + 1
        raise PolicyError(
            source, [PolicyIssue((), "", f"is not valid YAML: {exc}", line)]
        ) from None
    lines: dict[Loc, int] = {}
    duplicates: list[PolicyIssue] = []
    if root is not None:
        _walk(root, (), lines, duplicates)
    if duplicates:
        raise PolicyError(source, duplicates)
    data = yaml.safe_load(text)
    if not isinstance(data, dict):
        raise PolicyError(
            source, [PolicyIssue((), type(data).__name__, "must be a mapping of settings", 1)]
        )
    try:
        return UrgePolicy.model_validate(data)
    except ValidationError as exc:
        raise PolicyError(source, _issues_from(exc, lines)) from None


def _walk(node: yaml.Node, loc: Loc, lines: dict[Loc, int], dups: list[PolicyIssue]) -> None:
    lines[loc] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        seen: set[str] = set()
        for key_node, value_node in node.value:
            key = str(key_node.value)
            if key in seen:
                dups.append(
                    PolicyIssue(
                        (*loc, key),
                        key,
                        "is given twice; YAML would silently keep the last one",
                        key_node.start_mark.line + 1,
                    )
                )
            seen.add(key)
            _walk(value_node, (*loc, key), lines, dups)
            lines[(*loc, key)] = key_node.start_mark.line + 1
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            _walk(item, (*loc, i), lines, dups)


def _line_for(loc: Loc, lines: Mapping[Loc, int]) -> int | None:
    for n in range(len(loc), -1, -1):
        line = lines.get(loc[:n])
        if line is not None:
            return line
    return None


_PYDANTIC_RULES: Mapping[str, str] = {
    "extra_forbidden": "is not a known setting here (check the spelling)",
    "missing": "is required",
}


def _issues_from(exc: ValidationError, lines: Mapping[Loc, int]) -> list[PolicyIssue]:
    issues: list[PolicyIssue] = []
    for err in exc.errors():
        cause = (err.get("ctx") or {}).get("error")
        if isinstance(cause, _SemanticErrors):
            for issue in cause.issues:
                issues.append(
                    PolicyIssue(issue.loc, issue.value, issue.rule, _line_for(issue.loc, lines))
                )
            continue
        # Drop pydantic's internal step names (e.g. "function-after[...]") from the path.
        loc: Loc = tuple(
            part
            for part in err["loc"]
            if not (isinstance(part, str) and "[" in part and part != "[key]")
        )
        kind = err["type"]
        rule = _PYDANTIC_RULES.get(kind) or err["msg"].removeprefix("Value error, ")
        value: object = MISSING if kind == "missing" else err.get("input")
        if kind == "extra_forbidden":
            value = loc[-1] if loc else value
        if kind in ("literal_error", "enum") and "expected" in (err.get("ctx") or {}):
            rule = f"must be one of {err['ctx']['expected']}"
        issues.append(PolicyIssue(loc, value, rule, _line_for(loc, lines)))
    return issues
