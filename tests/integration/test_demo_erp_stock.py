"""The demo's ERP traffic leaves no DRP refusal in the dead letters (decision 55).

`make demo` used to fill the dead letters with `deliver.drp` refusals: the ERP simulator
posted stock of parts it never created a material master for, the hub could not tell whether
the DRP sells them, sent them, and the DRP refused the cables counted in metres. Here the ERP
simulator's own traffic (materials and stock, in the order the demo pushes them) runs through
the hub into a real DRP simulator.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import func, select

from connectors.common import fakedata as fd
from connectors.erp.simulator import generate as erp_traffic
from connectors.registry import CONNECTORS
from hub.store.delivery_models import Delivery
from hub.store.models import DeadLetter, ProcessedMessage
from hub.store.sync_models import Parked
from tests.helpers import wait_until
from tests.integration.test_delivery import simulator
from tests.integration.test_sync_flows import hub_with, records, send

pytestmark = pytest.mark.integration

ERP = CONNECTORS["erp"]
SEED = 0


def demo_materials_and_stock(
    metre_stock: int, sellable_stock: int
) -> list[tuple[str, dict[str, Any]]]:
    """The ERP's materials and stock in demo order, up to the given numbers of stock
    postings of parts counted in metres and of stock positions of finished products."""
    parts = {p.material_no: p for p in fd.world(SEED).parts.values()}
    out: list[tuple[str, dict[str, Any]]] = []
    metres = 0
    sellable: set[tuple[str, str, str]] = set()
    for entity, rec in itertools.islice(erp_traffic(SEED, 0.2), 5000):
        if entity not in ("material", "stock"):
            continue
        out.append((entity, rec))
        if entity == "stock":
            metres += parts[rec["MATNR"]].unit == "MTR"
            if parts[rec["MATNR"]].category == "FG":
                sellable.add((rec["MATNR"], rec["WERKS"], rec["LGORT"]))
        if metres >= metre_stock and len(sellable) >= sellable_stock:
            return out
    raise AssertionError("the ERP traffic has too few stock postings of the kinds asked for")


async def test_erp_demo_stock_reaches_the_drp_without_refusals(
    broker: str, sqlite_url: str, tmp_path: Path
) -> None:
    # One store: what is under test is the simulator's traffic; the inventory flow and the
    # delivery queue on PostgreSQL are covered by test_sync_bom_inventory (20 s saved).
    store_url = sqlite_url
    traffic = demo_materials_and_stock(metre_stock=1, sellable_stock=2)
    world = {p.material_no: p for p in fd.world(SEED).parts.values()}
    stock_ids: list[str] = []
    async with (
        simulator("erp", tmp_path) as erp,
        simulator("drp", tmp_path) as drp,
        hub_with(broker, store_url, [erp, drp]) as hub,
    ):
        assert hub.sessions is not None
        sessions = hub.sessions
        for version, (entity, rec) in enumerate(traffic, start=1):
            # The ERP holds what it publishes (the hub updates its materials later).
            path = "/api/materials" if entity == "material" else "/api/stock"
            r = await erp.client.post(path, json=rec)
            if r.status_code == 409:  # a later posting of the same stock position
                r = await erp.client.put(f"{path}/{r.json()['local_id']}", json=rec)
            assert r.status_code in (200, 201), r.text
            # At once, not at the demo's pace: a stock posting can reach the inventory flow
            # before its material master (two topics) and waits for it, parked (decision 62).
            env = ERP.to_envelope(entity, rec, source_version=version)
            await send(broker, env)
            if entity == "stock":
                stock_ids.append(str(env.message_id))

        async def settled() -> bool:
            """Every stock posting through the inventory flow, none still waiting for its
            material, and every message it sent the DRP delivered or dead-lettered."""
            async with sessions() as s:
                consumed = await s.scalar(
                    select(func.count())
                    .select_from(ProcessedMessage)
                    .where(ProcessedMessage.consumer.like("%sync.inventory%"))
                )
                # the inventory flow queues what it sends the DRP in its own transaction
                # (decision 54), so once it has consumed every posting the queue is complete
                pending = await s.scalar(
                    select(func.count())
                    .select_from(Delivery)
                    .where(Delivery.system == "drp", Delivery.status == "pending")
                )
                parked = await s.scalar(select(func.count()).select_from(Parked))
            return consumed == len(stock_ids) and pending == 0 and parked == 0

        await wait_until(settled, 60, "every stock posting through the inventory flow")
        async with sessions() as s:
            dead = [(d.flow, d.reason) for d in await s.scalars(select(DeadLetter))]
        assert dead == []
        # The DRP holds the factory stock of the finished products, nothing else.
        sellable = {
            (rec["MATNR"], f"{rec['WERKS']}/{rec['LGORT']}")
            for entity, rec in traffic
            if entity == "stock" and world[rec["MATNR"]].category == "FG"
        }
        held = {(r["sku"], r["wh_code"]) for r in await records(drp, "/api/factory-stock")}
        assert held == sellable
        assert len(sellable) >= 2
