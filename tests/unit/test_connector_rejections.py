"""Every kind of bad native input is refused with the field, the value and the rule."""

from __future__ import annotations

import copy
import importlib
import itertools
import json
from typing import Any

import pytest

from connectors.common.base import MAX_BATCH_RECORDS
from connectors.common.errors import Rejection
from connectors.registry import build_connectors
from contracts.envelope import Envelope

CONNECTORS = build_connectors()


def sample(system: str, entity: str) -> dict[str, Any]:
    """A valid native record, as that system's simulator writes it."""
    sim = importlib.import_module(f"connectors.{system}.simulator")
    for name, record in itertools.islice(sim.generate(11, 0.3), 2000):
        if name == entity:
            return copy.deepcopy(record)
    raise AssertionError(f"no {system}.{entity} in the first 2000 records")


def rejected(system: str, entity: str, record: dict[str, Any]) -> Rejection:
    [result] = CONNECTORS[system].decode(entity, json.dumps(record, ensure_ascii=False).encode())
    assert isinstance(result, Rejection), f"accepted: {result}"
    return result


def set_path(record: dict[str, Any], path: str, value: Any) -> None:
    *parents, last = path.split(".")
    target: Any = record
    for p in parents:
        target = target[int(p)] if p.isdigit() else target[p]
    if value is DELETE:
        del target[last]
    else:
        target[last] = value


DELETE = object()

# (system, entity, field path, bad value, expected field, expected rule fragment)
CASES = [
    # missing required field
    ("crm", "customer", "cust_name", DELETE, "cust_name", "Field required"),
    ("erp", "material", "MEINS", DELETE, "MEINS", "Field required"),
    ("oa", "approval", "approver", DELETE, "approver", "Field required"),
    ("drp", "replenishment", "dealer_code", DELETE, "dealer_code", "Field required"),
    ("pdm", "eco", "submit_time", DELETE, "submit_time", "Field required"),
    ("crm", "customer", "cust_no", DELETE, "cust_no", "is required to identify the record"),
    ("erp", "order", "ITEMS.0.MATNR", "", "ITEMS.0.MATNR", "is required"),
    # bad date
    ("crm", "order", "order_date", "2026/13/45", "order_date", "must be a calendar date"),
    ("erp", "order", "AUDAT", "20261131", "AUDAT", "must be a calendar date"),
    ("drp", "inventory", "stat_time", "2026-11-24 25:00:00", "stat_time", "date and time"),
    ("oa", "reminder", "due_time", "明天", "due_time", "date and time"),
    ("erp", "stock", "UZEIT", "9:30", "UZEIT", "must be a time like 093000"),
    # unknown code
    ("crm", "customer", "status", "7", "status", "unknown code in value map crm.status"),
    ("erp", "customer", "KTOKD", "Z999", "KTOKD", "unknown code in value map erp.account_group"),
    ("crm", "order", "items.0.unit", "打", "items.0.unit", "unknown code in value map crm.unit"),
    ("pdm", "part", "state", "XX", "state", "unknown code in value map pdm.state"),
    ("oa", "decision", "result", "9", "result", "unknown code in value map oa.result"),
    ("drp", "distributor", "region", "ZZ", "region", "unknown code in value map drp.region"),
    # oversize
    ("crm", "customer", "cust_name", "长" * 121, "cust_name", "at most 120 characters"),
    ("erp", "customer", "NAME1", "名" * 41, "NAME1", "at most 40 characters"),
    ("oa", "reminder", "content", "催" * 501, "content", "at most 500 characters"),
    # bad amounts and quantities
    ("crm", "customer", "credit_limit", "1,20,000.00", "credit_limit", "must be a number"),
    ("erp", "requisition", "MENGE", "0.000", "MENGE", "must be greater than 0"),
    ("drp", "replenishment", "items.0.price", "-5.00", "items.0.price", "must not be negative"),
    ("crm", "order", "items.0.amount", "1.00", "items.0.amount", "must equal qty x price"),
    ("crm", "order", "total_amount", "9.99", "total_amount", "must equal the sum of items"),
    # shape
    ("erp", "customer", "ZZFOO", "x", "ZZFOO", "Extra inputs are not permitted"),
    ("crm", "customer", "frozen", "是", "frozen", "must be 'Y' or 'N'"),
    ("erp", "customer", "SPERR", "Y", "SPERR", "must be 'X' (blocked) or empty"),
    # domain rules
    ("oa", "status_upgrade", "to_status", "0", "to_status", "must be above from_status"),
    ("pdm", "bom", "items.0.level", "2", "items.0.level", "at most one deeper"),
    ("pdm", "eco", "items", [], "items", "at least one affected part"),
    ("erp", "order", "ITEMS", [], "ITEMS", "at least one item"),
]


@pytest.mark.parametrize(
    ("system", "entity", "path", "bad", "field", "rule"),
    CASES,
    ids=[f"{c[0]}.{c[1]}:{c[2]}" for c in CASES],
)
def test_bad_input_names_field_value_and_rule(
    system: str, entity: str, path: str, bad: Any, field: str, rule: str
) -> None:
    record = sample(system, entity)
    set_path(record, path, bad)
    r = rejected(system, entity, record)
    assert r.field == field
    assert rule in r.rule
    if bad is DELETE:
        assert r.value == "<missing>"
    elif isinstance(bad, str) and bad and r.rule != "Extra inputs are not permitted":
        assert r.value == bad
    assert r.system == system and r.entity == entity
    assert field in r.reason and rule in r.reason
    assert json.loads(r.raw) == record  # the original record travels to the DLQ


def test_status_upgrade_frozen_invalid_customer_names_canonical_rule() -> None:
    record = sample("crm", "customer")
    record.update(status="0", frozen="Y")
    r = rejected("crm", "customer", record)
    assert r.field == "customer.frozen"
    assert "potential or higher may be frozen" in r.rule


def test_individual_with_credit_code_is_refused() -> None:
    record = sample("crm", "customer")
    record.update(cust_type="06", credit_code="91440300MA5EXAMPLE")
    record.pop("contacts", None)
    r = rejected("crm", "customer", record)
    assert (r.field, r.value) == ("credit_code", "91440300MA5EXAMPLE")
    assert "individual" in r.rule


def test_bad_json_wrong_encoding_and_non_object() -> None:
    crm = CONNECTORS["crm"]
    [r] = crm.decode("customer", b'{"cust_no": ')
    assert isinstance(r, Rejection) and r.field == "json" and "valid JSON" in r.rule
    [r] = crm.decode("customer", '{"cust_name": "华丰"}'.encode("gbk"))
    assert isinstance(r, Rejection) and r.field == "encoding" and r.rule == "must be utf-8"
    [r] = crm.decode("customer", b"[1]")
    assert isinstance(r, Rejection) and r.rule == "must be a JSON object"


def test_gbk_body_is_read_when_the_sender_says_so() -> None:
    record = sample("crm", "customer")
    raw = json.dumps(record, ensure_ascii=False).encode("gbk", "replace")
    [result] = CONNECTORS["crm"].decode("customer", raw, charset="GBK")
    assert isinstance(result, Envelope)


def test_oversize_record_and_batch() -> None:
    crm = build_connectors()["crm"]
    crm.max_record_bytes = 2000
    record = sample("crm", "customer")
    record["remark"] = "备" * 480
    [r] = crm.decode("customer", json.dumps([record], ensure_ascii=False).encode())
    assert isinstance(r, Rejection) and r.field == "record" and "at most 2000 bytes" in r.rule
    too_many = json.dumps([{}] * (MAX_BATCH_RECORDS + 1)).encode()
    [r] = crm.decode("customer", too_many)
    assert isinstance(r, Rejection) and r.field == "body" and "at most" in r.rule


def test_unknown_entity_and_outbound_only_entity() -> None:
    [r] = CONNECTORS["crm"].decode("invoice", b"{}")
    assert isinstance(r, Rejection) and (r.field, r.value) == ("entity", "invoice")
    assert "customer, order" in r.rule
    [r] = CONNECTORS["drp"].decode("factory_stock", b"{}")
    assert isinstance(r, Rejection) and "does not publish it" in r.rule


def test_batch_keeps_going_and_counts() -> None:
    crm = build_connectors()["crm"]
    good = sample("crm", "customer")
    bad = dict(good, status="7")
    results = crm.decode("customer", json.dumps([good, bad, good], ensure_ascii=False).encode())
    assert [type(r).__name__ for r in results] == ["Envelope", "Rejection", "Envelope"]
    rejection = results[1]
    assert isinstance(rejection, Rejection) and rejection.position == 1
    snap = crm.status.snapshot()["entities"]["customer"]
    assert (snap["accepted"], snap["rejected"]) == (2, 1)
    assert "crm.status" in snap["last_error"]
    assert snap["last_seen_at"] is not None


def test_envelope_carries_source_identity_and_time() -> None:
    record = sample("erp", "order")
    [env] = CONNECTORS["erp"].decode("order", json.dumps(record).encode())
    assert isinstance(env, Envelope)
    assert (env.entity.value, env.op.value, env.source_system) == ("order", "upsert", "erp")
    assert env.source_id == record["VBELN"]
    assert env.source_ts is not None and env.source_ts.utcoffset() is not None
    assert env.body["attributes"]["erp.vbeln"] == record["VBELN"]


def test_approval_request_and_decision_share_a_key() -> None:
    oa = CONNECTORS["oa"]
    form = sample("oa", "approval")
    decision = {"flow_id": form["flow_id"], "result": "1", "approver": "黄总",
                "approve_time": "2026-11-30 10:00"}  # fmt: skip
    request_env = oa.to_envelope("approval", form)
    decision_env = oa.to_envelope("decision", decision)
    assert request_env.key == decision_env.key == f"oa:{form['flow_id']}"
    assert (request_env.op.value, decision_env.op.value) == ("request", "decide")
