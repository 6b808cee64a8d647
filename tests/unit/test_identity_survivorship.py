"""Survivorship: which source supplies each field of a golden record, and can we trace it."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from typing import Any

import pytest
from pydantic import ValidationError

from contracts.customer import Customer
from flows.identity.survivorship import (
    FieldRule,
    MemberRecord,
    SurvivorshipConfig,
    completeness,
    survive,
)

HUAWEI = "914403001922038216"
HUAWEI_TYPO = "914403001922038217"  # one character off: fails the check character
OLD = datetime(2026, 1, 1, tzinfo=UTC)
NEW = datetime(2026, 6, 1, tzinfo=UTC)


def member(
    system: str, sid: str, ts: datetime = OLD, deleted: bool = False, **payload: Any
) -> MemberRecord:
    return MemberRecord(system, sid, payload, ts, f"msg-{system}-{sid}", deleted)


def test_status_comes_only_from_crm_or_oa_and_frozen_goes_with_it() -> None:
    erp = member("erp", "E1", NEW, status="reference", frozen=False)
    crm = member("crm", "C1", OLD, status="pilot", frozen=True)
    out = survive("customer", [erp, crm])
    assert out.record["status"] == "pilot"
    assert out.record["frozen"] is True
    assert out.winners["status"]["source_system"] == "crm"
    assert out.winners["frozen"] == {
        "source_system": "crm",
        "source_id": "C1",
        "message_id": "msg-crm-C1",
        "rule": "follows status",
    }
    alone = survive("customer", [erp])
    assert "status" not in alone.record and "frozen" not in alone.record


def test_credit_limit_only_from_erp_with_its_currency() -> None:
    crm = member("crm", "C1", NEW, credit_limit="900000.00", currency="USD")
    erp = member("erp", "E1", OLD, credit_limit="100000.00", currency="CNY")
    out = survive("customer", [crm, erp])
    assert (out.record["credit_limit"], out.record["currency"]) == ("100000.00", "CNY")
    assert out.winners["credit_limit"]["rule"] == "priority"
    assert out.winners["currency"]["rule"] == "follows credit_limit"
    assert "credit_limit" not in survive("customer", [crm]).record


def test_name_is_the_most_complete_and_traceable_to_its_message() -> None:
    short = member("crm", "C1", NEW, name="华强电子")
    full = member("drp", "D7", OLD, name="深圳市华强电子有限公司")
    out = survive("customer", [short, full])
    assert out.record["name"] == "深圳市华强电子有限公司"
    assert out.winners["name"] == {
        "source_system": "drp",
        "source_id": "D7",
        "message_id": "msg-drp-D7",
        "rule": "complete",
    }


def test_equally_complete_names_fall_to_source_priority() -> None:
    crm = member("crm", "C1", NEW, name="深圳華強電子有限公司")
    erp = member("erp", "E1", OLD, name="深圳华强电子有限公司")
    assert survive("customer", [crm, erp]).record["name"] == "深圳华强电子有限公司"


def test_phones_and_emails_are_united_each_number_once() -> None:
    crm = member("crm", "C1", phones=["+86 755 2878 0808"], emails=["Buyer@Huaqiang.CN"])
    erp = member(
        "erp",
        "E1",
        phones=["0755-28780808", "138 1234 5678"],
        emails=["buyer@huaqiang.cn", "ap@huaqiang.cn"],
    )
    out = survive("customer", [erp, crm])
    assert out.record["phones"] == ["+86 755 2878 0808", "138 1234 5678"]
    assert out.record["emails"] == ["Buyer@Huaqiang.CN", "ap@huaqiang.cn"]
    sources = [(s["source_system"], s["source_id"]) for s in out.winners["phones"]["sources"]]
    assert sources == [("crm", "C1"), ("erp", "E1")]
    assert out.winners["phones"]["rule"] == "union"


def test_identifiers_one_per_scheme_and_a_valid_code_beats_a_mistyped_one() -> None:
    erp = member(
        "erp",
        "E1",
        identifiers=[
            {"scheme": "uscc", "value": HUAWEI_TYPO},
            {"scheme": "erp.customer_no", "value": "E1"},
        ],
    )
    crm = member(
        "crm",
        "C1",
        identifiers=[
            {"scheme": "uscc", "value": HUAWEI},
            {"scheme": "crm.customer_no", "value": "C1"},
        ],
    )
    out = survive("customer", [erp, crm])
    by_scheme = {i["scheme"]: i["value"] for i in out.record["identifiers"]}
    assert by_scheme == {"uscc": HUAWEI, "erp.customer_no": "E1", "crm.customer_no": "C1"}


def test_addresses_and_contacts_are_united_by_their_normalized_form() -> None:
    erp = member(
        "erp",
        "E1",
        addresses=[{"type": "billing", "city": "深圳市", "street": "深南大道1001号"}],
        contacts=[{"name": "张伟", "phones": ["13800000001"]}],
    )
    crm = member(
        "crm",
        "C1",
        addresses=[
            {"type": "office", "city": "深圳", "street": "深南大道1001号"},
            {"type": "shipping", "city": "东莞", "street": "长安镇振安路8号"},
        ],
        contacts=[{"name": "張偉"}, {"name": "李娜"}],
    )
    out = survive("customer", [crm, erp])
    assert [a["city"] for a in out.record["addresses"]] == ["深圳市", "东莞"]
    assert [c["name"] for c in out.record["contacts"]] == ["張偉", "李娜"]


def test_most_recent_rule_and_its_tie_break() -> None:
    a = member("crm", "C1", OLD, size="50-99")
    b = member("erp", "E1", NEW, size="100-499")
    assert survive("customer", [a, b]).record["size"] == "100-499"
    same_time = [member("erp", "E1", NEW, size="x"), member("crm", "C1", NEW, size="y")]
    assert survive("customer", same_time).record["size"] == "y"  # crm is listed first


def test_deleted_members_and_blank_values_supply_nothing() -> None:
    gone = member("erp", "E1", NEW, deleted=True, name="已删除有限公司", credit_limit="5.00")
    blank = member("crm", "C1", NEW, name="  ", owner="")
    live = member("drp", "D1", OLD, name="华强电子", owner="王五")
    out = survive("customer", [gone, blank, live])
    assert out.record["name"] == "华强电子"
    assert out.record["owner"] == "王五"
    assert "credit_limit" not in out.record


def test_result_does_not_depend_on_member_order() -> None:
    members = [
        member("crm", "C1", OLD, name="华强", phones=["13800000001"], status="successful"),
        member("erp", "E1", NEW, name="华强电子", phones=["13800000002"], credit_limit="1.00"),
        member("drp", "D1", NEW, name="华强电子", phones=["138 0000 0001"], owner="张三"),
        member("oa", "O1", OLD, status="pilot", attributes={"region": "south"}),
    ]
    expected = survive("customer", members)
    rng = random.Random(1)
    for _ in range(10):
        shuffled = members[:]
        rng.shuffle(shuffled)
        assert survive("customer", shuffled) == expected


def test_attributes_united_key_by_key_higher_rank_first() -> None:
    crm = member("crm", "C1", attributes={"level": "VIP", "region": None})
    erp = member("erp", "E1", attributes={"level": "normal", "region": "south", "x": 1})
    out = survive("customer", [erp, crm])
    assert out.record["attributes"] == {"level": "VIP", "region": "south", "x": 1}


def test_unknown_fields_use_the_default_rule() -> None:
    a = member("crm", "C1", OLD, nickname="old")
    b = member("erp", "E1", NEW, nickname="new")
    out = survive("customer", [a, b])
    assert out.record["nickname"] == "new"
    assert out.winners["nickname"]["rule"] == "recent"


def test_a_birth_date_never_lands_on_an_organization() -> None:
    org = member("erp", "E1", kind="organization", name="华强电子有限公司")
    person = member("crm", "C1", kind="person", name="华强", birth_date="1980-01-01")
    out = survive("customer", [org, person])
    assert out.record["kind"] == "organization"
    assert "birth_date" not in out.record and "birth_date" not in out.winners
    assert any("birth_date" in n for n in out.notes)


def test_a_golden_customer_assembled_from_four_systems_is_a_valid_customer() -> None:
    members = [
        member(
            "erp",
            "E1",
            NEW,
            kind="organization",
            name="深圳市华强电子有限公司",
            identifiers=[{"scheme": "uscc", "value": HUAWEI}],
            status="potential",
            credit_limit="200000.00",
            currency="CNY",
            phones=["0755-28780808"],
        ),
        member(
            "crm",
            "C1",
            OLD,
            kind="organization",
            name="华强电子",
            status="successful",
            frozen=True,
            owner="张三",
            identifiers=[{"scheme": "crm.customer_no", "value": "C1"}],
        ),
        member("oa", "O1", NEW, kind="organization", name="華強電子", status="pilot"),
        member("drp", "D1", OLD, kind="organization", name="华强", emails=["a@hq.cn"]),
    ]
    out = survive("customer", members)
    customer = Customer.model_validate(out.record)
    assert customer.status.value == "successful" and customer.frozen
    assert customer.credit_limit is not None and str(customer.credit_limit) == "200000.00"
    assert set(out.winners) == set(out.record)
    assert all(w["message_id"] for w in out.winners.values())


def test_material_defaults_pdm_designs_erp_stocks() -> None:
    pdm = member("pdm", "P-100", OLD, code="P-100", name="刀头", specification="M3x8", uom="PCS")
    erp = member(
        "erp", "100023", NEW, code="100023", name="刀头组件", specification="M3*8", uom="EA"
    )
    out = survive("material", [pdm, erp])
    assert out.record["code"] == "100023" and out.record["uom"] == "EA"
    assert out.record["name"] == "刀头" and out.record["specification"] == "M3x8"
    assert out.winners["name"]["source_system"] == "pdm"


def test_configured_rules_replace_single_defaults() -> None:
    config = SurvivorshipConfig.model_validate(
        {"customer": {"name": {"rule": "priority", "sources": ["crm"]}}}
    )
    assert config.customer["name"] == FieldRule(rule="priority", sources=("crm",))
    assert config.customer["status"].only  # the other defaults stay
    short = member("crm", "C1", name="华强")
    full = member("erp", "E1", name="深圳市华强电子有限公司")
    assert survive("customer", [short, full], config).record["name"] == "华强"


def test_follows_must_name_a_field_with_its_own_rule() -> None:
    with pytest.raises(ValidationError, match="follows"):
        SurvivorshipConfig.model_validate({"customer": {"frozen": {"follows": "nothing"}}})


def test_no_members_no_record() -> None:
    out = survive("customer", [])
    assert out.record == {} and out.winners == {}


def test_completeness_counts_text_length_and_non_empty_parts() -> None:
    assert completeness(" ab ") == 2
    assert completeness(["a", "", None, {"x": "y", "z": ""}]) == 2
    assert completeness(None) == 0
