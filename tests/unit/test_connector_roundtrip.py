"""native -> canonical -> native keeps every mapped field, per system and entity.

The strategies write native records the way each system writes them (its date and amount
formats, its codes); the property is that a record read from a system and written back to it
is the same record, after travelling as canonical JSON (the envelope body).
"""

from __future__ import annotations

from datetime import date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from connectors.common.base import Connector
from connectors.common.maptools import cents
from connectors.common.parse import CN_TZ, format_amount, format_quantity
from connectors.pdm.mapping import bom_tree_from_canonical
from connectors.registry import build_connectors
from contracts.bom import Bom

CONNECTORS = build_connectors()
CRM, ERP, PDM, OA, DRP = (CONNECTORS[s] for s in ("crm", "erp", "pdm", "oa", "drp"))
SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])

CJK = "华丰宏达永盛鑫源恒泰德力新科美嘉锦泰和盛世海天荣昌电器科技贸易有限公司深圳广州张王李刘陈"
ALNUM = "ABCDEFGHJKLMNPQRSTUVWXYZ0123456789"


def text(max_size: int, alphabet: str = CJK + ALNUM) -> st.SearchStrategy[str]:
    return st.text(alphabet=alphabet, min_size=1, max_size=max_size)


def maybe(strategy: st.SearchStrategy[Any]) -> st.SearchStrategy[Any]:
    return st.none() | strategy


def code(prefix: str, digits: int) -> st.SearchStrategy[str]:
    return st.integers(1, 10**digits - 1).map(lambda n: f"{prefix}{n:0{digits}d}")


def stable(c: Connector, name: str, exclude: tuple[str, ...] = ()) -> st.SearchStrategy[str]:
    """Codes that come back as themselves (where several codes share a value, the one the
    reverse map picks)."""
    vm = c.value_maps[name]
    codes = [k for k, v in vm.codes.items() if vm.to_native(v, "x") == k and v not in exclude]
    return st.sampled_from(sorted(codes))


def any_code(c: Connector, name: str) -> st.SearchStrategy[str]:
    return st.sampled_from(sorted(c.value_maps[name].codes))


days = st.dates(min_value=date(2015, 1, 1), max_value=date(2030, 12, 31))


def moments(seconds: bool = True) -> st.SearchStrategy[datetime]:
    return st.builds(
        lambda d, h, m, s: datetime.combine(d, time(h, m, s if seconds else 0), CN_TZ),
        days,
        st.integers(0, 23),
        st.integers(0, 59),
        st.integers(0, 59),
    )


def money(places: int = 2, top: int = 10**9) -> st.SearchStrategy[Decimal]:
    return st.decimals(min_value=0, max_value=top, places=places, allow_nan=False)


def positive(places: int = 3, top: int = 10**6) -> st.SearchStrategy[Decimal]:
    return st.decimals(
        min_value=Decimal(1).scaleb(-places), max_value=top, places=places, allow_nan=False
    )


mobiles = st.builds(
    lambda p, n, style: [
        f"{p}{n:08d}",
        f"{p}-{n // 10000:04d}-{n % 10000:04d}",
        f"+86 {p} {n // 10000:04d} {n % 10000:04d}",
        f"+86{p}{n:08d}",
    ][style],
    st.sampled_from(["138", "139", "150", "186", "199"]),
    st.integers(0, 99999999),
    st.integers(0, 3),
)
landlines = st.builds(
    lambda a, n, style: [f"{a}-{n}", f"({a}){n}", f"+86-{a[1:]}-{n}"][style],
    st.sampled_from(["0755", "020", "0574", "021"]),
    st.integers(20000000, 89999999),
    st.integers(0, 2),
)
emails = st.builds(lambda u, d: f"{u}@{d}.com", text(10, "abcdefghijk123"), text(8, "abcxyz"))
postcodes = st.integers(100000, 999999).map(str)


def compact(d: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in d.items() if v is not None}


def roundtrip(c: Connector, entity: str, record: dict[str, Any]) -> None:
    b = c.binding(entity)
    native = b.native.model_validate(record)
    # Through JSON, as the body travels in the envelope.
    body = c.to_canonical(entity, native).model_dump(mode="json")
    canonical = b.canonical.model_validate(body)
    assert b.from_canonical is not None
    back = b.from_canonical(canonical, c.value_maps)
    assert back.model_dump() == native.model_dump()


# ------------------------------------------------------------------------------------ CRM
@st.composite
def crm_customers(draw: st.DrawFn) -> dict[str, Any]:
    person = draw(st.booleans())
    status = draw(any_code(CRM, "status"))
    contact = st.builds(
        lambda n, s, t, m, tel, e: compact(
            {"contact_name": n, "salutation": s, "job_title": t, "mobile": m, "tel": tel,
             "email": e}
        ),
        text(10), maybe(text(6)), maybe(text(10)), maybe(mobiles), maybe(landlines),
        maybe(emails),
    )  # fmt: skip
    address = st.builds(
        lambda t, p, c, d, s, z: compact(
            {"addr_type": t, "province": p, "city": c, "district": d, "street": s, "zip_code": z}
        ),
        any_code(CRM, "address_type"), maybe(text(6)), maybe(text(6)), maybe(text(6)),
        text(30), maybe(postcodes),
    )  # fmt: skip
    limit = draw(maybe(money()))
    return compact(
        {
            "cust_no": draw(code("KH", 6)),
            "cust_name": draw(text(40)),
            "cust_type": "06" if person else draw(stable(CRM, "customer_type", ("individual",))),
            "credit_code": None if person else draw(maybe(text(18, ALNUM))),
            "id_card": draw(maybe(text(18, "0123456789X"))) if person else None,
            "company": draw(maybe(text(30))),
            "job_title": draw(maybe(text(10))),
            "mobile": draw(maybe(mobiles)),
            "tel": draw(maybe(landlines)),
            "email": draw(maybe(emails)),
            "addr": draw(maybe(text(60))),
            "addresses": draw(st.lists(address, max_size=2)),
            "contacts": [] if person else draw(st.lists(contact, max_size=2)),
            "stage": draw(maybe(any_code(CRM, "stage"))),
            "status": status,
            "frozen": "N" if status == "0" else draw(st.sampled_from(["Y", "N"])),
            "industry": draw(maybe(any_code(CRM, "industry"))),
            "size": draw(maybe(any_code(CRM, "size"))),
            "source": draw(maybe(any_code(CRM, "source"))),
            "level": draw(maybe(any_code(CRM, "level"))),
            "sales_rep": draw(maybe(code("E", 4))),
            "gender": draw(maybe(any_code(CRM, "gender"))) if person else None,
            "birthday": draw(maybe(days.map(lambda d: f"{d:%Y%m%d}"))) if person else None,
            "credit_limit": format_amount(limit) if limit is not None else None,
            "currency": draw(st.sampled_from(["CNY", "USD"])),
            "last_contact": draw(maybe(days.map(lambda d: f"{d:%Y%m%d}"))),
            "create_time": draw(maybe(moments(False).map(lambda t: f"{t:%Y/%m/%d %H:%M}"))),
            "remark": draw(maybe(text(50))),
        }
    )


def order_items(
    draw: st.DrawFn, unit_codes: st.SearchStrategy[str], qty_places: int = 3
) -> list[tuple[int, Decimal, Decimal, str]]:
    n = draw(st.integers(1, 4))
    numbers = draw(st.lists(st.integers(1, 999), min_size=n, max_size=n, unique=True))
    return [
        (no, draw(positive(qty_places)), draw(money(2, 10**6)), draw(unit_codes)) for no in numbers
    ]


@st.composite
def crm_orders(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(days)
    items = []
    total = Decimal(0)
    for no, qty, price, unit in order_items(draw, stable(CRM, "unit")):
        total += qty * price
        items.append(
            compact(
                {
                    "line_no": str(no),
                    "product_code": draw(code("", 10)),
                    "product_name": draw(maybe(text(20))),
                    "qty": format_quantity(qty),
                    "unit": unit,
                    "price": format_amount(price),
                    "amount": format_amount(cents(qty * price)),
                }
            )
        )
    requested = draw(maybe(st.integers(0, 60)))
    return compact(
        {
            "order_no": draw(code("SO", 10)),
            "cust_no": draw(code("KH", 6)),
            "cust_name": draw(maybe(text(30))),
            "order_date": f"{day:%Y/%m/%d}",
            "delivery_date": f"{day + timedelta(days=requested):%Y/%m/%d}"
            if requested is not None
            else None,
            "currency": draw(st.sampled_from(["CNY", "USD"])),
            "status": draw(any_code(CRM, "order_status")),
            "sales_rep": draw(maybe(code("E", 4))),
            "total_amount": format_amount(cents(total)),
            "items": items,
            "remark": draw(maybe(text(30))),
        }
    )


# ------------------------------------------------------------------------------------ ERP
@st.composite
def erp_customers(draw: st.DrawFn) -> dict[str, Any]:
    limit = draw(maybe(money()))
    with_address = draw(st.booleans())
    return compact(
        {
            "KUNNR": draw(code("", 10)),
            "KTOKD": draw(any_code(ERP, "account_group")),
            "NAME1": draw(text(40)),
            "NAME2": draw(maybe(text(20))),
            "SORTL": draw(maybe(text(10))),
            "STCEG": draw(maybe(text(18, ALNUM))),
            "LAND1": "CN",
            "REGIO": draw(maybe(any_code(ERP, "region"))) if with_address else None,
            "ORT01": draw(maybe(text(8))) if with_address else None,
            "ORT02": draw(maybe(text(8))) if with_address else None,
            "STRAS": draw(text(30)) if with_address else None,
            "PSTLZ": draw(maybe(postcodes)) if with_address else None,
            "TELF1": draw(maybe(landlines)),
            "TELFX": draw(maybe(landlines)),
            "SMTP_ADDR": draw(maybe(emails)),
            "BRSCH": draw(maybe(any_code(ERP, "industry"))),
            "KLIMK": format_amount(limit) if limit is not None else None,
            "WAERS": draw(st.sampled_from(["CNY", "USD"])),
            "ZTERM": draw(maybe(any_code(ERP, "payment_terms"))),
            "SPERR": draw(st.sampled_from(["", "X"])),
            "ZZSALES": draw(maybe(code("E", 4))),
            "ERDAT": draw(maybe(days.map(lambda d: f"{d:%Y%m%d}"))),
        }
    )


@st.composite
def erp_orders(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(days)
    later = draw(maybe(st.integers(0, 60)))
    return compact(
        {
            "VBELN": draw(code("", 10)),
            "AUART": draw(any_code(ERP, "order_type")),
            "KUNNR": draw(code("", 10)),
            "BSTNK": draw(maybe(code("SO", 10))),
            "AUDAT": f"{day:%Y%m%d}",
            "VDATU": f"{day + timedelta(days=later):%Y%m%d}" if later is not None else None,
            "WAERK": draw(st.sampled_from(["CNY", "USD"])),
            "ZZSTATUS": draw(any_code(ERP, "order_status")),
            "VKORG": draw(st.sampled_from(["1000", "2000"])),
            "VTWEG": draw(st.sampled_from(["10", "20"])),
            "ERNAM": draw(maybe(text(10, ALNUM))),
            "ITEMS": [
                compact(
                    {
                        "POSNR": f"{no:06d}",
                        "MATNR": draw(code("", 10)),
                        "ARKTX": draw(maybe(text(20))),
                        "KWMENG": format_amount(qty, 3),
                        "VRKME": unit,
                        "NETPR": format_amount(price),
                    }
                )
                for no, qty, price, unit in order_items(draw, stable(ERP, "unit"))
            ],
        }
    )


@st.composite
def erp_materials(draw: st.DrawFn) -> dict[str, Any]:
    return compact(
        {
            "MATNR": draw(code("", 10)),
            "MAKTX": draw(text(40)),
            "MTART": draw(any_code(ERP, "material_type")),
            "MATKL": draw(maybe(text(6, ALNUM))),
            "MEINS": draw(stable(ERP, "unit")),
            "GROES": draw(maybe(text(30))),
            "ZEINR": draw(maybe(code("RS-", 6))),
            "ZEIVR": draw(maybe(st.sampled_from(["A", "B", "C"]))),
            "LVORM": draw(st.sampled_from(["", "X"])),
            "ERSDA": draw(maybe(days.map(lambda d: f"{d:%Y%m%d}"))),
        }
    )


@st.composite
def erp_boms(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(0, 5))
    positions = draw(st.lists(st.integers(1, 9999), min_size=n, max_size=n, unique=True))
    items = []
    for pos in positions:
        start = draw(maybe(days))
        scrap = draw(maybe(st.decimals(min_value="0.01", max_value="99.99", places=2)))
        items.append(
            compact(
                {
                    "POSNR": f"{pos:04d}",
                    "IDNRK": draw(code("2", 9)),
                    "MENGE": format_amount(draw(positive(3)), 3),
                    "MEINS": draw(stable(ERP, "unit")),
                    "AUSCH": format_amount(scrap) if scrap is not None else None,
                    "DATUV": f"{start:%Y%m%d}" if start else None,
                    "DATUB": f"{start + timedelta(days=draw(st.integers(0, 900))):%Y%m%d}"
                    if start and draw(st.booleans())
                    else None,
                    "EBORT": draw(maybe(text(20, ALNUM + ","))),
                    # a change deletes items with the deletion indicator
                    "FLDELETE": draw(st.sampled_from([None, "X"])),
                }
            )
        )
    return compact(
        {
            "MATNR": draw(code("3", 9)),
            "WERKS": draw(st.sampled_from(["1000", "2000"])),
            "STLAN": "1",
            "STLAL": draw(st.sampled_from(["01", "02"])),
            "REVLV": draw(st.sampled_from(["A", "B", "01"])),
            "AENNR": draw(maybe(code("ECO-", 4))),
            "ITEMS": items,
        }
    )


@st.composite
def erp_stock(draw: st.DrawFn) -> dict[str, Any]:
    def q(signed: bool = False) -> str:
        low = -(10**6) if signed else 0
        value = draw(st.decimals(min_value=low, max_value=10**6, places=3, allow_nan=False))
        return format_amount(value, 3)

    at = draw(moments())
    return {
        "MATNR": draw(code("1", 9)),
        "WERKS": draw(any_code(ERP, "plant_region")),
        "LGORT": draw(st.sampled_from(["1001", "1002"])),
        "LABST": q(signed=True),
        "INSME": q(),
        "SPEME": q(),
        "UMLME": q(),
        "BDMNG": q(),
        "MEINS": draw(stable(ERP, "unit")),
        "LAEDA": f"{at:%Y%m%d}",
        "UZEIT": f"{at:%H%M%S}",
    }


@st.composite
def erp_channel_stock(draw: st.DrawFn) -> dict[str, Any]:
    def q(signed: bool = False) -> str:
        low = -(10**6) if signed else 0
        value = draw(st.decimals(min_value=low, max_value=10**6, places=3, allow_nan=False))
        return format_amount(value, 3)

    at = draw(moments())
    return compact(
        {
            "ZDEALER": draw(code("JXS-GD-", 4)),
            "ZWHCODE": draw(st.sampled_from(["01", "02"])),
            "MATNR": draw(code("1", 9)),
            "KUNNR": draw(maybe(code("", 10))),
            "ZREGION": draw(maybe(st.sampled_from(["华南", "华东"]))),
            "LABST": q(signed=True),
            "UMLME": q(),
            "SPEME": q(),
            "MEINS": draw(stable(ERP, "unit")),
            "ZSOLD": draw(maybe(st.just(q()))),
            "ZPERIOD": draw(maybe(st.just("2026-11"))),
            "LAEDA": f"{at:%Y%m%d}",
            "UZEIT": f"{at:%H%M%S}",
        }
    )


@st.composite
def erp_requisitions(draw: st.DrawFn) -> dict[str, Any]:
    at = draw(moments())
    return compact(
        {
            "BANFN": draw(code("00", 8)),
            "BNFPO": f"{draw(st.integers(1, 999)) * 10:05d}",
            "BSART": "NB",
            "MATNR": draw(maybe(code("1", 9))),
            "TXZ01": draw(text(40)),
            "MENGE": format_amount(draw(positive(3)), 3),
            "MEINS": draw(stable(ERP, "unit")),
            "PREIS": format_amount(draw(money(2, 10**5))),
            "WAERS": "CNY",
            "AFNAM": draw(text(8)),
            "ZZDEPT": draw(maybe(text(8))),
            "ZZAPPROVER": draw(text(8)),
            "EKGRP": "101",
            "BADAT": f"{at:%Y%m%d}",
            "ERZET": f"{at:%H%M%S}",
            "LFDAT": draw(maybe(days.map(lambda d: f"{d:%Y%m%d}"))),
            "FRGKZ": draw(st.sampled_from(["", "X"])),
        }
    )


@st.composite
def erp_releases(draw: st.DrawFn) -> dict[str, Any]:
    at = draw(moments())
    return compact(
        {
            "BANFN": draw(code("00", 8)),
            "BNFPO": "00010",
            "REL_CODE": draw(any_code(ERP, "release_code")),
            "REL_BY": draw(text(8)),
            "REL_DATE": f"{at:%Y%m%d}",
            "REL_TIME": f"{at:%H%M%S}",
            "REL_TEXT": draw(maybe(text(40))),
        }
    )


# ------------------------------------------------------------------------------------ PDM
@st.composite
def pdm_parts(draw: st.DrawFn) -> dict[str, Any]:
    weight = draw(maybe(positive(3, 10**4)))
    return compact(
        {
            "part_no": draw(code("RS7100-", 6)),
            "revision": draw(st.sampled_from(["A", "B", "C"])),
            "part_name": draw(text(30)),
            "spec": draw(maybe(text(40))),
            "material": draw(maybe(text(10))),
            "unit": draw(stable(PDM, "unit")),
            "category": draw(any_code(PDM, "category")),
            "state": draw(any_code(PDM, "state")),
            "designer": draw(maybe(text(6))),
            "weight": format_quantity(weight) if weight is not None else None,
            "erp_code": draw(maybe(code("", 10))),
            "created_at": draw(maybe(moments().map(lambda t: f"{t:%Y-%m-%d %H:%M:%S}"))),
        }
    )


@st.composite
def pdm_boms(draw: st.DrawFn) -> dict[str, Any]:
    counter = iter(range(1, 10_000))
    items: list[dict[str, Any]] = []

    def children(level: int) -> None:
        for i in range(draw(st.integers(1, 3))):
            assembly = level < 3 and draw(st.booleans())
            items.append(
                compact(
                    {
                        "level": str(level),
                        "find_no": str((i + 1) * 10),
                        "part_no": f"P-{next(counter):04d}",
                        "revision": draw(st.sampled_from(["A", "B"]))
                        if assembly
                        else draw(maybe(st.sampled_from(["A", "B"]))),
                        "qty": format_quantity(draw(positive(3, 100))),
                        "unit": draw(stable(PDM, "unit")),
                        "ref_des": draw(maybe(text(10, ALNUM))),
                    }
                )
            )
            if assembly:
                children(level + 1)

    children(1)
    return compact(
        {
            "top_part_no": "TOP-0000",
            "top_revision": draw(st.sampled_from(["A", "B"])),
            "bom_state": draw(any_code(PDM, "state")),
            "eco_no": draw(maybe(code("ECO-2026-", 4))),
            "released_at": draw(maybe(moments().map(lambda t: f"{t:%Y-%m-%d %H:%M:%S}"))),
            "items": items,
        }
    )


@st.composite
def pdm_ecos(draw: st.DrawFn) -> dict[str, Any]:
    at = draw(moments())
    need = draw(maybe(st.integers(1, 60)))
    item = st.builds(
        lambda p, a, f, t, d: compact(
            {"part_no": p, "action": a, "from_rev": f, "to_rev": t, "description": d}
        ),
        code("RS-", 6), any_code(PDM, "eco_action"), maybe(st.sampled_from("AB")),
        maybe(st.sampled_from("BC")), maybe(text(30)),
    )  # fmt: skip
    return compact(
        {
            "eco_no": draw(code("ECO-2026-", 4)),
            "title": draw(text(40)),
            "reason": draw(any_code(PDM, "eco_reason")),
            "urgency": draw(any_code(PDM, "urgency")),
            "initiator": draw(text(6)),
            "dept": draw(maybe(text(6))),
            "approver": draw(text(6)),
            "submit_time": f"{at:%Y-%m-%d %H:%M:%S}",
            "need_date": f"{at.date() + timedelta(days=need):%Y-%m-%d}" if need else None,
            "state": draw(any_code(PDM, "eco_state")),
            "items": draw(st.lists(item, min_size=1, max_size=3)),
        }
    )


# ------------------------------------------------------------------------------------ OA
oa_ids = st.builds(lambda p, n: f"{p}{n:012d}", st.sampled_from(["SP", "SJ", "HT"]),
                   st.integers(1, 10**12 - 1))  # fmt: skip
ext_refs = st.one_of(code("00", 8).map(lambda b: f"{b}/00010"), code("ECO-2026-", 4))


@st.composite
def oa_header(draw: st.DrawFn) -> dict[str, Any]:
    at = draw(moments(False))
    ids = draw(st.sampled_from(["flow", "ext", "both"]))
    later = draw(maybe(st.integers(0, 10_000)))
    chain = draw(st.lists(text(6), max_size=3))
    return compact(
        {
            "flow_id": draw(oa_ids) if ids in ("flow", "both") else None,
            "ext_ref": draw(ext_refs) if ids in ("ext", "both") else None,
            "ext_system": draw(maybe(any_code(OA, "system"))),
            "applicant": draw(text(6)),
            "applicant_dept": draw(maybe(text(6))),
            "approver": draw(text(6)),
            "approver_dept": draw(maybe(text(6))),
            "approver_chain": ">".join(chain) or None,
            "superior": draw(maybe(text(6))),
            "submit_time": f"{at:%Y-%m-%d %H:%M}",
            "deadline": f"{at + timedelta(minutes=later):%Y-%m-%d %H:%M}"
            if later is not None
            else None,
            "relation": draw(any_code(OA, "relation")),
            "status": draw(any_code(OA, "status")),
        }
    )


@st.composite
def oa_approvals(draw: st.DrawFn) -> dict[str, Any]:
    amount = draw(maybe(money(2, 10**6)))
    return compact(
        {
            **draw(oa_header()),
            "flow_type": draw(any_code(OA, "flow_type")),
            "title": draw(text(40)),
            "amount": format_amount(amount) if amount is not None else None,
            "currency": "CNY",
            "biz_ref": draw(maybe(code("KH", 6))),
        }
    )


@st.composite
def oa_upgrades(draw: st.DrawFn) -> dict[str, Any]:
    low = draw(st.integers(0, 3))
    high = draw(st.integers(low + 1, 4))
    return compact(
        {
            **draw(oa_header()),
            "cust_no": draw(code("KH", 6)),
            "cust_name": draw(text(30)),
            "from_status": str(low),
            "to_status": str(high),
            "reason": draw(maybe(text(40))),
        }
    )


@st.composite
def oa_contracts(draw: st.DrawFn) -> dict[str, Any]:
    start = draw(maybe(days))
    return compact(
        {
            **draw(oa_header()),
            "contract_no": draw(code("HT2026-", 4)),
            "contract_name": draw(text(40)),
            "nature": draw(any_code(OA, "contract_nature")),
            "party_no": draw(maybe(code("KH", 6))),
            "party_name": draw(text(30)),
            "amount": format_amount(draw(money(2, 10**7))),
            "currency": "CNY",
            "sign_date": draw(maybe(days.map(str))),
            "start_date": str(start) if start else None,
            "end_date": str(start + timedelta(days=365)) if start else None,
            "over_limit": draw(st.sampled_from(["Y", "N"])),
        }
    )


@st.composite
def oa_decisions(draw: st.DrawFn) -> dict[str, Any]:
    by_flow = draw(st.booleans())
    return compact(
        {
            "flow_id": draw(oa_ids) if by_flow else None,
            "ext_ref": None if by_flow else draw(ext_refs),
            "result": draw(any_code(OA, "result")),
            "approver": draw(text(6)),
            "approve_time": f"{draw(moments(False)):%Y-%m-%d %H:%M}",
            "opinion": draw(maybe(text(40))),
        }
    )


@st.composite
def oa_reminders(draw: st.DrawFn) -> dict[str, Any]:
    by_flow = draw(st.booleans())
    seq = draw(st.integers(1, 6))
    channel = draw(any_code(OA, "channel"))
    due = draw(moments(False))
    sent = draw(maybe(moments(False)))
    return compact(
        {
            "remind_id": draw(code("CB", 12)),
            "flow_id": draw(oa_ids) if by_flow else None,
            "ext_ref": None if by_flow else draw(ext_refs),
            "source": draw(any_code(OA, "system")),
            "remind_level": str(draw(st.integers(1, 5))),
            "channel": channel,
            "to_user": draw(text(6)),
            "content": draw(text(80)),
            "seq": str(seq),
            "prev_remind_id": "CB000000000000" if seq > 1 else None,
            "due_time": f"{due:%Y-%m-%d %H:%M}",
            "send_time": f"{sent:%Y-%m-%d %H:%M}" if sent else None,
            "escalate_to": draw(text(6)) if channel == "ESC" else draw(maybe(text(6))),
        }
    )


# ------------------------------------------------------------------------------------ DRP
@st.composite
def drp_distributors(draw: st.DrawFn) -> dict[str, Any]:
    limit = draw(maybe(money()))
    contact = draw(maybe(text(6)))
    return compact(
        {
            "dealer_code": draw(code("JXS-GD-", 4)),
            "dealer_name": draw(text(40)),
            "short_name": draw(maybe(text(6))),
            "region": draw(any_code(DRP, "region")),
            "province": draw(maybe(text(4))),
            "city": draw(maybe(text(4))),
            "address": draw(maybe(text(30))),
            "contact": contact,
            "contact_mobile": draw(maybe(mobiles)) if contact else None,
            "tel": draw(maybe(landlines)),
            "credit_code": draw(maybe(text(18, ALNUM))),
            "grade": draw(any_code(DRP, "grade")),
            "credit_line": format_amount(limit) if limit is not None else None,
            "join_date": draw(maybe(days.map(str))),
            "status": draw(any_code(DRP, "dealer_status")),
            "manager": draw(maybe(text(4))),
        }
    )


def drp_qty(draw: st.DrawFn, signed: bool = False) -> str:
    low = -1000 if signed else 0
    return format_quantity(draw(st.decimals(min_value=low, max_value=10**5, places=3)))


@st.composite
def drp_inventory(draw: st.DrawFn) -> dict[str, Any]:
    sold = draw(st.booleans())
    return compact(
        {
            "dealer_code": draw(code("JXS-GD-", 4)),
            "wh_code": draw(st.sampled_from(["01", "02"])),
            "sku": draw(code("3", 9)),
            "sku_name": draw(maybe(text(20))),
            "region": draw(any_code(DRP, "region")),
            "stock_qty": drp_qty(draw, signed=True),
            "transit_qty": drp_qty(draw),
            "locked_qty": drp_qty(draw),
            "unit": draw(stable(DRP, "unit")),
            "sold_qty": drp_qty(draw) if sold else None,
            "period": draw(maybe(st.sampled_from(["2026-10", "2026-11"]))),
            "stat_time": f"{draw(moments()):%Y-%m-%d %H:%M:%S}",
        }
    )


@st.composite
def drp_factory_stock(draw: st.DrawFn) -> dict[str, Any]:
    return compact(
        {
            "wh_code": draw(st.sampled_from(["1000/1001", "2000/2001"])),
            "sku": draw(code("3", 9)),
            "on_hand_qty": drp_qty(draw, signed=True),
            "reserved_qty": drp_qty(draw),
            "transit_qty": drp_qty(draw),
            "unit": draw(stable(DRP, "unit")),
            "region": draw(maybe(any_code(DRP, "region"))),
            "stat_time": f"{draw(moments()):%Y-%m-%d %H:%M:%S}",
        }
    )


@st.composite
def drp_replenishments(draw: st.DrawFn) -> dict[str, Any]:
    day = draw(days)
    later = draw(maybe(st.integers(0, 30)))
    return compact(
        {
            "req_no": draw(code("YH", 12)),
            "dealer_code": draw(code("JXS-GD-", 4)),
            "req_date": str(day),
            "expect_date": str(day + timedelta(days=later)) if later is not None else None,
            "wh_code": draw(maybe(st.sampled_from(["01", "02"]))),
            "status": draw(any_code(DRP, "order_status")),
            "remark": draw(maybe(text(30))),
            "items": [
                compact(
                    {
                        "row_no": str(no),
                        "sku": draw(code("3", 9)),
                        "sku_name": draw(maybe(text(20))),
                        "req_qty": format_quantity(qty),
                        "unit": unit,
                        "price": format_amount(price),
                    }
                )
                for no, qty, price, unit in order_items(draw, stable(DRP, "unit"))
            ],
        }
    )


CASES = [
    (CRM, "customer", crm_customers()),
    (CRM, "order", crm_orders()),
    (ERP, "customer", erp_customers()),
    (ERP, "order", erp_orders()),
    (ERP, "material", erp_materials()),
    (ERP, "bom", erp_boms()),
    (ERP, "stock", erp_stock()),
    (ERP, "channel_stock", erp_channel_stock()),
    (ERP, "requisition", erp_requisitions()),
    (ERP, "release", erp_releases()),
    (PDM, "part", pdm_parts()),
    (PDM, "eco", pdm_ecos()),
    (OA, "approval", oa_approvals()),
    (OA, "status_upgrade", oa_upgrades()),
    (OA, "contract", oa_contracts()),
    (OA, "decision", oa_decisions()),
    (OA, "reminder", oa_reminders()),
    (DRP, "distributor", drp_distributors()),
    (DRP, "inventory", drp_inventory()),
    (DRP, "factory_stock", drp_factory_stock()),
    (DRP, "replenishment", drp_replenishments()),
]


@pytest.mark.parametrize(
    ("connector", "entity", "strategy"),
    CASES,
    ids=[f"{c.system}.{e}" for c, e, _ in CASES],
)
def test_native_canonical_native_keeps_every_mapped_field(
    connector: Connector, entity: str, strategy: st.SearchStrategy[dict[str, Any]]
) -> None:
    @SETTINGS
    @given(strategy)
    def check(record: dict[str, Any]) -> None:
        roundtrip(connector, entity, record)

    check()


@SETTINGS
@given(pdm_boms())
def test_pdm_multilevel_bom_splits_and_rebuilds(record: dict[str, Any]) -> None:
    boms = [b for b in PDM.to_canonicals("bom", record) if isinstance(b, Bom)]
    assemblies = {item["part_no"] for item in record["items"]}
    # One canonical BOM for the top part and one for each row that has children below it.
    assert boms[0].parent == record["top_part_no"]
    assert {b.parent for b in boms[1:]} <= assemblies
    assert sum(len(b.lines) for b in boms) == len(record["items"])
    back = bom_tree_from_canonical(boms, PDM.value_maps)
    assert back.model_dump() == PDM.binding("bom").native.model_validate(record).model_dump()


def test_every_binding_with_a_reverse_mapping_has_a_round_trip_case() -> None:
    covered = {(c.system, e) for c, e, _ in CASES} | {("pdm", "bom")}
    declared = {
        (c.system, b.name)
        for c in CONNECTORS.values()
        for b in c.bindings.values()
        if b.from_canonical is not None or b.name == "bom"
    }
    assert declared <= covered, declared - covered
