"""The envelope every eai-hub message travels in.

The body is kept as a plain mapping on the envelope and validated against the canonical model
registered for ``(entity, schema_version)`` (see ``contracts.registry``), so that a consumer can
route, deduplicate and dead-letter a message whose body it does not understand.
"""

from __future__ import annotations

import contextlib
import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator


class Entity(StrEnum):
    customer = "customer"
    order = "order"
    bom = "bom"
    material = "material"
    inventory = "inventory"
    approval = "approval"
    urge = "urge"


class Op(StrEnum):
    upsert = "upsert"
    delete = "delete"
    merge = "merge"
    unmerge = "unmerge"
    request = "request"
    decide = "decide"
    status = "status"


def utcnow() -> datetime:
    return datetime.now(UTC)


class Envelope(BaseModel):
    """Metadata of one message plus its canonical body."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    message_id: uuid.UUID = Field(default_factory=uuid.uuid4)
    entity: Entity
    op: Op = Op.upsert
    source_system: str = Field(min_length=1, max_length=64, pattern=r"^[a-z][a-z0-9_-]*$")
    source_id: str = Field(min_length=1, max_length=256)
    source_version: int | None = Field(default=None, ge=0)
    source_ts: datetime | None = None
    occurred_at: datetime = Field(default_factory=utcnow)
    correlation_id: uuid.UUID | None = None
    causation_id: uuid.UUID | None = None
    schema_version: int = Field(default=1, ge=1)
    trace: tuple[str, ...] = ()
    body: dict[str, Any] = Field(default_factory=dict)

    @field_validator("occurred_at", "source_ts")
    @classmethod
    def _aware(cls, v: datetime | None) -> datetime | None:
        if v is not None and v.tzinfo is None:
            raise ValueError("must carry a timezone offset (for example 2026-11-24T08:00:00+08:00)")
        return v

    @property
    def key(self) -> str:
        """Kafka key: the entity's stable key on its topic, so one record keeps its order."""
        return f"{self.source_system}:{self.source_id}"

    @property
    def correlation(self) -> uuid.UUID:
        return self.correlation_id or self.message_id

    def visited(self, system: str) -> bool:
        return system == self.source_system or system in self.trace

    def caused(self, **changes: Any) -> Envelope:
        """A new message caused by this one: new id, same correlation, trace extended."""
        trace = (
            self.trace if self.source_system in self.trace else (*self.trace, self.source_system)
        )
        data = self.model_dump()
        data.update(
            message_id=uuid.uuid4(),
            correlation_id=self.correlation,
            causation_id=self.message_id,
            occurred_at=utcnow(),
            trace=trace,
        )
        data.update(changes)
        return Envelope.model_validate(data)

    def to_bytes(self) -> bytes:
        return self.model_dump_json().encode("utf-8")

    def headers(self) -> list[tuple[str, bytes]]:
        """Kafka headers mirroring the routing fields, readable without parsing the value."""
        return [
            ("eai.message_id", str(self.message_id).encode()),
            ("eai.entity", self.entity.value.encode()),
            ("eai.op", self.op.value.encode()),
            ("eai.source_system", self.source_system.encode()),
            ("eai.schema_version", str(self.schema_version).encode()),
        ]

    @classmethod
    def from_bytes(cls, raw: bytes) -> Envelope:
        """Parse wire bytes. Raises ``contracts.errors.ContractError`` naming the rule broken.

        Every consumer of every hop calls this. pydantic parses and validates valid bytes in
        one pass (``model_validate_json``, about a third of the time of ``json.loads`` and
        ``model_validate``, decision 50); whatever that pass refuses, and any text where it
        would accept what the checks below refuse (the NaN and Infinity constants), takes the
        checked path, so the errors stay the same."""
        if b"NaN" not in raw and b"Infinity" not in raw:
            with contextlib.suppress(ValueError):  # pydantic's ValidationError is one
                return cls.model_validate_json(raw)
        return cls._from_bytes_checked(raw)

    @classmethod
    def _from_bytes_checked(cls, raw: bytes) -> Envelope:
        from contracts.errors import ContractError, from_validation_error

        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ContractError(
                "encoding", f"byte {exc.start}: {raw[exc.start : exc.start + 4]!r}", "must be UTF-8"
            ) from exc
        try:
            data = json.loads(text, parse_constant=_reject_constant)
        except json.JSONDecodeError as exc:
            raise ContractError(
                "json", f"line {exc.lineno} column {exc.colno}", f"must be valid JSON: {exc.msg}"
            ) from exc
        except (ValueError, RecursionError) as exc:
            # Over-long integer literals and nesting deeper than the parser's stack must still
            # become a dead letter, not an unexpected exception in the consumer.
            raise ContractError("json", f"{len(raw)} bytes", f"must be valid JSON: {exc}") from exc
        if not isinstance(data, dict):
            raise ContractError("json", type(data).__name__, "must be a JSON object")
        from pydantic import ValidationError

        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            raise from_validation_error(exc, prefix="envelope") from exc


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a JSON number")
