"""Small helpers the per-system mappings share."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from connectors.common.errors import reject
from connectors.common.valuemaps import ValueMaps
from contracts.common import Attributes


def put(attrs: Attributes, key: str, value: Any) -> None:
    """Set an attribute only when the native record had the value (absent stays absent)."""
    if value is not None and value != "":
        attrs[key] = value


def get(attrs: Attributes, key: str) -> str | None:
    value = attrs.get(key)
    return None if value is None else str(value)


def price_places(price: Decimal) -> int:
    """Prices keep 2 decimals unless the source priced finer (screws cost 0.035 each)."""
    exponent = price.normalize().as_tuple().exponent
    return max(2, -exponent) if isinstance(exponent, int) else 2


def cents(value: Decimal) -> Decimal:
    return value.quantize(Decimal("0.01"))


def default(vm: ValueMaps, name: str) -> str:
    """A site default from the ``defaults`` map (plant, BOM usage, ...), configurable there."""
    return vm["defaults"].to_canonical(name, f"defaults.{name}")


def one_of(value: Any, field: str, allowed: tuple[str, ...]) -> str:
    if value not in allowed:
        raise reject(field, value, f"must be one of {', '.join(repr(a) for a in allowed)}")
    return str(value)


def texts(*values: str | None) -> tuple[str, ...]:
    return tuple(v for v in values if v)


def native_code(
    vm: ValueMaps, map_name: str, value: Any, attrs: Attributes, attr_key: str, field: str
) -> str:
    """The native code for a canonical value, preferring the code the record came with.

    Where several codes share a canonical value (标准件 and 外购件 are both bought-in raw
    parts), the record remembers its own code in an attribute, so writing it back to the
    system that sent it does not turn one into the other.
    """
    kept = get(attrs, attr_key)
    text = str(getattr(value, "value", value))
    if kept is not None and vm[map_name].codes.get(kept) == text:
        return kept
    return vm.to_native(map_name, value, field)
