"""Which canonical model validates the body of an envelope.

The body model is looked up by ``(entity, schema_version)``; a few operations carry a
different body for the same entity (an approval decision, a delete without the record), so
``(entity, op, schema_version)`` is consulted first.
"""

from __future__ import annotations

from typing import Final

from pydantic import BaseModel, Field, ValidationError

from contracts.approval import ApprovalDecision, ApprovalRequest, Urge
from contracts.bom import Bom
from contracts.common import CanonicalModel
from contracts.customer import Customer
from contracts.envelope import Entity, Envelope, Op
from contracts.errors import ContractError, from_validation_error
from contracts.inventory import Inventory
from contracts.material import Material
from contracts.order import Order


class Tombstone(CanonicalModel):
    """Body of a delete that does not repeat the record: the key is on the envelope."""

    reason: str | None = Field(default=None, max_length=1024)


BODY_MODELS: Final[dict[tuple[Entity, int], type[BaseModel]]] = {
    (Entity.customer, 1): Customer,
    (Entity.material, 1): Material,
    (Entity.order, 1): Order,
    (Entity.bom, 1): Bom,
    (Entity.inventory, 1): Inventory,
    (Entity.approval, 1): ApprovalRequest,
    (Entity.urge, 1): Urge,
}

OP_BODY_MODELS: Final[dict[tuple[Entity, Op, int], type[BaseModel]]] = {
    (Entity.approval, Op.decide, 1): ApprovalDecision,
}


def body_model(entity: Entity | str, version: int, op: Op | str | None = None) -> type[BaseModel]:
    """The model for a body; raises ContractError("schema_version", ...) when none is known."""
    entity = Entity(entity)
    if op is not None:
        special = OP_BODY_MODELS.get((entity, Op(op), version))
        if special is not None:
            return special
    model = BODY_MODELS.get((entity, version))
    if model is None:
        known = sorted(v for (e, v) in BODY_MODELS if e is entity)
        raise ContractError(
            "schema_version",
            version,
            f"no body model registered for entity {entity.value} version {version}; "
            f"known versions: {', '.join(map(str, known)) or 'none'}",
        )
    return model


def validate_body(envelope: Envelope) -> BaseModel:
    """Validate the envelope's body; raises ContractError naming ``body.<path>`` and the rule.

    A delete whose body holds nothing beyond a reason yields a Tombstone.
    """
    model = body_model(envelope.entity, envelope.schema_version, envelope.op)
    if envelope.op is Op.delete and set(envelope.body) <= set(Tombstone.model_fields):
        model = Tombstone
    try:
        return model.model_validate(envelope.body)
    except ValidationError as exc:
        raise from_validation_error(exc, prefix="body") from exc
