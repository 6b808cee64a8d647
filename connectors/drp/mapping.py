"""DRP <-> canonical.

A dealer is a canonical customer of type distributor; only distributors are sent to the DRP.
A replenishment request is a canonical order of kind ``replenishment``, priced in CNY (the
DRP has no currency field, so an order in another currency is refused, not converted).
"""

from __future__ import annotations

from collections.abc import Iterable
from decimal import Decimal

from connectors.common.errors import reject
from connectors.common.maptools import get, native_code, price_places, put, texts
from connectors.common.parse import (
    format_amount,
    format_date,
    format_datetime,
    format_quantity,
    parse_amount,
    parse_date,
    parse_datetime,
    parse_int,
    require,
    split_phones,
)
from connectors.common.valuemaps import ValueMaps
from connectors.drp.native import (
    DrpDistributor,
    DrpFactoryStock,
    DrpInventory,
    DrpReplenishment,
    DrpReplenishmentItem,
)
from contracts.common import USCC, Address, Attributes, Contact, Identifier
from contracts.customer import Customer, CustomerKind, CustomerType
from contracts.inventory import Inventory
from contracts.order import Order, OrderLine

SYSTEM = "drp"
DEALER_CODE = "drp.dealer_code"
DT = "%Y-%m-%d %H:%M:%S"
D = "%Y-%m-%d"
CURRENCY = "CNY"


def _qty(value: str, field: str, *, positive: bool = False) -> Decimal:
    number = parse_amount(value, field, places=3)
    if positive and number <= 0:
        raise reject(field, value, "must be greater than 0")
    return number


# --------------------------------------------------------------------------- distributor
def distributor_to_canonical(n: DrpDistributor, vm: ValueMaps) -> Customer:
    status = vm.to_canonical("dealer_status", n.status, "status")
    attrs: Attributes = {
        "drp.region": vm.to_canonical("region", n.region, "region"),
        "drp.grade": vm.to_canonical("grade", n.grade, "grade"),
    }
    put(attrs, "drp.short_name", n.short_name)
    if n.join_date:
        attrs["drp.join_date"] = parse_date(n.join_date, "join_date", (D,)).isoformat()
    identifiers = []
    if n.dealer_code:
        identifiers.append(Identifier(scheme=DEALER_CODE, value=n.dealer_code))
    if n.credit_code:
        identifiers.append(Identifier(scheme=USCC, value=n.credit_code))
    addresses: tuple[Address, ...] = ()
    if any((n.province, n.city, n.address)):
        addresses = (
            Address(
                type="office",
                country="CN",
                province=n.province,
                city=n.city,
                street=n.address,
            ),
        )
    contacts: tuple[Contact, ...] = ()
    if n.contact:
        contacts = (Contact(name=n.contact, phones=texts(n.contact_mobile)),)
    elif n.contact_mobile:
        raise reject("contact", None, "is required when contact_mobile is given")
    return Customer(
        kind=CustomerKind.organization,
        name=require(n.dealer_name, "dealer_name"),
        identifiers=tuple(identifiers),
        type=CustomerType.distributor,
        frozen=status == "suspended",
        addresses=addresses,
        phones=texts(n.tel),
        contacts=contacts,
        owner=n.manager,
        credit_limit=parse_amount(n.credit_line, "credit_line", places=2)
        if n.credit_line
        else None,
        currency=CURRENCY,
        attributes=attrs,
    )


def _province(address: Address, vm: ValueMaps) -> str | None:
    """The province field, the province a one-line address starts with (广东省深圳市...), or
    the province of the city (a CRM card often names the city only: 温州市 -> 浙江省)."""
    if address.province:
        return address.province
    codes = vm["province_region"].codes
    line = address.line or ""
    found = next((p for p in codes if line.startswith(p)), None)
    if found is not None:
        return found
    return _province_of_city(address.city or "", codes) or _province_of_city(line, codes)


def _province_of_city(text: str, codes: Iterable[str]) -> str | None:
    """The province whose full name in ``codes`` holds the one city ``text`` names or starts
    with; None when the city is unknown or the name is ambiguous across provinces."""
    from flows.identity._regions import CITY, gazetteer

    if not text:
        return None
    g = gazetteer()
    places = g.lookup(text) or g.prefix(text)[1]
    provinces = {p.province for p in places if p.level == CITY}
    if len(provinces) != 1:
        return None
    short = provinces.pop()
    return next((c for c in codes if c.startswith(short)), None)


def distributor_from_canonical(c: Customer, vm: ValueMaps) -> DrpDistributor:
    if c.type is not CustomerType.distributor:
        raise reject("type", c.type.value, "the DRP keeps distributors only")
    attrs = c.attributes
    office = next((a for a in c.addresses if a.type == "office"), None) or (
        c.addresses[0] if c.addresses else None
    )
    contact = c.contacts[0] if c.contacts else None
    region_code = None
    region = get(attrs, "drp.region")
    if region is not None:
        region_code = vm.to_native("region", region, "attributes.drp.region")
    elif office is not None and (province := _province(office, vm)):
        # A distributor entered in the CRM or ERP has a province, not a sales region.
        region_code = vm.to_canonical("province_region", province, "addresses.province")
    else:
        raise reject("addresses", None, "a dealer needs a sales region or a province to derive it")
    joined = get(attrs, "drp.join_date")
    return DrpDistributor(
        dealer_code=c.identifier(DEALER_CODE),
        dealer_name=c.name,
        short_name=get(attrs, "drp.short_name"),
        region=region_code,
        province=office.province if office else None,
        city=office.city if office else None,
        address=(office.street or office.line) if office else None,
        contact=contact.name if contact else None,
        contact_mobile=split_phones(contact.phones)[0] if contact else None,
        tel=c.phones[0] if c.phones else None,
        credit_code=c.identifier(USCC) or c.identifier("tax_id"),
        grade=vm.to_native("grade", get(attrs, "drp.grade") or "c", "attributes.drp.grade"),
        credit_line=format_amount(c.credit_limit) if c.credit_limit is not None else None,
        join_date=format_date(parse_date(joined, "attributes.drp.join_date"), D)
        if joined
        else None,
        status="0" if c.frozen else "1",
        manager=c.owner,
    )


# --------------------------------------------------------------------------- inventory
def inventory_to_canonical(n: DrpInventory, vm: ValueMaps) -> Inventory:
    attrs: Attributes = {}
    put(attrs, "drp.sku_name", n.sku_name)
    put(attrs, "drp.period", n.period)
    return Inventory(
        location=f"{require(n.dealer_code, 'dealer_code')}/{require(n.wh_code, 'wh_code')}",
        region=vm.to_canonical("region", n.region, "region"),
        material=require(n.sku, "sku"),
        on_hand=parse_amount(n.stock_qty, "stock_qty", places=3, non_negative=False),
        reserved=_qty(n.locked_qty, "locked_qty"),
        in_transit=_qty(n.transit_qty, "transit_qty"),
        uom=vm.to_canonical("unit", n.unit, "unit"),
        as_of=parse_datetime(n.stat_time, "stat_time", (DT,)),
        sold_in_period=_qty(n.sold_qty, "sold_qty") if n.sold_qty else None,
        attributes=attrs,
    )


def inventory_from_canonical(i: Inventory, vm: ValueMaps) -> DrpInventory:
    dealer, _, wh = i.location.partition("/")
    if not wh:
        raise reject("location", i.location, "must be <dealer code>/<warehouse> for the DRP")
    if i.region is None:
        raise reject("region", None, "the DRP files channel stock by sales region")
    return DrpInventory(
        dealer_code=dealer,
        wh_code=wh,
        sku=i.material,
        sku_name=get(i.attributes, "drp.sku_name"),
        region=vm.to_native("region", i.region, "region"),
        stock_qty=format_quantity(i.on_hand),
        transit_qty=format_quantity(i.in_transit),
        locked_qty=format_quantity(i.reserved),
        unit=vm.to_native("unit", i.uom, "uom"),
        sold_qty=format_quantity(i.sold_in_period) if i.sold_in_period is not None else None,
        period=get(i.attributes, "drp.period"),
        stat_time=format_datetime(i.as_of, DT),
    )


def factory_stock_to_canonical(n: DrpFactoryStock, vm: ValueMaps) -> Inventory:
    return Inventory(
        location=require(n.wh_code, "wh_code"),
        region=vm.to_canonical("region", n.region, "region") if n.region else None,
        material=require(n.sku, "sku"),
        on_hand=parse_amount(n.on_hand_qty, "on_hand_qty", places=3, non_negative=False),
        reserved=_qty(n.reserved_qty, "reserved_qty"),
        in_transit=_qty(n.transit_qty, "transit_qty"),
        uom=vm.to_canonical("unit", n.unit, "unit"),
        as_of=parse_datetime(n.stat_time, "stat_time", (DT,)),
    )


def factory_stock_from_canonical(i: Inventory, vm: ValueMaps) -> DrpFactoryStock:
    # The ERP's plants name regions in words (华南); the DRP files them by code, and a plant
    # without a region the DRP knows is published without one rather than guessed.
    region = None
    if i.region is not None and i.region in vm["region"].canonical_values:
        region = vm.to_native("region", i.region, "region")
    return DrpFactoryStock(
        wh_code=i.location,
        sku=i.material,
        on_hand_qty=format_quantity(i.on_hand),
        reserved_qty=format_quantity(i.reserved),
        transit_qty=format_quantity(i.in_transit),
        unit=vm.to_native("unit", i.uom, "uom"),
        region=region,
        stat_time=format_datetime(i.as_of, DT),
    )


# --------------------------------------------------------------------------- replenishment
def _line(item: DrpReplenishmentItem, vm: ValueMaps, where: str) -> OrderLine:
    return OrderLine(
        line_no=parse_int(item.row_no, f"{where}.row_no", minimum=1),
        material_ref=require(item.sku, f"{where}.sku"),
        description=item.sku_name,
        quantity=_qty(item.req_qty, f"{where}.req_qty", positive=True),
        uom=vm.to_canonical("unit", item.unit, f"{where}.unit"),
        unit_price=parse_amount(item.price, f"{where}.price", places=4),
        currency=CURRENCY,
    )


def replenishment_to_canonical(n: DrpReplenishment, vm: ValueMaps) -> Order:
    if not n.items:
        raise reject("items", [], "a replenishment request needs at least one item")
    attrs: Attributes = {"drp.status": n.status}
    put(attrs, "drp.wh_code", n.wh_code)
    put(attrs, "drp.remark", n.remark)
    return Order(
        order_no=require(n.req_no, "req_no"),
        customer_ref=require(n.dealer_code, "dealer_code"),
        order_date=parse_date(n.req_date, "req_date", (D,)),
        requested_date=parse_date(n.expect_date, "expect_date", (D,)) if n.expect_date else None,
        currency=CURRENCY,
        status=vm.to_canonical("order_status", n.status, "status"),
        lines=tuple(_line(it, vm, f"items.{i}") for i, it in enumerate(n.items)),
        kind="replenishment",
        attributes=attrs,
    )


def replenishment_from_canonical(o: Order, vm: ValueMaps) -> DrpReplenishment:
    if o.currency != CURRENCY:
        raise reject("currency", o.currency, "the DRP trades in CNY only")
    attrs = o.attributes
    return DrpReplenishment(
        req_no=o.order_no,
        dealer_code=o.customer_ref,
        req_date=format_date(o.order_date, D),
        expect_date=format_date(o.requested_date, D) if o.requested_date else None,
        wh_code=get(attrs, "drp.wh_code"),
        status=native_code(vm, "order_status", o.status, attrs, "drp.status", "status"),
        remark=get(attrs, "drp.remark"),
        items=tuple(
            DrpReplenishmentItem(
                row_no=str(ln.line_no),
                sku=ln.material_ref,
                sku_name=ln.description,
                req_qty=format_quantity(ln.quantity),
                unit=vm.to_native("unit", ln.uom, f"lines.{i}.uom"),
                price=format_amount(ln.unit_price, price_places(ln.unit_price)),
            )
            for i, ln in enumerate(o.lines)
        ),
    )
