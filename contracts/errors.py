"""Validation errors that name the field, the value and the rule."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError


class ContractError(ValueError):
    """A message broke its contract. ``reason`` is the one-line text that goes to the DLQ."""

    def __init__(
        self, field: str, value: Any, rule: str, *, more: int = 0, code: str | None = None
    ) -> None:
        self.field = field
        self.value = value
        self.rule = rule
        self.more = more
        self.code = code
        shown = _short(value)
        suffix = f" (and {more} more violation{'s' if more > 1 else ''})" if more else ""
        super().__init__(f"field '{field}' value {shown}: {rule}{suffix}")

    @property
    def reason(self) -> str:
        return str(self)


def _short(value: Any, limit: int = 80) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def from_validation_error(exc: ValidationError, *, prefix: str = "") -> ContractError:
    """Turn pydantic's error list into one ContractError about the first violation."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    loc = ".".join(str(p) for p in first.get("loc", ()))
    field = f"{prefix}.{loc}" if prefix and loc else (loc or prefix or "body")
    value = first.get("input", "<missing>")
    if first.get("type") == "missing":
        value = "<missing>"
    rule = str(first.get("msg", "invalid"))
    return ContractError(field, value, rule, more=len(errors) - 1, code=str(first.get("type")))
