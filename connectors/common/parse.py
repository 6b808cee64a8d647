"""Parsers and formatters for the way Chinese business systems write dates and amounts.

Native systems write dates as 2026/11/24, 20261124 or 2026-11-24, times without a zone (they
mean China Standard Time), amounts as "1,200,000.00", sometimes with full-width digits typed
through a Chinese IME. Parsing is strict: a value that cannot be read is rejected with the
field, the value and the rule, never guessed or defaulted.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import date, datetime, timedelta, timezone
from decimal import Decimal, InvalidOperation
from typing import Any

from connectors.common.errors import reject

# China has had no daylight saving since 1991; a fixed offset avoids depending on tzdata.
CN_TZ = timezone(timedelta(hours=8), "CST")

DATE_FORMATS = ("%Y/%m/%d", "%Y%m%d", "%Y-%m-%d", "%Y.%m.%d", "%Y年%m月%d日")
DATETIME_FORMATS = (
    "%Y/%m/%d %H:%M",
    "%Y/%m/%d %H:%M:%S",
    "%Y-%m-%d %H:%M",
    "%Y-%m-%d %H:%M:%S",
    "%Y%m%d%H%M%S",
    "%Y%m%d %H%M%S",
    "%Y-%m-%dT%H:%M:%S",
)

_AMOUNT = re.compile(r"^[+-]?(\d{1,3}(,\d{3})+|\d+)(\.\d+)?$")


def is_blank(value: Any) -> bool:
    return value is None or (isinstance(value, str) and value.strip() == "")


def require(value: Any, field: str) -> Any:
    if is_blank(value):
        raise reject(field, "<missing>" if value is None else value, "is required")
    return value


def _text(value: Any) -> str:
    # NFKC folds full-width digits and punctuation (１２３，４５６．００) into ASCII.
    return unicodedata.normalize("NFKC", str(value)).strip()


def parse_date(value: Any, field: str, formats: tuple[str, ...] = DATE_FORMATS) -> date:
    require(value, field)
    if isinstance(value, datetime):
        return value.date()
    if isinstance(value, date):
        return value
    text = _text(value)
    # ISO dates are unambiguous and are what spreadsheets hand over for date cells.
    for fmt in (*formats, "%Y-%m-%d"):
        try:
            return datetime.strptime(text, fmt).date()
        except ValueError:
            continue
    raise reject(field, value, "must be a calendar date like 2026/11/24 or 20261124")


def parse_datetime(value: Any, field: str, formats: tuple[str, ...] = DATETIME_FORMATS) -> datetime:
    """A native timestamp as an aware datetime; naive values are China Standard Time."""
    require(value, field)
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=CN_TZ)
    text = _text(value)
    for fmt in formats:
        try:
            return datetime.strptime(text, fmt).replace(tzinfo=CN_TZ)
        except ValueError:
            continue
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        raise reject(
            field, value, "must be a date and time like 2026/11/24 09:30 or 20261124093000"
        ) from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=CN_TZ)


def format_date(value: date, fmt: str = "%Y/%m/%d") -> str:
    return value.strftime(fmt)


def format_datetime(value: datetime, fmt: str = "%Y/%m/%d %H:%M") -> str:
    return value.astimezone(CN_TZ).strftime(fmt)


def parse_amount(
    value: Any,
    field: str,
    *,
    places: int | None = None,
    non_negative: bool = True,
    max_digits: int = 18,
) -> Decimal:
    """'1,200,000.00' -> Decimal('1200000.00').

    Separators must sit every three digits: '1,20,000' is a typing error in this locale and
    is refused rather than read as 120000.
    """
    require(value, field)
    if isinstance(value, bool):
        raise reject(field, value, "must be a number like 1,200,000.00")
    if isinstance(value, int | Decimal):
        number = Decimal(value)
    elif isinstance(value, float):
        number = Decimal(repr(value))
    else:
        text = _text(value).replace("¥", "").replace("￥", "").replace(" ", "")
        if not _AMOUNT.match(text):
            raise reject(field, value, "must be a number like 1,200,000.00")
        try:
            number = Decimal(text.replace(",", ""))
        except InvalidOperation:  # pragma: no cover - the regex already guards this
            raise reject(field, value, "must be a number like 1,200,000.00") from None
    if not number.is_finite():
        raise reject(field, value, "must be a finite number")
    if non_negative and number < 0:
        raise reject(field, value, "must not be negative")
    digits = len(number.as_tuple().digits)
    if digits > max_digits:
        raise reject(field, value, f"must have at most {max_digits} digits")
    if places is not None:
        exponent = number.as_tuple().exponent
        if isinstance(exponent, int) and -exponent > places:
            raise reject(field, value, f"must have at most {places} decimal places")
    return number


def format_amount(value: Decimal, places: int = 2, *, thousands: bool = True) -> str:
    quantized = value.quantize(Decimal(1).scaleb(-places)) if places > 0 else round(value)
    return f"{quantized:,.{places}f}" if thousands else f"{quantized:.{places}f}"


def parse_int(value: Any, field: str, *, minimum: int | None = None) -> int:
    require(value, field)
    text = _text(value)
    if not re.fullmatch(r"[+-]?\d+", text):
        raise reject(field, value, "must be a whole number")
    number = int(text)
    if minimum is not None and number < minimum:
        raise reject(field, value, f"must be at least {minimum}")
    return number


def parse_flag(value: Any, field: str, true: str = "Y", false: str = "N") -> bool:
    require(value, field)
    text = _text(value).upper()
    if text == true.upper():
        return True
    if text == false.upper():
        return False
    raise reject(field, value, f"must be {true!r} or {false!r}")


def format_flag(value: bool, true: str = "Y", false: str = "N") -> str:
    return true if value else false


def parse_percent(value: Any, field: str) -> Decimal:
    """'3.5' or '3.5%' -> Decimal('0.035'), a rate between 0 and 1."""
    require(value, field)
    text = _text(value).removesuffix("%")
    number = parse_amount(text, field, places=4)
    if number > 100:
        raise reject(field, value, "must be a percentage between 0 and 100")
    return number / 100


def format_percent(rate: Decimal, places: int = 2) -> str:
    return format_amount(rate * 100, places, thousands=False)


def optional(value: Any) -> Any:
    """Blank native cells mean 'no value'; keeping them as '' would look like a real value."""
    return None if is_blank(value) else value


def format_quantity(value: Decimal) -> str:
    """A quantity as a clerk writes it: 100, 2.5, 0.35 (no padding, no exponent)."""
    text = f"{value.normalize():f}"
    return text


def is_mobile(phone: str) -> bool:
    """A mainland mobile number, however it was typed (+86, 0086, dashes, spaces)."""
    digits = re.sub(r"\D", "", unicodedata.normalize("NFKC", phone))
    for prefix in ("0086", "86"):
        if len(digits) > 11 and digits.startswith(prefix):
            digits = digits[len(prefix) :]
    return len(digits) == 11 and digits.startswith("1")


def split_phones(phones: tuple[str, ...] | list[str]) -> tuple[str | None, str | None]:
    """(mobile, landline) from a canonical phone list, for systems with one field each."""
    mobile = next((p for p in phones if is_mobile(p)), None)
    tel = next((p for p in phones if not is_mobile(p)), None)
    return mobile, tel
