"""Canonical sales / replenishment order: header and lines, keyed in the sender's system."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum
from typing import Any

from pydantic import Field, model_validator

from contracts.common import (
    DEFAULT_CURRENCY,
    Amount,
    Attributes,
    CanonicalModel,
    Currency,
    Key,
    Money,
    Quantity,
    Uom,
    duplicates,
    violation,
)


class OrderLine(CanonicalModel):
    line_no: int = Field(ge=1)
    material_ref: Key = Field(description="Material code in the sender's system")
    description: str | None = Field(default=None, max_length=1024)
    quantity: Quantity
    uom: Uom
    unit_price: Amount
    currency: Currency = Field(
        default=DEFAULT_CURRENCY, description="Defaults to the order's currency inside an order"
    )

    @property
    def amount(self) -> Decimal:
        return self.quantity * self.unit_price


class OrderStatus(StrEnum):
    draft = "draft"
    submitted = "submitted"
    confirmed = "confirmed"
    in_production = "in_production"
    shipped = "shipped"
    delivered = "delivered"
    cancelled = "cancelled"
    closed = "closed"


class Order(CanonicalModel):
    order_no: Key
    customer_ref: Key = Field(description="Customer key in the sender's system")
    order_date: date
    requested_date: date | None = None
    currency: Currency = DEFAULT_CURRENCY
    status: OrderStatus = OrderStatus.submitted
    lines: tuple[OrderLine, ...] = Field(min_length=1)
    kind: str | None = Field(
        default=None, pattern=r"^[a-z][a-z0-9_]*$", description="e.g. sales, replenishment"
    )
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="before")
    @classmethod
    def _line_currency_from_order(cls, data: Any) -> Any:
        # A line that names no currency is priced in the order's currency, not in CNY.
        if isinstance(data, dict) and isinstance(data.get("lines"), list | tuple):
            currency = data.get("currency", DEFAULT_CURRENCY)
            lines = [
                {**line, "currency": currency}
                if isinstance(line, dict) and "currency" not in line
                else line
                for line in data["lines"]
            ]
            data = {**data, "lines": lines}
        return data

    @model_validator(mode="after")
    def _rules(self) -> Order:
        numbers = [line.line_no for line in self.lines]
        dups = duplicates(numbers)
        if dups:
            raise violation(
                "Order",
                ("lines", dups[0], "line_no"),
                numbers[dups[0]],
                "line_no_unique",
                "line_no must be unique within an order",
            )
        for index, line in enumerate(self.lines):
            if line.currency != self.currency:
                raise violation(
                    "Order",
                    ("lines", index, "currency"),
                    line.currency,
                    "line_currency",
                    f"a line's currency must equal the order's currency {self.currency}",
                )
        if self.requested_date is not None and self.requested_date < self.order_date:
            raise violation(
                "Order",
                ("requested_date",),
                self.requested_date,
                "requested_before_order",
                f"requested_date must not be before order_date {self.order_date.isoformat()}",
            )
        return self

    @property
    def total(self) -> Decimal:
        return sum((line.amount for line in self.lines), Decimal(0))

    @property
    def total_money(self) -> Money:
        return Money(amount=self.total, currency=self.currency)

    def line(self, line_no: int) -> OrderLine | None:
        return next((line for line in self.lines if line.line_no == line_no), None)
