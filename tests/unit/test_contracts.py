from __future__ import annotations

import json
from datetime import UTC, date, datetime, timedelta, timezone
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from pydantic import BaseModel, ValidationError

from contracts.approval import KNOWN_APPROVAL_TYPES, ApprovalDecision, ApprovalRequest, Urge
from contracts.bom import Bom, BomKind, BomLine
from contracts.common import Address, AddressType, Contact, Identifier, Money
from contracts.customer import Customer, CustomerKind, CustomerStatus, CustomerType
from contracts.envelope import Entity, Envelope, Op
from contracts.errors import ContractError
from contracts.export import EXPORTED, export_schemas
from contracts.inventory import Inventory
from contracts.material import Material
from contracts.order import Order, OrderLine, OrderStatus
from contracts.registry import BODY_MODELS, Tombstone, body_model, validate_body

CST = timezone(timedelta(hours=8))
T0 = datetime(2026, 11, 24, 8, 0, tzinfo=CST)


def customer_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "kind": "organization",
        "name": "宁波飞科电器有限公司",
        "identifiers": [
            {"scheme": "uscc", "value": "91330200MA2AXXXX1X"},
            {"scheme": "crm.customer_no", "value": "C-0001"},
        ],
        "type": "distributor",
        "status": "successful",
        "addresses": [
            {"type": "office", "country": "CN", "province": "浙江", "postcode": "315000"}
        ],
        "phones": ["+86 574 8888 8888"],
        "emails": ["buyer@example.cn"],
        "contacts": [{"name": "张伟", "salutation": "先生", "emails": ["zw@example.cn"]}],
        "industry": ["制造业", "电气机械"],
        "credit_limit": "500000.00",
        "attributes": {"crm.level": "VIP", "visits": 3, "score": 0.5, "vip": True, "x": None},
    }
    body.update(over)
    return body


def order_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "order_no": "SO-2026-001",
        "customer_ref": "C-0001",
        "order_date": "2026-11-24",
        "requested_date": "2026-12-01",
        "lines": [
            {
                "line_no": 1,
                "material_ref": "FS-360",
                "quantity": "10",
                "uom": "PCS",
                "unit_price": "99.90",
            },
            {
                "line_no": 2,
                "material_ref": "FS-361",
                "quantity": "2.5",
                "uom": "KG",
                "unit_price": "0.01",
            },
        ],
    }
    body.update(over)
    return body


def approval_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "approval_id": "OA-77",
        "type": "purchase_requisition",
        "title": "请购: 刀网 5000 片",
        "amount": "4800.00",
        "requester": "li.na",
        "approver": "wang.gm",
        "approver_chain": ["zhao.mgr", "wang.gm"],
        "submitted_at": T0.isoformat(),
        "deadline": (T0 + timedelta(days=3)).isoformat(),
        "tie": "weak",
        "subject_ref": "erp:PR-9",
    }
    body.update(over)
    return body


def urge_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "urge_id": "U-2",
        "approval_id": "OA-77",
        "origin_system": "oa",
        "level": 2,
        "channel": "im",
        "recipient": "wang.gm",
        "text": "转发我上周的消息: 请审批 OA-77",
        "sequence": 2,
        "previous_urge_id": "U-1",
        "due_at": T0.isoformat(),
    }
    body.update(over)
    return body


def bom_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "parent": "FS-360",
        "revision": "B",
        "kind": "design",
        "lines": [
            {"position": 10, "child": "BLADE-3", "quantity": "3", "uom": "PCS"},
            {
                "position": 20,
                "child": "MOTOR-1",
                "quantity": "1",
                "uom": "PCS",
                "scrap_rate": "0.02",
                "effective_from": "2026-01-01",
                "effective_to": "2026-12-31",
            },
        ],
        "change_order": "ECO-12",
    }
    body.update(over)
    return body


def inventory_body(**over: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "location": "DIST-SH-01",
        "region": "华东",
        "material": "FS-360",
        "on_hand": "120",
        "reserved": "20",
        "in_transit": "50",
        "uom": "PCS",
        "as_of": T0.isoformat(),
        "sold_in_period": "37",
    }
    body.update(over)
    return body


SAMPLES: list[tuple[type[BaseModel], dict[str, Any]]] = [
    (Customer, customer_body()),
    (Material, {"code": "FS-360", "name": "剃须刀", "uom": "PCS", "revision": "B"}),
    (Order, order_body()),
    (Bom, bom_body()),
    (Inventory, inventory_body()),
    (ApprovalRequest, approval_body()),
    (
        ApprovalDecision,
        {
            "approval_id": "OA-77",
            "decision": "approved",
            "decided_by": "wang.gm",
            "decided_at": T0.isoformat(),
        },
    ),
    (Urge, urge_body()),
]
SAMPLE_IDS = [m.__name__ for m, _ in SAMPLES]


def rule_of(exc: pytest.ExceptionInfo[ValidationError]) -> dict[str, Any]:
    errors = exc.value.errors(include_url=False)
    assert len(errors) == 1, errors
    return dict(errors[0])


# --- every model: frozen, closed, JSON round trip -------------------------------------------


@pytest.mark.parametrize(("model", "body"), SAMPLES, ids=SAMPLE_IDS)
def test_models_are_frozen(model: type[BaseModel], body: dict[str, Any]) -> None:
    instance = model.model_validate(body)
    field = next(iter(body))
    with pytest.raises(ValidationError) as exc:
        setattr(instance, field, body[field])
    assert exc.value.errors()[0]["type"] == "frozen_instance"


@pytest.mark.parametrize(("model", "body"), SAMPLES, ids=SAMPLE_IDS)
def test_extra_fields_are_rejected(model: type[BaseModel], body: dict[str, Any]) -> None:
    with pytest.raises(ValidationError) as exc:
        model.model_validate({**body, "colour": "red"})
    err = rule_of(exc)
    assert (err["type"], err["loc"]) == ("extra_forbidden", ("colour",))


@pytest.mark.parametrize(("model", "body"), SAMPLES, ids=SAMPLE_IDS)
def test_json_round_trip_is_exact(model: type[BaseModel], body: dict[str, Any]) -> None:
    instance = model.model_validate(body)
    again = model.model_validate_json(instance.model_dump_json())
    assert again == instance
    assert again.model_dump_json() == instance.model_dump_json()


def test_nested_sub_models_reject_extra_fields() -> None:
    body = customer_body(contacts=[{"name": "张伟", "wechat": "zw"}])
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(body)
    assert rule_of(exc)["loc"] == ("contacts", 0, "wechat")


# --- common ---------------------------------------------------------------------------------


@pytest.mark.parametrize("scheme", ["uscc", "national_id", "crm.customer_no", "erp:kunnr", "a-b"])
def test_identifier_scheme_accepts_well_known_and_system_local(scheme: str) -> None:
    assert Identifier(scheme=scheme, value="1").scheme == scheme


@pytest.mark.parametrize("scheme", ["USCC", "1abc", "crm customer", "", "_x"])
def test_identifier_scheme_rejects_other_shapes(scheme: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Identifier(scheme=scheme, value="1")
    assert rule_of(exc)["loc"] == ("scheme",)


def test_identifier_value_must_not_be_empty() -> None:
    with pytest.raises(ValidationError) as exc:
        Identifier(scheme="uscc", value="")
    assert rule_of(exc)["type"] == "string_too_short"


def test_address_postcode_cn_must_be_six_digits_other_countries_free() -> None:
    assert Address(country="CN", postcode="315000").postcode == "315000"
    assert Address(country="GB", postcode="SW1A 1AA").postcode == "SW1A 1AA"
    assert Address(postcode="12345").postcode == "12345"
    with pytest.raises(ValidationError) as exc:
        Address(country="CN", postcode="31500")
    err = rule_of(exc)
    assert err["loc"] == ("postcode",)
    assert "6 digits" in err["msg"]
    with pytest.raises(ValidationError) as exc:
        Address(postcode="1" * 17)
    assert rule_of(exc)["type"] == "string_too_long"


def test_address_must_say_something_and_defaults_to_other() -> None:
    assert Address(line="上海市浦东新区").type is AddressType.other
    with pytest.raises(ValidationError) as exc:
        Address(type=AddressType.billing, city="  ")
    assert "at least one of" in rule_of(exc)["msg"]


def test_contact_email_and_name_rules() -> None:
    assert Contact(name="张伟", emails=("a@b.cn",)).emails == ("a@b.cn",)
    with pytest.raises(ValidationError) as exc:
        Contact(name="张伟", emails=("not-an-email",))
    err = rule_of(exc)
    assert err["loc"] == ("emails", 0)
    assert "e-mail" in err["msg"]
    with pytest.raises(ValidationError) as exc:
        Contact(name="   ")
    assert rule_of(exc)["msg"] == "must contain a non-whitespace character"


def test_currency_must_be_three_upper_letters() -> None:
    assert Customer(kind=CustomerKind.person, name="x").currency == "CNY"
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(currency="cny"))
    assert rule_of(exc)["loc"] == ("currency",)


def test_money_adds_only_same_currency() -> None:
    a = Money(amount=Decimal("0.10"))
    assert (a + Money(amount=Decimal("0.20"))).amount == Decimal("0.30")
    assert (a * 3).amount == Decimal("0.30")
    with pytest.raises(ValueError, match="must share a currency"):
        a + Money(amount=Decimal(1), currency="USD")


@pytest.mark.parametrize("value", ["NaN", "Infinity", float("nan")])
def test_decimals_must_be_finite(value: Any) -> None:
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(credit_limit=value))
    assert rule_of(exc)["type"] == "finite_number"


# --- customer -------------------------------------------------------------------------------


def test_customer_sample_fields_and_identifier_lookup() -> None:
    c = Customer.model_validate(customer_body())
    assert c.type is CustomerType.distributor
    assert c.credit_limit == Decimal("500000.00")
    assert c.identifier("uscc") == "91330200MA2AXXXX1X"
    assert c.identifier("crm.customer_no") == "C-0001"
    assert c.identifier("tax_id") is None
    assert c.industry == ("制造业", "电气机械")
    assert c.attributes == {"crm.level": "VIP", "visits": 3, "score": 0.5, "vip": True, "x": None}
    assert type(c.attributes["vip"]) is bool
    assert type(c.attributes["visits"]) is int


def test_customer_defaults() -> None:
    c = Customer(kind=CustomerKind.organization, name="A")
    assert (c.type, c.status, c.frozen, c.currency) == (
        CustomerType.customer,
        CustomerStatus.potential,
        False,
        "CNY",
    )


def test_status_is_ordered_by_rank_not_alphabet() -> None:
    s = CustomerStatus
    assert [x.rank for x in s] == [0, 1, 2, 3, 4]
    assert s.invalid < s.potential < s.successful < s.pilot < s.reference
    # Alphabetically "pilot" < "potential"; the domain says the opposite.
    assert s.pilot > s.potential
    assert s.pilot > "potential"
    assert s.pilot > "potential"
    assert s.successful >= "successful"
    assert s.successful <= s.successful
    assert not s.reference < s.pilot
    assert sorted([s.reference, s.invalid, s.pilot, s.potential]) == [
        s.invalid,
        s.potential,
        s.pilot,
        s.reference,
    ]
    assert max(s) is s.reference
    assert s.pilot.at_least(s.successful)
    assert not s.potential.at_least("successful")
    assert s.potential.is_upgrade_to(s.successful)
    assert not s.pilot.is_upgrade_to(s.successful)


def test_status_comparison_with_unknown_value_raises_instead_of_str_order() -> None:
    with pytest.raises(ValueError, match="not a valid CustomerStatus"):
        _ = CustomerStatus.pilot < "premium"
    with pytest.raises(TypeError):
        _ = CustomerStatus.pilot < 3


def test_status_equality_and_hash_stay_str_like() -> None:
    assert CustomerStatus.pilot == "pilot"
    by_status: dict[str, int] = {CustomerStatus.pilot: 1}
    assert by_status["pilot"] == 1


@pytest.mark.parametrize(
    ("status", "freezable", "after"),
    [
        ("invalid", False, "invalid"),
        ("potential", True, "potential"),
        ("successful", True, "successful"),
        ("pilot", True, "successful"),
        ("reference", True, "successful"),
    ],
)
def test_freeze_rules(status: str, freezable: bool, after: str) -> None:
    s = CustomerStatus(status)
    assert s.can_be_frozen is freezable
    assert s.after_unfreeze == after


def test_frozen_with_invalid_status_is_rejected_with_clear_message() -> None:
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(status="invalid", frozen=True))
    err = rule_of(exc)
    assert err["loc"] == ("frozen",)
    assert err["input"] is True
    assert "potential or higher may be frozen" in err["msg"]
    assert "invalid" in err["msg"]
    assert Customer.model_validate(customer_body(status="potential", frozen=True)).frozen


def test_unfreezing_a_pilot_customer_drops_it_to_successful() -> None:
    c = Customer.model_validate(customer_body(status="pilot", frozen=True)).unfrozen()
    assert (c.frozen, c.status) == (False, CustomerStatus.successful)


def test_birth_date_only_for_persons() -> None:
    person = Customer.model_validate(
        customer_body(kind="person", type="individual", birth_date="1990-05-01")
    )
    assert person.birth_date == date(1990, 5, 1)
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(birth_date="1990-05-01"))
    err = rule_of(exc)
    assert err["loc"] == ("birth_date",)
    assert err["input"] == date(1990, 5, 1)
    assert "only allowed when kind is person" in err["msg"]


def test_identifier_scheme_appears_once() -> None:
    ids = [{"scheme": "uscc", "value": "A"}, {"scheme": "uscc", "value": "B"}]
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(identifiers=ids))
    err = rule_of(exc)
    assert err["loc"] == ("identifiers", 1, "scheme")
    assert "once" in err["msg"]


@pytest.mark.parametrize(
    ("name", "rule"), [("", "string_too_short"), ("x" * 257, "string_too_long")]
)
def test_customer_name_length(name: str, rule: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(name=name))
    assert rule_of(exc)["type"] == rule


def test_credit_limit_not_negative() -> None:
    with pytest.raises(ValidationError) as exc:
        Customer.model_validate(customer_body(credit_limit="-0.01"))
    assert rule_of(exc)["type"] == "greater_than_equal"


def test_attribute_values_must_be_scalars() -> None:
    with pytest.raises(ValidationError):
        Customer.model_validate(customer_body(attributes={"tags": ["a", "b"]}))


# --- material -------------------------------------------------------------------------------


def test_material_uom_is_normalised_and_native_units_rejected() -> None:
    assert Material(code="M1", name="螺丝", uom="pcs").uom == "PCS"
    with pytest.raises(ValidationError) as exc:
        Material(code="M1", name="螺丝", uom="个")
    err = rule_of(exc)
    assert err["loc"] == ("uom",)
    assert "unit code" in err["msg"]


def test_keys_must_not_carry_surrounding_whitespace() -> None:
    with pytest.raises(ValidationError) as exc:
        Material(code=" M1", name="螺丝", uom="PCS")
    err = rule_of(exc)
    assert err["loc"] == ("code",)
    assert "whitespace" in err["msg"]


# --- order ----------------------------------------------------------------------------------


def test_order_total_is_exact_decimal() -> None:
    order = Order.model_validate(order_body())
    assert order.total == Decimal("999.025")
    assert order.total_money == Money(amount=Decimal("999.025"), currency="CNY")
    assert order.status is OrderStatus.submitted
    assert order.line(2) is not None
    assert order.line(3) is None


def test_order_lines_inherit_order_currency_and_must_match_it() -> None:
    order = Order.model_validate(order_body(currency="USD"))
    assert {line.currency for line in order.lines} == {"USD"}
    lines = order_body()["lines"]
    lines[1]["currency"] = "EUR"
    with pytest.raises(ValidationError) as exc:
        Order.model_validate(order_body(currency="USD", lines=lines))
    err = rule_of(exc)
    assert err["loc"] == ("lines", 1, "currency")
    assert "USD" in err["msg"]


def test_order_needs_a_line() -> None:
    with pytest.raises(ValidationError) as exc:
        Order.model_validate(order_body(lines=[]))
    err = rule_of(exc)
    assert (err["loc"], err["type"]) == (("lines",), "too_short")


def test_order_line_numbers_unique() -> None:
    lines = order_body()["lines"]
    lines[1]["line_no"] = 1
    with pytest.raises(ValidationError) as exc:
        Order.model_validate(order_body(lines=lines))
    err = rule_of(exc)
    assert err["loc"] == ("lines", 1, "line_no")
    assert err["msg"] == "line_no must be unique within an order"


@pytest.mark.parametrize(
    ("field", "value", "rule"),
    [
        ("quantity", "0", "greater_than"),
        ("unit_price", "-1", "greater_than_equal"),
        ("line_no", 0, "greater_than_equal"),
    ],
)
def test_order_line_bounds(field: str, value: Any, rule: str) -> None:
    line = order_body()["lines"][0]
    line[field] = value
    with pytest.raises(ValidationError) as exc:
        OrderLine.model_validate(line)
    assert rule_of(exc)["type"] == rule


def test_requested_date_not_before_order_date() -> None:
    with pytest.raises(ValidationError) as exc:
        Order.model_validate(order_body(requested_date="2026-11-23"))
    assert rule_of(exc)["loc"] == ("requested_date",)


# --- bom ------------------------------------------------------------------------------------


def test_bom_sample_and_effectivity() -> None:
    bom = Bom.model_validate(bom_body())
    assert bom.kind is BomKind.design
    motor = bom.line_at(20)
    assert motor is not None
    assert motor.scrap_rate == Decimal("0.02")
    assert motor.effective_on(date(2026, 6, 1))
    assert not motor.effective_on(date(2027, 1, 1))


@pytest.mark.parametrize(
    ("rate", "ok"), [("0", True), ("0.999", True), ("1", False), ("-0.1", False)]
)
def test_scrap_rate_in_zero_to_one(rate: str, ok: bool) -> None:
    line = {"position": 1, "child": "X", "quantity": "1", "uom": "PCS", "scrap_rate": rate}
    if ok:
        assert BomLine.model_validate(line).scrap_rate == Decimal(rate)
    else:
        with pytest.raises(ValidationError):
            BomLine.model_validate(line)


def test_bom_effective_to_not_before_from_named_with_position() -> None:
    lines = bom_body()["lines"]
    lines[1]["effective_to"] = "2025-12-31"
    with pytest.raises(ValidationError) as exc:
        Bom.model_validate(bom_body(lines=lines))
    err = rule_of(exc)
    assert err["loc"] == ("lines", 1, "effective_to")
    assert "2026-01-01" in err["msg"]


def test_bom_positions_unique_and_no_self_reference() -> None:
    lines = bom_body()["lines"]
    lines[1]["position"] = 10
    with pytest.raises(ValidationError) as exc:
        Bom.model_validate(bom_body(lines=lines))
    assert rule_of(exc)["loc"] == ("lines", 1, "position")
    lines = bom_body()["lines"]
    lines[0]["child"] = "FS-360"
    with pytest.raises(ValidationError) as exc:
        Bom.model_validate(bom_body(lines=lines))
    assert rule_of(exc)["loc"] == ("lines", 0, "child")


# --- inventory ------------------------------------------------------------------------------


def test_inventory_available_and_negative_on_hand_allowed() -> None:
    inv = Inventory.model_validate(inventory_body())
    assert inv.available == Decimal(100)
    assert Inventory.model_validate(inventory_body(on_hand="-3")).on_hand == Decimal(-3)


@pytest.mark.parametrize("field", ["reserved", "in_transit"])
def test_inventory_reserved_and_in_transit_not_negative(field: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Inventory.model_validate(inventory_body(**{field: "-1"}))
    assert rule_of(exc)["loc"] == (field,)


def test_timestamps_must_be_timezone_aware() -> None:
    with pytest.raises(ValidationError) as exc:
        Inventory.model_validate(inventory_body(as_of="2026-11-24T08:00:00"))
    err = rule_of(exc)
    assert (err["loc"], err["type"]) == (("as_of",), "timezone_aware")


# --- approvals and urges --------------------------------------------------------------------


def test_approval_request_sample() -> None:
    req = ApprovalRequest.model_validate(approval_body())
    assert req.amount == Decimal("4800.00")
    assert req.known_type
    assert "purchase_requisition" in KNOWN_APPROVAL_TYPES
    custom = ApprovalRequest.model_validate(approval_body(type="quality_waiver"))
    assert not custom.known_type


@pytest.mark.parametrize(
    ("over", "loc"),
    [
        ({"type": "Purchase Requisition"}, ("type",)),
        ({"tie": "medium"}, ("tie",)),
        ({"amount": "-5"}, ("amount",)),
        ({"deadline": (T0 - timedelta(hours=1)).isoformat()}, ("deadline",)),
        ({"submitted_at": "2026-11-24T08:00:00"}, ("submitted_at",)),
    ],
)
def test_approval_request_rules(over: dict[str, Any], loc: tuple[str, ...]) -> None:
    with pytest.raises(ValidationError) as exc:
        ApprovalRequest.model_validate(approval_body(**over))
    assert rule_of(exc)["loc"] == loc


def test_approval_decision_values() -> None:
    body = dict(SAMPLES[6][1])
    with pytest.raises(ValidationError) as exc:
        ApprovalDecision.model_validate({**body, "decision": "maybe"})
    assert rule_of(exc)["loc"] == ("decision",)


@pytest.mark.parametrize(
    ("over", "loc", "words"),
    [
        ({"sequence": 1}, ("previous_urge_id",), "first urge"),
        ({"previous_urge_id": None}, ("previous_urge_id",), "sequence 2"),
        ({"previous_urge_id": "U-2"}, ("previous_urge_id",), "differ"),
        ({"channel": "escalation"}, ("escalated_to",), "superior"),
        ({"level": 0}, ("level",), "greater than or equal to 1"),
        ({"channel": "pigeon"}, ("channel",), "Input should be"),
    ],
)
def test_urge_rules(over: dict[str, Any], loc: tuple[str, ...], words: str) -> None:
    with pytest.raises(ValidationError) as exc:
        Urge.model_validate(urge_body(**over))
    err = rule_of(exc)
    assert err["loc"] == loc
    assert words in err["msg"]


def test_first_urge_and_escalation() -> None:
    first = Urge.model_validate(urge_body(sequence=1, previous_urge_id=None, urge_id="U-1"))
    assert first.previous_urge_id is None
    esc = Urge.model_validate(urge_body(channel="escalation", escalated_to="ceo", level=4))
    assert esc.escalated_to == "ceo"


# --- envelope -------------------------------------------------------------------------------


def envelope(entity: Entity, body: dict[str, Any], **over: Any) -> Envelope:
    return Envelope(entity=entity, source_system="crm", source_id="K1", body=body, **over)


def test_envelope_from_bytes_round_trip_keeps_decimal_strings() -> None:
    env = envelope(Entity.order, Order.model_validate(order_body()).model_dump(mode="json"))
    back = Envelope.from_bytes(env.to_bytes())
    assert back == env
    order = validate_body(back)
    assert isinstance(order, Order)
    assert order.lines[0].unit_price == Decimal("99.90")
    assert str(order.lines[0].unit_price) == "99.90"


def test_envelope_from_bytes_non_utf8() -> None:
    with pytest.raises(ContractError) as exc:
        Envelope.from_bytes(b'{"entity": "\xff\xfe"}')
    assert exc.value.field == "encoding"
    assert "UTF-8" in exc.value.rule
    assert "byte 12" in str(exc.value)


def test_envelope_from_bytes_not_json() -> None:
    with pytest.raises(ContractError) as exc:
        Envelope.from_bytes(b"{entity: customer")
    assert exc.value.field == "json"
    assert "must be valid JSON" in exc.value.rule
    assert "line 1 column 2" in str(exc.value)


def test_envelope_from_bytes_not_an_object() -> None:
    with pytest.raises(ContractError) as exc:
        Envelope.from_bytes(b"[1, 2]")
    assert (exc.value.field, exc.value.value) == ("json", "list")


@pytest.mark.parametrize(
    ("raw", "words"),
    [
        (b"[" * 100_000 + b"]" * 100_000, "recursion"),
        (b'{"source_id": ' + b"1" * 5000 + b"}", "digits"),
        (b'{"entity": "customer", "body": {"credit_limit": NaN}}', "NaN is not a JSON number"),
    ],
    ids=["deep-nesting", "huge-integer", "nan"],
)
def test_envelope_from_bytes_hostile_json_is_a_contract_error(raw: bytes, words: str) -> None:
    with pytest.raises(ContractError) as exc:
        Envelope.from_bytes(raw)
    assert exc.value.field == "json"
    assert words in exc.value.rule


def test_envelope_from_bytes_missing_field() -> None:
    raw = json.dumps({"entity": "customer", "source_system": "crm"}).encode()
    with pytest.raises(ContractError) as exc:
        Envelope.from_bytes(raw)
    assert exc.value.field == "envelope.source_id"
    assert exc.value.value == "<missing>"
    assert exc.value.rule == "Field required"
    assert exc.value.code == "missing"
    assert str(exc.value) == "field 'envelope.source_id' value '<missing>': Field required"


def test_envelope_from_bytes_bad_value_names_value_and_rule() -> None:
    raw = json.dumps({"entity": "invoice", "source_system": "crm", "source_id": "1"}).encode()
    with pytest.raises(ContractError) as exc:
        Envelope.from_bytes(raw)
    assert exc.value.field == "envelope.entity"
    assert "'invoice'" in str(exc.value)
    assert "Input should be" in exc.value.rule


# --- registry -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("entity", "op", "model"),
    [
        (Entity.customer, Op.upsert, Customer),
        (Entity.material, Op.upsert, Material),
        (Entity.order, Op.upsert, Order),
        (Entity.bom, Op.upsert, Bom),
        (Entity.inventory, Op.upsert, Inventory),
        (Entity.approval, Op.request, ApprovalRequest),
        (Entity.approval, Op.decide, ApprovalDecision),
        (Entity.urge, Op.upsert, Urge),
    ],
)
def test_body_model_lookup(entity: Entity, op: Op, model: type[BaseModel]) -> None:
    assert body_model(entity, 1, op) is model


def test_every_entity_has_a_v1_body() -> None:
    assert {e for e, v in BODY_MODELS if v == 1} == set(Entity)


def test_validate_body_returns_model_per_sample() -> None:
    entity_of = {
        Customer: (Entity.customer, Op.upsert),
        Material: (Entity.material, Op.upsert),
        Order: (Entity.order, Op.upsert),
        Bom: (Entity.bom, Op.upsert),
        Inventory: (Entity.inventory, Op.upsert),
        ApprovalRequest: (Entity.approval, Op.request),
        ApprovalDecision: (Entity.approval, Op.decide),
        Urge: (Entity.urge, Op.upsert),
    }
    for model, body in SAMPLES:
        entity, op = entity_of[model]
        result = validate_body(envelope(entity, body, op=op))
        assert result == model.model_validate(body)


def test_validate_body_names_nested_field_value_and_rule() -> None:
    lines = order_body()["lines"]
    lines[0]["quantity"] = Decimal(-1)
    with pytest.raises(ContractError) as exc:
        validate_body(envelope(Entity.order, order_body(lines=lines)))
    err = exc.value
    assert err.field == "body.lines.0.quantity"
    assert err.value == Decimal(-1)
    assert err.rule == "Input should be greater than 0"
    assert str(err) == (
        "field 'body.lines.0.quantity' value Decimal('-1'): Input should be greater than 0"
    )


def test_validate_body_custom_rule_is_located_too() -> None:
    lines = order_body()["lines"]
    lines[1]["line_no"] = 1
    with pytest.raises(ContractError) as exc:
        validate_body(envelope(Entity.order, order_body(lines=lines)))
    assert exc.value.field == "body.lines.1.line_no"
    assert exc.value.code == "line_no_unique"
    assert str(exc.value) == (
        "field 'body.lines.1.line_no' value 1: line_no must be unique within an order"
    )


def test_validate_body_counts_further_violations() -> None:
    with pytest.raises(ContractError) as exc:
        validate_body(envelope(Entity.customer, {"name": "", "kind": "robot"}))
    assert exc.value.more == 1
    assert "(and 1 more violation)" in str(exc.value)


def test_validate_body_unknown_schema_version() -> None:
    with pytest.raises(ContractError) as exc:
        validate_body(envelope(Entity.customer, customer_body(), schema_version=7))
    assert exc.value.field == "schema_version"
    assert exc.value.value == 7
    assert "no body model registered for entity customer version 7" in exc.value.rule
    assert "known versions: 1" in exc.value.rule


def test_delete_without_record_is_a_tombstone_with_record_is_validated() -> None:
    assert validate_body(envelope(Entity.customer, {}, op=Op.delete)) == Tombstone()
    gone = validate_body(envelope(Entity.material, {"reason": "dup"}, op=Op.delete))
    assert gone == Tombstone(reason="dup")
    last = validate_body(envelope(Entity.customer, customer_body(), op=Op.delete))
    assert isinstance(last, Customer)
    with pytest.raises(ContractError) as exc:
        validate_body(envelope(Entity.customer, {"name": "x"}, op=Op.delete))
    assert exc.value.field == "body.kind"


# --- schema export --------------------------------------------------------------------------


def test_export_writes_one_schema_per_model(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path / "schemas")
    names = {p.name for p in paths}
    expected = {
        "envelope.v1.schema.json",
        "customer.v1.schema.json",
        "material.v1.schema.json",
        "order.v1.schema.json",
        "bom.v1.schema.json",
        "inventory.v1.schema.json",
        "approval_request.v1.schema.json",
        "approval_decision.v1.schema.json",
        "urge.v1.schema.json",
    }
    assert expected <= names
    assert sorted(p.name for p in (tmp_path / "schemas").iterdir()) == sorted(names)
    for path, (_, _, model) in zip(paths, EXPORTED, strict=True):
        doc = json.loads(path.read_text(encoding="utf-8"))
        assert doc["title"] == model.__name__
        assert doc["$id"] == f"urn:eai-hub:schema:{path.name.removesuffix('.schema.json')}"
        assert doc["$schema"] == "https://json-schema.org/draft/2020-12/schema"
        assert doc["additionalProperties"] is False
        assert path.read_text(encoding="utf-8").endswith("}\n")


def test_export_is_deterministic(tmp_path: Path) -> None:
    first = {p.name: p.read_bytes() for p in export_schemas(tmp_path / "a")}
    second = {p.name: p.read_bytes() for p in export_schemas(tmp_path / "b")}
    assert first == second
    text = first["customer.v1.schema.json"].decode()
    assert text == json.dumps(json.loads(text), indent=2, sort_keys=True, ensure_ascii=False) + "\n"


def test_customer_schema_required_fields_match_the_model(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    doc = json.loads((tmp_path / "customer.v1.schema.json").read_text(encoding="utf-8"))
    required = doc["required"]
    assert sorted(required) == ["kind", "name"]
    minimal = {field: customer_body()[field] for field in required}
    assert Customer.model_validate(minimal).name == minimal["name"]
    for field in required:
        with pytest.raises(ValidationError) as exc:
            Customer.model_validate({k: v for k, v in minimal.items() if k != field})
        assert rule_of(exc)["type"] == "missing"
    assert set(customer_body()) <= set(doc["properties"])
    assert doc["$defs"]["CustomerStatus"]["enum"] == [s.value for s in CustomerStatus]


def test_order_schema_describes_lines_and_decimal(tmp_path: Path) -> None:
    export_schemas(tmp_path)
    doc = json.loads((tmp_path / "order.v1.schema.json").read_text(encoding="utf-8"))
    assert doc["properties"]["lines"]["minItems"] == 1
    line = doc["$defs"]["OrderLine"]
    assert set(line["required"]) == {"line_no", "material_ref", "quantity", "uom", "unit_price"}
    kinds = {branch.get("type") for branch in line["properties"]["quantity"]["anyOf"]}
    assert kinds == {"number", "string"}


def test_schemas_validate_samples_when_jsonschema_is_installed(tmp_path: Path) -> None:
    jsonschema = pytest.importorskip("jsonschema")
    paths = {p.name: p for p in export_schemas(tmp_path)}
    stems = {model: name for name, _, model in EXPORTED}
    for model, body in SAMPLES:
        doc = json.loads(paths[f"{stems[model]}.v1.schema.json"].read_text(encoding="utf-8"))
        dumped = model.model_validate(body).model_dump(mode="json")
        jsonschema.validate(dumped, doc)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**dumped, "colour": "red"}, doc)


def test_timezone_offsets_survive_round_trip() -> None:
    req = ApprovalRequest.model_validate(approval_body())
    assert req.submitted_at.utcoffset() == timedelta(hours=8)
    assert req.submitted_at == T0.astimezone(UTC)
