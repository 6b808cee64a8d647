"""Business calendar: weekends, public holidays, adjusted working days, lunch breaks."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.urge.calendar import (
    BusinessCalendar,
    CalendarCoverageError,
    CalendarError,
    library_coverage,
)

SH = ZoneInfo("Asia/Shanghai")
CAL = BusinessCalendar()


def at(y: int, mo: int, d: int, h: int = 0, mi: int = 0) -> dt.datetime:
    return dt.datetime(y, mo, d, h, mi, tzinfo=SH)


def test_day_length_excludes_lunch() -> None:
    assert CAL.day_length == dt.timedelta(hours=7, minutes=30)


def test_coverage_is_what_the_installed_library_knows() -> None:
    lo, hi = library_coverage()
    assert lo == dt.date(2004, 1, 1)
    assert hi == dt.date(2026, 12, 31)


@pytest.mark.parametrize(
    ("day", "working"),
    [
        (dt.date(2026, 9, 30), True),  # Wednesday before National Day
        (dt.date(2026, 10, 1), False),  # National Day
        (dt.date(2026, 10, 7), False),
        (dt.date(2026, 10, 8), True),
        (dt.date(2026, 10, 10), True),  # Saturday, adjusted working day (调休)
        (dt.date(2026, 9, 20), True),  # Sunday, adjusted working day
        (dt.date(2026, 9, 25), False),  # Mid-Autumn Festival, a Friday
        (dt.date(2026, 2, 14), True),  # Saturday before Spring Festival, adjusted
        (dt.date(2026, 2, 17), False),  # Spring Festival
        (dt.date(2026, 2, 23), False),  # last day of Spring Festival, a Monday
        (dt.date(2026, 11, 21), False),  # ordinary Saturday
    ],
)
def test_working_days_follow_the_state_council_schedule(day: dt.date, working: bool) -> None:
    assert CAL.is_working_day(day) is working


def test_three_working_days_from_the_eve_of_national_day_land_on_the_adjusted_saturday() -> None:
    # Wed 30 Sep 16:00: 1.5h that day, Oct 1-7 off, Thu 8 + Fri 9 (15h), then Saturday 10
    # October is a working day: 6h more -> 16:00.
    assert CAL.add_working_days(at(2026, 9, 30, 16), 3) == at(2026, 10, 10, 16)


def test_one_working_day_over_an_ordinary_weekend() -> None:
    assert CAL.add_working_days(at(2026, 11, 20, 16), 1) == at(2026, 11, 23, 16)


def test_adjusted_sunday_counts_as_a_working_day() -> None:
    # Friday 18 Sep 2026; Sunday 20 Sep is a working day before Mid-Autumn.
    assert CAL.add_working_days(at(2026, 9, 18, 16), 1) == at(2026, 9, 20, 16)


def test_spring_festival_2026() -> None:
    # Fri 13 Feb 16:00 -> Sat 14 Feb (adjusted working day) 16:00 -> Tue 24 Feb 16:00.
    assert CAL.add_working_days(at(2026, 2, 13, 16), 1) == at(2026, 2, 14, 16)
    assert CAL.add_working_days(at(2026, 2, 13, 16), 2) == at(2026, 2, 24, 16)


def test_lunch_break_is_not_working_time() -> None:
    assert CAL.add_working_time(at(2026, 11, 24, 11), dt.timedelta(hours=2)) == at(
        2026, 11, 24, 14, 30
    )
    # Ending exactly at a closing time yields the closing time, not the next opening.
    assert CAL.add_working_time(at(2026, 11, 24, 11), dt.timedelta(hours=1)) == at(2026, 11, 24, 12)
    assert CAL.add_working_time(at(2026, 11, 24, 17), dt.timedelta(minutes=30)) == at(
        2026, 11, 24, 17, 30
    )


def test_start_outside_working_hours_counts_from_the_next_opening() -> None:
    assert CAL.add_working_time(at(2026, 11, 20, 20), dt.timedelta(hours=1)) == at(
        2026, 11, 23, 9, 30
    )


def test_zero_duration_is_the_start_itself() -> None:
    assert CAL.add_working_time(at(2026, 11, 21, 22), dt.timedelta(0)) == at(2026, 11, 21, 22)


def test_next_working_moment() -> None:
    assert CAL.next_working_moment(at(2026, 11, 24, 9)) == at(2026, 11, 24, 9)
    assert CAL.next_working_moment(at(2026, 11, 24, 12)) == at(2026, 11, 24, 13, 30)
    assert CAL.next_working_moment(at(2026, 11, 24, 17, 30)) == at(2026, 11, 25, 8, 30)
    assert CAL.next_working_moment(at(2026, 9, 30, 18)) == at(2026, 10, 8, 8, 30)


def test_working_time_between_skips_holidays_and_is_signed() -> None:
    a, b = at(2026, 9, 30, 16), at(2026, 10, 8, 10)
    assert CAL.working_time_between(a, b) == dt.timedelta(hours=3)
    assert CAL.working_time_between(b, a) == -dt.timedelta(hours=3)


def test_inputs_in_another_timezone_are_converted() -> None:
    utc_start = dt.datetime(2026, 11, 24, 1, 0, tzinfo=dt.UTC)  # 09:00 in Shanghai
    result = CAL.add_working_time(utc_start, dt.timedelta(hours=1))
    assert result == at(2026, 11, 24, 10)
    assert result.tzinfo == SH


def test_naive_datetimes_are_refused() -> None:
    with pytest.raises(CalendarError, match="naive"):
        CAL.add_working_time(dt.datetime(2026, 11, 24, 9), dt.timedelta(hours=1))


def test_beyond_coverage_falls_back_to_weekends_and_says_so() -> None:
    start = at(2026, 12, 30, 16)
    end = CAL.add_working_days(start, 3)
    # 1 Jan 2027 is not in chinesecalendar 1.11.0: treated as a Friday working day.
    assert end == at(2027, 1, 4, 16)
    assert CAL.is_approximate(start, end)
    assert not CAL.is_approximate(at(2026, 9, 30, 16), at(2026, 10, 10, 16))


def test_beyond_coverage_error_mode_names_the_date_and_the_range() -> None:
    strict = BusinessCalendar(beyond_coverage="error")
    with pytest.raises(CalendarCoverageError, match=r"2027-01-01 is outside .*2004-01-01\.\.2026"):
        strict.add_working_days(at(2026, 12, 31, 16), 1)


def test_company_closures_override_the_public_calendar() -> None:
    cal = BusinessCalendar(
        extra_holidays=[dt.date(2026, 2, 24)], extra_workdays=[dt.date(2026, 11, 21)]
    )
    assert cal.add_working_days(at(2026, 2, 13, 16), 2) == at(2026, 2, 25, 16)
    assert cal.is_working_day(dt.date(2026, 11, 21))


def test_bad_working_hours_are_rejected() -> None:
    with pytest.raises(CalendarError, match="overlaps"):
        BusinessCalendar(working_hours=[(dt.time(8), dt.time(12)), (dt.time(11), dt.time(17))])


_starts = st.datetimes(min_value=dt.datetime(2025, 1, 1), max_value=dt.datetime(2026, 11, 30)).map(
    lambda d: d.replace(second=0, microsecond=0, tzinfo=SH)
)
_durations = st.integers(min_value=0, max_value=60 * 7 * 30).map(lambda m: dt.timedelta(minutes=m))


@given(_starts, _durations)
def test_between_inverts_add(start: dt.datetime, duration: dt.timedelta) -> None:
    end = CAL.add_working_time(start, duration)
    assert end >= start
    assert CAL.working_time_between(start, end) == duration
    if duration:
        # The earliest such instant: a minute earlier is not enough.
        assert CAL.working_time_between(start, end - dt.timedelta(minutes=1)) < duration


def _brute_between(a: dt.datetime, b: dt.datetime) -> dt.timedelta:
    total = dt.timedelta(0)
    day = a.astimezone(SH).date()
    while day <= b.astimezone(SH).date():
        for s, e in CAL.working_intervals(day):
            lo, hi = max(s, a), min(e, b)
            if hi > lo:
                total += hi - lo
        day += dt.timedelta(days=1)
    return total


_anywhere = st.datetimes(min_value=dt.datetime(2025, 12, 1), max_value=dt.datetime(2027, 2, 1)).map(
    lambda d: d.replace(tzinfo=SH)
)


@given(_anywhere, _anywhere)
def test_between_matches_a_day_by_day_count_across_years(a: dt.datetime, b: dt.datetime) -> None:
    lo, hi = min(a, b), max(a, b)
    assert CAL.working_time_between(lo, hi) == _brute_between(lo, hi)


def test_the_end_of_the_holiday_data_is_announced_with_its_date() -> None:
    # chinesecalendar 1.11.0 (the newest release on PyPI on 6 Dec 2026) ends on 2026-12-31.
    notice = CAL.coverage_warning(dt.date(2026, 12, 6))
    assert notice is not None
    assert "only up to 2026-12-31" in notice
    assert "Monday-Friday" in notice and "calendar.extra_holidays" in notice
    strict = BusinessCalendar(beyond_coverage="error")
    assert "cannot be planned" in (strict.coverage_warning(dt.date(2027, 1, 5)) or "")
    # months ahead of the end there is nothing to say
    assert CAL.coverage_warning(dt.date(2026, 6, 1)) is None


def test_an_operator_adds_the_2027_spring_festival_by_configuration() -> None:
    # Until a chinesecalendar release covers 2027, the policy's extra_holidays and
    # extra_workdays carry the State Council's schedule. (The dates here are an example shaped
    # like a Spring Festival week, 2027-02-06 being the Lunar New Year; take the real ones from
    # the notice.)
    from flows.urge.policy import default_policy

    policy = default_policy()
    closed = [dt.date(2027, 2, 5) + dt.timedelta(days=i) for i in range(9)]  # Fri 5 - Sat 13
    settings = policy.calendar.model_copy(
        update={"extra_holidays": closed, "extra_workdays": [dt.date(2027, 2, 14)]}
    )
    cal = policy.model_copy(update={"calendar": settings}).build_calendar()
    assert not cal.is_working_day(dt.date(2027, 2, 8))  # Monday in the holiday
    assert cal.is_working_day(dt.date(2027, 2, 14))  # an adjusted working Sunday
    # one working day from Thursday 4 Feb 16:00 is Sunday 14 Feb 16:00, not Friday 5 Feb
    assert cal.add_working_days(at(2027, 2, 4, 16), 1) == at(2027, 2, 14, 16)
    assert CAL.add_working_days(at(2027, 2, 4, 16), 1) == at(2027, 2, 5, 16)
    assert "lists 10 extra holidays/workdays after it" in (
        cal.coverage_warning(dt.date(2026, 12, 6)) or ""
    )
