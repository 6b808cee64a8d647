"""The pure decisions of the sync flows: field ownership, quarantine, order translation,
the credit check and the configuration's errors."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from flows.sync import master, orders
from flows.sync.config import MasterSync, OrderSync, SyncConfigError, load_config, parse_config
from flows.sync.orders import Ref

CONF = MasterSync(
    subscribers=("crm", "erp", "drp"),
    ownership={"credit_limit": ("erp",), "status": ("crm",)},
)
LAST = {"kind": "organization", "name": "苏州恒达", "credit_limit": "1000", "status": "potential"}


def test_first_fan_out_sends_every_field() -> None:
    p = master.plan(
        "customer", {**LAST, "golden_id": "G-1", "members": []}, "crm", None, False, CONF
    )
    assert p.body == LAST and not p.rejected and not p.quarantined


def test_a_field_changed_by_a_system_that_does_not_own_it_keeps_its_value() -> None:
    event = {**LAST, "credit_limit": "900000", "name": "苏州恒达机电", "golden_id": "G-1"}
    p = master.plan("customer", event, "crm", LAST, False, CONF)
    assert p.body is not None
    assert p.body["credit_limit"] == "1000", "only ERP may change the credit limit"
    assert p.body["name"] == "苏州恒达机电", "a field nobody owns changes from anywhere"
    assert list(p.rejected) == ["credit_limit"]
    assert "900000" in p.rejected["credit_limit"] and "only erp" in p.rejected["credit_limit"]


def test_the_owner_may_change_its_field() -> None:
    p = master.plan("customer", {**LAST, "credit_limit": "5000"}, "erp", LAST, False, CONF)
    assert p.body is not None and p.body["credit_limit"] == "5000" and not p.rejected


def test_a_change_that_only_touches_rejected_fields_sends_nothing() -> None:
    p = master.plan("customer", {**LAST, "credit_limit": "1"}, "drp", LAST, False, CONF)
    assert p.body is None and list(p.rejected) == ["credit_limit"]


def test_an_unchanged_record_sends_nothing() -> None:
    event = {**LAST, "golden_id": "G-1", "winners": {"name": "crm"}, "members": []}
    assert master.plan("customer", event, "crm", LAST, False, CONF).body is None


def test_a_merged_away_record_is_frozen_and_marked_not_destroyed() -> None:
    event = {"golden_id": "G-2", "merged_into": "G-1", "members": []}
    p = master.plan("customer", event, "hub", LAST, False, CONF)
    assert p.quarantined and p.body is not None
    assert p.body["frozen"] is True and p.body["name"] == LAST["name"]
    assert p.body["attributes"]["quarantine"] == "merged into G-1"
    # sent once: a repeat of the event changes nothing
    assert master.plan("customer", event, "hub", p.body, True, CONF).body is None


def test_a_record_deleted_everywhere_is_quarantined_and_an_invalid_one_only_marked() -> None:
    gone = {"golden_id": "G-1", "members": [], "winners": {}}
    p = master.plan("customer", gone, "crm", {**LAST, "status": "invalid"}, False, CONF)
    assert p.body is not None and p.quarantined
    assert "frozen" not in p.body, "an invalid customer cannot be frozen (contract rule)"
    assert p.body["attributes"]["quarantine"] == "deleted in crm"
    ignore = MasterSync(subscribers=("erp",), deletes="ignore")
    assert master.plan("customer", gone, "crm", LAST, False, ignore).body is None


def test_a_quarantined_record_that_comes_back_is_sent_again() -> None:
    frozen = master.quarantine("customer", LAST, "deleted in crm")
    p = master.plan("customer", LAST, "crm", frozen, True, CONF)
    assert p.body == LAST and not p.quarantined


def test_origin_is_the_last_system_on_the_trace() -> None:
    assert master.origin_of(("crm", "hub"), "hub") == "crm"
    assert master.origin_of(("drp", "crm"), "hub") == "crm"
    assert master.origin_of((), "hub") == "hub"


# -- orders ------------------------------------------------------------------------------------

ORDER_CONF = OrderSync(target="erp", sources=("crm", "drp"), material_codes={"crm": "erp"})
ORDER = {
    "order_no": "SO1",
    "customer_ref": "KH000001",
    "order_date": "2026-11-24",
    "lines": [
        {
            "line_no": 1,
            "material_ref": "4000000001",
            "quantity": "2",
            "uom": "PCS",
            "unit_price": "10.5",
        },
        {
            "line_no": 2,
            "material_ref": "4000000001",
            "quantity": "1",
            "uom": "PCS",
            "unit_price": "1",
        },
    ],
}


def test_an_order_needs_its_customer_and_each_material_once() -> None:
    assert orders.refs_of(ORDER, "crm", ORDER_CONF) == [
        Ref("customer", "crm", "KH000001"),
        Ref("material", "erp", "4000000001"),
    ]
    # a source without material_codes quotes its own codes
    assert orders.refs_of(ORDER, "drp", ORDER_CONF)[1] == Ref("material", "drp", "4000000001")


def test_translation_puts_the_targets_keys_and_remembers_the_origin() -> None:
    local = {
        Ref("customer", "crm", "KH000001"): "0000500001",
        Ref("material", "erp", "4000000001"): "4000000001",
    }
    body = orders.translate(ORDER, "crm", local, ORDER_CONF, "crm:SO1")
    assert body["customer_ref"] == "0000500001"
    assert [line["material_ref"] for line in body["lines"]] == ["4000000001", "4000000001"]
    assert body["attributes"] == {"origin": "crm:SO1", "origin_customer": "KH000001"}
    assert ORDER["customer_ref"] == "KH000001", "the input is not changed"
    assert orders.missing(orders.refs_of(ORDER, "crm", ORDER_CONF), {}) == [
        Ref("customer", "crm", "KH000001"),
        Ref("material", "erp", "4000000001"),
    ]


@given(
    st.lists(
        st.tuples(
            st.decimals(min_value=0, max_value=10**6, places=3),
            st.decimals(min_value=0, max_value=10**5, places=2),
        ),
        min_size=1,
        max_size=8,
    )
)
def test_amount_is_the_sum_of_quantity_times_price(lines: list[tuple[Decimal, Decimal]]) -> None:
    order = {"lines": [{"quantity": str(q), "unit_price": str(p)} for q, p in lines]}
    assert orders.amount_of(order) == sum((q * p for q, p in lines), Decimal(0))


def test_credit_check_counts_open_orders_and_the_new_one() -> None:
    c = orders.Credit(Decimal(1000), exposure=Decimal(600), amount=Decimal(400))
    assert not c.exceeded and c.remaining == Decimal(400)
    c = orders.Credit(Decimal(1000), exposure=Decimal(600), amount=Decimal("400.01"))
    assert c.exceeded and c.as_attributes()["credit.result"] == "exceeded"
    assert not orders.Credit(None, Decimal(10**9), Decimal(10**9)).exceeded, "no limit, no check"
    assert orders.credit_limit_of({"credit_limit": "50000.00"}) == Decimal(50000)
    assert orders.credit_limit_of({}) is None
    assert not orders.is_open("cancelled") and orders.is_open("shipped") and orders.is_open(None)


def test_ref_round_trips_through_its_text() -> None:
    r = Ref("material", "erp", "4000:0001")
    assert Ref.parse(str(r)) == r


# -- configuration -----------------------------------------------------------------------------


def test_the_packaged_configuration_loads() -> None:
    conf = load_config()
    assert conf.subscribers("customer") == ("crm", "erp", "drp")
    assert conf.orders.target == "erp" and conf.parking.overdue_after_s > 0


def test_configuration_errors_name_the_path_the_value_and_the_rule(tmp_path: Path) -> None:
    with pytest.raises(SyncConfigError) as err:
        parse_config(
            {
                "master": {"customer": {"subscribers": ["crm", "sap"]}},
                "orders": {"target": "erp", "sources": ["erp"]},
                "parking": {"overdue_after_s": -1},
            },
            "sync.yaml",
        )
    text = str(err.value)
    assert "master.customer.subscribers.1: 'sap'" in text
    assert "cannot also be a source" in text
    assert "parking.overdue_after_s: -1" in text and "greater than 0" in text
    with pytest.raises(SyncConfigError, match="unknown_key"):
        parse_config({"unknown_key": 1})
    bad = tmp_path / "sync.yaml"
    bad.write_text("master: [\n", encoding="utf-8")
    with pytest.raises(SyncConfigError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(SyncConfigError, match="cannot read"):
        load_config(tmp_path / "missing.yaml")
