"""DRP simulator: the distributor portal, with dealers reporting stock and sell-through and
asking for goods (要货订单). With probability ``duplicates`` a new dealer is a company the
CRM or ERP also knows, typed by the channel team their own way.
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
from connectors.drp.native import (
    DrpDistributor,
    DrpFactoryStock,
    DrpInventory,
    DrpReplenishment,
)

SYSTEM = "drp"
REGIONS = {
    "广东省": ("HN", "GD"), "福建省": ("HN", "FJ"), "江苏省": ("HD", "JS"),
    "浙江省": ("HD", "ZJ"), "上海市": ("HD", "SH"), "山东省": ("HD", "SD"),
    "北京市": ("HB", "BJ"), "湖北省": ("HZ", "HB"), "湖南省": ("HZ", "HN"),
    "河南省": ("HZ", "HA"), "四川省": ("XN", "SC"), "重庆市": ("XN", "CQ"),
    "陕西省": ("XB", "SN"), "辽宁省": ("DB", "LN"),
}  # fmt: skip
MANAGERS = {"HN": "林经理", "HD": "沈经理", "HB": "韩经理", "HZ": "胡经理", "XN": "邓经理",
            "XB": "马经理", "DB": "于经理"}  # fmt: skip
DT = "%Y-%m-%d %H:%M:%S"


def _dealer(
    rng: random.Random, c: fd.Company, code: str, region: str, when: datetime
) -> dict[str, Any]:
    contact = c.contacts[0]
    rec: dict[str, Any] = {
        "dealer_code": code,
        "dealer_name": c.name_variant(rng),
        "short_name": c.core,
        "region": region,
        "province": c.province,
        "city": f"{c.city}市",
        "address": f"{c.district}{c.street}",
        "contact": contact.name,
        "contact_mobile": fd.phone_variant(rng, contact.mobile),
        "tel": fd.phone_variant(rng, c.landline, c.area_code),
        "grade": rng.choice(("A", "B", "B", "C")),
        "credit_line": format_amount(c.credit_limit / 2),
        "join_date": (when.date() - timedelta(days=rng.randrange(30, 2000))).isoformat(),
        "status": "1" if rng.random() < 0.95 else "0",
        "manager": MANAGERS[region],
        "updated": format_datetime(when, DT),
    }
    if rng.random() < 0.7:
        rec["credit_code"] = c.uscc
    return rec


def generate(seed: int, duplicates: float = 0.2) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless DRP traffic for a seed: (native entity, native record)."""
    w = fd.world(seed)
    rng = random.Random(f"{SYSTEM}:{seed}")
    clock = fd.clock(rng)
    dealers: list[tuple[str, str]] = []  # (dealer_code, region)
    products = [w.parts[p] for p in w.products]
    n_dealer = n_req = 0
    while True:
        when = clock.tick(15)
        roll = rng.random()
        if roll < 0.2 or len(dealers) < 2:
            n_dealer += 1
            c = fd.pick_company(rng, w, SYSTEM, duplicates, n_dealer)
            region, abbr = REGIONS[c.province]
            code = f"JXS-{abbr}-{n_dealer:04d}"
            dealers.append((code, region))
            yield "distributor", _dealer(rng, c, code, region, when)
        elif roll < 0.7:
            code, region = rng.choice(dealers)
            p = rng.choice(products)
            yield (
                "inventory",
                {
                    "dealer_code": code,
                    "wh_code": "01",
                    "sku": p.material_no,
                    "sku_name": p.name,
                    "region": region,
                    "stock_qty": str(rng.randrange(-2, 400)),
                    "transit_qty": str(rng.choice((0, 0, 20, 50))),
                    "locked_qty": str(rng.randrange(0, 20)),
                    "unit": "台",
                    "sold_qty": str(rng.randrange(0, 300)),
                    "period": f"{when:%Y-%m}",
                    "stat_time": format_datetime(when, DT),
                },
            )
        else:
            n_req += 1
            code, _ = rng.choice(dealers)
            items = []
            for i, p in enumerate(rng.sample(products, rng.randrange(1, 3)), start=1):
                price = (p.std_price * Decimal("1.3")).quantize(Decimal("0.01"))
                items.append(
                    {
                        "row_no": str(i),
                        "sku": p.material_no,
                        "sku_name": p.name,
                        "req_qty": str(rng.choice((20, 40, 60, 100, 200))),
                        "unit": "台",
                        "price": format_amount(price),
                    }
                )
            yield (
                "replenishment",
                {
                    "req_no": f"YH{when:%Y%m%d}{n_req:04d}",
                    "dealer_code": code,
                    "req_date": when.date().isoformat(),
                    "expect_date": (when.date() + timedelta(days=rng.randrange(3, 15))).isoformat(),
                    "wh_code": "01",
                    "status": "1",
                    "items": items,
                    "updated": format_datetime(when, DT),
                },
            )


async def traffic(
    seed: int = 0, rate: float = 1.0, duplicates: float = 0.2
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for item in paced(generate(seed, duplicates), rate):
        yield item


SPEC = SimulatorSpec(
    system=SYSTEM,
    title="DRP",
    entities=(
        SimEntity(
            "distributor",
            "/api/dealers",
            "drp_dealer",
            "dealer_code",
            "JXS-API-{n:06d}",
            DrpDistributor,
        ),
        SimEntity(
            "inventory",
            "/api/channel-stock",
            "drp_channel_stock",
            ("dealer_code", "wh_code", "sku"),
            "CS{n}",
            DrpInventory,
        ),
        SimEntity(
            "factory_stock",
            "/api/factory-stock",
            "drp_factory_stock",
            ("wh_code", "sku"),
            "FS{n}",
            DrpFactoryStock,
        ),
        SimEntity(
            "replenishment",
            "/api/replenishments",
            "drp_replenishment",
            "req_no",
            "YH{n:012d}",
            DrpReplenishment,
        ),
    ),
    generate=generate,
    pushable=frozenset({"distributor", "inventory", "replenishment"}),
)


def create_app(db_path: str | Path, seed: int = 0) -> FastAPI:
    return create_sim_app(SPEC, db_path, seed)
