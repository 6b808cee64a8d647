"""Business calendar: mainland China working days plus the company's working hours.

Working days come from the ``chinese_calendar`` module (PyPI ``chinesecalendar``), which is
maintained from the State Council's yearly notice and therefore knows the public holidays *and*
the adjusted working days (调休, e.g. Saturday 2026-10-10 is a working day). Nothing here is a
hand-typed holiday list; ``extra_holidays`` / ``extra_workdays`` exist only for company-specific
closures such as a factory shutdown that extends the Spring Festival.

Coverage. ``chinesecalendar`` 1.11.0 covers 2004-01-01 .. 2026-12-31, and the State Council
publishes the next year's schedule only around November, so a running hub regularly meets dates
the library does not know yet (an approval submitted on 28 December with a three-working-day
deadline). Two behaviours are offered, chosen by ``beyond_coverage``:

* ``"weekends"`` (the default): outside the covered years, Monday-Friday are working days. The
  urge ladder is a reminder, not a legal deadline; being off by a public holiday for a few
  days at the turn of the year costs at most one urge on a holiday (and quiet hours still
  apply), whereas failing would stop chasing every approval whose ladder crosses 1 January
  until someone upgrades a pinned dependency. Results computed with such dates are flagged:
  :meth:`BusinessCalendar.is_approximate` tells the caller, and the urge plan carries the flag,
  so the hub can log it, count it and re-plan after the upgrade.
* ``"error"``: raise :class:`CalendarCoverageError` naming the date and the covered range, for
  deployments that prefer to be told.

All arithmetic is done in UTC and all results are returned in the calendar's timezone; naive
datetimes are refused because guessing a timezone is how deadlines end up eight hours off.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from importlib import metadata
from typing import Literal
from zoneinfo import ZoneInfo

import chinese_calendar

BeyondCoverage = Literal["error", "weekends"]
# Warn when the holiday data ends this close to today: a deadline of a few working days plus
# a ladder of two weeks, or a renewal notice a month ahead, already reaches past it.
COVERAGE_WARNING_DAYS = 60

_UTC = dt.UTC
# A year of consecutive closed days means a misconfiguration (e.g. extra_holidays covering
# everything); stop instead of looping forever.
_MAX_CLOSED_RUN_DAYS = 400


class CalendarError(ValueError):
    """The calendar cannot answer (misconfiguration or invalid input)."""


class CalendarCoverageError(CalendarError):
    """A date lies outside the years the holiday library covers and ``beyond_coverage`` is
    ``"error"``."""


def library_coverage() -> tuple[dt.date, dt.date]:
    """First and last date the installed ``chinesecalendar`` knows holidays for."""
    years = [d.year for d in chinese_calendar.holidays]
    return dt.date(min(years), 1, 1), dt.date(max(years), 12, 31)


def library_version() -> str:
    try:
        return metadata.version("chinesecalendar")
    except metadata.PackageNotFoundError:  # pragma: no cover - installed from source
        return "(version unknown)"


def _require_aware(t: dt.datetime, what: str) -> None:
    if t.tzinfo is None or t.utcoffset() is None:
        raise CalendarError(f"{what} {t.isoformat()} is naive; pass a timezone-aware datetime")


class BusinessCalendar:
    """Working time = working days x working hours, in one timezone."""

    def __init__(
        self,
        *,
        timezone: str = "Asia/Shanghai",
        working_hours: Sequence[tuple[dt.time, dt.time]] = (
            (dt.time(8, 30), dt.time(12, 0)),
            (dt.time(13, 30), dt.time(17, 30)),
        ),
        beyond_coverage: BeyondCoverage = "weekends",
        extra_holidays: Iterable[dt.date] = (),
        extra_workdays: Iterable[dt.date] = (),
    ) -> None:
        self._tz = ZoneInfo(timezone)
        hours = tuple(working_hours)
        if not hours:
            raise CalendarError("working_hours is empty: no time would ever count as working")
        for i, (start, end) in enumerate(hours):
            if start >= end:
                raise CalendarError(
                    f"working_hours[{i}]: {start}-{end} does not end after it starts"
                )
            if i and start < hours[i - 1][1]:
                raise CalendarError(
                    f"working_hours[{i}]: {start}-{end} overlaps or precedes "
                    f"working_hours[{i - 1}] ({hours[i - 1][0]}-{hours[i - 1][1]})"
                )
        self._hours = hours
        self._beyond = beyond_coverage
        self._extra_holidays = frozenset(extra_holidays)
        self._extra_workdays = frozenset(extra_workdays)
        both = self._extra_holidays & self._extra_workdays
        if both:
            raise CalendarError(f"{sorted(both)[0]} is both an extra holiday and an extra workday")
        self._coverage = library_coverage()
        anchor = dt.date(2000, 1, 3)
        self._day_length = sum(
            (dt.datetime.combine(anchor, e) - dt.datetime.combine(anchor, s) for s, e in hours),
            dt.timedelta(),
        )
        self._workday_cache: dict[dt.date, bool] = {}
        self._interval_cache: dict[dt.date, tuple[tuple[dt.datetime, dt.datetime], ...]] = {}
        self._prefix_cache: dict[int, list[int]] = {}

    # -- days -----------------------------------------------------------------------------

    @property
    def tz(self) -> ZoneInfo:
        return self._tz

    @property
    def day_length(self) -> dt.timedelta:
        """Working time in one working day (7h30 for 08:30-12:00 + 13:30-17:30)."""
        return self._day_length

    @property
    def coverage(self) -> tuple[dt.date, dt.date]:
        return self._coverage

    def covers(self, day: dt.date) -> bool:
        return self._coverage[0] <= day <= self._coverage[1]

    def is_approximate(self, a: dt.datetime | dt.date, b: dt.datetime | dt.date) -> bool:
        """True when any day between ``a`` and ``b`` (inclusive) was classified without the
        holiday library, i.e. by the weekends-only fallback."""
        da = self._as_local_date(a)
        db = self._as_local_date(b)
        lo, hi = min(da, db), max(da, db)
        return lo < self._coverage[0] or hi > self._coverage[1]

    def coverage_warning(self, today: dt.date) -> str | None:
        """A sentence for the operator when the holiday data ends within
        :data:`COVERAGE_WARNING_DAYS` of ``today`` (or has ended), else None. Names the last
        covered date, what happens after it and the two ways out."""
        last = self._coverage[1]
        if last - today > dt.timedelta(days=COVERAGE_WARNING_DAYS):
            return None
        after = {d for d in self._extra_holidays | self._extra_workdays if d > last}
        if self._beyond == "error":
            effect = (
                "an approval whose plan reaches past it cannot be planned "
                "(calendar.beyond_coverage: error)"
            )
        else:
            effect = (
                "plans reaching past it count Monday-Friday as working days and are flagged "
                "calendar_approximate (calendar.beyond_coverage: weekends)"
            )
        listed = (
            f"; the policy lists {len(after)} extra holidays/workdays after it" if after else ""
        )
        return (
            f"urge calendar: chinesecalendar {library_version()} knows public holidays and "
            f"adjusted working days only up to {last.isoformat()}; {effect}{listed}. Upgrade "
            f"chinesecalendar once a release covers {last.year + 1}, or list that year's "
            "public holidays and adjusted working days in the urge policy's "
            "calendar.extra_holidays and calendar.extra_workdays"
        )

    def is_working_day(self, day: dt.date) -> bool:
        cached = self._workday_cache.get(day)
        if cached is not None:
            return cached
        if day in self._extra_holidays:
            result = False
        elif day in self._extra_workdays:
            result = True
        elif self.covers(day):
            result = bool(chinese_calendar.is_workday(day))
        elif self._beyond == "error":
            lo, hi = self._coverage
            raise CalendarCoverageError(
                f"{day.isoformat()} is outside the holiday data of chinesecalendar "
                f"({lo.isoformat()}..{hi.isoformat()}); upgrade chinesecalendar once the State "
                "Council has published that year's schedule, or set "
                "calendar.beyond_coverage: weekends"
            )
        else:
            result = day.weekday() < 5
        self._workday_cache[day] = result
        return result

    def business_date(self, t: dt.datetime) -> dt.date:
        """The calendar date of ``t`` in the business timezone (what "today" means for caps)."""
        _require_aware(t, "time")
        return t.astimezone(self._tz).date()

    def local(self, t: dt.datetime) -> dt.datetime:
        _require_aware(t, "time")
        return t.astimezone(self._tz)

    def start_of_day(self, day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(0), tzinfo=self._tz)

    def working_intervals(self, day: dt.date) -> tuple[tuple[dt.datetime, dt.datetime], ...]:
        """The day's working intervals as UTC datetimes; empty on a non-working day."""
        cached = self._interval_cache.get(day)
        if cached is not None:
            return cached
        if not self.is_working_day(day):
            result: tuple[tuple[dt.datetime, dt.datetime], ...] = ()
        else:
            result = tuple(
                (
                    dt.datetime.combine(day, s, tzinfo=self._tz).astimezone(_UTC),
                    dt.datetime.combine(day, e, tzinfo=self._tz).astimezone(_UTC),
                )
                for s, e in self._hours
            )
        self._interval_cache[day] = result
        return result

    def end_of_working_day(self, day: dt.date) -> dt.datetime:
        """Closing time of ``day``, which must be a working day."""
        intervals = self.working_intervals(day)
        if not intervals:
            raise CalendarError(f"{day.isoformat()} is not a working day")
        return intervals[-1][1].astimezone(self._tz)

    def previous_working_day(self, day: dt.date) -> dt.date:
        """``day`` itself when it is a working day, else the closest earlier one."""
        for _ in range(_MAX_CLOSED_RUN_DAYS):
            if self.is_working_day(day):
                return day
            day -= dt.timedelta(days=1)
        raise CalendarError(f"no working day in the {_MAX_CLOSED_RUN_DAYS} days before {day}")

    # -- working time ---------------------------------------------------------------------

    def next_working_moment(self, t: dt.datetime) -> dt.datetime:
        """Earliest moment >= ``t`` that is inside working time (intervals are half-open, so
        12:00 sharp is already lunch and yields 13:30)."""
        _require_aware(t, "time")
        tu = t.astimezone(_UTC)
        day = self._as_local_date(tu)
        closed_run = 0
        while True:
            intervals = self.working_intervals(day)
            for s, e in intervals:
                if tu < e:
                    return max(s, tu).astimezone(self._tz)
            closed_run = 0 if intervals else closed_run + 1
            if closed_run > _MAX_CLOSED_RUN_DAYS:
                raise CalendarError(f"no working time within a year after {t.isoformat()}")
            day += dt.timedelta(days=1)

    def add_working_time(self, start: dt.datetime, duration: dt.timedelta) -> dt.datetime:
        """The earliest instant at which ``duration`` of working time has elapsed since
        ``start``. A zero duration returns ``start`` itself; a duration that ends exactly at a
        closing time returns the closing time (17:30), not the next opening."""
        _require_aware(start, "start")
        if duration < dt.timedelta(0):
            raise CalendarError(f"negative working duration {duration}")
        if duration == dt.timedelta(0):
            return start.astimezone(self._tz)
        remaining = duration
        tu = start.astimezone(_UTC)
        day = self._as_local_date(tu)
        closed_run = 0
        while True:
            intervals = self.working_intervals(day)
            for s, e in intervals:
                if e <= tu:
                    continue
                begin = max(s, tu)
                available = e - begin
                if remaining <= available:
                    return (begin + remaining).astimezone(self._tz)
                remaining -= available
            closed_run = 0 if intervals else closed_run + 1
            if closed_run > _MAX_CLOSED_RUN_DAYS:
                raise CalendarError(f"no working time within a year after {start.isoformat()}")
            day += dt.timedelta(days=1)

    def add_working_days(self, start: dt.datetime, days: int) -> dt.datetime:
        """``days`` working days of working time: from Wednesday 16:00, one working day is
        Thursday 16:00 (with uniform working hours this equals "same clock time N working days
        later", and it stays consistent with :meth:`working_time_between`)."""
        return self.add_working_time(start, self._day_length * days)

    def working_time_between(self, a: dt.datetime, b: dt.datetime) -> dt.timedelta:
        """Working time in [a, b); negative when ``b`` is before ``a``."""
        _require_aware(a, "a")
        _require_aware(b, "b")
        if b < a:
            return -self.working_time_between(b, a)
        au = a.astimezone(_UTC)
        bu = b.astimezone(_UTC)
        first = self._as_local_date(au)
        last = self._as_local_date(bu)
        if first == last:
            return self._overlap(first, au, bu)
        # Whole days in between are counted from per-year prefix sums: analytics and texts
        # ask for spans of weeks, and every working day has the same hours.
        middle = self._working_days_in(first + dt.timedelta(days=1), last)
        return (
            self._overlap(first, au, bu) + self._day_length * middle + self._overlap(last, au, bu)
        )

    def _overlap(self, day: dt.date, au: dt.datetime, bu: dt.datetime) -> dt.timedelta:
        total = dt.timedelta(0)
        for s, e in self.working_intervals(day):
            lo = max(s, au)
            hi = min(e, bu)
            if hi > lo:
                total += hi - lo
        return total

    def _working_days_in(self, a: dt.date, b: dt.date) -> int:
        """Number of working days in [a, b)."""
        total = 0
        while a < b:
            stop = min(b, dt.date(a.year + 1, 1, 1))
            prefix = self._year_prefix(a.year)
            start_doy = a.timetuple().tm_yday - 1
            stop_doy = (stop - dt.date(a.year, 1, 1)).days
            total += prefix[stop_doy] - prefix[start_doy]
            a = stop
        return total

    def _year_prefix(self, year: int) -> list[int]:
        cached = self._prefix_cache.get(year)
        if cached is not None:
            return cached
        prefix = [0]
        day = dt.date(year, 1, 1)
        while day.year == year:
            prefix.append(prefix[-1] + self.is_working_day(day))
            day += dt.timedelta(days=1)
        self._prefix_cache[year] = prefix
        return prefix

    def _as_local_date(self, t: dt.datetime | dt.date) -> dt.date:
        if isinstance(t, dt.datetime):
            _require_aware(t, "time")
            return t.astimezone(self._tz).date()
        return t
