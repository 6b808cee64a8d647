"""Urge policy: the default file loads, and every mistake is reported precisely."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import pytest

from flows.urge.policy import (
    DEFAULT_POLICY_PATH,
    Duration,
    PolicyError,
    default_policy,
    parse_policy,
)

TEXT = DEFAULT_POLICY_PATH.read_text(encoding="utf-8")


def edit(text: str, old: str, new: str) -> str:
    assert old in text, f"test fixture out of date: {old!r} not in the policy"
    return text.replace(old, new, 1)


def problems(text: str) -> list[str]:
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="policy.yaml")
    return [str(i) for i in info.value.issues]


def line_of(fragment: str, text: str) -> int:
    return text[: text.index(fragment)].count("\n") + 1


def test_default_policy_has_the_seven_types_of_the_issue() -> None:
    policy = default_policy()
    assert {
        "purchase_requisition",
        "customer_status_upgrade",
        "contract",
        "credit_overrun",
        "replenishment",
        "complaint",
        "maintenance_renewal",
    } <= set(policy.types)
    assert policy.calendar.timezone == "Asia/Shanghai"
    assert [str(r) for r in policy.calendar.working_hours] == ["08:30-12:00", "13:30-17:30"]


@pytest.mark.parametrize(
    ("amount", "authority"),
    [
        ("0", "sales_manager"),
        ("999.99", "sales_manager"),
        ("1000", "vice_gm"),  # "1,000-5,000 the vice general manager"
        ("5000", "vice_gm"),
        ("5000.01", "gm"),  # "above 5,000 the general manager"
        ("1000000", "gm"),
        (None, "gm"),  # unknown amount: the most senior band
    ],
)
def test_complaint_authority_by_amount(amount: str | None, authority: str) -> None:
    policy = default_policy()
    t = policy.types["complaint"]
    _i, band = policy.band_for(t, None if amount is None else Decimal(amount))
    assert band.authority == authority


def test_foreign_currency_is_banded_through_the_exchange_rate() -> None:
    policy = default_policy()
    assert policy.to_policy_currency(Decimal(1000), "USD") == Decimal("7100.00")
    assert policy.to_policy_currency(Decimal(1000), "XAU") is None


@pytest.mark.parametrize(
    ("text", "value", "unit", "working"),
    [
        ("6 working hours", 6, "hours", True),
        ("3 working days", 3, "days", True),
        ("1 working day", 1, "days", True),
        ("6 days", 6, "days", False),
        ("30 minutes", 30, "minutes", False),
        ("1 month", 1, "months", False),
        ("6个工作小时", 6, "hours", True),
        ("3个工作日", 3, "days", True),
        ("6天", 6, "days", False),
    ],
)
def test_duration_forms(text: str, value: int, unit: str, working: bool) -> None:
    d = Duration.model_validate(text)
    assert (d.value, d.unit, d.working) == (value, unit, working)


def test_overlapping_bands_name_path_value_rule_and_line() -> None:
    text = edit(
        TEXT,
        "      - {min_amount: 1000, max_amount: 5000, include_max: true, authority: vice_gm}\n"
        "      - {min_amount: 5000, authority: gm}",
        "      - {min_amount: 1000, max_amount: 6000, authority: vice_gm}\n"
        "      - {min_amount: 5000, authority: gm}",
    )
    [msg] = problems(text)
    line = line_of("{min_amount: 5000, authority: gm}", text)
    assert msg == (
        f"line {line}: types.complaint.bands[2].min_amount: 5000 overlaps band 1 (1000-6000)"
    )


def test_gap_between_bands() -> None:
    text = edit(
        TEXT,
        "- {min_amount: 5000, authority: gm, deadline: 3 working days}",
        "- {min_amount: 6000, authority: gm, deadline: 3 working days}",
    )
    [msg] = problems(text)
    assert "types.purchase_requisition.bands[2].min_amount: 6000 leaves a gap after band 1" in msg


def test_open_band_in_the_middle_and_closed_last_band() -> None:
    text = edit(
        TEXT,
        "      - {min_amount: 50000, authority: vice_gm}",
        "      - {min_amount: 50000, max_amount: 900000, authority: vice_gm}",
    )
    [msg] = problems(text)
    assert "types.maintenance_renewal.bands[1].max_amount: 900000 must be omitted" in msg


def test_structural_errors_are_all_reported_with_lines() -> None:
    text = edit(
        TEXT, "{after: 4 working hours, channel: im}", "{after: 4 working hourz, channel: fax}"
    )
    text = edit(text, "  max_per_recipient_per_day: 6", "  max_per_recipient_per_dya: 6")
    msgs = problems(text)
    step_line = line_of("4 working hourz", text)
    assert (
        f"line {step_line}: ladders.standard.steps[1].after: '4 working hourz' is not a duration"
        in "\n".join(msgs)
    )
    assert any(
        m.startswith(f"line {step_line}: ladders.standard.steps[1].channel: 'fax' must be one of")
        for m in msgs
    )
    assert any("caps.max_per_recipient_per_dya" in m and "not a known setting" in m for m in msgs)
    assert any("caps.max_per_recipient_per_day: (missing) is required" in m for m in msgs)


def test_semantic_errors_are_all_reported_together() -> None:
    text = edit(
        TEXT, "{after: 1 working day, channel: sms}", "{after: 1 working day, channel: email}"
    )
    text = edit(text, "  max_per_approval: 8", "  max_per_approval: 4")
    text = edit(text, "    ladder: gentle", "    ladder: gentel")
    text = edit(text, "{type_name}「{title}」，\\", "{type_nam}「{title}」，\\")
    msgs = "\n".join(problems(text))
    assert "ladders.standard.steps[2].channel: 'email' is gentler than steps[1] (im)" in msgs
    assert "caps.max_per_approval: 4 is below the 5 steps of ladder 'standard'" in msgs
    assert "types.maintenance_renewal.ladder: 'gentel' is not a ladder; known: gentle" in msgs
    assert "templates.first:" in msgs and "unknown placeholder {type_nam}" in msgs


def test_escalation_must_be_last_and_not_a_start() -> None:
    text = edit(
        TEXT,
        "      - {after: 2 working hours, channel: phone}\n"
        "      - {after: 4 working hours, channel: escalation}",
        "      - {after: 2 working hours, channel: escalation}\n"
        "      - {after: 4 working hours, channel: escalation}",
    )
    text = edit(
        text,
        "start_level: {weak: 1, normal: 1, strong: 3}",
        "start_level: {weak: 1, normal: 1, strong: 4}",
    )
    msgs = "\n".join(problems(text))
    assert "ladders.urgent.steps[2].channel: 'escalation' must be the last step" in msgs
    assert "ladders.gentle.start_level.strong: 4 starts at the escalation step" in msgs


def test_template_may_not_reach_attributes() -> None:
    text = edit(TEXT, "{type_name}「{title}」，\\", "{title.__class__}「{title}」，\\")
    [msg] = problems(text)
    assert "templates.first" in msg and "attribute or index access" in msg


def test_duplicate_keys_are_errors_not_silently_last_wins() -> None:
    text = edit(TEXT, "  timezone: Asia/Shanghai\n", "  timezone: Asia/Shanghai\n  timezone: UTC\n")
    [msg] = problems(text)
    line = line_of("timezone: UTC", text)
    assert msg == (
        f"line {line}: calendar.timezone: 'timezone' is given twice; "
        "YAML would silently keep the last one"
    )


def test_unquoted_time_gets_a_yaml_hint() -> None:
    text = edit(TEXT, 'working_hours: ["08:30-12:00", "13:30-17:30"]', "working_hours: [13:30]")
    [msg] = problems(text)
    assert "calendar.working_hours[0]: 810 is a number" in msg and "quoted" in msg


def test_deadline_without_unit_and_unknown_timezone() -> None:
    text = edit(TEXT, "deadline: 6 days", "deadline: 6")
    text = edit(text, "timezone: Asia/Shanghai", "timezone: Asia/Beijing")
    msgs = "\n".join(problems(text))
    assert "types.complaint.deadline: 6 is not a duration" in msgs
    assert "calendar.timezone: 'Asia/Beijing' is not a known IANA timezone" in msgs


def test_working_weeks_are_refused() -> None:
    text = edit(TEXT, "deadline: 6 days", "deadline: 2 working weeks")
    [msg] = problems(text)
    assert "types.complaint.deadline" in msg and "count working days instead" in msg


def test_invalid_yaml_reports_the_line() -> None:
    text = edit(TEXT, "caps:\n", "caps:\n  - [unclosed\n")
    [msg] = problems(text)
    assert msg.startswith("line ") and "is not valid YAML" in msg


def test_extra_holidays_parse_as_dates() -> None:
    policy = parse_policy(edit(TEXT, "extra_holidays: []", "extra_holidays: [2026-02-24]"))
    assert policy.calendar.extra_holidays == [dt.date(2026, 2, 24)]
    assert not policy.build_calendar().is_working_day(dt.date(2026, 2, 24))


def test_error_message_lists_the_source_and_the_count() -> None:
    text = edit(TEXT, "max_per_approval: 8", "max_per_approval: 0")
    with pytest.raises(PolicyError) as info:
        parse_policy(text, source="conf/urge.yaml")
    head = str(info.value).splitlines()[0]
    assert head == "invalid urge policy conf/urge.yaml (1 problem):"


def test_org_chart_mistakes_name_field_value_and_rule() -> None:
    text = edit(TEXT, "  superiors: {}", "  superiors: {李总: 李总}")
    text = edit(text, "    vice_gm: 总经理", "    vice_gmm: 总经理")
    msgs = problems(text)
    assert msgs == [
        f"line {line_of('  superiors: {李总', text)}: org.superiors.李总: '李总' is the approver "
        "themselves; an escalation must go to someone else",
        f"line {line_of('    vice_gmm', text)}: org.authority_superiors.vice_gmm: 'vice_gmm' is "
        "not the authority of any band; known: gm, sales_manager, vice_gm",
    ]


def test_org_names_must_fit_the_oa_inbox() -> None:
    long_name = "董" * 21
    text = edit(TEXT, "    gm: 董事长", f"    gm: {long_name}")
    [msg] = problems(text)
    line = line_of(long_name, text)
    assert msg == (
        f"line {line}: org.authority_superiors.gm: '{long_name}' "
        "String should have at most 20 characters"
    )
