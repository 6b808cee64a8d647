"""Order routing decisions (pure): which references an order needs translated, the order in
the target's keys, and the credit check.

A reference is ``(entity, system, code)``: the customer ``KH000001`` as CRM knows it, the
material ``4000000001`` as ERP knows it (CRM and DRP quote ERP material numbers; see
``material_codes`` in the configuration). The target knows a reference when the
cross-reference table gives its local id there.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flows.sync.config import OrderSync

CLOSED_STATUSES = frozenset({"delivered", "cancelled", "closed"})


@dataclass(frozen=True, order=True)
class Ref:
    entity: str
    system: str
    code: str

    def __str__(self) -> str:
        return f"{self.entity}:{self.system}:{self.code}"

    @classmethod
    def parse(cls, text: str) -> Ref:
        entity, system, code = text.split(":", 2)
        return cls(entity, system, code)


def refs_of(order: Mapping[str, Any], source: str, conf: OrderSync) -> list[Ref]:
    """Every reference the target must know, customer first, in line order, no repeats."""
    codes = conf.material_codes.get(source, source)  # type: ignore[call-overload]
    refs = [Ref("customer", source, str(order["customer_ref"]))]
    for line in order.get("lines") or ():
        refs.append(Ref("material", str(codes), str(line["material_ref"])))
    return list(dict.fromkeys(refs))


def translate(
    order: Mapping[str, Any],
    source: str,
    local: Mapping[Ref, str],
    conf: OrderSync,
    origin_key: str,
) -> dict[str, Any]:
    """The order in the target's keys (every reference must be in ``local``)."""
    codes = str(conf.material_codes.get(source, source))  # type: ignore[call-overload]
    body = dict(order)
    body["customer_ref"] = local[Ref("customer", source, str(order["customer_ref"]))]
    body["lines"] = [
        {**line, "material_ref": local[Ref("material", codes, str(line["material_ref"]))]}
        for line in order.get("lines") or ()
    ]
    attributes = dict(order.get("attributes") or {})
    attributes["origin"] = origin_key
    attributes["origin_customer"] = str(order["customer_ref"])
    body["attributes"] = attributes
    return body


def amount_of(order: Mapping[str, Any]) -> Decimal:
    total = Decimal(0)
    for line in order.get("lines") or ():
        total += Decimal(str(line["quantity"])) * Decimal(str(line["unit_price"]))
    return total


def is_open(status: str | None) -> bool:
    return (status or "submitted") not in CLOSED_STATUSES


@dataclass(frozen=True)
class Credit:
    limit: Decimal | None
    exposure: Decimal  # open orders of the customer, this one excluded
    amount: Decimal

    @property
    def remaining(self) -> Decimal | None:
        return None if self.limit is None else self.limit - self.exposure

    @property
    def exceeded(self) -> bool:
        return self.limit is not None and self.exposure + self.amount > self.limit

    def as_attributes(self) -> dict[str, str]:
        """Flat, as canonical attributes are: ``credit.limit``, ``credit.exposure``, ..."""
        out = {
            "credit.exposure": str(self.exposure),
            "credit.amount": str(self.amount),
            "credit.result": "exceeded" if self.exceeded else "ok",
        }
        if self.limit is not None:
            out["credit.limit"] = str(self.limit)
            out["credit.remaining"] = str(self.remaining)
        return out


def credit_limit_of(record: Mapping[str, Any] | None) -> Decimal | None:
    value = (record or {}).get("credit_limit")
    return None if value in (None, "") else Decimal(str(value))


def missing(needed: Sequence[Ref], local: Mapping[Ref, str]) -> list[Ref]:
    return [r for r in needed if r not in local]
