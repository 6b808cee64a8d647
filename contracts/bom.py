"""Canonical bill of materials: PDM design BOMs and ERP manufacturing BOMs."""

from __future__ import annotations

from datetime import date
from decimal import Decimal
from enum import StrEnum

from pydantic import Field, model_validator

from contracts.common import Attributes, CanonicalModel, Key, Quantity, Uom, duplicates, violation


class BomKind(StrEnum):
    design = "design"
    manufacturing = "manufacturing"


class BomLine(CanonicalModel):
    position: int = Field(ge=1)
    child: Key = Field(description="Child material / part code")
    quantity: Quantity
    uom: Uom
    scrap_rate: Decimal = Field(default=Decimal(0), ge=0, lt=1)
    effective_from: date | None = None
    effective_to: date | None = None
    reference_designator: str | None = Field(default=None, max_length=256)

    @model_validator(mode="after")
    def _effectivity(self) -> BomLine:
        if (
            self.effective_from is not None
            and self.effective_to is not None
            and self.effective_to < self.effective_from
        ):
            raise violation(
                "BomLine",
                ("effective_to",),
                self.effective_to,
                "effectivity_order",
                f"effective_to must not be before effective_from {self.effective_from.isoformat()}",
            )
        return self

    def effective_on(self, day: date) -> bool:
        return (self.effective_from is None or self.effective_from <= day) and (
            self.effective_to is None or day <= self.effective_to
        )


class Bom(CanonicalModel):
    parent: Key = Field(description="Parent material / part code")
    revision: str = Field(min_length=1, max_length=32)
    kind: BomKind
    lines: tuple[BomLine, ...] = ()
    change_order: str | None = Field(default=None, max_length=64)
    attributes: Attributes = Field(default_factory=dict)

    @model_validator(mode="after")
    def _rules(self) -> Bom:
        positions = [line.position for line in self.lines]
        dups = duplicates(positions)
        if dups:
            raise violation(
                "Bom",
                ("lines", dups[0], "position"),
                positions[dups[0]],
                "position_unique",
                "position must be unique within a BOM",
            )
        for index, line in enumerate(self.lines):
            if line.child == self.parent:
                raise violation(
                    "Bom",
                    ("lines", index, "child"),
                    line.child,
                    "child_is_parent",
                    "a BOM line must not reference its own parent",
                )
        return self

    def line_at(self, position: int) -> BomLine | None:
        return next((line for line in self.lines if line.position == position), None)
