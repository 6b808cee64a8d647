"""What a connector is: a system, the native entities it speaks, and how each maps.

A ``Connector`` is data plus pure functions. It owns no sockets: the hub's webhook endpoint,
raw-topic consumer, poller, file importer and sink all look the system up in
``connectors.registry.CONNECTORS`` and call the same mapping, so a record means the same thing
whichever path it arrived by.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from datetime import datetime
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ValidationError

from connectors.common.errors import NativeRecordError, Rejection, from_pydantic, reject
from connectors.common.parse import is_blank, parse_datetime
from connectors.common.status import ConnectorStatus
from connectors.common.valuemaps import ValueMaps, load_value_maps
from contracts.envelope import Entity, Envelope, Op
from contracts.errors import ContractError, from_validation_error

ToCanonical = Callable[[Any, ValueMaps], Any]  # a canonical model, or a list of them
FromCanonical = Callable[[Any, ValueMaps], BaseModel]

# A native customer card with a dozen contacts is a few KB; a megabyte is a runaway export or
# an attachment pasted into a text field, and must not reach Kafka.
MAX_RECORD_BYTES = 256 * 1024
MAX_BATCH_RECORDS = 1000


@dataclass(frozen=True)
class EntityBinding:
    """One native entity of a system and its canonical counterpart."""

    name: str  # native entity name: URL segment and raw topic {system}.{name}.native
    entity: Entity  # canonical entity (topic canonical.<entity>)
    native: type[BaseModel]
    canonical: type[BaseModel]
    to_canonical: ToCanonical
    from_canonical: FromCanonical | None = None  # None: this system never receives it
    # Native field holding the system-local id (the source_id); a tuple for records keyed by
    # several columns (stock per material, plant and storage location), joined with "/".
    id_field: str | tuple[str, ...] = "id"
    # Native field(s) with the last change time (the source_ts); the first one present wins,
    # so a record never updated falls back to its creation time.
    ts_field: str | tuple[str, ...] | None = None
    # Custom change-time reader for systems that split it over two fields (date + time).
    ts_of: Callable[[Any], datetime | None] | None = None
    # For records that split into several canonical ones: the source id of each piece.
    piece_id: Callable[[Any], str] | None = None
    op: Op = Op.upsert
    inbound: bool = True  # the system publishes it (webhook, raw topic, poll, file)
    outbound: bool = True  # the system receives it through its API (needs from_canonical)
    api_path: str = ""  # collection in the system's REST API, e.g. /api/customers
    table: str | None = None  # SQL table in the system's database, for polling
    watermark_column: str = "change_seq"
    column_titles: Mapping[str, str] = field(default_factory=dict)  # file header -> field
    description: str = ""

    @property
    def id_fields(self) -> tuple[str, ...]:
        return (self.id_field,) if isinstance(self.id_field, str) else self.id_field

    def source_id(self, native: BaseModel | Mapping[str, Any]) -> str:
        parts = []
        for name in self.id_fields:
            value = native.get(name) if isinstance(native, Mapping) else getattr(native, name, None)
            if is_blank(value):
                raise reject(
                    name,
                    "<missing>" if value is None else value,
                    "is required to identify the record at its source",
                )
            parts.append(str(value))
        return "/".join(parts)

    def source_ts(self, native: BaseModel) -> datetime | None:
        if self.ts_of is not None:
            return self.ts_of(native)
        fields = (self.ts_field,) if isinstance(self.ts_field, str) else self.ts_field or ()
        for name in fields:
            value = getattr(native, name, None)
            if not is_blank(value):
                return parse_datetime(value, name)
        return None


class UnknownEntityError(ContractError):
    """The URL or topic named an entity this system does not send or receive."""


@dataclass
class Connector:
    system: str
    title: str
    bindings: Mapping[str, EntityBinding]
    value_maps: ValueMaps
    valuemaps_default: Path
    status: ConnectorStatus = field(init=False)
    max_record_bytes: int = MAX_RECORD_BYTES

    def __post_init__(self) -> None:
        self.status = ConnectorStatus(self.system)

    # ----------------------------------------------------------------- description
    @property
    def inbound_entities(self) -> list[str]:
        return [b.name for b in self.bindings.values() if b.inbound]

    @property
    def outbound_entities(self) -> list[Entity]:
        return sorted({b.entity for b in self.bindings.values() if b.from_canonical and b.outbound})

    def binding(self, name: str) -> EntityBinding:
        try:
            return self.bindings[name]
        except KeyError:
            raise UnknownEntityError(
                "entity",
                name,
                f"{self.system} has no such entity (known: {', '.join(self.bindings)})",
            ) from None

    def inbound(self, name: str) -> EntityBinding:
        b = self.binding(name)
        if not b.inbound:
            raise UnknownEntityError(
                "entity",
                name,
                f"{self.system} does not publish it (inbound: {', '.join(self.inbound_entities)})",
            )
        return b

    def outbound(
        self, entity: Entity | str, body: Mapping[str, Any] | None = None
    ) -> EntityBinding:
        """The native entity that receives a canonical entity in this system.

        Several native entities may share one canonical entity (OA keeps contracts, status
        upgrades and plain approvals apart); the canonical ``type`` field then chooses.
        """
        target = Entity(entity)
        candidates = [
            b
            for b in self.bindings.values()
            if b.entity == target and b.from_canonical and b.outbound
        ]
        if not candidates:
            raise UnknownEntityError(
                "entity",
                target.value,
                f"{self.system} does not receive it (receives: "
                f"{', '.join(e.value for e in self.outbound_entities) or 'nothing'})",
            )
        if body is not None:
            # A decision and a request share the entity; the body's fields tell them apart.
            fitting = [b for b in candidates if set(body) <= set(b.canonical.model_fields)]
            if not fitting:
                raise UnknownEntityError(
                    "body",
                    sorted(body)[:6],
                    f"{self.system} receives {target.value} only as "
                    f"{', '.join(b.canonical.__name__ for b in candidates)}",
                )
            candidates = fitting
            kind = str(body.get("type", ""))
            for b in candidates:
                if kind and kind in getattr(b.native, "canonical_types", ()):
                    return b
        return candidates[0]

    def with_value_maps(self, override_path: str | Path | None) -> Connector:
        """A copy whose code lists include the operator's override file."""
        maps = load_value_maps(self.system, self.valuemaps_default, override_path)
        return replace(self, value_maps=maps)

    # ----------------------------------------------------------------- native -> canonical
    def parse_native(self, name: str, data: Mapping[str, Any] | BaseModel) -> BaseModel:
        b = self.binding(name)
        if isinstance(data, b.native):
            return data
        if isinstance(data, BaseModel):
            data = data.model_dump()
        if not isinstance(data, Mapping):
            raise reject("record", type(data).__name__, "must be a JSON object")
        try:
            return b.native.model_validate(data)
        except ValidationError as exc:
            raise from_pydantic(exc) from exc

    def to_canonical(self, name: str, data: Mapping[str, Any] | BaseModel) -> BaseModel:
        """The canonical record of a native one (the first, for records that split)."""
        return self.to_canonicals(name, data)[0]

    def to_canonicals(self, name: str, data: Mapping[str, Any] | BaseModel) -> list[BaseModel]:
        """All canonical records of one native record.

        Most records map to one; a PDM multi-level BOM maps to one single-level BOM per
        assembly in it, because the canonical BOM (like the ERP's) is one level deep.
        """
        b = self.binding(name)
        native = self.parse_native(name, data)
        try:
            result = b.to_canonical(native, self.value_maps)
        except ValidationError as exc:
            # The mapping built an invalid canonical record: name the canonical field.
            raise from_pydantic(exc, prefix=b.entity.value) from exc
        return list(result) if isinstance(result, list | tuple) else [result]

    def to_envelopes(
        self,
        name: str,
        data: Mapping[str, Any] | BaseModel,
        *,
        source_version: int | None = None,
        correlation_id: Any = None,
    ) -> list[Envelope]:
        """A native record as canonical envelopes, or NativeRecordError naming the fault."""
        b = self.inbound(name)
        native = self.parse_native(name, data)
        canonicals = self.to_canonicals(name, native)
        source_ts = b.source_ts(native)
        out = []
        for canonical in canonicals:
            source_id = b.piece_id(canonical) if b.piece_id else b.source_id(native)
            try:
                out.append(
                    Envelope(
                        entity=b.entity,
                        op=b.op,
                        source_system=self.system,
                        source_id=source_id,
                        source_version=source_version,
                        source_ts=source_ts,
                        correlation_id=correlation_id,
                        body=canonical.model_dump(mode="json"),
                    )
                )
            except ValidationError as exc:
                err = from_validation_error(exc, prefix="envelope")
                raise NativeRecordError(err.field, err.value, err.rule) from exc
        return out

    def to_envelope(
        self,
        name: str,
        data: Mapping[str, Any] | BaseModel,
        *,
        source_version: int | None = None,
        correlation_id: Any = None,
    ) -> Envelope:
        """One native record as one envelope; for entities that never split."""
        envelopes = self.to_envelopes(
            name, data, source_version=source_version, correlation_id=correlation_id
        )
        if len(envelopes) != 1:
            raise ValueError(
                f"{self.system}.{name} gave {len(envelopes)} envelopes; use to_envelopes"
            )
        return envelopes[0]

    def decode(
        self,
        name: str,
        raw: bytes,
        *,
        charset: str | None = None,
        source: str = "webhook",
    ) -> list[Envelope | Rejection]:
        """A webhook body or raw-topic value: one native JSON record or a list of them.

        Each record succeeds or fails alone, so one bad row in a batch of 500 does not
        hold up the other 499; the caller dead-letters the rejections.
        """

        def rejection(exc: ContractError, blob: bytes, pos: int | None) -> Rejection:
            r = Rejection.of(
                exc, system=self.system, entity=name, raw=blob, source=source, position=pos
            )
            if len(blob) < len(raw) and pos is None:
                # Oversize bodies are cut for the DLQ (Kafka refuses megabytes); say so.
                r.extra["truncated_from_bytes"] = len(raw)
            # Counters are per known entity; garbage entity names must not grow the table.
            self.status.rejected(name if name in self.bindings else "_unknown", r.reason)
            return r

        try:
            self.inbound(name)
        except ContractError as exc:
            return [rejection(exc, raw, None)]
        limit = self.max_record_bytes * MAX_BATCH_RECORDS
        if len(raw) > limit:
            return [
                rejection(
                    reject("body", f"{len(raw)} bytes", f"must be at most {limit} bytes"),
                    raw[:4096],
                    None,
                )
            ]
        encoding = (charset or "utf-8").lower()
        try:
            text = raw.decode(encoding)
        except (UnicodeDecodeError, LookupError) as exc:
            at = getattr(exc, "start", 0)
            err = reject("encoding", f"byte {at}: {raw[at : at + 4]!r}", f"must be {encoding}")
            return [rejection(err, raw, None)]
        try:
            data = json.loads(text)
        except json.JSONDecodeError as exc:
            err = reject(
                "json", f"line {exc.lineno} column {exc.colno}", f"must be valid JSON: {exc.msg}"
            )
            return [rejection(err, raw, None)]
        records = data if isinstance(data, list) else [data]
        if len(records) > MAX_BATCH_RECORDS:
            err = reject(
                "body", f"{len(records)} records", f"must hold at most {MAX_BATCH_RECORDS}"
            )
            return [rejection(err, raw[:4096], None)]
        out: list[Envelope | Rejection] = []
        for i, record in enumerate(records):
            blob = raw if len(records) == 1 else json.dumps(record, ensure_ascii=False).encode()
            pos = None if not isinstance(data, list) else i
            try:
                if len(blob) > self.max_record_bytes:
                    raise reject(
                        "record",
                        f"{len(blob)} bytes",
                        f"must be at most {self.max_record_bytes} bytes",
                    )
                out.extend(self.to_envelopes(name, record))
                self.status.accepted(name)
            except ContractError as exc:
                out.append(rejection(exc, blob, pos))
        return out

    def decode_records(
        self, name: str, records: Iterable[tuple[int, Mapping[str, Any]]], *, source: str
    ) -> Iterable[tuple[int, Envelope | Rejection]]:
        """Already-parsed records (file rows, polled rows), numbered by the caller."""
        for pos, record in records:
            try:
                envelopes = self.to_envelopes(name, record)
            except ContractError as exc:
                blob = json.dumps(record, ensure_ascii=False, default=str).encode()
                r = Rejection.of(
                    exc, system=self.system, entity=name, raw=blob, source=source, position=pos
                )
                self.status.rejected(name, r.reason)
                yield pos, r
            else:
                self.status.accepted(name)
                for env in envelopes:
                    yield pos, env

    # ----------------------------------------------------------------- canonical -> native
    def to_native(
        self, entity: Entity | str, body: Mapping[str, Any] | BaseModel
    ) -> tuple[EntityBinding, BaseModel]:
        """A canonical body as the native record this system's API accepts."""
        data = body.model_dump(mode="json") if isinstance(body, BaseModel) else body
        b = self.outbound(entity, data)
        assert b.from_canonical is not None  # outbound() only returns bindings that have one
        try:
            canonical = body if isinstance(body, b.canonical) else b.canonical.model_validate(data)
        except ValidationError as exc:
            raise from_pydantic(exc, prefix=b.entity.value) from exc
        try:
            return b, b.from_canonical(canonical, self.value_maps)
        except ValidationError as exc:
            raise from_pydantic(exc, prefix=f"{self.system}.{b.name}") from exc


def native_json(record: BaseModel) -> dict[str, Any]:
    """The JSON a system's API expects: its own field names, absent fields left out."""
    return record.model_dump(mode="json", by_alias=True, exclude_none=True)
