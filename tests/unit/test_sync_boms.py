"""BOM diff and translation (flows/sync/boms.py), the ERP's application of a BOM change
(connectors/erp: mapping + simulator), and the inventory routing rules (flows/sync/inventory.py).
"""

from __future__ import annotations

from typing import Any

from hypothesis import given, settings
from hypothesis import strategies as st

from connectors.common.base import native_json
from connectors.erp.simulator import apply_bom_change
from connectors.registry import CONNECTORS
from flows.sync import boms, inventory
from flows.sync.orders import Ref

ERP = CONNECTORS["erp"]


def line(pos: int, child: str, qty: str = "1", uom: str = "PCS", **kw: Any) -> dict[str, Any]:
    return {"position": pos, "child": child, "quantity": qty, "uom": uom, **kw}


def design(rev: str, *lines: dict[str, Any], eco: str | None = None) -> dict[str, Any]:
    return {
        "parent": "RS7100-000",
        "revision": rev,
        "kind": "design",
        "lines": list(lines),
        "change_order": eco,
    }


CODES = {
    "RS7100-000": "0000500001",
    "RS7100-101": "0000500002",
    "RS7100-102": "0000500003",
    "RS7100-103": "0000500004",
}
LOCAL = {Ref("material", "pdm", k): v for k, v in CODES.items()}


def test_refs_name_parent_first_then_children_once() -> None:
    bom = design("A", line(10, "RS7100-101"), line(20, "RS7100-102"), line(30, "RS7100-101"))
    assert [str(r) for r in boms.refs_of(bom, "pdm")] == [
        "material:pdm:RS7100-000",
        "material:pdm:RS7100-101",
        "material:pdm:RS7100-102",
    ]


def test_first_send_is_the_whole_bom_in_target_codes() -> None:
    bom = design("A", line(20, "RS7100-102", "2.000"), line(10, "RS7100-101"), eco="ECO-1")
    new = boms.translate_lines(bom, "pdm", LOCAL)
    body = boms.plan(bom, "0000500001", new, None, None, "pdm:RS7100-000")
    assert body is not None
    assert body["parent"] == "0000500001" and body["kind"] == "manufacturing"
    assert [(ln["position"], ln["child"], ln["quantity"]) for ln in body["lines"]] == [
        (10, "0000500002", "1"),
        (20, "0000500003", "2"),
    ]
    assert body["change_order"] == "ECO-1"
    assert body["attributes"]["bom.change"] == "full"
    assert "bom.removed" not in body["attributes"]


def test_new_revision_sends_only_changed_added_and_removed_lines() -> None:
    a = design("A", line(10, "RS7100-101"), line(20, "RS7100-102", "2"), line(30, "RS7100-103"))
    b = design(
        "B",
        line(10, "RS7100-101"),  # unchanged
        line(20, "RS7100-102", "3"),  # quantity changed
        line(40, "RS7100-103", "1.5"),  # added
        eco="ECO-7",
    )  # 30 removed
    last = boms.translate_lines(a, "pdm", LOCAL)
    new = boms.translate_lines(b, "pdm", LOCAL)
    body = boms.plan(b, "0000500001", new, last, "A", "pdm:RS7100-000")
    assert body is not None
    sent = {ln["position"]: (ln["child"], ln["quantity"]) for ln in body["lines"]}
    assert sent == {20: ("0000500003", "3"), 40: ("0000500004", "1.5"), 30: ("0000500004", "1")}
    assert body["attributes"]["bom.removed"] == "30"
    assert body["attributes"]["bom.change"] == "delta"
    assert body["revision"] == "B" and body["change_order"] == "ECO-7"


def test_same_revision_same_lines_sends_nothing_but_a_new_revision_does() -> None:
    a = design("A", line(10, "RS7100-101", "2"))
    last = boms.translate_lines(a, "pdm", LOCAL)
    # the same lines published again, quantity written differently: nothing to send
    again = design("A", line(10, "RS7100-101", "2.000"))
    assert boms.plan(again, "P", boms.translate_lines(again, "pdm", LOCAL), last, "A", "k") is None
    # a new revision with no line changes still tells the ERP (revision level, change number)
    b = design("B", line(10, "RS7100-101", "2"), eco="ECO-9")
    body = boms.plan(b, "P", boms.translate_lines(b, "pdm", LOCAL), last, "A", "k")
    assert body is not None and body["lines"] == [] and body["revision"] == "B"


# ----------------------------------------------------------------------------- properties
children = st.sampled_from(["0000500002", "0000500003", "0000500004", "0000500005"])
quantities = st.decimals(min_value="0.001", max_value="999", places=3).map(str)
line_sets = st.dictionaries(
    st.integers(1, 60).map(lambda p: p * 10),
    st.tuples(children, quantities, st.sampled_from(["PCS", "KG", "SET"])),
    max_size=8,
)


def as_lines(spec: dict[int, tuple[str, str, str]]) -> boms.Lines:
    return {p: boms.line_form(line(p, c, q, u)) for p, (c, q, u) in spec.items()}


def bom_of(lines: boms.Lines, rev: str) -> dict[str, Any]:
    return {"parent": "X", "revision": rev, "lines": list(lines.values())}


@settings(max_examples=200, deadline=None)
@given(line_sets, line_sets)
def test_a_change_applied_to_the_last_lines_gives_the_new_lines(
    old_spec: dict[int, tuple[str, str, str]], new_spec: dict[int, tuple[str, str, str]]
) -> None:
    old, new = as_lines(old_spec), as_lines(new_spec)
    body = boms.plan(bom_of(new, "B"), "0000500001", new, old, "A", "k")
    assert body is not None
    assert boms.apply(old, body) == new
    # only what differs travels: every unchanged line stays home
    unchanged = {p for p in new if old.get(p) == new[p]}
    assert not unchanged & {ln["position"] for ln in body["lines"]}
    assert len(body["lines"]) == len(new) - len(unchanged) + len(set(old) - set(new))


@settings(max_examples=100, deadline=None)
@given(line_sets, line_sets)
def test_the_erp_holds_the_new_revision_after_applying_the_change(
    old_spec: dict[int, tuple[str, str, str]], new_spec: dict[int, tuple[str, str, str]]
) -> None:
    """Through the ERP mapping and the ERP simulator's BOM update: the stored BOM after the
    change has exactly the new revision's items."""
    old, new = as_lines(old_spec), as_lines(new_spec)
    first = boms.plan(bom_of(old, "A"), "0000500001", old, None, None, "k")
    change = boms.plan(bom_of(new, "B"), "0000500001", new, old, "A", "k")
    whole = boms.plan(bom_of(new, "B"), "0000500001", new, None, None, "k")
    assert first is not None and change is not None and whole is not None
    stored = native_json(ERP.to_native("bom", first)[1])
    after = apply_bom_change(stored, native_json(ERP.to_native("bom", change)[1]))
    expected = native_json(ERP.to_native("bom", whole)[1])
    assert after["ITEMS"] == expected["ITEMS"]
    assert after["REVLV"] == "B"
    assert all("FLDELETE" not in it for it in after["ITEMS"])


def test_erp_change_deletes_flagged_items_and_keeps_unnamed_ones() -> None:
    stored = {
        "MATNR": "0000500001",
        "REVLV": "A",
        "ITEMS": [
            {"POSNR": "0010", "IDNRK": "A1", "MENGE": "1.000", "MEINS": "ST"},
            {"POSNR": "0020", "IDNRK": "A2", "MENGE": "2.000", "MEINS": "ST"},
            {"POSNR": "0030", "IDNRK": "A3", "MENGE": "3.000", "MEINS": "ST"},
        ],
    }
    change = {
        "MATNR": "0000500001",
        "REVLV": "B",
        "AENNR": "ECO-7",
        "ITEMS": [
            {"POSNR": "0020", "IDNRK": "A2", "MENGE": "2.000", "MEINS": "ST", "FLDELETE": "X"},
            {"POSNR": "0005", "IDNRK": "A5", "MENGE": "5.000", "MEINS": "ST"},
        ],
    }
    after = apply_bom_change(stored, change)
    assert [(i["POSNR"], i["IDNRK"]) for i in after["ITEMS"]] == [
        ("0005", "A5"),
        ("0010", "A1"),
        ("0030", "A3"),
    ]
    assert after["REVLV"] == "B" and after["AENNR"] == "ECO-7"


# ----------------------------------------------------------------------------- inventory
def stock(location: str, region: str | None = None) -> dict[str, Any]:
    return {
        "location": location,
        "region": region,
        "material": "4000000001",
        "on_hand": "12",
        "uom": "PCS",
        "as_of": "2026-11-24T09:30:00+08:00",
    }


def test_erp_stock_takes_the_region_configured_for_its_plant() -> None:
    regions = {"1000": "华南", "2000": "华东"}
    assert inventory.to_drp(stock("2000/2001", "华南"), regions)["region"] == "华东"
    # a plant the configuration does not name keeps what the ERP connector derived
    assert inventory.to_drp(stock("3000/3001", "西南"), regions)["region"] == "西南"


def test_channel_stock_carries_the_dealers_erp_customer_number_when_known() -> None:
    body = stock("JXS-GD-0001/01") | {"attributes": {"drp.period": "2026-11"}}
    out = inventory.to_erp(body, "0000500007")
    assert out["attributes"] == {"drp.period": "2026-11", "erp.customer_no": "0000500007"}
    assert inventory.to_erp(body, None)["attributes"] == {"drp.period": "2026-11"}
    assert inventory.dealer_of("JXS-GD-0001/01") == "JXS-GD-0001"
