"""Rejections of native records.

Every native record the hub refuses must say which field, which value and which rule, so that
an operator reading the dead-letter topic can fix the source without opening the code.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from contracts.errors import ContractError, from_validation_error


class NativeRecordError(ContractError):
    """A native record that cannot become a canonical message (or the reverse)."""


def reject(field_name: str, value: Any, rule: str) -> NativeRecordError:
    return NativeRecordError(field_name, value, rule)


def from_pydantic(exc: ValidationError, prefix: str = "") -> NativeRecordError:
    """Pydantic's first error as a NativeRecordError, keeping the native field path."""
    err = from_validation_error(exc, prefix=prefix)
    return NativeRecordError(err.field, err.value, err.rule, more=err.more)


@dataclass(frozen=True)
class Rejection:
    """One refused native record, with enough context to dead-letter and re-drive it.

    ``raw`` keeps the original bytes (JSON record, CSV line) because the DLQ must carry what
    actually arrived, not our reading of it.
    """

    system: str
    entity: str
    field: str
    value: Any
    rule: str
    raw: bytes = b""
    source: str = ""  # webhook | kafka | poll | file:<name>
    position: int | None = None  # row number in a file, index in a batch
    extra: dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def reason(self) -> str:
        where = f" at {self.source}" if self.source else ""
        pos = f" #{self.position}" if self.position is not None else ""
        return f"{self.system}.{self.entity}{where}{pos}: " + str(
            ContractError(self.field, self.value, self.rule)
        )

    @classmethod
    def of(
        cls,
        exc: ContractError,
        *,
        system: str,
        entity: str,
        raw: bytes = b"",
        source: str = "",
        position: int | None = None,
    ) -> Rejection:
        return cls(
            system=system,
            entity=entity,
            field=exc.field,
            value=exc.value,
            rule=exc.rule,
            raw=raw,
            source=source,
            position=position,
        )
