"""CRM simulator: its native API over SQLite, and sales staff typing cards and orders.

Traffic is deterministic for a seed. Sales staff create customer cards (organizations, and
individuals buying directly), update them as deals move (stage, status, last contact), record
opportunities and enter sales orders for the cards they own, with products from the ERP's
material list. With probability ``duplicates`` a new card is a company the other systems also
know, typed the way this clerk types it.
"""

from __future__ import annotations

import random
from collections.abc import AsyncIterator, Iterator
from datetime import timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

from fastapi import FastAPI

from connectors.common import fakedata as fd
from connectors.common.parse import format_amount, format_date, format_datetime
from connectors.common.simulator_base import (
    SimEntity,
    SimulatorSpec,
    create_sim_app,
    paced,
)
from connectors.crm.native import CrmCustomer, CrmOpportunity, CrmOrder

SYSTEM = "crm"
INDUSTRY_CODES = {
    ("制造业", "家用电器"): "C385",
    ("制造业", "电子元器件"): "C397",
    ("批发和零售业", "家电批发"): "F513",
    ("批发和零售业", "电商零售"): "F529",
    ("批发和零售业", "百货零售"): "F521",
    ("服务业", "售后维修"): "O812",
}
SIZE_CODES = ((20, "1"), (100, "2"), (500, "3"), (1000, "4"))
SALES_REPS = ("E1023", "E1031", "E1045", "E1052", "E1077")


def _size(headcount: int) -> str:
    return next((code for limit, code in SIZE_CODES if headcount < limit), "5")


def _org_card(rng: random.Random, c: fd.Company, cust_no: str, when: Any) -> dict[str, Any]:
    contact = c.contacts[0]
    title = rng.choice(fd.TITLES)
    status = rng.choices(("0", "1", "2", "3", "4"), weights=(1, 6, 4, 1, 1))[0]
    card: dict[str, Any] = {
        "cust_no": cust_no,
        "cust_name": c.name_variant(rng),
        "cust_type": rng.choices(("01", "02", "03", "04", "05"), weights=(70, 3, 15, 8, 4))[0],
        "mobile": fd.phone_variant(rng, contact.mobile),
        "tel": fd.phone_variant(rng, c.landline, c.area_code),
        "addr": c.address if rng.random() < 0.7 else f"{c.city}{c.district}{c.street}",
        "contacts": [
            {
                "contact_name": p.name,
                "salutation": fd.salutation(p, title if i == 0 else None),
                "job_title": title if i == 0 else rng.choice(fd.TITLES),
                "mobile": fd.phone_variant(rng, p.mobile),
            }
            for i, p in enumerate(c.contacts)
        ],
        "stage": rng.choice(("01", "02", "02", "03")),
        "status": status,
        "frozen": "Y" if status != "0" and rng.random() < 0.05 else "N",
        "industry": INDUSTRY_CODES[c.industry],
        "size": _size(c.headcount),
        "source": rng.choice(("01", "02", "03", "04", "05")),
        "level": "V" if rng.random() < 0.15 else "N",
        "sales_rep": rng.choice(SALES_REPS),
        "last_contact": format_date(when.date(), "%Y%m%d"),
        "create_time": format_datetime(when),
    }
    if rng.random() < 0.8:
        card["credit_code"] = c.uscc
    if rng.random() < 0.4:
        card["addresses"] = [
            {
                "addr_type": "02",
                "province": c.province,
                "city": f"{c.city}市",
                "district": c.district,
                "street": c.street,
                "zip_code": c.postcode,
            }
        ]
    if status in ("2", "3", "4"):
        card["credit_limit"] = format_amount(c.credit_limit)
        card["currency"] = "CNY"
    return card


def _person_card(rng: random.Random, cust_no: str, when: Any) -> dict[str, Any]:
    p = fd.person(rng)
    card: dict[str, Any] = {
        "cust_no": cust_no,
        "cust_name": fd.person_name_variant(rng, p),
        "cust_type": "06",
        "mobile": fd.phone_variant(rng, p.mobile),
        "stage": rng.choice(("01", "02")),
        "status": "1",
        "frozen": "N",
        "source": rng.choice(("02", "03", "05")),
        "level": "N",
        "sales_rep": rng.choice(SALES_REPS),
        "gender": "M" if p.male else "F",
        "birthday": format_date(p.birth, "%Y%m%d"),
        "create_time": format_datetime(when),
    }
    if rng.random() < 0.5:
        card["id_card"] = p.resident_id
    return card


def _order(
    rng: random.Random, w: fd.World, order_no: str, cust: dict[str, Any], when: Any
) -> dict[str, Any]:
    items = []
    total = Decimal(0)
    products = [w.parts[p] for p in w.products]
    spares = [p for p in w.leaves() if p.category in ("RM-MT", "RM-EL")][:12]
    chosen = rng.sample(products, rng.randrange(1, 3))
    if rng.random() < 0.3:
        chosen.append(rng.choice(spares))
    for i, part in enumerate(chosen, start=1):
        qty = Decimal(rng.choice((10, 20, 50, 100, 200, 500)))
        price = (part.std_price * Decimal(rng.choice(("1.8", "2.2", "2.5")))).quantize(
            Decimal("0.01")
        )
        amount = (qty * price).quantize(Decimal("0.01"))
        total += amount
        items.append(
            {
                "line_no": str(i),
                "product_code": part.material_no,
                "product_name": part.name,
                "qty": str(qty),
                "unit": "台" if part.category == "FG" else "个",
                "price": format_amount(price),
                "amount": format_amount(amount),
            }
        )
    delivery = when.date() + timedelta(days=rng.randrange(7, 30))
    return {
        "order_no": order_no,
        "cust_no": cust["cust_no"],
        "cust_name": cust["cust_name"],
        "order_date": format_date(when.date()),
        "delivery_date": format_date(delivery),
        "currency": "CNY",
        "status": rng.choice(("20", "20", "30")),
        "sales_rep": cust.get("sales_rep"),
        "total_amount": format_amount(total),
        "items": items,
    }


def generate(seed: int, duplicates: float = 0.2) -> Iterator[tuple[str, dict[str, Any]]]:
    """Endless CRM traffic for a seed: (native entity, native record)."""
    w = fd.world(seed)
    rng = random.Random(f"{SYSTEM}:{seed}")
    clock = fd.clock(rng)
    cards: dict[str, dict[str, Any]] = {}
    n_cust = n_order = n_opp = 0
    while True:
        when = clock.tick()
        roll = rng.random()
        if roll < 0.4 or len(cards) < 3:
            n_cust += 1
            cust_no = f"KH{n_cust:06d}"
            if rng.random() < 0.15:
                card = _person_card(rng, cust_no, when)
            else:
                c = fd.pick_company(rng, w, SYSTEM, duplicates, n_cust)
                card = _org_card(rng, c, cust_no, when)
            cards[cust_no] = card
            yield "customer", card
        elif roll < 0.55:
            card = dict(cards[rng.choice(sorted(cards))])
            card["last_contact"] = format_date(when.date(), "%Y%m%d")
            if card["cust_type"] != "06" and card["status"] in ("1", "2") and rng.random() < 0.5:
                card["stage"] = "02"
            card["update_time"] = format_datetime(when)
            cards[card["cust_no"]] = card
            yield "customer", card
        elif roll < 0.85:
            n_order += 1
            cust = cards[rng.choice(sorted(cards))]
            yield "order", _order(rng, w, f"SO{when:%Y%m%d}{n_order:04d}", cust, when)
        else:
            n_opp += 1
            cust = cards[rng.choice(sorted(cards))]
            close = when.date() + timedelta(days=rng.randrange(14, 90))
            yield (
                "opportunity",
                {
                    "opp_no": f"OP{n_opp:06d}",
                    "opp_name": f"{cust['cust_name']} 年度采购",
                    "cust_no": cust["cust_no"],
                    "stage": rng.choice(("01", "02", "03", "04")),
                    "amount": format_amount(Decimal(rng.randrange(20, 2000)) * 1000),
                    "expected_close": format_date(close, "%Y%m%d"),
                    "remind_date": format_date(close - timedelta(days=7), "%Y%m%d"),
                    "sales_rep": cust.get("sales_rep"),
                    "create_time": format_datetime(when),
                },
            )


async def traffic(
    seed: int = 0, rate: float = 1.0, duplicates: float = 0.2
) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    async for item in paced(generate(seed, duplicates), rate):
        yield item


SPEC = SimulatorSpec(
    system=SYSTEM,
    title="CRM",
    entities=(
        SimEntity(
            "customer", "/api/customers", "crm_customer", "cust_no", "KH{n:06d}", CrmCustomer
        ),
        SimEntity("order", "/api/orders", "crm_order", "order_no", "SO{n:08d}", CrmOrder),
        SimEntity(
            "opportunity",
            "/api/opportunities",
            "crm_opportunity",
            "opp_no",
            "OP{n:06d}",
            CrmOpportunity,
        ),
    ),
    generate=generate,
    pushable=frozenset({"customer", "order"}),
)


def create_app(db_path: str | Path, seed: int = 0) -> FastAPI:
    return create_sim_app(SPEC, db_path, seed)
