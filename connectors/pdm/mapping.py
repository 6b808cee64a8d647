"""PDM <-> canonical.

Parts keep their drawing number as the material code (and in ``attributes.drawing_no``, the
key the ERP stores in ZEINR). A multi-level design BOM becomes one single-level canonical BOM
per assembly in it; the reverse (:func:`bom_tree_from_canonical`) rebuilds the indented list
from those pieces. An ECO is an approval request of type ``engineering_change``.

The PDM keeps the ERP's material number of a part in its ERP code field (ERP物料编码),
``attributes.erp.material_no`` in canonical form: the hub writes it back once the ERP has
numbered a part. The hub never creates parts here: a material without a drawing number is
refused (the PDM holds designed parts only).
"""

from __future__ import annotations

from datetime import datetime, time
from decimal import Decimal

from connectors.common.errors import reject
from connectors.common.maptools import get, native_code, put
from connectors.common.parse import (
    CN_TZ,
    format_date,
    format_datetime,
    format_quantity,
    parse_amount,
    parse_date,
    parse_datetime,
    parse_int,
    require,
)
from connectors.common.valuemaps import ValueMaps
from connectors.pdm.native import PdmBom, PdmBomItem, PdmEco, PdmEcoItem, PdmPart
from contracts.approval import ApprovalRequest
from contracts.bom import Bom, BomKind, BomLine
from contracts.common import Attributes
from contracts.material import Material

SYSTEM = "pdm"
ERP_CODE = "erp.material_no"
DT = "%Y-%m-%d %H:%M:%S"
D = "%Y-%m-%d"
# A "need by" date means by the end of that working day.
END_OF_DAY = time(18, 0)


def _ts(value: str | None, field: str) -> datetime | None:
    return parse_datetime(value, field, (DT,)) if value else None


def _fmt_ts(value: str | None, field: str) -> str | None:
    return format_datetime(parse_datetime(value, field), DT) if value else None


# --------------------------------------------------------------------------- part
def part_to_canonical(n: PdmPart, vm: ValueMaps) -> Material:
    attrs: Attributes = {
        "drawing_no": require(n.part_no, "part_no"),
        "pdm.category": n.category,
        "pdm.state": vm.to_canonical("state", n.state, "state"),
    }
    put(attrs, "pdm.material", n.material)
    put(attrs, "pdm.designer", n.designer)
    put(attrs, ERP_CODE, n.erp_code)
    if n.weight:
        attrs["pdm.weight_g"] = str(parse_amount(n.weight, "weight", places=3))
    created = _ts(n.created_at, "created_at")
    if created:
        attrs["pdm.created_at"] = created.isoformat()
    return Material(
        code=n.part_no,
        name=require(n.part_name, "part_name"),
        specification=n.spec,
        uom=vm.to_canonical("unit", n.unit, "unit"),
        category=vm.to_canonical("category", n.category, "category"),
        revision=require(n.revision, "revision"),
        attributes=attrs,
    )


def part_from_canonical(m: Material, vm: ValueMaps) -> PdmPart:
    attrs = m.attributes
    drawing = get(attrs, "drawing_no")
    if drawing is None:
        raise reject(
            "attributes.drawing_no",
            None,
            "the PDM keeps designed parts only: a material without a drawing number is not "
            "created there",
        )
    state = get(attrs, "pdm.state")
    return PdmPart(
        part_no=drawing,
        revision=m.revision or "A",
        part_name=m.name,
        spec=m.specification,
        material=get(attrs, "pdm.material"),
        unit=vm.to_native("unit", m.uom, "uom"),
        category=native_code(
            vm, "category", m.category or "raw", attrs, "pdm.category", "category"
        ),
        state=vm.to_native("state", state, "attributes.pdm.state") if state else "IW",
        designer=get(attrs, "pdm.designer"),
        weight=format_quantity(Decimal(w)) if (w := get(attrs, "pdm.weight_g")) else None,
        erp_code=get(attrs, ERP_CODE),
        created_at=_fmt_ts(get(attrs, "pdm.created_at"), "attributes.pdm.created_at"),
    )


# --------------------------------------------------------------------------- design BOM
def bom_to_canonical(n: PdmBom, vm: ValueMaps) -> list[Bom]:
    """One canonical BOM per assembly of the indented list, top part first."""
    require(n.top_part_no, "top_part_no")
    if not n.items:
        raise reject("items", [], "a design BOM needs at least one item")
    state = vm.to_canonical("state", n.bom_state, "bom_state")
    released = _ts(n.released_at, "released_at")
    # path[k]: the row whose children sit at level k+1 (path[0] is the top part).
    path: list[tuple[str, str, int]] = [(n.top_part_no, n.top_revision, 0)]
    order: list[tuple[str, str, int]] = [path[0]]
    lines: dict[str, list[BomLine]] = {n.top_part_no: []}
    child_revs: dict[str, Attributes] = {n.top_part_no: {}}
    closed: set[str] = set()  # assemblies whose subtree the list has already left
    previous = 0
    for i, item in enumerate(n.items):
        where = f"items.{i}"
        level = parse_int(item.level, f"{where}.level", minimum=1)
        if level > previous + 1:
            raise reject(
                f"{where}.level",
                item.level,
                f"must be at most one deeper than the row above ({previous})",
            )
        previous = level
        closed.update(p for p, _, _ in path[level:])
        del path[level:]
        parent = path[level - 1][0]
        if parent in closed:
            raise reject(
                f"{where}.part_no",
                item.part_no,
                f"assembly {parent} is expanded twice in this BOM; list its children once",
            )
        if any(item.part_no == p for p, _, _ in path):
            raise reject(f"{where}.part_no", item.part_no, "a part cannot contain itself")
        line = _bom_line(item, vm, where)
        lines.setdefault(parent, []).append(line)
        if item.revision:
            child_revs.setdefault(parent, {})[f"pdm.child_rev.{line.position}"] = item.revision
        path.append((item.part_no, item.revision or "", level))
        if all(p != item.part_no for p, _, _ in order):
            order.append((item.part_no, item.revision or "", level))
    boms = []
    for part_no, revision, depth in order:
        if not lines.get(part_no):
            continue
        if not revision:
            raise reject("items", part_no, "an assembly row needs its revision")
        attrs: Attributes = {
            "pdm.state": state,
            "pdm.top": n.top_part_no,
            "pdm.depth": depth,
            **child_revs.get(part_no, {}),
        }
        if released:
            attrs["pdm.released_at"] = released.isoformat()
        boms.append(
            Bom(
                parent=part_no,
                revision=revision,
                kind=BomKind.design,
                lines=tuple(lines[part_no]),
                change_order=n.eco_no,
                attributes=attrs,
            )
        )
    return boms


def _bom_line(item: PdmBomItem, vm: ValueMaps, where: str) -> BomLine:
    quantity = parse_amount(item.qty, f"{where}.qty", places=4)
    if quantity <= 0:
        raise reject(f"{where}.qty", item.qty, "must be greater than 0")
    return BomLine(
        position=parse_int(item.find_no, f"{where}.find_no", minimum=1),
        child=require(item.part_no, f"{where}.part_no"),
        quantity=quantity,
        uom=vm.to_canonical("unit", item.unit, f"{where}.unit"),
        reference_designator=item.ref_des,
    )


def bom_tree_from_canonical(boms: list[Bom], vm: ValueMaps) -> PdmBom:
    """Rebuild the indented list from the single-level pieces of one top part."""
    if not boms:
        raise reject("boms", [], "need the BOM of the top part")
    by_parent = {b.parent: b for b in boms}
    top = next((b for b in boms if b.attributes.get("pdm.depth") == 0), boms[0])
    items: list[PdmBomItem] = []

    def walk(bom: Bom, level: int) -> None:
        for ln in bom.lines:
            sub = by_parent.get(ln.child)
            rev = get(bom.attributes, f"pdm.child_rev.{ln.position}")
            items.append(
                PdmBomItem(
                    level=str(level),
                    find_no=str(ln.position),
                    part_no=ln.child,
                    revision=rev or (sub.revision if sub else None),
                    qty=format_quantity(ln.quantity),
                    unit=vm.to_native("unit", ln.uom, "lines.uom"),
                    ref_des=ln.reference_designator,
                )
            )
            if sub is not None and sub is not bom:
                walk(sub, level + 1)

    walk(top, 1)
    state = get(top.attributes, "pdm.state")
    return PdmBom(
        top_part_no=top.parent,
        top_revision=top.revision,
        bom_state=vm.to_native("state", state, "attributes.pdm.state") if state else "IW",
        eco_no=top.change_order,
        released_at=_fmt_ts(get(top.attributes, "pdm.released_at"), "attributes.pdm.released_at"),
        items=tuple(items),
    )


# --------------------------------------------------------------------------- ECO
def eco_to_canonical(n: PdmEco, vm: ValueMaps) -> ApprovalRequest:
    submitted = parse_datetime(n.submit_time, "submit_time", (DT,))
    deadline = None
    if n.need_date:
        day = parse_date(n.need_date, "need_date", (D,))
        deadline = datetime.combine(day, END_OF_DAY, CN_TZ)
        if deadline < submitted:
            raise reject(
                "need_date", n.need_date, f"must not be before submit_time {n.submit_time}"
            )
    if not n.items:
        raise reject("items", [], "an ECO names at least one affected part")
    attrs: Attributes = {
        "pdm.reason": vm.to_canonical("eco_reason", n.reason, "reason"),
        "pdm.urgency": vm.to_canonical("urgency", n.urgency, "urgency"),
        "pdm.state": vm.to_canonical("eco_state", n.state, "state"),
        "pdm.items": len(n.items),
    }
    # Attributes are flat (no nested lists), so the affected parts are numbered keys.
    for i, it in enumerate(n.items):
        attrs[f"pdm.item.{i}.part_no"] = require(it.part_no, f"items.{i}.part_no")
        attrs[f"pdm.item.{i}.action"] = vm.to_canonical(
            "eco_action", it.action, f"items.{i}.action"
        )
        put(attrs, f"pdm.item.{i}.from_rev", it.from_rev)
        put(attrs, f"pdm.item.{i}.to_rev", it.to_rev)
        put(attrs, f"pdm.item.{i}.description", it.description)
    return ApprovalRequest(
        approval_id=require(n.eco_no, "eco_no"),
        type="engineering_change",
        title=require(n.title, "title"),
        requester=require(n.initiator, "initiator"),
        requester_department=n.dept,
        approver=require(n.approver, "approver"),
        submitted_at=submitted,
        deadline=deadline,
        subject_ref=n.items[0].part_no,
        attributes=attrs,
    )


def eco_from_canonical(a: ApprovalRequest, vm: ValueMaps) -> PdmEco:
    attrs = a.attributes
    count = int(str(attrs.get("pdm.items", 0)))
    items = tuple(
        PdmEcoItem(
            part_no=str(attrs[f"pdm.item.{i}.part_no"]),
            action=vm.to_native("eco_action", attrs[f"pdm.item.{i}.action"], f"item.{i}.action"),
            from_rev=get(attrs, f"pdm.item.{i}.from_rev"),
            to_rev=get(attrs, f"pdm.item.{i}.to_rev"),
            description=get(attrs, f"pdm.item.{i}.description"),
        )
        for i in range(count)
    )
    return PdmEco(
        eco_no=a.approval_id,
        title=a.title,
        reason=vm.to_native("eco_reason", attrs.get("pdm.reason", "design_defect"), "reason"),
        urgency=vm.to_native("urgency", attrs.get("pdm.urgency", "medium"), "urgency"),
        initiator=a.requester,
        dept=a.requester_department,
        approver=a.approver,
        submit_time=format_datetime(a.submitted_at, DT),
        need_date=format_date(a.deadline.astimezone(CN_TZ).date(), D) if a.deadline else None,
        state=vm.to_native("eco_state", attrs.get("pdm.state", "in_approval"), "state"),
        items=items,
    )
