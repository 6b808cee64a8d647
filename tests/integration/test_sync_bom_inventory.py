"""BOM and inventory sync end to end on the embedded broker, a real store and real simulators.

BOM: a PDM design BOM whose parts the ERP does not know is parked; the parts reach the ERP
through identity and the master sync (two new ones are created and numbered by the ERP, one
was typed into the ERP before and maps to that material); the BOM is released and the ERP
holds it in ERP material codes; the PDM parts get their ERP codes back; a new revision
sends only the changed lines and the ERP's BOM then equals the new revision.

Inventory: ERP stock shows in the DRP's factory stock with its region; DRP channel stock
reaches the ERP's channel-stock table (the ERP's own stock untouched); a DRP replenishment
request becomes an ERP sales order of type ZDR for the dealer's ERP customer number.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import select

from connectors.registry import CONNECTORS
from contracts.envelope import Entity, Envelope
from hub.delivery import xref
from hub.store.sync_models import Parked
from tests.helpers import wait_until
from tests.integration.test_delivery import Sim, simulator
from tests.integration.test_sync_flows import hub_with, queued, records, send

pytestmark = pytest.mark.integration

PDM, ERP, DRP = CONNECTORS["pdm"], CONNECTORS["erp"], CONNECTORS["drp"]


def part(no: str, name: str, spec: str) -> dict[str, Any]:
    return {
        "part_no": no,
        "revision": "A",
        "part_name": name,
        "spec": spec,
        "unit": "件",
        "category": "02",
        "state": "RL",
        "created_at": "2026-11-20 09:00:00",
    }


def design_bom(rev: str, eco: str, *items: tuple[str, str, str]) -> dict[str, Any]:
    return {
        "top_part_no": "RS7100-000",
        "top_revision": rev,
        "bom_state": "RL",
        "eco_no": eco,
        "released_at": f"2026-11-2{1 if rev == 'A' else 3} 10:00:00",
        "items": [
            {"level": "1", "find_no": pos, "part_no": no, "qty": qty, "unit": "件"}
            for pos, no, qty in items
        ],
    }


PARTS = {
    "RS7100-000": ("剃须刀整机", "RS7100 三刀头"),
    "RS7100-101": ("刀网组件", "三环 SUS420"),
    "RS7100-102": ("电机", "DC3.7V 6500rpm"),
    "RS7100-103": ("锂电池", "18650 2600mAh"),
}
# The ERP's material clerk typed the battery in before the PDM released the BOM.
TYPED = "4000000009"


async def erp_boms(erp: Sim) -> list[dict[str, Any]]:
    return await records(erp, "/api/boms")


async def test_pdm_bom_parks_until_erp_knows_its_parts_then_sends_only_changes(
    broker: str, store_url: str, tmp_path: Path
) -> None:
    async with (
        simulator("pdm", tmp_path) as pdm,
        simulator("erp", tmp_path) as erp,
        hub_with(broker, store_url, [pdm, erp]) as hub,
    ):
        assert hub.sessions is not None
        for no, (name, spec) in PARTS.items():
            r = await pdm.client.post("/api/parts", json=part(no, name, spec))
            assert r.status_code == 201, r.text
        name, spec = PARTS["RS7100-103"]
        battery = {
            "MATNR": TYPED,
            "MAKTX": name,
            "MTART": "HALB",
            "MEINS": "ST",
            "GROES": spec,
            "ZEINR": "RS7100-103",
            "ZEIVR": "A",
        }
        assert (await erp.client.post("/api/materials", json=battery)).status_code == 201
        await send(broker, ERP.to_envelope("material", battery, source_version=1))

        rev_a = design_bom(
            "A", "ECO-0001", ("10", "RS7100-101", "1"), ("20", "RS7100-102", "1"),
            ("30", "RS7100-103", "2"),
        )  # fmt: skip
        await send(broker, *PDM.to_envelopes("bom", rev_a, source_version=1))

        async def parked() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                rows = list(await s.scalars(select(Parked).where(Parked.entity == "bom")))
                return len(rows) == 1 and "material:pdm:RS7100-000" in rows[0].waiting_on

        await wait_until(parked, 30, "the BOM parked for its unknown parts")
        assert await erp_boms(erp) == []

        for no, (name, spec) in PARTS.items():
            await send(broker, PDM.to_envelope("part", part(no, name, spec), source_version=1))

        async def erp_has_bom() -> bool:
            return len(await erp_boms(erp)) == 1

        await wait_until(erp_has_bom, 60, "the BOM released to the ERP")
        codes: dict[str, str] = {}
        async with hub.sessions() as s:
            for no in PARTS:
                gid = await xref.key_for(s, "material", "pdm", no)
                assert gid is not None, no
                code = await xref.local_id(s, "material", gid, "erp")
                assert code is not None, no
                codes[no] = code
            assert not list(await s.scalars(select(Parked).where(Parked.entity == "bom")))
        # The re-entered battery maps to the material the ERP had; the others were created.
        assert codes["RS7100-103"] == TYPED
        assert len(set(codes.values())) == 4
        assert (await erp.stats())["created"]["material"] == 1 + 3  # the clerk's + the hub's
        [bom] = await erp_boms(erp)
        assert bom["MATNR"] == codes["RS7100-000"]
        assert (bom["REVLV"], bom.get("AENNR")) == ("A", "ECO-0001")
        assert [(i["POSNR"], i["IDNRK"], i["MENGE"]) for i in bom["ITEMS"]] == [
            ("0010", codes["RS7100-101"], "1.000"),
            ("0020", codes["RS7100-102"], "1.000"),
            ("0030", TYPED, "2.000"),
        ]

        # Every PDM part learns the number the ERP knows it by.
        async def codes_back() -> bool:
            for no, code in codes.items():
                r = await pdm.client.get(f"/api/parts/{no}")
                if r.status_code != 200 or r.json()["record"].get("erp_code") != code:
                    return False
            return True

        await wait_until(codes_back, 40, "the ERP codes written back to the PDM parts")
        r = await pdm.client.get("/api/parts/RS7100-102")
        assert r.json()["record"]["part_name"] == "电机"  # the rest of the part kept
        assert (await pdm.stats())["created"]["part"] == 4  # the hub created nothing there

        # Revision B under ECO-0002: motor quantity 1 -> 2, battery dropped, blade added at 40.
        rev_b = design_bom(
            "B", "ECO-0002", ("10", "RS7100-101", "1"), ("20", "RS7100-102", "2"),
            ("40", "RS7100-103", "1"),
        )  # fmt: skip
        await send(broker, *PDM.to_envelopes("bom", rev_b, source_version=2))

        async def revision_b() -> bool:
            boms = await erp_boms(erp)
            return len(boms) == 1 and boms[0]["REVLV"] == "B"

        await wait_until(revision_b, 40, "revision B applied in the ERP")
        [bom] = await erp_boms(erp)
        assert bom["AENNR"] == "ECO-0002"
        assert [(i["POSNR"], i["IDNRK"], i["MENGE"]) for i in bom["ITEMS"]] == [
            ("0010", codes["RS7100-101"], "1.000"),
            ("0020", codes["RS7100-102"], "2.000"),
            ("0040", TYPED, "1.000"),
        ]
        stats = await erp.stats()
        assert (stats["created"]["bom"], stats["updated"]["bom"]) == (1, 1)
        sent = [Envelope.from_bytes(v) for v in await queued(hub, "erp", 1)]
        changes = [e.body for e in sent if e.entity is Entity.bom]
        assert [b["attributes"]["bom.change"] for b in changes] == ["full", "delta"]
        # only the changed, added and removed positions travelled with revision B
        assert sorted(ln["position"] for ln in changes[1]["lines"]) == [20, 30, 40]
        assert changes[1]["attributes"]["bom.removed"] == "30"


# ----------------------------------------------------------------------------- inventory
DEALER = {
    "dealer_code": "JXS-GD-0001",
    "dealer_name": "广州市恒润电器贸易有限公司",
    "region": "HN",
    "province": "广东省",
    "city": "广州市",
    "grade": "A",
    "status": "1",
}
SHAVER = {
    "MATNR": "4000000001",
    "MAKTX": "RS7100 剃须刀",
    "MTART": "FERT",
    "MEINS": "SET",
    "GROES": "RS7100 三刀头",
}


async def test_stock_goes_both_ways_and_a_replenishment_becomes_an_erp_order(
    broker: str, store_url: str, tmp_path: Path
) -> None:
    async with (
        simulator("erp", tmp_path) as erp,
        simulator("drp", tmp_path) as drp,
        hub_with(broker, store_url, [erp, drp]) as hub,
    ):
        assert hub.sessions is not None
        mard = {
            "MATNR": "4000000001",
            "WERKS": "2000",
            "LGORT": "2001",
            "LABST": "1,250.000",
            "INSME": "0.000",
            "SPEME": "0.000",
            "UMLME": "40.000",
            "BDMNG": "300.000",
            "MEINS": "SET",
            "LAEDA": "20261124",
            "UZEIT": "093000",
        }
        await send(broker, ERP.to_envelope("stock", mard, source_version=1))

        async def stock_parked() -> bool:
            async with hub.sessions() as s:  # type: ignore[misc]
                waiting = list(await s.scalars(select(Parked.waiting_on)))
            return waiting == [["material:erp:4000000001"]]

        # Its material master comes second (another topic): the DRP's filter needs it, so the
        # stock waits for it, parked, and goes when it comes.
        await wait_until(stock_parked, 40, "the stock parked for its material record")
        await send(broker, ERP.to_envelope("material", SHAVER, source_version=1))

        async def factory_stock() -> list[dict[str, Any]]:
            return await records(drp, "/api/factory-stock")

        async def drp_has_stock() -> bool:
            return len(await factory_stock()) == 1

        await wait_until(drp_has_stock, 40, "ERP stock in the DRP's factory stock")
        [fs] = await factory_stock()
        # plant 2000 is 华东 in the sync configuration: the DRP files it under HD
        assert (fs["wh_code"], fs["sku"], fs["region"]) == ("2000/2001", "4000000001", "HD")
        assert (fs["on_hand_qty"], fs["reserved_qty"], fs["transit_qty"]) == ("1250", "300", "40")

        # The dealer first: the replenishment needs it (and the material) in the ERP.
        await send(broker, DRP.to_envelope("distributor", DEALER, source_version=1))

        async def kunnr() -> str | None:
            async with hub.sessions() as s:  # type: ignore[misc]
                gid = await xref.key_for(s, "customer", "drp", "JXS-GD-0001")
                return await xref.local_id(s, "customer", gid, "erp") if gid else None

        async def dealer_in_erp() -> bool:
            return await kunnr() is not None

        await wait_until(dealer_in_erp, 40, "the dealer created as an ERP customer")
        kunnr_ = await kunnr()

        channel = {
            "dealer_code": "JXS-GD-0001",
            "wh_code": "01",
            "sku": "4000000001",
            "region": "HN",
            "stock_qty": "35",
            "transit_qty": "10",
            "locked_qty": "2",
            "unit": "台",
            "sold_qty": "120",
            "period": "2026-11",
            "stat_time": "2026-11-24 18:00:00",
        }
        replenishment = {
            "req_no": "YH202611240001",
            "dealer_code": "JXS-GD-0001",
            "req_date": "2026-11-24",
            "status": "1",
            "items": [
                {"row_no": "1", "sku": "4000000001", "req_qty": "100", "unit": "台",
                 "price": "199.00"},
            ],
        }  # fmt: skip
        await send(
            broker,
            DRP.to_envelope("inventory", channel, source_version=1),
            DRP.to_envelope("replenishment", replenishment, source_version=1),
        )

        async def erp_has_both() -> bool:
            return bool(await records(erp, "/api/channel-stock")) and bool(
                await records(erp, "/api/sales-orders")
            )

        await wait_until(erp_has_both, 40, "channel stock and the replenishment in the ERP")
        [cs] = await records(erp, "/api/channel-stock")
        assert (cs["ZDEALER"], cs["ZWHCODE"], cs["MATNR"], cs["KUNNR"]) == (
            "JXS-GD-0001",
            "01",
            "4000000001",
            kunnr_,
        )
        assert (cs["LABST"], cs["ZSOLD"], cs["ZPERIOD"], cs["ZREGION"]) == (
            "35.000",
            "120.000",
            "2026-11",
            "华南",
        )
        # the ERP's own stock table got nothing from the DRP
        assert (await erp.stats())["received"].get("stock", 0) == 0
        [so] = await records(erp, "/api/sales-orders")
        assert (so["AUART"], so["KUNNR"], so["BSTNK"]) == ("ZDR", kunnr_, "YH202611240001")
        assert [(i["MATNR"], i["KWMENG"]) for i in so["ITEMS"]] == [("4000000001", "100.000")]
