"""Chinese urge texts from configurable templates.

Templates are ``str.format`` strings with named placeholders only. They are checked when the
policy loads (unknown names, attribute or index access, positional fields, unbalanced braces),
so a typo is a start-up error rather than a crash on the first overdue approval, and an
operator-written template can never reach object attributes (``{x.__class__}``).
"""

from __future__ import annotations

import datetime as dt
import string
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_UP, Decimal

REQUIRED_TEMPLATES = ("first", "repeat", "escalation", "one_click")

PLACEHOLDERS: Mapping[str, str] = {
    "approval_id": "ID of the approval in the hub",
    "type_name": "display name of the approval type, e.g. 请购单",
    "title": "the item: title of the approval request",
    "amount": "amount formatted like ¥12,345.00 (or 未注明金额)",
    "requester": "who submitted the request",
    "requester_department": "the requester's department",
    "approver": "who has to decide",
    "approver_department": "the approver's department",
    "superior": "the approver's superior (escalation recipient)",
    "recipient": "who receives this urge",
    "waited": "how long it has waited, e.g. 2 个工作日3小时",
    "submitted": "submission date, e.g. 11月20日",
    "deadline": "deadline date and time, e.g. 11月24日 17:30",
    "deadline_date": "deadline date, e.g. 11月24日",
    "overdue": "how long past the deadline, e.g. 3小时",
    "first_sent_date": "date of the first urge for this approval (empty if none)",
    "previous_sent_date": "date of the previous urge (empty if none)",
    "previous_channel": "channel of the previous urge, e.g. 邮件 (empty if none)",
    "urge_history": "one phrase about earlier urges, e.g. 我已于 11月24日 起催办 2 次",
    "previous_count": "number of urges already sent",
    "sequence": "number of this urge (1 for the first)",
    "level": "ladder level of this urge",
    "channel": "channel of this urge, e.g. 短信",
    "urged_by": "who pressed the one-click urge (portal user)",
}

CHANNEL_NAMES: Mapping[str, str] = {
    "email": "邮件",
    "im": "即时消息",
    "sms": "短信",
    "phone": "电话",
    "escalation": "上级督办",
}

_CURRENCY_PREFIX: Mapping[str, str] = {
    "CNY": "¥",
    "RMB": "¥",
    "USD": "US$",
    "EUR": "€",
    "HKD": "HK$",
    "JPY": "JP¥",
    "GBP": "£",
}

_WEEKDAYS = "一二三四五六日"


def template_problems(text: str) -> list[str]:
    """Everything wrong with one template, as sentences; empty when it is usable."""
    problems: list[str] = []
    try:
        parsed = list(string.Formatter().parse(text))
    except ValueError as exc:
        return [f"is not a valid template ({exc}); write literal braces as {{{{ and }}}}"]
    for _literal, field, _spec, _conversion in parsed:
        if field is None:
            continue
        if field == "" or field.isdigit():
            problems.append("uses a positional placeholder {}; name it, e.g. {title}")
            continue
        if any(ch in field for ch in ".[]"):
            problems.append(f"placeholder {{{field}}} uses attribute or index access")
            continue
        if field not in PLACEHOLDERS:
            known = ", ".join(sorted(PLACEHOLDERS))
            problems.append(f"unknown placeholder {{{field}}}; known: {known}")
    return problems


# Brackets that enclose a placeholder alone, e.g. （{approver_department}）: when the value is
# empty they go too. The facts behind placeholders are optional in the systems (an ERP
# requisition has no approver department), and a text reading 在张经理（）处 looks broken to
# the approver's superior. The rule is visible in the template itself, so a policy author needs
# no extra syntax: a bracket with more than the placeholder inside stays.
BRACKETS: Mapping[str, str] = {"（": "）", "(": ")", "【": "】", "[": "]"}


def render(text: str, values: Mapping[str, str]) -> str:
    """Fill a template validated by :func:`template_problems`; an empty value alone in a pair
    of :data:`BRACKETS` takes the pair with it."""
    f = string.Formatter()
    literals: list[str] = []
    filled: list[str] = []  # filled[i] follows literals[i]
    for literal, name, spec, conversion in f.parse(text):
        literals.append(literal)
        if name is not None:
            value = f.convert_field(values[name], conversion)
            filled.append(f.format_field(value, spec or ""))
    if len(literals) == len(filled):
        literals.append("")
    cut_start = [False] * len(literals)
    cut_end = [False] * len(literals)
    for i, value in enumerate(filled):
        before, after = literals[i], literals[i + 1]
        if value == "" and before and after and BRACKETS.get(before[-1]) == after[0]:
            cut_end[i] = cut_start[i + 1] = True
    out: list[str] = []
    for i, literal in enumerate(literals):
        out.append(literal[int(cut_start[i]) : len(literal) - int(cut_end[i])])
        if i < len(filled):
            out.append(filled[i])
    return "".join(out)


def format_amount(amount: Decimal | None, currency: str | None) -> str:
    """``Decimal('12345')``, ``'CNY'`` -> ``'¥12,345.00'``."""
    if amount is None:
        return "未注明金额"
    code = (currency or "CNY").upper()
    quantized = amount.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)
    sign = "-" if quantized < 0 else ""
    body = f"{abs(quantized):,.2f}"
    prefix = _CURRENCY_PREFIX.get(code)
    if prefix is not None:
        return f"{sign}{prefix}{body}"
    return f"{sign}{body} {code}"


def format_waited(waited: dt.timedelta, *, working_day: dt.timedelta | None) -> str:
    """How long something has waited, in Chinese.

    With ``working_day`` (the length of one working day) the days are working days:
    ``2 个工作日3小时``; without it they are calendar days: ``3天5小时``. Minutes are shown only
    when under a day, because "2 个工作日3小时12分钟" is noise in a reminder.
    """
    if waited < dt.timedelta(0):
        waited = dt.timedelta(0)
    day = working_day if working_day is not None else dt.timedelta(days=1)
    days, rest = divmod(waited, day)
    hours, rest = divmod(rest, dt.timedelta(hours=1))
    minutes = rest // dt.timedelta(minutes=1)
    day_word = " 个工作日" if working_day is not None else "天"
    if days:
        return f"{days}{day_word}" + (f"{hours}小时" if hours else "")
    if hours:
        return f"{hours}小时" + (f"{minutes}分钟" if minutes else "")
    return f"{minutes}分钟"


def format_date(t: dt.datetime, *, tz: dt.tzinfo, now: dt.datetime) -> str:
    """``11月24日``; the year is added only when it differs from ``now``'s."""
    local = t.astimezone(tz)
    if local.year != now.astimezone(tz).year:
        return f"{local.year}年{local.month}月{local.day}日"
    return f"{local.month}月{local.day}日"


def format_datetime(t: dt.datetime, *, tz: dt.tzinfo, now: dt.datetime) -> str:
    """``11月24日（周二）17:30``: a deadline urge names the date, the weekday and the time."""
    local = t.astimezone(tz)
    weekday = _WEEKDAYS[local.weekday()]
    return f"{format_date(t, tz=tz, now=now)}（周{weekday}）{local:%H:%M}"


def urge_history(sent_at: Sequence[dt.datetime], *, tz: dt.tzinfo, now: dt.datetime) -> str:
    """One phrase summarising earlier urges, for texts that must not assume there were any
    (after a restart the first urge sent can be the escalation)."""
    if not sent_at:
        return "此前尚未催办"
    first = format_date(min(sent_at), tz=tz, now=now)
    if len(sent_at) == 1:
        return f"我已于 {first} 催办过一次"
    return f"我已于 {first} 起催办 {len(sent_at)} 次"
