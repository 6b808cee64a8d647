"""Building blocks shared by the canonical bodies: identifiers, addresses, contacts, money."""

from __future__ import annotations

import re
from collections.abc import Sequence
from decimal import Decimal
from enum import StrEnum
from typing import Annotated, Any, Final

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    model_validator,
)
from pydantic_core import InitErrorDetails, PydanticCustomError

DEFAULT_CURRENCY: Final = "CNY"

USCC: Final = "uscc"
NATIONAL_ID: Final = "national_id"
TAX_ID: Final = "tax_id"
PASSPORT: Final = "passport"
WELL_KNOWN_SCHEMES: Final = (USCC, NATIONAL_ID, TAX_ID, PASSPORT)


class CanonicalModel(BaseModel):
    """Base of every canonical body: immutable, and unknown fields are an error, not dropped."""

    model_config = ConfigDict(frozen=True, extra="forbid")


def violation(
    model: str, loc: tuple[str | int, ...], value: Any, code: str, rule: str
) -> ValidationError:
    """A ValidationError for a cross-field rule, located at the offending field.

    Raised from a model validator it keeps its location, and pydantic prefixes the path of the
    enclosing model (``lines.3.line_no``), so the error names the field, the value and the rule
    exactly like a built-in constraint does.
    """
    return ValidationError.from_exception_data(
        model,
        [InitErrorDetails(type=PydanticCustomError(code, rule), loc=loc, input=value)],
    )


def _not_blank(value: str) -> str:
    if not value.strip():
        raise PydanticCustomError("blank", "must contain a non-whitespace character")
    return value


def _trimmed(value: str) -> str:
    if value != value.strip():
        raise PydanticCustomError(
            "untrimmed",
            "must not start or end with whitespace (keys are compared exactly)",
        )
    return value


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    if not _EMAIL.match(value):
        raise PydanticCustomError("email", "must be an e-mail address like name@example.com")
    return value


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


def _uom(value: str) -> str:
    if not re.fullmatch(r"[A-Z][A-Z0-9_]{0,15}", value):
        raise PydanticCustomError(
            "uom",
            "must be a unit code of up to 16 upper-case letters, digits or '_', such as PCS, "
            "KG, M; map native units (for example 个) in the connector",
        )
    return value


Text = Annotated[str, Field(min_length=1, max_length=4000), AfterValidator(_not_blank)]
"""Free text that must say something."""

Name = Annotated[str, Field(min_length=1, max_length=256), AfterValidator(_not_blank)]

Key = Annotated[
    str,
    Field(min_length=1, max_length=128),
    AfterValidator(_not_blank),
    AfterValidator(_trimmed),
]
"""A record key or code in some system (order no., material code, user id)."""

Currency = Annotated[
    str,
    Field(pattern=r"^[A-Z]{3}$", description="ISO 4217 code in upper case, e.g. CNY, USD"),
]
Amount = Annotated[Decimal, Field(ge=0, description="Non-negative money amount")]
Quantity = Annotated[Decimal, Field(gt=0, description="Strictly positive quantity")]
Uom = Annotated[
    str,
    Field(min_length=1, max_length=16, description="Unit of measure code, e.g. PCS, KG, M"),
    BeforeValidator(_upper),
    AfterValidator(_uom),
]
Phone = Annotated[str, Field(min_length=1, max_length=64), AfterValidator(_not_blank)]
Email = Annotated[str, Field(min_length=1, max_length=254), AfterValidator(_email)]

AttributeValue = str | int | float | bool | None
Attributes = dict[str, AttributeValue]
"""Open map for what one system adds beyond the canonical fields."""


class Money(CanonicalModel):
    amount: Decimal
    currency: Currency = DEFAULT_CURRENCY

    def __add__(self, other: Money) -> Money:
        if other.currency != self.currency:
            raise ValueError(
                f"cannot add {other.currency} to {self.currency}: amounts must share a currency"
            )
        return Money(amount=self.amount + other.amount, currency=self.currency)

    def __mul__(self, factor: Decimal | int) -> Money:
        return Money(amount=self.amount * factor, currency=self.currency)


def duplicates(values: Sequence[Any]) -> list[int]:
    """Indexes of items equal to an earlier item, so an error can point at the second one."""
    seen: set[Any] = set()
    found: list[int] = []
    for i, value in enumerate(values):
        if value in seen:
            found.append(i)
        seen.add(value)
    return found


class Identifier(CanonicalModel):
    """A key of the party in some numbering scheme: a registry code or a system-local number."""

    scheme: str = Field(
        min_length=1,
        max_length=64,
        pattern=r"^[a-z][a-z0-9_.:-]*$",
        description="uscc, national_id, tax_id, passport, or system-local like crm.customer_no",
    )
    value: str = Field(min_length=1, max_length=128)


class AddressType(StrEnum):
    office = "office"
    billing = "billing"
    shipping = "shipping"
    registered = "registered"
    home = "home"
    other = "other"


_CN_POSTCODE = re.compile(r"^\d{6}$")


class Address(CanonicalModel):
    type: AddressType = AddressType.other
    country: str | None = Field(
        default=None, pattern=r"^[A-Z]{2}$", description="ISO 3166-1 alpha-2; None = unknown"
    )
    province: str | None = Field(default=None, max_length=128)
    city: str | None = Field(default=None, max_length=128)
    district: str | None = Field(default=None, max_length=128)
    street: str | None = Field(default=None, max_length=512)
    postcode: str | None = Field(default=None, min_length=1, max_length=16)
    line: str | None = Field(default=None, max_length=1024, description="Free one-line form")

    @model_validator(mode="after")
    def _check(self) -> Address:
        cn = self.country == "CN"
        if cn and self.postcode is not None and not _CN_POSTCODE.match(self.postcode):
            raise violation(
                "Address",
                ("postcode",),
                self.postcode,
                "postcode_cn",
                "a Chinese postcode (country CN) must be 6 digits",
            )
        parts = (self.province, self.city, self.district, self.street, self.postcode, self.line)
        if not any(p and p.strip() for p in parts):
            raise violation(
                "Address",
                ("line",),
                self.line,
                "address_empty",
                "an address needs at least one of province, city, district, street, "
                "postcode or line",
            )
        return self


class Contact(CanonicalModel):
    name: Name
    salutation: str | None = Field(default=None, max_length=64)
    title: str | None = Field(default=None, max_length=128)
    phones: tuple[Phone, ...] = ()
    emails: tuple[Email, ...] = ()
