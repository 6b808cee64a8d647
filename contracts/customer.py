"""Canonical customer (party) master data, shared by CRM, ERP, DRP and OA."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import Field, model_validator

from contracts.common import (
    DEFAULT_CURRENCY,
    Address,
    Attributes,
    CanonicalModel,
    Contact,
    Currency,
    Email,
    Identifier,
    Name,
    Phone,
    duplicates,
    violation,
)


class CustomerKind(StrEnum):
    organization = "organization"
    person = "person"


class CustomerType(StrEnum):
    customer = "customer"
    supplier = "supplier"
    distributor = "distributor"
    agent = "agent"
    partner = "partner"
    individual = "individual"


class CustomerStatus(StrEnum):
    """Ordered by rank, not alphabetically: invalid < potential < successful < pilot < reference.

    The comparison operators are overridden because the str ones would order "pilot" before
    "potential"; a plain string operand is read as a status (and an unknown one raises).
    """

    invalid = "invalid"
    potential = "potential"
    successful = "successful"
    pilot = "pilot"
    reference = "reference"

    @property
    def rank(self) -> int:
        return list(CustomerStatus).index(self)

    @classmethod
    def _coerce(cls, other: object) -> CustomerStatus:
        if isinstance(other, CustomerStatus):
            return other
        if isinstance(other, str):
            return cls(other)
        raise TypeError(f"cannot compare CustomerStatus with {type(other).__name__}")

    def __lt__(self, other: object) -> bool:
        return self.rank < self._coerce(other).rank

    def __le__(self, other: object) -> bool:
        return self.rank <= self._coerce(other).rank

    def __gt__(self, other: object) -> bool:
        return self.rank > self._coerce(other).rank

    def __ge__(self, other: object) -> bool:
        return self.rank >= self._coerce(other).rank

    def at_least(self, other: CustomerStatus | str) -> bool:
        return self >= other

    def is_upgrade_to(self, other: CustomerStatus | str) -> bool:
        """True when moving to ``other`` raises the status (each upgrade needs an approval)."""
        return self._coerce(other) > self

    @property
    def can_be_frozen(self) -> bool:
        return self >= CustomerStatus.potential

    @property
    def after_unfreeze(self) -> CustomerStatus:
        """Unfreezing a successful, pilot or reference customer drops it back to successful."""
        return CustomerStatus.successful if self >= CustomerStatus.successful else self


class Customer(CanonicalModel):
    kind: CustomerKind
    name: Name
    identifiers: tuple[Identifier, ...] = ()
    type: CustomerType = CustomerType.customer
    status: CustomerStatus = CustomerStatus.potential
    frozen: bool = False
    addresses: tuple[Address, ...] = ()
    phones: tuple[Phone, ...] = ()
    emails: tuple[Email, ...] = ()
    contacts: tuple[Contact, ...] = ()
    industry: tuple[Name, ...] = Field(default=(), description="Industry path, root to leaf")
    size: str | None = Field(default=None, max_length=64, description="Size by headcount")
    acquisition_channel: str | None = Field(default=None, max_length=128)
    owner: str | None = Field(default=None, max_length=128, description="Owning salesperson")
    credit_limit: Decimal | None = Field(default=None, ge=0)
    currency: Currency = DEFAULT_CURRENCY
    birth_date: date | None = None
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self) -> Customer:
        if self.frozen and not self.status.can_be_frozen:
            raise violation(
                "Customer",
                ("frozen",),
                self.frozen,
                "frozen_status",
                f"only a customer with status potential or higher may be frozen; "
                f"status is {self.status.value}",
            )
        if self.birth_date is not None and self.kind is not CustomerKind.person:
            raise violation(
                "Customer",
                ("birth_date",),
                self.birth_date,
                "birth_date_person_only",
                f"birth_date is only allowed when kind is person; kind is {self.kind.value}",
            )
        schemes = [i.scheme for i in self.identifiers]
        dups = duplicates(schemes)
        if dups:
            index = dups[0]
            raise violation(
                "Customer",
                ("identifiers", index, "scheme"),
                schemes[index],
                "identifier_scheme_unique",
                "each identifier scheme may appear once per customer",
            )
        return self

    def identifier(self, scheme: str) -> str | None:
        for ident in self.identifiers:
            if ident.scheme == scheme:
                return ident.value
        return None

    def unfrozen(self) -> Customer:
        """This customer unfrozen, with the status rule of the domain applied."""
        return self.model_copy(update={"frozen": False, "status": self.status.after_unfreeze})
