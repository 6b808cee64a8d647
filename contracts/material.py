"""Canonical material (part) master data: PDM part numbers and ERP material codes."""

from __future__ import annotations

from pydantic import Field

from contracts.common import Attributes, CanonicalModel, Key, Name, Uom


class Material(CanonicalModel):
    code: Key
    name: Name
    specification: str | None = Field(default=None, max_length=1024)
    uom: Uom
    category: str | None = Field(default=None, max_length=128)
    revision: str | None = Field(default=None, max_length=32)
    attributes: Attributes = Field(default_factory=dict)
