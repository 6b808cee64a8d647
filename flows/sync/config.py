"""The synchronization configuration: subscriptions, field ownership, deletes, order, BOM and
inventory routing, parking. YAML (``default_sync.yaml``), validated at start: every problem is
reported with its path in the file, the offending value and the rule."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from contracts.topics import SYSTEMS

DEFAULT_CONFIG_PATH = Path(__file__).with_name("default_sync.yaml")

System = Literal["crm", "erp", "pdm", "oa", "drp"]


class _Strict(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class MasterSync(_Strict):
    subscribers: tuple[System, ...] = ()
    ownership: dict[str, tuple[System, ...]] = Field(default_factory=dict)
    deletes: Literal["quarantine", "ignore"] = "quarantine"
    # subscriber -> {field: accepted values}: a subscriber that keeps only some records (the
    # DRP keeps distributors) gets a record only while it matches; sending it the others
    # would only produce dead letters (the system refuses them permanently)
    only: dict[System, dict[str, tuple[str, ...]]] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _only_subscribers(self) -> MasterSync:
        extra = sorted(set(self.only) - set(self.subscribers))
        if extra:
            raise ValueError(f"'only' names systems that are not subscribers: {extra}")
        return self

    def may_change(self, field: str, system: str) -> bool:
        owners = self.ownership.get(field)
        return owners is None or system in owners

    def wants(self, system: str, body: Mapping[str, Any]) -> bool:
        """Whether ``system`` keeps a record like ``body`` (see ``only``)."""
        rules = self.only.get(system)  # type: ignore[call-overload]
        if not rules:
            return True
        return all(str(body.get(f)) in accepted for f, accepted in rules.items())


class CreditApproval(_Strict):
    type: str = Field(default="credit_overrun", pattern=r"^[a-z][a-z0-9_]*$")
    approver: str = Field(default="sales_manager", min_length=1)
    requester: str = Field(default="eai-hub", min_length=1)


class OrderSync(_Strict):
    target: System = "erp"
    sources: tuple[System, ...] = ("crm", "drp")
    material_codes: dict[System, System] = Field(default_factory=dict)
    status_back: bool = True
    credit_check: bool = True
    credit_approval: CreditApproval = CreditApproval()

    @model_validator(mode="after")
    def _target_not_source(self) -> OrderSync:
        if self.target in self.sources:
            raise ValueError(f"target {self.target!r} cannot also be a source of orders")
        return self


class BomSync(_Strict):
    source: System = "pdm"
    target: System = "erp"
    code_writeback: bool = True


class ErpToDrp(_Strict):
    regions: dict[str, str] = Field(default_factory=dict)
    # field of the ERP's material record -> accepted values: the DRP sells products, so stock
    # of anything else (raw materials in metres, packaging) is not sent; the DRP would refuse
    # each update permanently, one dead letter per stock change that nobody can act on
    only: dict[str, tuple[str, ...]] = Field(default_factory=dict)
    # with `only`, stock whose material record has not arrived waits this long for it (parked,
    # released when it comes); then it is sent, as the rule sends stock of an unknown material.
    # 0: never wait
    material_wait_s: float = Field(default=600, ge=0)


class InventorySync(_Strict):
    erp_to_drp: ErpToDrp = ErpToDrp()
    drp_to_erp: bool = True


class Parking(_Strict):
    overdue_after_s: float = Field(default=3600, gt=0)
    check_interval_ms: int = Field(default=500, ge=10, le=60_000)


class SyncConfig(_Strict):
    master: dict[Literal["customer", "material"], MasterSync] = Field(default_factory=dict)
    orders: OrderSync = OrderSync()
    bom: BomSync = BomSync()
    inventory: InventorySync = InventorySync()
    parking: Parking = Parking()

    def subscribers(self, entity: str) -> tuple[str, ...]:
        m = self.master.get(entity)  # type: ignore[call-overload]
        return m.subscribers if m is not None else ()


class SyncConfigError(ValueError):
    """Every problem of a sync configuration file, one per line."""


def parse_config(data: Any, source: str = "sync config") -> SyncConfig:
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise SyncConfigError(f"{source}: expected a mapping at the top, got {type(data).__name__}")
    try:
        return SyncConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            loc = ".".join(str(p) for p in err["loc"]) or "(top)"
            lines.append(f"{source}: {loc}: {err.get('input')!r}: {err['msg']}")
        raise SyncConfigError("\n".join(lines)) from None


def load_config(path: str | Path | None = None) -> SyncConfig:
    """The configuration at ``path`` (the packaged default when None or empty)."""
    p = Path(path) if path else DEFAULT_CONFIG_PATH
    try:
        text = p.read_text(encoding="utf-8")
    except OSError as exc:
        raise SyncConfigError(f"sync config {p}: cannot read: {exc.strerror}") from None
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise SyncConfigError(f"sync config {p}: not valid YAML: {exc}") from None
    return parse_config(data, f"sync config {p.name}")


__all__ = ["SYSTEMS", "SyncConfig", "SyncConfigError", "load_config", "parse_config"]
