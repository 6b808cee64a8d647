"""Canonical stock position of one material at one location (ERP plant or distributor)."""

from __future__ import annotations

from decimal import Decimal

from pydantic import AwareDatetime, Field

from contracts.common import Attributes, CanonicalModel, Key, Uom


class Inventory(CanonicalModel):
    location: Key
    region: str | None = Field(default=None, max_length=128)
    material: Key
    # Not constrained: ERPs do book negative stock, and the hub must carry what they say.
    on_hand: Decimal
    reserved: Decimal = Field(default=Decimal(0), ge=0)
    in_transit: Decimal = Field(default=Decimal(0), ge=0)
    uom: Uom
    as_of: AwareDatetime
    sold_in_period: Decimal | None = Field(default=None, description="Sell-through")
    attributes: Attributes = Field(default_factory=dict)

    @property
    def available(self) -> Decimal:
        return self.on_hand - self.reserved
