"""JSON Schema export of the envelope and every canonical body, one file per model."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

from pydantic import BaseModel

from contracts.approval import ApprovalDecision, ApprovalRequest, Urge
from contracts.bom import Bom
from contracts.customer import Customer
from contracts.envelope import Envelope
from contracts.inventory import Inventory
from contracts.material import Material
from contracts.order import Order
from contracts.registry import Tombstone

SCHEMA_DIALECT: Final = "https://json-schema.org/draft/2020-12/schema"
ID_BASE: Final = "urn:eai-hub:schema:"

# (file stem, version, model); the stem is the message name, stable across model renames.
EXPORTED: Final[tuple[tuple[str, int, type[BaseModel]], ...]] = (
    ("envelope", 1, Envelope),
    ("customer", 1, Customer),
    ("material", 1, Material),
    ("order", 1, Order),
    ("bom", 1, Bom),
    ("inventory", 1, Inventory),
    ("approval_request", 1, ApprovalRequest),
    ("approval_decision", 1, ApprovalDecision),
    ("urge", 1, Urge),
    ("tombstone", 1, Tombstone),
)


def schema_document(name: str, version: int, model: type[BaseModel]) -> dict[str, Any]:
    """The JSON Schema of one model as published: validation mode, with $schema and $id."""
    schema = model.model_json_schema(mode="validation")
    return {
        "$schema": SCHEMA_DIALECT,
        "$id": f"{ID_BASE}{name}.v{version}",
        **schema,
        "title": model.__name__,
        "x-schema-version": version,
    }


def render(document: dict[str, Any]) -> str:
    return json.dumps(document, indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def export_schemas(directory: Path) -> list[Path]:
    """Write ``<name>.v<version>.schema.json`` for each model; returns the paths written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for name, version, model in EXPORTED:
        path = directory / f"{name}.v{version}.schema.json"
        path.write_text(render(schema_document(name, version, model)), encoding="utf-8")
        written.append(path)
    return written
