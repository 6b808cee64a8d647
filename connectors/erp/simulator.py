"""ERP simulator: SAP-style tables in SQLite (KNA1, VBAK, MARA, STKO, MARD, EBAN, and the
site's Z-table ZCHSTOCK of dealer channel stock) behind a small REST API, and the ERP's
users creating master data, orders, stock moves, requisitions. A BOM update through the API
is a change to the BOM (``apply_bom_change``), as under an ERP change number.

The tables are what the hub's watermark poller reads (``change_seq`` is unique and
monotonic; ``changed_at`` has one-second resolution and ties, like AEDAT/AEZET).
Requisition amounts are spread over the three authority bands (<1,000, 1,000-5,000, >5,000
CNY) so that the approval ladder sees every approver level.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from connectors.common import fakedata as fd
from connectors.common.parse import format_amount, format_datetime
from connectors.common.simulator_base import SimEntity, SimulatorSpec, create_sim_app, paced
from connectors.erp.native import (
    ErpBom,
    ErpChannelStock,
    ErpCustomer,
    ErpMaterial,
    ErpOrder,
    ErpRelease,
    ErpRequisition,
    ErpStock,
)

SYSTEM = "erp"
PROVINCE_CODES = {
    "北京市": "11", "上海市": "31", "江苏省": "32", "浙江省": "33", "福建省": "35",
    "山东省": "37", "河南省": "41", "湖北省": "42", "湖南省": "43", "广东省": "44",
    "重庆市": "50", "四川省": "51", "陕西省": "61", "辽宁省": "21",
}  # fmt: skip
INDUSTRY_KEYS = {
    ("制造业", "家用电器"): "Z01",
    ("制造业", "电子元器件"): "Z02",
    ("批发和零售业", "家电批发"): "Z03",
    ("批发和零售业", "电商零售"): "Z04",
    ("批发和零售业", "百货零售"): "Z05",
    ("服务业", "售后维修"): "Z06",
}
UNITS = {"PCE": "ST", "SET": "SET", "MTR": "M"}
MTART = {"FG": "FERT", "SF": "HALB"}
PACKAGING = (
    ("彩盒", "350g白卡 四色印刷"),
    ("说明书", "80g双胶纸 中英文"),
    ("外箱", "K=K 五层瓦楞 20台装"),
    ("吸塑托", "PET 0.5mm"),
)
BUYERS = ("李采购", "王芳", "陈志强", "赵敏")
DEPTS = ("采购部", "生产部", "研发部", "品质部")
APPROVERS = ("张经理", "刘副总", "黄总")


def d(dt: datetime) -> str:
    return format_datetime(dt, "%Y%m%d")


def t(dt: datetime) -> str:
    return format_datetime(dt, "%H%M%S")


def _customer(rng: random.Random, c: fd.Company, kunnr: str, when: datetime) -> dict[str, Any]:
    name = c.name_variant(rng)
    rec: dict[str, Any] = {
        "KUNNR": kunnr,
        "KTOKD": rng.choices(("Z001", "Z002", "Z003", "Z005"), weights=(70, 20, 5, 5))[0],
        "NAME1": name[:40],
        "SORTL": c.core,
        "LAND1": "CN",
        "REGIO": PROVINCE_CODES[c.province],
        "ORT01": f"{c.city}市",
        "ORT02": c.district,
        "STRAS": c.street,
        "PSTLZ": c.postcode,
        "TELF1": fd.phone_variant(rng, c.landline, c.area_code),
        "BRSCH": INDUSTRY_KEYS[c.industry],
        "KLIMK": format_amount(c.credit_limit),
        "WAERS": "CNY",
        "ZTERM": rng.choice(("0001", "Z030", "Z060", "Z090")),
        "SPERR": "X" if rng.random() < 0.03 else "",
        "ZZSALES": rng.choice(("E1023", "E1031", "E1045")),
        "ERDAT": d(when),
        "AEDAT": d(when),
        "AEZET": t(when),
    }
    if len(name) > 40:
        rec["NAME2"] = name[40:80]
    if rng.random() < 0.9:
        rec["STCEG"] = c.uscc
    return rec


def _part_material(rng: random.Random, p: fd.Part, when: datetime) -> dict[str, Any]:
    """A part the PDM also holds, typed in by the ERP's material clerk."""
    return {
        "MATNR": p.material_no,
        "MAKTX": fd.typo(rng, p.name) if rng.random() < 0.1 else p.name,
        "MTART": MTART.get(p.category, "ROH"),
        "MATKL": p.category.replace("-", "")[:9],
        "MEINS": UNITS[p.unit],
        "GROES": p.spec,
        "ZEINR": p.drawing_no,
        "ZEIVR": p.revision,
        "ERSDA": d(when),
        "LAEDA": d(when),
    }


def _material(
    rng: random.Random, w: fd.World, n: int, duplicates: float, when: datetime
) -> dict[str, Any]:
    if rng.random() < duplicates:
        return _part_material(rng, rng.choice(list(w.parts.values())), when)
    name, spec = rng.choice(PACKAGING)
    return {
        "MATNR": f"{4000000000 + n:010d}",
        "MAKTX": name,
        "MTART": "VERP",
        "MATKL": "PK",
        "MEINS": "ST",
        "GROES": spec,
        "ERSDA": d(when),
        "LAEDA": d(when),
    }


def _order(
    rng: random.Random, w: fd.World, vbeln: str, kunnr: str, when: datetime
) -> dict[str, Any]:
    products = [w.parts[p] for p in w.products]
    items = []
    for i, p in enumerate(rng.sample(products, rng.randrange(1, 4)), start=1):
        items.append(
            {
                "POSNR": f"{i * 10:06d}",
                "MATNR": p.material_no,
                "ARKTX": p.name[:40],
                "KWMENG": format_amount(Decimal(rng.choice((50, 100, 200, 500, 1000))), 3),
                "VRKME": "SET",
                "NETPR": format_amount((p.std_price * Decimal("1.6")).quantize(Decimal("0.01"))),
            }
        )
    return {
        "VBELN": vbeln,
        "AUART": rng.choices(("ZOR", "ZEX"), weights=(9, 1))[0],
        "KUNNR": kunnr,
        "AUDAT": d(when),
        "VDATU": d(when + timedelta(days=rng.randrange(10, 40))),
        "WAERK": "CNY",
        "ZZSTATUS": rng.choice(("N", "A", "A", "P", "S")),
        "VKORG": "1000",
        "VTWEG": "10",
        "ERNAM": "SD_CLERK1",
        "AEDAT": d(when),
        "AEZET": t(when),
        "ITEMS": items,
    }


def _bom(rng: random.Random, p: fd.Part, w: fd.World, when: datetime) -> dict[str, Any]:
    items = []
    for i, (child_no, quantity) in enumerate(p.children, start=1):
        child = w.parts[child_no]
        items.append(
            {
                "POSNR": f"{i * 10:04d}",
                "IDNRK": child.material_no,
                "MENGE": format_amount(quantity, 3),
                "MEINS": UNITS[child.unit],
                "AUSCH": "2.00" if child.category.startswith("RM") and rng.random() < 0.3 else None,
            }
        )
    return {
        "MATNR": p.material_no,
        "WERKS": "1000",
        "STLAN": "1",
        "STLAL": "01",
        "REVLV": p.revision,
        "AEDAT": d(when),
        "AEZET": t(when),
        "ITEMS": [{k: v for k, v in it.items() if v is not None} for it in items],
    }


def _stock(rng: random.Random, p: fd.Part, when: datetime) -> dict[str, Any]:
    on_hand = Decimal(rng.randrange(-20, 5000)) if p.unit != "MTR" else Decimal("812.5")
    return {
        "MATNR": p.material_no,
        "WERKS": rng.choice(("1000", "2000")),
        "LGORT": rng.choice(("1001", "1002", "2001")),
        "LABST": format_amount(on_hand, 3),
        "INSME": format_amount(Decimal(rng.randrange(0, 50)), 3),
        "SPEME": format_amount(Decimal(0), 3),
        "UMLME": format_amount(Decimal(rng.randrange(0, 200)), 3),
        "BDMNG": format_amount(Decimal(rng.randrange(0, 300)), 3),
        "MEINS": UNITS[p.unit],
        "LAEDA": d(when),
        "UZEIT": t(when),
    }


def _requisition(rng: random.Random, w: fd.World, banfn: str, when: datetime) -> dict[str, Any]:
    p = rng.choice(w.leaves())
    # Amounts across the authority bands: manager, vice GM, GM.
    band = rng.choice(((200, 999), (1000, 5000), (5001, 80000)))
    target = Decimal(rng.randrange(*band))
    menge = max(Decimal(1), (target / max(p.std_price, Decimal("0.01"))).quantize(Decimal(1)))
    return {
        "BANFN": banfn,
        "BNFPO": "00010",
        "BSART": "NB",
        "MATNR": p.material_no,
        "TXZ01": f"{p.name} {p.spec}"[:40],
        "MENGE": format_amount(menge, 3),
        "MEINS": UNITS[p.unit],
        "PREIS": format_amount(p.std_price),
        "WAERS": "CNY",
        "AFNAM": rng.choice(BUYERS),
        "ZZDEPT": rng.choice(DEPTS),
        "ZZAPPROVER": rng.choice(APPROVERS),
        "EKGRP": "101",
        "BADAT": d(when),
        "ERZET": t(when),
        "LFDAT": d(when + timedelta(days=rng.randrange(7, 21))),
        "FRGKZ": "",
    }


def apply_bom_change(stored: dict[str, Any], change: dict[str, Any]) -> dict[str, Any]:
    """An update of a BOM is a change to it, as under an ERP change number (AENNR): the
    header takes the change's revision level and change number; an item replaces the item
    at its POSNR or is added; an item with FLDELETE "X" removes the item at its POSNR;
    items the change does not name stay as they are. The result is the BOM as valid after
    the change, items in POSNR order (a real ERP also keeps the history per change number;
    this simulator keeps only the current state)."""
    items = {str(it["POSNR"]): dict(it) for it in stored.get("ITEMS") or ()}
    for it in change.get("ITEMS") or ():
        pos = str(it["POSNR"])
        if it.get("FLDELETE") == "X":
            items.pop(pos, None)
        else:
            items[pos] = {k: v for k, v in it.items() if k != "FLDELETE"}
    header = {k: v for k, v in change.items() if k != "ITEMS"}
    return {**stored, **header, "ITEMS": [items[p] for p in sorted(items, key=int)]}


def generate(seed: int, duplicates: float = 0.2) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless ERP traffic for a seed: (native entity, native record)."""
    w = fd.world(seed)
    rng = random.Random(f"{SYSTEM}:{seed}")
    clock = fd.clock(rng)
    kunnrs: list[str] = []
    in_mara: set[str] = set()
    n = {"customer": 0, "material": 0, "order": 0, "requisition": 0}
    # The sales catalogue exists before anyone orders from it: without the finished
    # products' material masters every CRM order and DRP replenishment parked for good.
    for product in w.products:
        in_mara.add(w.parts[product].material_no)
        yield "material", _part_material(rng, w.parts[product], clock.tick())
    while True:
        when = clock.tick()
        roll = rng.random()
        if roll < 0.15 or not kunnrs:
            n["customer"] += 1
            c = fd.pick_company(rng, w, SYSTEM, duplicates, n["customer"])
            kunnr = f"{100000 + n['customer']:010d}"
            kunnrs.append(kunnr)
            yield "customer", _customer(rng, c, kunnr, when)
        elif roll < 0.3:
            n["material"] += 1
            material = _material(rng, w, n["material"], duplicates, when)
            in_mara.add(material["MATNR"])
            yield "material", material
        elif roll < 0.55:
            n["order"] += 1
            vbeln = f"{10000 + n['order']:010d}"
            yield "order", _order(rng, w, vbeln, rng.choice(kunnrs), when)
        elif roll < 0.6:
            yield "bom", _bom(rng, rng.choice(w.assemblies()), w, when)
        elif roll < 0.85:
            p = rng.choice(list(w.parts.values()))
            # An ERP posts stock only against a material master (MARD needs its MARA row):
            # the clerk creates the part's material first. Stock of a material the ERP
            # never published reached the hub without the record that says whether the DRP
            # sells it, and the DRP refused the cables counted in metres (decision 55).
            if p.material_no not in in_mara:
                in_mara.add(p.material_no)
                yield "material", _part_material(rng, p, when)
                when = clock.tick()
            yield "stock", _stock(rng, p, when)
        else:
            n["requisition"] += 1
            yield "requisition", _requisition(rng, w, f"{10000000 + n['requisition']:010d}", when)


async def traffic(
    seed: int = 0, rate: float = 1.0, duplicates: float = 0.2
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for item in paced(generate(seed, duplicates), rate):
        yield item


SPEC = SimulatorSpec(
    system=SYSTEM,
    title="ERP",
    entities=(
        SimEntity("customer", "/api/customers", "KNA1", "KUNNR", "{n:010d}", ErpCustomer),
        SimEntity("order", "/api/sales-orders", "VBAK", "VBELN", "{n:010d}", ErpOrder),
        SimEntity("material", "/api/materials", "MARA", "MATNR", "{n:010d}", ErpMaterial),
        SimEntity(
            "bom",
            "/api/boms",
            "STKO",
            ("MATNR", "WERKS", "STLAN", "STLAL"),
            "B{n}",
            ErpBom,
            apply_update=apply_bom_change,
        ),
        SimEntity("stock", "/api/stock", "MARD", ("MATNR", "WERKS", "LGORT"), "S{n}", ErpStock),
        SimEntity(
            "channel_stock",
            "/api/channel-stock",
            "ZCHSTOCK",
            ("ZDEALER", "ZWHCODE", "MATNR"),
            "C{n}",
            ErpChannelStock,
        ),
        SimEntity(
            "requisition", "/api/requisitions", "EBAN", ("BANFN", "BNFPO"), "R{n}", ErpRequisition
        ),
        SimEntity(
            "release",
            "/api/releases",
            "EBAN_REL",
            ("BANFN", "BNFPO"),
            "L{n}",
            ErpRelease,
        ),
    ),
    generate=generate,
    pushable=frozenset({"customer", "order", "material", "bom", "stock", "requisition"}),
)


def create_app(db_path: str | Path, seed: int = 0) -> FastAPI:
    return create_sim_app(SPEC, db_path, seed)
