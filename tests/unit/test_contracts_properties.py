from __future__ import annotations

import json
import re
from datetime import date, timedelta
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from contracts.common import Identifier
from contracts.customer import Customer, CustomerKind, CustomerStatus
from contracts.envelope import Entity, Envelope, Op
from contracts.errors import ContractError
from contracts.order import Order
from contracts.registry import validate_body

quantities = st.decimals(
    min_value=Decimal("0.000001"), max_value=Decimal("1e12"), allow_nan=False, places=6
)
prices = st.decimals(min_value=Decimal(0), max_value=Decimal("1e9"), allow_nan=False, places=4)
statuses = st.sampled_from(list(CustomerStatus))
keys = st.from_regex(r"\A[A-Za-z0-9][A-Za-z0-9._/-]{0,30}\Z")
scalar_attrs = st.dictionaries(
    st.text(min_size=1, max_size=10),
    st.one_of(
        st.none(),
        st.booleans(),
        st.integers(min_value=-(2**53), max_value=2**53),
        st.floats(allow_nan=False, allow_infinity=False),
        st.text(max_size=20),
    ),
    max_size=5,
)


@st.composite
def orders(draw: st.DrawFn) -> dict[str, Any]:
    n = draw(st.integers(min_value=1, max_value=6))
    numbers = draw(st.lists(st.integers(1, 10_000), min_size=n, max_size=n, unique=True))
    lines = [
        {
            "line_no": no,
            "material_ref": draw(keys),
            "quantity": draw(quantities),
            "uom": draw(st.sampled_from(["PCS", "KG", "M", "SET"])),
            "unit_price": draw(prices),
        }
        for no in numbers
    ]
    day = draw(st.dates(min_value=date(2000, 1, 1), max_value=date(2099, 1, 1)))
    return {
        "order_no": draw(keys),
        "customer_ref": draw(keys),
        "order_date": day,
        "requested_date": day + timedelta(days=draw(st.integers(0, 90))),
        "currency": draw(st.sampled_from(["CNY", "USD", "EUR"])),
        "lines": lines,
        "attributes": draw(scalar_attrs),
    }


@given(orders())
def test_order_decimals_survive_json_exactly(body: dict[str, Any]) -> None:
    order = Order.model_validate(body)
    again = Order.model_validate_json(order.model_dump_json())
    assert again == order
    for before, after in zip(order.lines, again.lines, strict=True):
        assert str(after.quantity) == str(before.quantity)
        assert str(after.unit_price) == str(before.unit_price)
    expected = sum((line["quantity"] * line["unit_price"] for line in body["lines"]), Decimal(0))
    assert again.total == expected


@given(orders())
def test_order_survives_the_envelope_wire_format(body: dict[str, Any]) -> None:
    order = Order.model_validate(body)
    env = Envelope(
        entity=Entity.order, source_system="crm", source_id=order.order_no, body=order.model_dump()
    )
    assert validate_body(Envelope.from_bytes(env.to_bytes())) == order


@given(orders(), st.data())
def test_bad_line_is_named_by_its_index(body: dict[str, Any], data: st.DataObject) -> None:
    index = data.draw(st.integers(0, len(body["lines"]) - 1))
    bad = data.draw(st.decimals(max_value=Decimal(0), allow_nan=False, allow_infinity=False))
    body["lines"][index]["quantity"] = bad
    env = Envelope(entity=Entity.order, source_system="erp", source_id="x", body=body)
    with pytest.raises(ContractError) as exc:
        validate_body(env)
    assert exc.value.field == f"body.lines.{index}.quantity"
    assert exc.value.value == bad
    assert exc.value.rule == "Input should be greater than 0"


@given(statuses, statuses)
def test_status_comparisons_follow_rank(a: CustomerStatus, b: CustomerStatus) -> None:
    assert (a < b) == (a.rank < b.rank)
    assert (a <= b) == (a.rank <= b.rank)
    assert (a > b) == (a.rank > b.rank)
    assert (a >= b) == (a.rank >= b.rank)
    assert (a < b.value) == (a < b)
    assert (a.value < b) == (a < b)
    assert a.is_upgrade_to(b) == (b.rank > a.rank)
    assert list(CustomerStatus)[a.rank] is a


@given(statuses, st.booleans())
def test_freezing_allowed_exactly_from_potential(status: CustomerStatus, frozen: bool) -> None:
    body = {"kind": "organization", "name": "n", "status": status, "frozen": frozen}
    if frozen and status is CustomerStatus.invalid:
        with pytest.raises(ValidationError):
            Customer.model_validate(body)
    else:
        customer = Customer.model_validate(body)
        assert customer.unfrozen().status <= customer.status


@given(st.sampled_from(list(CustomerKind)), st.one_of(st.none(), st.dates()))
def test_birth_date_only_with_person(kind: CustomerKind, born: date | None) -> None:
    body = {"kind": kind, "name": "n", "birth_date": born}
    if born is not None and kind is CustomerKind.organization:
        with pytest.raises(ValidationError) as exc:
            Customer.model_validate(body)
        assert exc.value.errors()[0]["loc"] == ("birth_date",)
    else:
        assert Customer.model_validate(body).birth_date == born


SCHEME = re.compile(r"[a-z][a-z0-9_.:-]*")


@given(st.text(max_size=12))
def test_identifier_scheme_accepted_iff_it_matches_the_rule(scheme: str) -> None:
    ok = bool(SCHEME.fullmatch(scheme)) and len(scheme) <= 64
    try:
        Identifier(scheme=scheme, value="1")
    except ValidationError as exc:
        assert not ok, exc
        assert exc.errors()[0]["loc"] == ("scheme",)
    else:
        assert ok


@given(
    st.dictionaries(
        st.from_regex(r"\A[a-z][a-z0-9_.:-]{0,15}\Z"), st.text(min_size=1, max_size=20), max_size=4
    ),
    scalar_attrs,
    st.one_of(st.none(), prices),
)
def test_customer_round_trip(
    identifiers: dict[str, str], attributes: dict[str, Any], credit: Decimal | None
) -> None:
    customer = Customer(
        kind=CustomerKind.organization,
        name="宁波某某电器",
        identifiers=tuple(Identifier(scheme=s, value=v) for s, v in identifiers.items()),
        credit_limit=credit,
        attributes=attributes,
    )
    assert Customer.model_validate_json(customer.model_dump_json()) == customer
    for scheme, value in identifiers.items():
        assert customer.identifier(scheme) == value


@settings(max_examples=300)
@given(st.binary(max_size=200))
def test_any_bytes_parse_or_raise_contract_error(raw: bytes) -> None:
    try:
        Envelope.from_bytes(raw)
    except ContractError as exc:
        assert exc.field
        assert exc.rule


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner),
    max_leaves=10,
)


@given(st.sampled_from(list(Entity)), st.sampled_from(list(Op)), json_values)
def test_any_json_body_validates_or_raises_contract_error(
    entity: Entity, op: Op, body: Any
) -> None:
    if not isinstance(body, dict):
        body = {"value": body}
    env = Envelope(entity=entity, op=op, source_system="crm", source_id="k", body=body)
    env = Envelope.from_bytes(json.dumps(env.model_dump(mode="json")).encode())
    try:
        validate_body(env)
    except ContractError as exc:
        assert exc.field.startswith("body")
        assert exc.rule
