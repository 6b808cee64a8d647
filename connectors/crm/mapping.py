"""CRM <-> canonical. Pure functions: a native record and the value maps in, a record out.

What the canonical model has no field for travels in ``attributes`` under ``crm.*`` so that a
record read from the CRM and written back is the same card (the round-trip property tests
hold this for every mapped field).
"""

from __future__ import annotations

from decimal import Decimal

from connectors.common.errors import reject
from connectors.common.maptools import get, price_places, put, texts
from connectors.common.parse import (
    format_amount,
    format_date,
    format_datetime,
    format_flag,
    format_quantity,
    parse_amount,
    parse_date,
    parse_datetime,
    parse_flag,
    parse_int,
    require,
    split_phones,
)
from connectors.common.valuemaps import ValueMaps
from connectors.crm.native import CrmAddress, CrmContact, CrmCustomer, CrmOrder, CrmOrderItem
from contracts.common import NATIONAL_ID, USCC, Address, Attributes, Contact, Identifier
from contracts.customer import Customer, CustomerKind
from contracts.order import Order, OrderLine

SYSTEM = "crm"
CUSTOMER_NO = "crm.customer_no"
DATE = "%Y/%m/%d"
DATETIME = "%Y/%m/%d %H:%M"
COMPACT_DATE = "%Y%m%d"


# --------------------------------------------------------------------------- customer
def address_to_canonical(a: CrmAddress, vm: ValueMaps, where: str) -> Address:
    return Address(
        type=vm.to_canonical("address_type", a.addr_type, f"{where}.addr_type"),
        country="CN",
        province=a.province,
        city=a.city,
        district=a.district,
        street=a.street,
        postcode=a.zip_code,
    )


def contact_to_canonical(c: CrmContact, where: str) -> Contact:
    require(c.contact_name, f"{where}.contact_name")
    return Contact(
        name=c.contact_name,
        salutation=c.salutation,
        title=c.job_title,
        phones=texts(c.mobile, c.tel),
        emails=texts(c.email),
    )


def customer_to_canonical(n: CrmCustomer, vm: ValueMaps) -> Customer:
    require(n.cust_name, "cust_name")
    ctype = vm.to_canonical("customer_type", n.cust_type, "cust_type")
    person = ctype == "individual"
    if person and n.credit_code:
        raise reject(
            "credit_code", n.credit_code, "an individual (cust_type 06) has no credit code"
        )
    if not person and n.id_card:
        raise reject("id_card", n.id_card, "only an individual (cust_type 06) carries an ID card")
    if not person and (n.gender or n.birthday):
        field = "gender" if n.gender else "birthday"
        raise reject(field, getattr(n, field), "only an individual (cust_type 06) has one")
    identifiers = []
    if n.cust_no:
        identifiers.append(Identifier(scheme=CUSTOMER_NO, value=n.cust_no))
    if n.credit_code:
        identifiers.append(Identifier(scheme=USCC, value=n.credit_code))
    if n.id_card:
        identifiers.append(Identifier(scheme=NATIONAL_ID, value=n.id_card))
    addresses = []
    if n.addr:
        # The card's main address is one free line; it leads the list, typed ones follow.
        addresses.append(Address(type="home" if person else "office", country="CN", line=n.addr))
    addresses += [address_to_canonical(a, vm, f"addresses.{i}") for i, a in enumerate(n.addresses)]
    attrs: Attributes = {}
    if n.stage is not None:
        attrs["crm.stage"] = vm.to_canonical("stage", n.stage, "stage")
    if n.level is not None:
        attrs["crm.level"] = vm.to_canonical("level", n.level, "level")
    if n.gender is not None:
        attrs["crm.gender"] = vm.to_canonical("gender", n.gender, "gender")
    if n.last_contact is not None:
        attrs["crm.last_contact"] = parse_date(n.last_contact, "last_contact").isoformat()
    if n.create_time is not None:
        attrs["crm.created_at"] = parse_datetime(n.create_time, "create_time").isoformat()
    put(attrs, "crm.company", n.company)
    put(attrs, "crm.job_title", n.job_title)
    put(attrs, "crm.remark", n.remark)
    industry = vm.to_canonical("industry", n.industry, "industry") if n.industry else None
    return Customer(
        kind=CustomerKind.person if person else CustomerKind.organization,
        name=n.cust_name,
        identifiers=tuple(identifiers),
        type=ctype,
        status=vm.to_canonical("status", n.status, "status"),
        frozen=parse_flag(n.frozen, "frozen"),
        addresses=tuple(addresses),
        phones=texts(n.mobile, n.tel),
        emails=texts(n.email),
        contacts=tuple(contact_to_canonical(c, f"contacts.{i}") for i, c in enumerate(n.contacts)),
        industry=tuple(industry.split("/")) if industry else (),
        size=vm.to_canonical("size", n.size, "size") if n.size else None,
        acquisition_channel=vm.to_canonical("source", n.source, "source") if n.source else None,
        owner=n.sales_rep,
        credit_limit=parse_amount(n.credit_limit, "credit_limit", places=2)
        if n.credit_limit
        else None,
        currency=n.currency or "CNY",
        birth_date=parse_date(n.birthday, "birthday") if n.birthday else None,
        attributes=attrs,
    )


def _is_main_line(a: Address) -> bool:
    return a.line is not None and not any((a.province, a.city, a.district, a.street, a.postcode))


def customer_from_canonical(c: Customer, vm: ValueMaps) -> CrmCustomer:
    attrs = c.attributes
    addresses = list(c.addresses)
    addr = None
    if addresses and _is_main_line(addresses[0]):
        addr = addresses.pop(0).line
    mobile, tel = split_phones(c.phones)
    created = get(attrs, "crm.created_at")
    last_contact = get(attrs, "crm.last_contact")
    return CrmCustomer(
        cust_no=c.identifier(CUSTOMER_NO),
        cust_name=c.name,
        cust_type=vm.to_native("customer_type", c.type, "type"),
        credit_code=c.identifier(USCC),
        id_card=c.identifier(NATIONAL_ID),
        company=get(attrs, "crm.company"),
        job_title=get(attrs, "crm.job_title"),
        mobile=mobile,
        tel=tel,
        email=c.emails[0] if c.emails else None,
        addr=addr,
        addresses=tuple(
            CrmAddress(
                addr_type=vm.to_native("address_type", a.type, f"addresses.{i}.type"),
                province=a.province,
                city=a.city,
                district=a.district,
                # A one-line address from another system still has to land somewhere.
                street=a.street or a.line,
                zip_code=a.postcode,
            )
            for i, a in enumerate(addresses)
        ),
        contacts=tuple(
            CrmContact(
                contact_name=p.name,
                salutation=p.salutation,
                job_title=p.title,
                mobile=split_phones(p.phones)[0],
                tel=split_phones(p.phones)[1],
                email=p.emails[0] if p.emails else None,
            )
            for p in c.contacts
        ),
        stage=vm.to_native("stage", attrs["crm.stage"], "attributes.crm.stage")
        if attrs.get("crm.stage")
        else None,
        status=vm.to_native("status", c.status, "status"),
        frozen=format_flag(c.frozen),
        industry=vm.to_native("industry", "/".join(c.industry), "industry") if c.industry else None,
        size=vm.to_native("size", c.size, "size") if c.size else None,
        source=vm.to_native("source", c.acquisition_channel, "acquisition_channel")
        if c.acquisition_channel
        else None,
        level=vm.to_native("level", attrs["crm.level"], "attributes.crm.level")
        if attrs.get("crm.level")
        else None,
        sales_rep=c.owner,
        gender=vm.to_native("gender", attrs["crm.gender"], "attributes.crm.gender")
        if attrs.get("crm.gender")
        else None,
        birthday=format_date(c.birth_date, COMPACT_DATE) if c.birth_date else None,
        credit_limit=format_amount(c.credit_limit) if c.credit_limit is not None else None,
        currency=c.currency,
        last_contact=format_date(
            parse_date(last_contact, "attributes.crm.last_contact"), COMPACT_DATE
        )
        if last_contact
        else None,
        create_time=format_datetime(parse_datetime(created, "attributes.crm.created_at"), DATETIME)
        if created
        else None,
        remark=get(attrs, "crm.remark"),
    )


# --------------------------------------------------------------------------- order
def _item_to_line(item: CrmOrderItem, vm: ValueMaps, currency: str, where: str) -> OrderLine:
    qty = parse_amount(item.qty, f"{where}.qty", places=3)
    if qty <= 0:
        raise reject(f"{where}.qty", item.qty, "must be greater than 0")
    price = parse_amount(item.price, f"{where}.price", places=4)
    if item.amount is not None:
        amount = parse_amount(item.amount, f"{where}.amount", places=2)
        expected = (qty * price).quantize(Decimal("0.01"))
        if amount != expected:
            raise reject(
                f"{where}.amount",
                item.amount,
                f"must equal qty x price = {format_amount(expected)}",
            )
    require(item.product_code, f"{where}.product_code")
    return OrderLine(
        line_no=parse_int(item.line_no, f"{where}.line_no", minimum=1),
        material_ref=item.product_code,
        description=item.product_name,
        quantity=qty,
        uom=vm.to_canonical("unit", item.unit, f"{where}.unit"),
        unit_price=price,
        currency=currency,
    )


def order_to_canonical(n: CrmOrder, vm: ValueMaps) -> Order:
    lines = tuple(
        _item_to_line(item, vm, n.currency, f"items.{i}") for i, item in enumerate(n.items)
    )
    if not lines:
        raise reject("items", [], "an order needs at least one item")
    if n.total_amount is not None:
        total = parse_amount(n.total_amount, "total_amount", places=2)
        expected = sum((ln.amount for ln in lines), Decimal(0)).quantize(Decimal("0.01"))
        if total != expected:
            raise reject(
                "total_amount",
                n.total_amount,
                f"must equal the sum of items = {format_amount(expected)}",
            )
    attrs: Attributes = {}
    put(attrs, "crm.cust_name", n.cust_name)
    put(attrs, "crm.sales_rep", n.sales_rep)
    put(attrs, "crm.remark", n.remark)
    return Order(
        order_no=require(n.order_no, "order_no"),
        customer_ref=require(n.cust_no, "cust_no"),
        order_date=parse_date(n.order_date, "order_date"),
        requested_date=parse_date(n.delivery_date, "delivery_date") if n.delivery_date else None,
        currency=n.currency,
        status=vm.to_canonical("order_status", n.status, "status"),
        lines=lines,
        kind="sales",
        attributes=attrs,
    )


def order_from_canonical(o: Order, vm: ValueMaps) -> CrmOrder:
    attrs = o.attributes
    items = tuple(
        CrmOrderItem(
            line_no=str(ln.line_no),
            product_code=ln.material_ref,
            product_name=ln.description,
            qty=format_quantity(ln.quantity),
            unit=vm.to_native("unit", ln.uom, f"lines.{i}.uom"),
            price=format_amount(ln.unit_price, price_places(ln.unit_price)),
            amount=format_amount(ln.amount.quantize(Decimal("0.01"))),
        )
        for i, ln in enumerate(o.lines)
    )
    return CrmOrder(
        order_no=o.order_no,
        cust_no=o.customer_ref,
        cust_name=get(attrs, "crm.cust_name"),
        order_date=format_date(o.order_date, DATE),
        delivery_date=format_date(o.requested_date, DATE) if o.requested_date else None,
        currency=o.currency,
        status=vm.to_native("order_status", o.status, "status"),
        sales_rep=get(attrs, "crm.sales_rep"),
        total_amount=format_amount(o.total.quantize(Decimal("0.01"))),
        items=items,
        remark=get(attrs, "crm.remark"),
    )
