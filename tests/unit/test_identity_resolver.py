"""Resolution decisions a data steward would check: merges, refusals, flags and stable ids."""

from __future__ import annotations

import dataclasses
import math
import uuid
from typing import Any

import pytest

from flows.identity.batch import InputRow, run_batch
from flows.identity.blocking import keys
from flows.identity.config import IdentityConfig
from flows.identity.profile import Profile, build_profile, customer_profile, merge_profiles
from flows.identity.resolver import Decision, InMemoryIndex, Resolver, decide, golden_id_for
from flows.identity.scoring import Model, score

HUAWEI = "914403001922038216"
OTHER = "91440300708461136T"  # a different valid credit code


def org(name: str, *codes: str, phones: tuple[str, ...] = (), **extra: Any) -> dict[str, Any]:
    return {
        "kind": "organization",
        "name": name,
        "identifiers": [{"scheme": "uscc", "value": c} for c in codes],
        "phones": list(phones),
        **extra,
    }


def resolver() -> Resolver:
    return Resolver(Model.default("customer"), IdentityConfig())


def test_same_valid_credit_code_merges_across_spellings() -> None:
    r = resolver()
    first = r.resolve("crm", "C1", org("深圳市华为技术有限公司", HUAWEI))
    second = r.resolve("erp", "E1", org("華為技術（深圳）有限公司", HUAWEI))
    assert first.action == "new"
    assert second.action == "merge" and second.golden_id == first.golden_id
    assert "id_match" in second.flags
    assert any(e.field == "id" and "decides alone" in e.level for e in second.evidence)


def test_credit_code_decides_even_when_the_name_changed() -> None:
    r = resolver()
    first = r.resolve("crm", "C1", org("深圳市华为技术有限公司", HUAWEI))
    renamed = r.resolve("erp", "E9", org("完全不同的名字有限公司", HUAWEI))
    assert renamed.golden_id == first.golden_id


def test_conflicting_valid_codes_never_merge_whatever_else_agrees() -> None:
    r = resolver()
    phone = ("0755-28780808",)
    address = [{"city": "深圳市", "street": "坂田华为基地"}]
    first = r.resolve("crm", "C1", org("华为技术有限公司", HUAWEI, phones=phone, addresses=address))
    second = r.resolve("erp", "E1", org("华为技术有限公司", OTHER, phones=phone, addresses=address))
    assert second.action == "new" and second.golden_id != first.golden_id
    kept = [e for e in second.evidence if e.level == "kept apart"]
    assert kept and first.golden_id in kept[0].detail and "uscc" in kept[0].detail


def test_invalid_code_is_data_not_an_identifier_and_the_reason_is_shown() -> None:
    r = resolver()
    bad = HUAWEI[:-1] + "7"
    a = r.resolve("crm", "C1", org("甲公司贸易有限公司", bad))
    b = r.resolve("erp", "E1", org("乙方电子科技有限公司", bad))
    assert b.golden_id != a.golden_id  # a shared invalid code decides nothing
    issues = [e.detail for e in b.evidence if e.level == "issue"]
    assert issues and "invalid" in issues[0] and bad in issues[0]
    profile = customer_profile(org("甲公司贸易有限公司", bad))
    assert profile.strong_ids == () and profile.issues


@pytest.mark.parametrize("record", [{}, {"name": "有限公司"}, {"name": " ", "phones": ["12"]}])
def test_record_without_usable_fields_is_flagged_and_never_merged(record: dict[str, Any]) -> None:
    r = resolver()
    first = r.resolve("crm", "X1", record)
    second = r.resolve("crm", "X2", record)
    assert first.action == second.action == "new"
    assert "unmatchable" in first.flags and "unmatchable" in second.flags
    assert first.golden_id != second.golden_id


def test_organization_and_person_never_merge() -> None:
    r = resolver()
    a = r.resolve("crm", "C1", {"kind": "person", "name": "王芳", "phones": ["13812345678"]})
    b = r.resolve("erp", "E1", {"kind": "organization", "name": "王芳", "phones": ["13812345678"]})
    assert a.golden_id != b.golden_id


def test_golden_id_comes_from_the_first_member_and_is_stable() -> None:
    r = resolver()
    d = r.resolve("crm", "C1", org("深圳市华为技术有限公司", HUAWEI))
    expected = golden_id_for("customer", "crm", "C1")
    assert d.golden_id == expected and expected.startswith("G-")
    uuid.UUID(expected[2:])
    assert resolver().resolve("crm", "C1", org("x电子有限公司")).golden_id == expected


def test_known_source_record_stays_in_its_cluster() -> None:
    r = resolver()
    d1 = r.resolve("crm", "C1", org("深圳市华为技术有限公司", HUAWEI))
    d2 = r.resolve("crm", "C1", org("华为技术有限公司", phones=("13900001111",)))
    assert d2.golden_id == d1.golden_id and "known_source" in d2.flags


def test_cluster_profile_accumulates_members() -> None:
    r = resolver()
    a = r.resolve("crm", "C1", org("深圳市华为技术有限公司", HUAWEI, phones=("0755-28780808",)))
    r.resolve("erp", "E1", org("华为技术有限公司", HUAWEI, phones=("13812345678",)))
    # the third record shares only the phone the second one brought
    third = r.resolve(
        "drp", "D1", {"kind": "organization", "name": "华为技术", "phones": ["+86 138 1234 5678"]}
    )
    assert third.golden_id == a.golden_id


def test_thresholds_decide_merge_review_new() -> None:
    model = Model.default("customer")
    base = {"kind": "person", "name": "王建国", "birth_date": "1970-01-02"}
    candidate = customer_profile({**base, "phones": ["13812345678"]})
    record = customer_profile(base)
    gid = "G-existing"
    p = score(model, record, candidate).probability
    assert 0.0 < p < 1.0

    def run(upper: float, lower: float) -> Decision:
        cfg = IdentityConfig(upper=upper, lower=lower)
        return decide(model, cfg, "oa", "O1", record, [(gid, candidate)])

    assert run(min(p * 0.99, 0.98), min(p * 0.5, 0.5)).action == "merge"
    review = run(min(p * 1.01 + 0.001, 0.999), p * 0.5)
    assert review.action == "review" and review.candidate_id == gid
    assert review.golden_id == golden_id_for("customer", "oa", "O1")
    assert run(0.999, min(p * 1.01 + 0.001, 0.999)).action == "new"


WANG = {"kind": "person", "name": "王建国", "birth_date": "1970-01-02"}


def at_probability(model: Model, record: Profile, candidate: Profile, p: float) -> Model:
    """`model` with its priors moved so that the pair scores `p` exactly."""
    shift = math.log2(p / (1 - p)) - score(model, record, candidate).weight

    def moved(prior: float) -> float:
        return 1 / (1 + 2 ** -(math.log2(prior / (1 - prior)) + shift))

    priors = {kind: moved(prior) for kind, prior in model.kind_priors.items()}
    return dataclasses.replace(model, prior=moved(model.prior), kind_priors=priors)


@pytest.mark.parametrize(
    ("entity", "record", "candidate", "action"),
    [
        # with customers at 0.7, a coin toss between two customers is for a person to confirm
        (
            "customer",
            WANG,
            {**WANG, "phones": ["13812345678"]},
            "review",
        ),
        # a material at the same probability merges: its threshold stays 0.5
        (
            "material",
            {"code": "P-300", "name": "不锈钢304内六角螺钉", "specification": "M3x8", "uom": "PCS"},
            {"code": "P-301", "name": "不锈钢304内六角螺钉", "specification": "M3x8", "uom": "PCS"},
            "merge",
        ),
    ],
)
def test_at_probability_06_a_customer_goes_to_review_and_a_material_merges_per_entity(
    entity: str, record: dict[str, Any], candidate: dict[str, Any], action: str
) -> None:
    ours, theirs = build_profile(entity, record), build_profile(entity, candidate)
    model = at_probability(Model.default(entity), ours, theirs, 0.6)
    config = IdentityConfig(upper={"customer": 0.7})
    decision = decide(model, config, "oa", "O1", ours, [("G-existing", theirs)])
    assert decision.score == pytest.approx(0.6)
    assert decision.action == action and decision.candidate_id == "G-existing"


def test_equal_namesakes_compete_instead_of_one_winning_by_id_order() -> None:
    model = Model.default("customer")
    cfg = IdentityConfig(upper=0.5, lower=0.1)
    twin = customer_profile({"kind": "person", "name": "王建国", "birth_date": "1970-01-02"})
    alone = decide(model, cfg, "oa", "O1", twin, [("G-a", twin)])
    both = decide(model, cfg, "oa", "O1", twin, [("G-a", twin), ("G-b", twin)])
    assert both.score < alone.score
    assert both.score <= 0.5


def test_in_memory_index_ignores_keys_held_by_more_than_cap_golden_records() -> None:
    index = InMemoryIndex(cap=2)
    for gid in ("G1", "G2", "G3"):
        index.add(gid, {"nm:common"})
    index.add("G1", {"ph:12345678"})
    index.add("G2", {"ph:12345678", "em:a@b.cn"})
    assert index.candidates({"nm:common"}, limit=10) == []
    # ranked by keys shared, then id
    assert index.candidates({"ph:12345678", "em:a@b.cn", "nm:common"}, limit=10) == ["G2", "G1"]
    assert index.candidates({"ph:12345678"}, limit=1) == ["G1"]


def test_blocking_keys_cover_identifier_phone_and_name() -> None:
    k = keys("customer", org("深圳市华为技术有限公司", HUAWEI, phones=("0755-28780808",)))
    assert f"id:uscc:{HUAWEI}" in k
    assert "ph:28780808" in k
    assert "nm:华为技术" in k
    assert "py:hwjs|深圳" in k
    material = keys("material", {"code": "scr-m3x8", "specification": "M3×8", "uom": "个"})
    assert "code:SCRM3X8" in material and "spec:M3X8|PCS" in material


def test_materials_merge_on_spelling_variants_but_not_on_another_size() -> None:
    rows = [
        InputRow(
            "pdm",
            "P1",
            {"code": "SCR-M3X8", "name": "十字盘头螺钉", "specification": "M3×8", "uom": "个"},
        ),
        InputRow(
            "erp",
            "E1",
            {"code": "SCRM3X8", "name": "十字盤頭螺釘", "specification": "m3*8", "uom": "PCS"},
        ),
        InputRow(
            "erp",
            "E2",
            {"code": "SCRM3X10", "name": "十字盘头螺钉", "specification": "M3x10", "uom": "PCS"},
        ),
    ]
    out = {r["source_id"]: r["cluster_id"] for r in run_batch("material", rows).rows}
    assert out["P1"] == out["E1"]
    assert out["E2"] != out["P1"]


def test_batch_and_streaming_give_the_same_clusters() -> None:
    rows = [
        InputRow("crm", "C1", org("深圳市华为技术有限公司", HUAWEI, phones=("0755-28780808",))),
        InputRow("erp", "E1", org("華為技術（深圳）有限公司", phones=("+86 755 2878 0808",))),
        InputRow("drp", "D1", org("华为技术有限公司", OTHER)),
        InputRow("oa", "O1", {"kind": "person", "name": "张伟", "phones": ["13812345678"]}),
        InputRow("crm", "C2", {"kind": "person", "name": "張偉", "phones": ["+86 138-1234-5678"]}),
    ]
    model = Model.default("customer")
    batch = run_batch("customer", rows, model=model)
    streaming = Resolver(model, IdentityConfig())
    for row, out in zip(rows, batch.rows, strict=True):
        decision = streaming.resolve(row.source_system, row.source_id, row.record)
        assert decision.golden_id == out["cluster_id"]
    clusters = [r["cluster_id"] for r in batch.rows]
    assert clusters[0] == clusters[1] != clusters[2]
    assert clusters[3] == clusters[4]


def test_model_round_trips_through_json() -> None:
    model = Model.default("customer")
    model.kind_priors = {"person": 3e-5}
    again = Model.from_dict(model.to_dict())
    a = customer_profile({"kind": "person", "name": "张伟", "phones": ["13812345678"]})
    b = customer_profile({"kind": "person", "name": "張偉", "phones": ["138 1234 5678"]})
    assert score(again, a, b).weight == pytest.approx(score(model, a, b).weight)


def test_a_saved_model_has_the_same_bytes_whatever_order_its_counts_were_made_in() -> None:
    """`dedup batch --save-model` on the same input twice writes the same file: the fit's counts
    come out of hash-seeded sets, so their order differs between runs."""
    import json

    from flows.identity.scoring import TermFrequencies

    def saved(counts: dict[str, int], buckets: dict[int, float]) -> str:
        model = Model.default("customer")
        model.tf = {"org_name": TermFrequencies(100, counts, buckets)}
        return json.dumps(model.to_dict(), ensure_ascii=False)

    one = saved({"华为": 3, "中兴": 7, "联想": 3}, {2: 9.5, 4: 6.0})
    other = saved({"联想": 3, "中兴": 7, "华为": 3}, {4: 6.0, 2: 9.5})
    assert one == other
    assert list(json.loads(one)["tf"]["org_name"]["counts"]) == ["中兴", "华为", "联想"]


def person(name: str, dob: str | None, phone: str = "+49 30 2541894") -> dict[str, Any]:
    return {
        "kind": "person",
        "name": name,
        "birth_date": dob,
        "phones": [phone],
        "addresses": [{"city": "Berlin", "street": "54 Storgatan"}],
    }


@pytest.mark.parametrize("lift", [True, False])
def test_a_given_name_variant_merges_when_family_name_and_birth_date_agree(lift: bool) -> None:
    r = Resolver(Model.default("customer"), IdentityConfig(dob_lifts_name_veto=lift))
    first = r.resolve("crm", "C1", person("Oleksandr Janssen", "1956-07-02"))
    second = r.resolve("erp", "E1", person("Sasha Janssen", "1956-07-02"))
    if lift:
        assert second.action == "merge" and second.golden_id == first.golden_id
        assert any(e.level == "name veto lifted" for e in second.evidence)
    else:
        assert second.action == "review" and "disagreement" in second.flags


@pytest.mark.parametrize(
    ("ours", "theirs"),
    [
        ("Lorenzo Krüger", "KRÜGER Enzo"),  # family name first: "kruger" is not the last word
        ("Wojciech Eriksen", "ERISEN Wojtek"),  # and mistyped (Jaro-Winkler 0.94)
    ],
)
def test_the_name_veto_is_lifted_by_a_name_word_in_either_position(ours: str, theirs: str) -> None:
    # decision 48: systems disagree on which word is the family name, and a family name is
    # mistyped as often as a given name; the birth date, phone and address agree
    r = resolver()
    first = r.resolve("crm", "C1", person(ours, "1988-06-25"))
    second = r.resolve("erp", "E1", person(theirs, "1988-06-25"))
    assert second.action == "merge" and second.golden_id == first.golden_id
    assert any(e.level == "name veto lifted" for e in second.evidence)


def test_a_relative_at_the_same_address_is_not_merged() -> None:
    r = resolver()
    first = r.resolve("crm", "C1", person("Oleksandr Janssen", "1956-07-02"))
    # same family name, phone and address; another birth date: the son, not a typo
    son = r.resolve("erp", "E1", person("Sasha Janssen", "1984-03-11"))
    # same birth date but another family name: no lifting either
    other = r.resolve("oa", "O1", person("Sasha Petrenko", "1956-07-02"))
    assert son.golden_id != first.golden_id and son.action != "merge"
    assert other.golden_id != first.golden_id and other.action != "merge"


def part(sid: str, name: str, spec: str, code: str) -> InputRow:
    body = {"code": code, "name": name, "specification": spec, "uom": "PCS"}
    return InputRow("erp", sid, body)


def test_materials_of_one_size_in_another_grade_are_different_parts() -> None:
    rows = [
        part("R1", "贴片电阻 1%", "10K*0603", "P-100"),
        part("R2", "片式电阻(1%)", "10K x 0603", "P100"),
        part("R5", "贴片电阻 5%", "10K*0603", "P-200"),
        part("S4", "不锈钢304内六角螺钉", "M3x8", "P-300"),
        part("S6", "不锈钢316内六角螺钉", "M3x8", "P-400"),
    ]
    out = {r["source_id"]: r["cluster_id"] for r in run_batch("material", rows).rows}
    assert out["R1"] == out["R2"]
    assert out["R5"] != out["R1"] and out["S6"] != out["S4"]


def test_a_part_typed_in_other_words_is_found_among_many_namesakes_in_other_sizes() -> None:
    # twelve screws named alike in other lengths share more name keys with the new record
    # than the right part does; the right part shares the specification and the code
    rows = [part(f"N{n}", "内六角圆柱头螺钉", f"M4x{n}", f"P-5{n:02d}") for n in range(10, 34, 2)]
    rows.insert(5, part("T", "杯头螺丝", "M4x52", "P-777"))
    rows.append(part("V", "内六角圆柱头螺钉", "M4×52", "P777"))
    config = IdentityConfig(max_candidates=4)
    out = {r["source_id"]: r["cluster_id"] for r in run_batch("material", rows, config).rows}
    assert out["V"] == out["T"]
    assert len({out[f"N{n}"] for n in range(10, 34, 2)}) == 12


# The demo's motor assemblies (connectors/common/fakedata.py): four shaver models, one name and
# one specification, four PDM drawing numbers; and the ERP material of one of them, which
# carries ERP's own material number.
MOTORS = [
    InputRow(
        "pdm",
        f"{model}-20-000",
        {
            "code": f"{model}-20-000",
            "name": "电机组件",
            "specification": "直流电机 7000rpm",
            "uom": "PCE",
            "category": "SF",
        },
    )
    for model in ("RS7100", "RS5200", "RS3300", "RS9900")
]
MOTOR_IN_ERP = InputRow(
    "erp",
    "2000000017",
    {"code": "2000000017", "name": "电机组件", "specification": "直流电机 7000rpm", "uom": "PCE"},
)


@pytest.mark.parametrize("erp_first", [False, True])
def test_parts_under_other_numbers_of_one_system_are_not_merged(erp_first: bool) -> None:
    rows = [MOTOR_IN_ERP, *MOTORS] if erp_first else [MOTORS[0], MOTOR_IN_ERP, *MOTORS[1:]]
    model = Model.default("material")
    batch = run_batch("material", rows, model=model)
    out = {r["source_id"]: r["cluster_id"] for r in batch.rows}
    assert len({out[r.source_id] for r in MOTORS}) == 4
    # the ERP material joins at most one of them
    assert sum(out[r.source_id] == out["2000000017"] for r in MOTORS) <= 1
    streaming = Resolver(model, IdentityConfig())
    for row in rows:
        decision = streaming.resolve(row.source_system, row.source_id, row.record)
        assert decision.golden_id == out[row.source_id]
        if row in MOTORS[1:]:
            assert decision.action != "merge"
        if row is MOTORS[1]:
            # name and spec agree (p >= upper): a review, naming the system and both numbers;
            # the later ones compete between the golden records and land below upper
            assert decision.action == "review" and "disagreement" in decision.flags
            note = next(e for e in decision.evidence if e.level == "system conflict")
            assert note.field == "code"
            assert note.detail.startswith("pdm code RS520020000 against RS710020000")
            notes = [e.detail for e in decision.evidence]
            assert "pdm codes disagree: no automatic merge" in notes


def test_a_part_numbered_again_inside_one_system_goes_to_review_not_merge() -> None:
    r = Resolver(Model.default("material"), IdentityConfig())
    body = {"name": "自攻螺丝", "specification": "PA2x6 镀镍", "uom": "PCE"}
    first = r.resolve("pdm", "RS7100-30-004", {**body, "code": "RS7100-30-004"})
    # the same number re-typed in another system, and another system's own number, merge
    erp = r.resolve("erp", "E1", {**body, "code": "RS7100.30.004"})
    drp = r.resolve("drp", "D1", {**body, "code": "DRP-000815"})
    assert erp.action == "merge" and erp.golden_id == first.golden_id
    assert drp.action == "merge" and drp.golden_id == first.golden_id
    # the PDM's own re-entry (connectors/pdm/simulator.py): every code of the golden record
    # counts, and none of its PDM codes is this one
    again = r.resolve("pdm", "GB845-ST2.2x6-01", {**body, "code": "GB845-ST2.2x6-01"})
    assert again.action == "review" and again.candidate_id == first.golden_id
    assert "disagreement" in again.flags
    # an update of a known record under a corrected number is not a re-entry
    fixed = r.resolve("pdm", "RS7100-30-004", {**body, "code": "RS7100-30-005"})
    assert fixed.action == "merge" and "known_source" in fixed.flags


def test_material_codes_remember_their_system_through_json_and_merges() -> None:
    pdm = build_profile("material", MOTORS[0].record, source_system="pdm")
    erp = build_profile("material", MOTOR_IN_ERP.record, source_system="erp")
    assert pdm.system_codes == (("pdm", "RS710020000"),)
    merged = merge_profiles(pdm, erp)
    assert merged.system_codes == (("pdm", "RS710020000"), ("erp", "2000000017"))
    assert Profile.from_dict(merged.to_dict()) == merged
    # customers keep their system-local numbers as `<system>.<name>` identifiers instead
    customer = build_profile("customer", org("华为技术有限公司"), source_system="crm")
    assert customer.system_codes == ()


def test_one_material_under_two_erp_codes_merges_unless_erp_is_configured_distinct() -> None:
    # 一物多码: the same part keyed twice into the ERP under two material numbers is the
    # duplicate the hub exists to merge; only systems listed in distinct_code_systems (PDM by
    # default) number each part once
    body = {"name": "深沟球轴承", "specification": "6204-2RS", "uom": "PCE"}
    for distinct, merged in ((["pdm"], True), (["pdm", "erp"], False)):
        r = Resolver(Model.default("material"), IdentityConfig(distinct_code_systems=distinct))
        first = r.resolve("erp", "1000001027", {**body, "code": "1000001027"})
        again = r.resolve("erp", "1000003388", {**body, "code": "1000003388"})
        assert (again.action == "merge") is merged, (distinct, again.action)
        assert (again.golden_id == first.golden_id) is merged
