"""Inventory routing decisions (pure).

- ERP stock -> DRP factory stock (厂家库存), one record per plant/storage location and
  material, filed under the sales region the configuration gives the plant
  (``inventory.erp_to_drp.regions``); a plant the configuration does not name keeps the
  region the ERP connector derived, if any.
- DRP channel stock and sell-through -> the ERP's channel-stock table (a Z-table beside the
  ERP's own stock, which the hub never writes), with the dealer's ERP customer number when
  the hub knows it. Stock is a snapshot that the next one replaces, so nothing waits for the
  dealer to be known: the dealer code identifies it in any case.
- ERP stock whose material record the hub has not received, when the DRP's filter reads that
  record, waits for it up to ``material_wait_s`` (its material master travels on another
  topic and can come second); after that it is sent, since holding real stock back for a
  record that may never come would hide it from the dealers.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

CUSTOMER_NO = "erp.customer_no"


def plant_of(location: str) -> str:
    """The ERP plant of an ERP stock location ``<plant>/<storage location>``."""
    return location.partition("/")[0]


def dealer_of(location: str) -> str:
    """The DRP dealer code of a channel-stock location ``<dealer code>/<warehouse>``."""
    return location.partition("/")[0]


def drp_sells(material: Mapping[str, Any] | None, only: Mapping[str, Sequence[str]]) -> bool:
    """Whether the DRP gets stock of ``material`` (the ERP's material record, None when the
    hub has not seen it)."""
    if not only or material is None:
        return True
    return all(str(material.get(field)) in accepted for field, accepted in only.items())


def waits_for_material(
    material: Mapping[str, Any] | None,
    only: Mapping[str, Sequence[str]],
    wait_s: float,
    since: datetime,
    now: datetime,
) -> bool:
    """Whether ERP stock that reached the hub at ``since`` waits for its material record."""
    return bool(only) and material is None and wait_s > 0 and (now - since).total_seconds() < wait_s


def to_drp(body: Mapping[str, Any], regions: Mapping[str, str]) -> dict[str, Any]:
    out = dict(body)
    region = regions.get(plant_of(str(body["location"])))
    if region is not None:
        out["region"] = region
    return out


def to_erp(body: Mapping[str, Any], customer_no: str | None) -> dict[str, Any]:
    out = dict(body)
    attributes = dict(body.get("attributes") or {})
    if customer_no is not None:
        attributes[CUSTOMER_NO] = customer_no
    out["attributes"] = attributes
    return out
