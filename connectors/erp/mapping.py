"""ERP <-> canonical. Pure functions over the ERP's table-shaped records.

The ERP assigns its own numbers (KUNNR, VBELN, MATNR): a record created by the hub arrives
without one and the ERP answers with it. Numbers from other systems go where an ERP keeps a
foreign reference: the CRM's order number into BSTNK, the PDM drawing number into ZEINR.
"""

from __future__ import annotations

from datetime import datetime
from datetime import time as dt_time
from decimal import Decimal
from typing import Any

from connectors.common.errors import reject
from connectors.common.maptools import cents, default, get, price_places, put, texts
from connectors.common.parse import (
    CN_TZ,
    format_amount,
    format_date,
    format_datetime,
    parse_amount,
    parse_date,
    parse_int,
    require,
)
from connectors.common.valuemaps import ValueMaps
from connectors.erp.native import (
    ErpBom,
    ErpBomItem,
    ErpChannelStock,
    ErpCustomer,
    ErpMaterial,
    ErpOrder,
    ErpOrderItem,
    ErpRelease,
    ErpRequisition,
    ErpStock,
)
from contracts.approval import ApprovalDecision, ApprovalRequest
from contracts.bom import Bom, BomKind, BomLine
from contracts.common import TAX_ID, Address, Attributes, Identifier
from contracts.customer import Customer, CustomerKind
from contracts.inventory import Inventory
from contracts.material import Material
from contracts.order import Order, OrderLine

SYSTEM = "erp"
CUSTOMER_NO = "erp.customer_no"
# The ERP's number of a material, kept on the canonical record so that systems which store
# it as a foreign reference (the PDM's ERP code field) get it through any golden record.
MATERIAL_NO = "erp.material_no"
# A BOM change: positions the ERP is to delete (comma-separated), see bom_from_canonical.
BOM_REMOVED = "bom.removed"
D = "%Y%m%d"
T = "%H%M%S"
NAME_WIDTH = 40


def erp_ts(day: str | None, time: str | None, day_field: str, time_field: str) -> datetime | None:
    """The ERP keeps change date and time in two fields; both make the source timestamp."""
    if not day:
        return None
    on = parse_date(day, day_field, (D,))
    clock = time or "000000"
    if not (len(clock) == 6 and clock.isdigit()):
        raise reject(time_field, time, "must be a time like 093000")
    try:
        at = dt_time(int(clock[:2]), int(clock[2:4]), int(clock[4:]))
    except ValueError:
        raise reject(time_field, time, "must be a time like 093000") from None
    return datetime.combine(on, at, CN_TZ)


def qty(value: Decimal) -> str:
    return format_amount(value, 3)


def _date(value: str | None, field: str) -> Any:
    return parse_date(value, field, (D,)) if value else None


def _fmt(value: Any) -> str | None:
    return format_date(value, D) if value else None


# --------------------------------------------------------------------------- customer
def customer_to_canonical(n: ErpCustomer, vm: ValueMaps) -> Customer:
    ctype = vm.to_canonical("account_group", n.KTOKD, "KTOKD")
    attrs: Attributes = {"erp.account_group": n.KTOKD}
    put(attrs, "erp.name2", n.NAME2)
    put(attrs, "erp.search_term", n.SORTL)
    put(attrs, "erp.fax", n.TELFX)
    if n.ZTERM:
        attrs["erp.payment_terms"] = vm.to_canonical("payment_terms", n.ZTERM, "ZTERM")
    if n.ERDAT:
        attrs["erp.created_on"] = parse_date(n.ERDAT, "ERDAT", (D,)).isoformat()
    if n.LAND1 not in ("", None):
        attrs["erp.country"] = n.LAND1
    identifiers = []
    if n.KUNNR:
        identifiers.append(Identifier(scheme=CUSTOMER_NO, value=n.KUNNR))
    if n.STCEG:
        identifiers.append(Identifier(scheme=TAX_ID, value=n.STCEG))
    addresses = []
    if any((n.REGIO, n.ORT01, n.ORT02, n.STRAS, n.PSTLZ)):
        addresses.append(
            Address(
                type="office",
                country=n.LAND1 or None,
                province=vm.to_canonical("region", n.REGIO, "REGIO") if n.REGIO else None,
                city=n.ORT01,
                district=n.ORT02,
                street=n.STRAS,
                postcode=n.PSTLZ,
            )
        )
    if n.SPERR not in ("", "X"):
        raise reject("SPERR", n.SPERR, "must be 'X' (blocked) or empty")
    industry = vm.to_canonical("industry", n.BRSCH, "BRSCH") if n.BRSCH else None
    return Customer(
        kind=CustomerKind.person if ctype == "individual" else CustomerKind.organization,
        name=require(n.NAME1, "NAME1") + (n.NAME2 or ""),
        identifiers=tuple(identifiers),
        type=ctype,
        frozen=n.SPERR == "X",
        addresses=tuple(addresses),
        phones=texts(n.TELF1),
        emails=texts(n.SMTP_ADDR),
        industry=tuple(industry.split("/")) if industry else (),
        owner=n.ZZSALES,
        credit_limit=parse_amount(n.KLIMK, "KLIMK", places=2) if n.KLIMK else None,
        currency=n.WAERS,
        attributes=attrs,
    )


def customer_from_canonical(c: Customer, vm: ValueMaps) -> ErpCustomer:
    attrs = c.attributes
    name1, name2 = c.name, get(attrs, "erp.name2")
    if name2 and c.name.endswith(name2) and len(c.name) > len(name2):
        name1 = c.name[: -len(name2)]
    elif len(c.name) > NAME_WIDTH:
        # Long names continue in NAME2, as the ERP's own screens do.
        name1, name2 = c.name[:NAME_WIDTH], c.name[NAME_WIDTH:]
    else:
        name2 = None
    if len(name1) > NAME_WIDTH or (name2 and len(name2) > NAME_WIDTH):
        raise reject("name", c.name, f"the ERP holds at most {2 * NAME_WIDTH} characters")
    group = get(attrs, "erp.account_group")
    if group is None or vm.to_canonical("account_group", group, "account_group") != c.type:
        group = vm.to_native("account_group", c.type, "type")
    office = next((a for a in c.addresses if a.type == "office"), None) or (
        c.addresses[0] if c.addresses else None
    )
    terms = get(attrs, "erp.payment_terms")
    created = get(attrs, "erp.created_on")
    phone = c.phones[0] if c.phones else None
    return ErpCustomer(
        KUNNR=c.identifier(CUSTOMER_NO),
        KTOKD=group,
        NAME1=name1,
        NAME2=name2,
        SORTL=get(attrs, "erp.search_term"),
        STCEG=c.identifier(TAX_ID) or c.identifier("uscc"),
        LAND1=(office.country if office and office.country else None)
        or get(attrs, "erp.country")
        or "",
        REGIO=vm.to_native("region", office.province, "addresses.province")
        if office and office.province
        else None,
        ORT01=office.city if office else None,
        ORT02=office.district if office else None,
        STRAS=(office.street or office.line) if office else None,
        PSTLZ=office.postcode if office else None,
        TELF1=phone,
        TELFX=get(attrs, "erp.fax"),
        SMTP_ADDR=c.emails[0] if c.emails else None,
        BRSCH=vm.to_native("industry", "/".join(c.industry), "industry") if c.industry else None,
        KLIMK=format_amount(c.credit_limit) if c.credit_limit is not None else None,
        WAERS=c.currency,
        ZTERM=vm.to_native("payment_terms", terms, "attributes.erp.payment_terms")
        if terms
        else None,
        SPERR="X" if c.frozen else "",
        ZZSALES=c.owner,
        ERDAT=format_date(parse_date(created, "attributes.erp.created_on"), D) if created else None,
    )


# --------------------------------------------------------------------------- order
def _order_line(item: ErpOrderItem, vm: ValueMaps, currency: str, where: str) -> OrderLine:
    quantity = parse_amount(item.KWMENG, f"{where}.KWMENG", places=3)
    if quantity <= 0:
        raise reject(f"{where}.KWMENG", item.KWMENG, "must be greater than 0")
    return OrderLine(
        line_no=parse_int(item.POSNR, f"{where}.POSNR", minimum=1),
        material_ref=require(item.MATNR, f"{where}.MATNR"),
        description=item.ARKTX,
        quantity=quantity,
        uom=vm.to_canonical("unit", item.VRKME, f"{where}.VRKME"),
        unit_price=parse_amount(item.NETPR, f"{where}.NETPR", places=4),
        currency=currency,
    )


def order_to_canonical(n: ErpOrder, vm: ValueMaps) -> Order:
    if not n.ITEMS:
        raise reject("ITEMS", [], "a sales order needs at least one item")
    attrs: Attributes = {
        "erp.vbeln": require(n.VBELN, "VBELN"),
        "erp.sales_org": n.VKORG,
        "erp.channel": n.VTWEG,
    }
    put(attrs, "erp.customer_po", n.BSTNK)
    put(attrs, "erp.created_by", n.ERNAM)
    return Order(
        order_no=n.VBELN,
        customer_ref=require(n.KUNNR, "KUNNR"),
        order_date=parse_date(n.AUDAT, "AUDAT", (D,)),
        requested_date=_date(n.VDATU, "VDATU"),
        currency=n.WAERK,
        status=vm.to_canonical("order_status", n.ZZSTATUS, "ZZSTATUS"),
        lines=tuple(_order_line(it, vm, n.WAERK, f"ITEMS.{i}") for i, it in enumerate(n.ITEMS)),
        kind=vm.to_canonical("order_type", n.AUART, "AUART"),
        attributes=attrs,
    )


def order_from_canonical(o: Order, vm: ValueMaps) -> ErpOrder:
    attrs = o.attributes
    vbeln = get(attrs, "erp.vbeln")
    # An order from the CRM or DRP keeps its number as the customer reference; the ERP
    # gives it a VBELN of its own.
    bstnk = get(attrs, "erp.customer_po") if vbeln else o.order_no
    return ErpOrder(
        VBELN=vbeln,
        AUART=vm.to_native("order_type", o.kind or "sales", "kind"),
        KUNNR=o.customer_ref,
        BSTNK=bstnk,
        AUDAT=format_date(o.order_date, D),
        VDATU=_fmt(o.requested_date),
        WAERK=o.currency,
        ZZSTATUS=vm.to_native("order_status", o.status, "status"),
        VKORG=get(attrs, "erp.sales_org") or default(vm, "sales_org"),
        VTWEG=get(attrs, "erp.channel") or default(vm, "channel"),
        ERNAM=get(attrs, "erp.created_by"),
        ITEMS=tuple(
            ErpOrderItem(
                POSNR=f"{ln.line_no:06d}",
                MATNR=ln.material_ref,
                ARKTX=ln.description,
                KWMENG=qty(ln.quantity),
                VRKME=vm.to_native("unit", ln.uom, f"lines.{i}.uom"),
                NETPR=format_amount(ln.unit_price, price_places(ln.unit_price)),
            )
            for i, ln in enumerate(o.lines)
        ),
    )


# --------------------------------------------------------------------------- material
def material_to_canonical(n: ErpMaterial, vm: ValueMaps) -> Material:
    attrs: Attributes = {MATERIAL_NO: require(n.MATNR, "MATNR")}
    put(attrs, "drawing_no", n.ZEINR)
    put(attrs, "erp.material_group", n.MATKL)
    if n.LVORM not in ("", "X"):
        raise reject("LVORM", n.LVORM, "must be 'X' (flagged for deletion) or empty")
    if n.LVORM == "X":
        attrs["erp.deletion_flag"] = True
    if n.ERSDA:
        attrs["erp.created_on"] = parse_date(n.ERSDA, "ERSDA", (D,)).isoformat()
    return Material(
        code=require(n.MATNR, "MATNR"),
        name=require(n.MAKTX, "MAKTX"),
        specification=n.GROES,
        uom=vm.to_canonical("unit", n.MEINS, "MEINS"),
        category=vm.to_canonical("material_type", n.MTART, "MTART"),
        revision=n.ZEIVR,
        attributes=attrs,
    )


def material_from_canonical(m: Material, vm: ValueMaps) -> ErpMaterial:
    attrs = m.attributes
    created = get(attrs, "erp.created_on")
    # A part from the PDM arrives under its drawing number: that goes to ZEINR and the ERP
    # numbers the material itself.
    drawing = get(attrs, "drawing_no")
    own_code = m.code if drawing != m.code else None
    return ErpMaterial(
        MATNR=own_code,
        MAKTX=m.name,
        MTART=vm.to_native("material_type", m.category or "raw", "category"),
        MATKL=get(attrs, "erp.material_group"),
        MEINS=vm.to_native("unit", m.uom, "uom"),
        GROES=m.specification,
        ZEINR=drawing,
        ZEIVR=m.revision,
        LVORM="X" if attrs.get("erp.deletion_flag") else "",
        ERSDA=format_date(parse_date(created, "attributes.erp.created_on"), D) if created else None,
    )


# --------------------------------------------------------------------------- BOM
def _bom_line(item: ErpBomItem, vm: ValueMaps, where: str) -> BomLine:
    quantity = parse_amount(item.MENGE, f"{where}.MENGE", places=3)
    if quantity <= 0:
        raise reject(f"{where}.MENGE", item.MENGE, "must be greater than 0")
    scrap = parse_amount(item.AUSCH, f"{where}.AUSCH", places=2) if item.AUSCH else Decimal(0)
    if scrap >= 100:
        raise reject(f"{where}.AUSCH", item.AUSCH, "scrap must be below 100 %")
    if item.FLDELETE not in (None, "", "X"):
        raise reject(f"{where}.FLDELETE", item.FLDELETE, "must be 'X' (delete the item) or empty")
    return BomLine(
        position=parse_int(item.POSNR, f"{where}.POSNR", minimum=1),
        child=require(item.IDNRK, f"{where}.IDNRK"),
        quantity=quantity,
        uom=vm.to_canonical("unit", item.MEINS, f"{where}.MEINS"),
        scrap_rate=scrap / 100,
        effective_from=_date(item.DATUV, f"{where}.DATUV"),
        effective_to=_date(item.DATUB, f"{where}.DATUB"),
        reference_designator=item.EBORT,
    )


def removed_positions(attrs: Attributes) -> set[int]:
    """The positions a BOM change deletes (``bom.removed``: "20,30")."""
    text = get(attrs, BOM_REMOVED) or ""
    try:
        return {int(p) for p in text.split(",") if p.strip()}
    except ValueError:
        raise reject(f"attributes.{BOM_REMOVED}", text, "must be positions like 20,30") from None


def bom_to_canonical(n: ErpBom, vm: ValueMaps) -> Bom:
    attrs: Attributes = {"erp.plant": n.WERKS, "erp.usage": n.STLAN, "erp.alternative": n.STLAL}
    deleted = [int(it.POSNR) for it in n.ITEMS if it.FLDELETE == "X"]
    if deleted:
        attrs[BOM_REMOVED] = ",".join(str(p) for p in deleted)
    return Bom(
        parent=require(n.MATNR, "MATNR"),
        revision=require(n.REVLV, "REVLV"),
        kind=BomKind.manufacturing,
        lines=tuple(_bom_line(it, vm, f"ITEMS.{i}") for i, it in enumerate(n.ITEMS)),
        change_order=n.AENNR,
        attributes=attrs,
    )


def bom_from_canonical(b: Bom, vm: ValueMaps) -> ErpBom:
    """A whole BOM, or a change to one: lines at positions named in ``bom.removed`` go with
    the deletion indicator (their last values identify the item, as the ERP's BOM change
    interface wants), the others are added or replace the item at their position. The ERP
    applies it under the change number AENNR (see the simulator's ``apply_bom_change``)."""
    attrs = b.attributes
    removed = removed_positions(attrs)
    return ErpBom(
        MATNR=b.parent,
        WERKS=get(attrs, "erp.plant") or default(vm, "plant"),
        STLAN=get(attrs, "erp.usage") or default(vm, "bom_usage"),
        STLAL=get(attrs, "erp.alternative") or default(vm, "bom_alternative"),
        REVLV=b.revision,
        AENNR=b.change_order,
        ITEMS=tuple(
            ErpBomItem(
                POSNR=f"{ln.position:04d}",
                IDNRK=ln.child,
                MENGE=qty(ln.quantity),
                MEINS=vm.to_native("unit", ln.uom, f"lines.{i}.uom"),
                AUSCH=format_amount(ln.scrap_rate * 100, 2) if ln.scrap_rate else None,
                DATUV=_fmt(ln.effective_from),
                DATUB=_fmt(ln.effective_to),
                EBORT=ln.reference_designator,
                FLDELETE="X" if ln.position in removed else None,
            )
            for i, ln in enumerate(b.lines)
        ),
    )


# --------------------------------------------------------------------------- stock
def stock_to_canonical(n: ErpStock, vm: ValueMaps) -> Inventory:
    def q(value: str, field: str, signed: bool = False) -> Decimal:
        return parse_amount(value, field, places=3, non_negative=not signed)

    as_of = erp_ts(n.LAEDA, n.UZEIT, "LAEDA", "UZEIT")
    assert as_of is not None  # LAEDA is required by the native model
    return Inventory(
        location=f"{require(n.WERKS, 'WERKS')}/{require(n.LGORT, 'LGORT')}",
        region=vm.to_canonical("plant_region", n.WERKS, "WERKS"),
        material=require(n.MATNR, "MATNR"),
        on_hand=q(n.LABST, "LABST", signed=True),
        reserved=q(n.BDMNG, "BDMNG"),
        in_transit=q(n.UMLME, "UMLME"),
        uom=vm.to_canonical("unit", n.MEINS, "MEINS"),
        as_of=as_of,
        attributes={
            "erp.quality_inspection": str(q(n.INSME, "INSME")),
            "erp.blocked": str(q(n.SPEME, "SPEME")),
        },
    )


def stock_from_canonical(i: Inventory, vm: ValueMaps) -> ErpStock:
    plant, _, sloc = i.location.partition("/")
    if not sloc:
        raise reject("location", i.location, "must be <plant>/<storage location> for the ERP")
    attrs = i.attributes
    return ErpStock(
        MATNR=i.material,
        WERKS=plant,
        LGORT=sloc,
        LABST=qty(i.on_hand),
        INSME=qty(Decimal(get(attrs, "erp.quality_inspection") or 0)),
        SPEME=qty(Decimal(get(attrs, "erp.blocked") or 0)),
        UMLME=qty(i.in_transit),
        BDMNG=qty(i.reserved),
        MEINS=vm.to_native("unit", i.uom, "uom"),
        LAEDA=format_datetime(i.as_of, D),
        UZEIT=format_datetime(i.as_of, T),
    )


def channel_stock_to_canonical(n: ErpChannelStock, vm: ValueMaps) -> Inventory:
    def q(value: str, field: str, signed: bool = False) -> Decimal:
        return parse_amount(value, field, places=3, non_negative=not signed)

    as_of = erp_ts(n.LAEDA, n.UZEIT, "LAEDA", "UZEIT")
    assert as_of is not None  # LAEDA is required by the native model
    attrs: Attributes = {}
    put(attrs, CUSTOMER_NO, n.KUNNR)
    put(attrs, "drp.period", n.ZPERIOD)
    return Inventory(
        location=f"{require(n.ZDEALER, 'ZDEALER')}/{require(n.ZWHCODE, 'ZWHCODE')}",
        region=n.ZREGION,
        material=require(n.MATNR, "MATNR"),
        on_hand=q(n.LABST, "LABST", signed=True),
        reserved=q(n.SPEME, "SPEME"),
        in_transit=q(n.UMLME, "UMLME"),
        uom=vm.to_canonical("unit", n.MEINS, "MEINS"),
        as_of=as_of,
        sold_in_period=q(n.ZSOLD, "ZSOLD") if n.ZSOLD else None,
        attributes=attrs,
    )


def channel_stock_from_canonical(i: Inventory, vm: ValueMaps) -> ErpChannelStock:
    dealer, _, wh = i.location.partition("/")
    if not wh:
        raise reject("location", i.location, "must be <dealer code>/<warehouse> for channel stock")
    attrs = i.attributes
    return ErpChannelStock(
        ZDEALER=dealer,
        ZWHCODE=wh,
        MATNR=i.material,
        KUNNR=get(attrs, CUSTOMER_NO),
        ZREGION=i.region,
        LABST=qty(i.on_hand),
        UMLME=qty(i.in_transit),
        SPEME=qty(i.reserved),
        MEINS=vm.to_native("unit", i.uom, "uom"),
        ZSOLD=qty(i.sold_in_period) if i.sold_in_period is not None else None,
        ZPERIOD=get(attrs, "drp.period"),
        LAEDA=format_datetime(i.as_of, D),
        UZEIT=format_datetime(i.as_of, T),
    )


# --------------------------------------------------------------------------- requisition
def requisition_id(banfn: str, bnfpo: str) -> str:
    return f"{banfn}/{bnfpo}"


def requisition_to_canonical(n: ErpRequisition, vm: ValueMaps) -> ApprovalRequest:
    quantity = parse_amount(n.MENGE, "MENGE", places=3)
    if quantity <= 0:
        raise reject("MENGE", n.MENGE, "must be greater than 0")
    price = parse_amount(n.PREIS, "PREIS", places=4)
    submitted = erp_ts(n.BADAT, n.ERZET, "BADAT", "ERZET")
    assert submitted is not None
    attrs: Attributes = {
        "erp.quantity": str(quantity),
        "erp.unit": vm.to_canonical("unit", n.MEINS, "MEINS"),
        "erp.price": str(price),
        "erp.doc_type": n.BSART,
        "erp.purchasing_group": n.EKGRP,
        "erp.release": n.FRGKZ,
    }
    if n.LFDAT:
        attrs["erp.delivery_date"] = parse_date(n.LFDAT, "LFDAT", (D,)).isoformat()
    return ApprovalRequest(
        approval_id=requisition_id(require(n.BANFN, "BANFN"), n.BNFPO),
        type="purchase_requisition",
        title=require(n.TXZ01, "TXZ01"),
        amount=cents(quantity * price),
        currency=n.WAERS,
        requester=require(n.AFNAM, "AFNAM"),
        requester_department=n.ZZDEPT,
        approver=require(n.ZZAPPROVER, "ZZAPPROVER"),
        submitted_at=submitted,
        subject_ref=n.MATNR,
        attributes=attrs,
    )


def requisition_from_canonical(a: ApprovalRequest, vm: ValueMaps) -> ErpRequisition:
    banfn, _, bnfpo = a.approval_id.partition("/")
    attrs = a.attributes
    quantity = Decimal(get(attrs, "erp.quantity") or "1")
    price = Decimal(get(attrs, "erp.price") or str(a.amount or 0))
    delivery = get(attrs, "erp.delivery_date")
    return ErpRequisition(
        BANFN=banfn,
        BNFPO=bnfpo or "00010",
        BSART=get(attrs, "erp.doc_type") or "NB",
        MATNR=a.subject_ref,
        TXZ01=a.title,
        MENGE=qty(quantity),
        MEINS=vm.to_native("unit", get(attrs, "erp.unit") or "PCS", "attributes.erp.unit"),
        PREIS=format_amount(price, price_places(price)),
        WAERS=a.currency,
        AFNAM=a.requester,
        ZZDEPT=a.requester_department,
        ZZAPPROVER=a.approver,
        EKGRP=get(attrs, "erp.purchasing_group") or default(vm, "purchasing_group"),
        BADAT=format_datetime(a.submitted_at, D),
        ERZET=format_datetime(a.submitted_at, T),
        LFDAT=format_date(parse_date(delivery, "attributes.erp.delivery_date"), D)
        if delivery
        else None,
        FRGKZ=get(attrs, "erp.release") or "",
    )


def release_to_canonical(n: ErpRelease, vm: ValueMaps) -> ApprovalDecision:
    decided = erp_ts(n.REL_DATE, n.REL_TIME, "REL_DATE", "REL_TIME")
    assert decided is not None
    return ApprovalDecision(
        approval_id=requisition_id(require(n.BANFN, "BANFN"), require(n.BNFPO, "BNFPO")),
        decision=vm.to_canonical("release_code", n.REL_CODE, "REL_CODE"),
        decided_by=require(n.REL_BY, "REL_BY"),
        decided_at=decided,
        comment=n.REL_TEXT,
    )


def release_from_canonical(d: ApprovalDecision, vm: ValueMaps) -> ErpRelease:
    banfn, _, bnfpo = d.approval_id.partition("/")
    if not bnfpo:
        raise reject("approval_id", d.approval_id, "an ERP requisition id is <BANFN>/<BNFPO>")
    return ErpRelease(
        BANFN=banfn,
        BNFPO=bnfpo,
        REL_CODE=vm.to_native("release_code", d.decision, "decision"),
        REL_BY=d.decided_by,
        REL_DATE=format_datetime(d.decided_at, D),
        REL_TIME=format_datetime(d.decided_at, T),
        REL_TEXT=d.comment,
    )
