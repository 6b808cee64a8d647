"""Simulated traffic is valid native input, references what exists, and closes loops."""

from __future__ import annotations

import itertools
import json
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TypeVar

import pytest

from connectors.common.errors import Rejection
from connectors.common.simulator_base import SimStore, pump
from connectors.oa.simulator import SPEC as OA
from connectors.registry import build_connectors
from connectors.simulators import SYSTEMS, simulator_module, traffic

T = TypeVar("T")


@pytest.mark.parametrize("system", SYSTEMS)
def test_generated_records_are_accepted_by_their_connector(system: str) -> None:
    connector = build_connectors()[system]
    records = itertools.islice(simulator_module(system).generate(13, 0.4), 400)
    seen = set()
    for entity, record in records:
        seen.add(entity)
        if entity not in connector.inbound_entities:
            continue
        for result in connector.decode(entity, json.dumps(record, ensure_ascii=False).encode()):
            assert not isinstance(result, Rejection), result.reason
    assert set(connector.inbound_entities) - {"release"} <= seen


def test_orders_reference_customers_and_materials_that_exist() -> None:
    from connectors.common.fakedata import world
    from connectors.crm.simulator import generate

    materials = {p.material_no for p in world(13).parts.values()}
    customers: set[str] = set()
    for entity, record in itertools.islice(generate(13, 0.4), 400):
        if entity == "customer":
            customers.add(record["cust_no"])
        elif entity == "order":
            assert record["cust_no"] in customers
            assert {i["product_code"] for i in record["items"]} <= materials


def test_the_erp_publishes_a_material_master_before_stock_or_orders_use_it() -> None:
    """Decision 55: stock of a material the ERP never published reached the DRP, which
    refused the cables counted in metres; orders for a product without its master parked
    for good."""
    from connectors.common.fakedata import world
    from connectors.erp.simulator import generate

    w = world(13)
    products = {w.parts[p].material_no for p in w.products}
    in_mara: set[str] = set()
    stock = 0
    for entity, record in itertools.islice(generate(13, 0.0), 600):
        if entity == "material":
            in_mara.add(record["MATNR"])
        elif entity == "stock":
            stock += 1
            assert record["MATNR"] in in_mara
        elif entity == "order":
            assert {i["MATNR"] for i in record["ITEMS"]} <= in_mara
    assert stock > 50
    assert products <= in_mara


async def test_traffic_is_paced_and_async() -> None:
    got = [item async for item in _take(traffic("drp", seed=1, rate=0), 5)]
    assert len(got) == 5 and all(isinstance(r, dict) for _, r in got)


async def _take(source: AsyncIterator[T], n: int) -> AsyncIterator[T]:
    async for item in source:
        yield item
        n -= 1
        if n == 0:
            return


async def test_oa_approvers_decide_forms_the_hub_delivered(tmp_path: Path) -> None:
    store = SimStore(tmp_path / "oa.sqlite", OA)
    form = {
        "ext_system": "ERP",
        "ext_ref": "0010000001/00010",
        "applicant": "李采购",
        "approver": "副总经理",
        "submit_time": "2026-11-24 09:30",
        "flow_type": "PR",
        "title": "锂电池 18650",
        "amount": "4,500.00",
    }
    created = store.write(OA.entity("approval"), form, key="k-1")
    own = traffic("oa", seed=2, rate=0)
    await pump(OA, store, own, hub_url=None, limit=60)
    decisions = [
        json.loads(r["payload"])
        for r in store.db.execute("SELECT payload FROM oa_decision WHERE origin = 'user'")
    ]
    mine = [d for d in decisions if d.get("ext_ref") == "0010000001/00010"]
    assert len(mine) == 1 and mine[0]["flow_id"] == created.local_id
    decision = build_connectors()["oa"].to_envelope("decision", mine[0])
    assert decision.body["approval_id"] == "0010000001/00010"
    store.close()
