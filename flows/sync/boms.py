"""BOM routing decisions (pure): which parts a design BOM needs translated, its lines in the
target's material codes, and what a new revision changes against the lines last sent.

A PDM design BOM names its parent and children by drawing number; the ERP's manufacturing
BOM by material number. Every part is a reference ``material:pdm:<drawing no>`` (see
``orders.Ref``) that the target knows once the cross-reference table gives its local id.

Lines are compared in the target's codes, position by position, in a normal form
(``line_form``: decimals without trailing zeros), so ``2`` and ``2.000`` are one quantity.
The first time a BOM goes to a target it is sent whole; after that only a change: the lines
added or changed (new values) and the lines removed (last values, marked in
``attributes["bom.removed"]``). ``apply`` is what the target does with it (the ERP's change
under a change number): the change applied to the lines last sent gives the new lines.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from flows.sync.orders import Ref

REMOVED = "bom.removed"  # positions the change deletes: "20,30"
CHANGE = "bom.change"  # "full" (first send) or "delta"
ORIGIN = "origin"

Line = dict[str, Any]
Lines = dict[int, Line]


def refs_of(bom: Mapping[str, Any], source: str) -> list[Ref]:
    """Every part the target must know: the parent first, children in line order."""
    refs = [Ref("material", source, str(bom["parent"]))]
    for line in bom.get("lines") or ():
        refs.append(Ref("material", source, str(line["child"])))
    return list(dict.fromkeys(refs))


def _number(value: Any) -> str:
    d = Decimal(str(value)).normalize()
    return format(d, "f") if d == d.to_integral_value() else str(d)


def line_form(line: Mapping[str, Any]) -> Line:
    """A line in the normal form lines are stored and compared in (absent = None)."""
    return {
        "position": int(line["position"]),
        "child": str(line["child"]),
        "quantity": _number(line["quantity"]),
        "uom": str(line["uom"]),
        "scrap_rate": _number(line.get("scrap_rate") or 0),
        "effective_from": line.get("effective_from"),
        "effective_to": line.get("effective_to"),
        "reference_designator": line.get("reference_designator"),
    }


def translate_lines(bom: Mapping[str, Any], source: str, local: Mapping[Ref, str]) -> Lines:
    """The BOM's lines by position, children in the target's codes (all must be in
    ``local``)."""
    out: Lines = {}
    for line in bom.get("lines") or ():
        form = line_form(line)
        form["child"] = local[Ref("material", source, str(line["child"]))]
        out[form["position"]] = form
    return out


@dataclass(frozen=True)
class Change:
    changed: tuple[int, ...]  # positions added or changed, ascending
    removed: tuple[int, ...]  # positions gone, ascending

    @property
    def empty(self) -> bool:
        return not self.changed and not self.removed


def diff(old: Mapping[int, Line], new: Mapping[int, Line]) -> Change:
    changed = tuple(sorted(p for p, line in new.items() if old.get(p) != line))
    removed = tuple(sorted(p for p in old if p not in new))
    return Change(changed, removed)


def plan(
    bom: Mapping[str, Any],
    parent: str,
    new: Lines,
    last: Mapping[int, Line] | None,
    last_revision: str | None,
    origin_key: str,
) -> dict[str, Any] | None:
    """The canonical manufacturing BOM to send for ``bom`` (whose lines, translated, are
    ``new``; the parent's target code is ``parent``): whole when nothing was sent before, a
    change otherwise, None when the target has it already (same revision, same lines)."""
    attributes: dict[str, Any] = {ORIGIN: origin_key}
    if last is None:
        lines = [new[p] for p in sorted(new)]
        attributes[CHANGE] = "full"
    else:
        change = diff(last, new)
        if change.empty and str(bom["revision"]) == last_revision:
            return None
        lines = [new[p] for p in change.changed] + [dict(last[p]) for p in change.removed]
        attributes[CHANGE] = "delta"
        if change.removed:
            attributes[REMOVED] = ",".join(str(p) for p in change.removed)
    return {
        "parent": parent,
        "revision": str(bom["revision"]),
        "kind": "manufacturing",
        "lines": [_wire(line) for line in lines],
        "change_order": bom.get("change_order"),
        "attributes": attributes,
    }


def _wire(line: Line) -> dict[str, Any]:
    return {k: v for k, v in line.items() if v is not None}


def removed_of(body: Mapping[str, Any]) -> set[int]:
    text = str((body.get("attributes") or {}).get(REMOVED) or "")
    return {int(p) for p in text.split(",") if p.strip()}


def apply(last: Mapping[int, Line], body: Mapping[str, Any]) -> Lines:
    """The lines a target holds after applying ``body`` to ``last``: a whole BOM replaces
    them; a change replaces or adds its lines by position and deletes the removed ones."""
    full = (body.get("attributes") or {}).get(CHANGE) != "delta"
    out: Lines = {} if full else {p: dict(line) for p, line in last.items()}
    removed = removed_of(body)
    for line in body.get("lines") or ():
        form = line_form(line)
        if form["position"] in removed:
            out.pop(form["position"], None)
        else:
            out[form["position"]] = form
    return out


def stored(lines: Mapping[int, Line]) -> dict[str, Line]:
    """As the JSON column keeps them (object keys are strings)."""
    return {str(p): dict(line) for p, line in sorted(lines.items())}


def loaded(data: Mapping[str, Any] | None) -> Lines | None:
    if data is None:
        return None
    return {int(p): dict(line) for p, line in data.items()}
