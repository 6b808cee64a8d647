"""Issue 4, decision 45: materials re-typed from PDM into ERP, DRP and MES are found again.

Numbers of two numbering systems are not a disagreement, the ERP's drawing number is the PDM
number it is, the fitted model weighs an equal specification as what it is among parts, and the
right part is scored even when a dozen namesakes in other sizes share more words with the record.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest

from bench.data import gen_materials
from flows.identity.batch import InputRow, evaluate, run_batch
from flows.identity.blocking import blocking_keys
from flows.identity.config import IdentityConfig
from flows.identity.normalize import name_grades
from flows.identity.profile import build_profile
from flows.identity.resolver import Resolver
from flows.identity.scoring import COMPARISONS, NULL, Model, score
from flows.identity.training import fit

SCREW = {"name": "内六角圆柱头螺钉 不锈钢304", "specification": "M4x52", "uom": "PCS"}


def _code_level(ours: str, theirs: str) -> str:
    model = Model.default("material")
    a = build_profile("material", {**SCREW, "code": ours})
    b = build_profile("material", {**SCREW, "code": theirs})
    return score(model, a, b).level_of(model, "code")


@pytest.mark.parametrize(
    ("ours", "theirs", "level"),
    [
        ("P-1234567", "P1234567", "exact"),  # the PDM number re-typed in the ERP
        ("P-1234567", "p.1234567", "exact"),
        ("P-1234567", "P 1234567", "exact"),
        ("P-1234567", "P-1234568", "close"),  # one digit wrong
        ("P-1234567", "P-7654321", "else"),  # another drawing
        ("ERP012345", "ERP543210", "else"),  # two numbers of the ERP's numbering
        ("ERP012345", "P-1234567", "null"),  # the ERP's own number against a PDM number
        ("2000000017", "RS7100-20-000", "null"),
    ],
)
def test_codes_of_two_numbering_systems_are_not_compared(
    ours: str, theirs: str, level: str
) -> None:
    assert _code_level(ours, theirs) == level


def test_a_part_under_the_erps_own_number_weighs_as_one_without_a_code() -> None:
    model = Model.default("material")
    pdm = build_profile("material", {**SCREW, "code": "P-1234567"})
    own = build_profile("material", {**SCREW, "code": "ERP012345"})
    bare = build_profile("material", SCREW)
    assert score(model, own, pdm).weight == score(model, bare, pdm).weight


def test_a_percentage_glued_to_a_word_is_still_the_grade() -> None:
    assert name_grades("1%SMD电阻") == name_grades("贴片电阻 1%") == ("1%",)
    assert name_grades("5%片式电阻") != name_grades("1%SMD电阻")


def test_one_character_between_two_head_types_is_not_a_similar_name() -> None:
    model = Model.default("material")
    cap = build_profile("material", {**SCREW, "name": "杯头螺丝 不锈钢304"})
    round_head = build_profile("material", {**SCREW, "name": "圆头螺丝 不锈钢304"})
    socket = build_profile("material", {**SCREW, "name": "内六角螺钉 不锈钢304"})
    assert score(model, cap, round_head).level_of(model, "name") == "else"
    # a less specific description of the same part stays close
    assert score(model, cap, socket).level_of(model, "name") == "close"


@pytest.mark.parametrize(
    ("ours", "theirs", "level"),
    [
        ("十字圆头螺丝", "十字盘头螺钉", "close"),  # the trade's 圆头 for a pan head
        ("圆头螺丝", "半圆头螺钉", "close"),  # ... or for a button head
        ("十字盘头螺钉", "半圆头螺钉", "else"),  # two standard heads stay apart
        ("圆头螺丝", "沉头螺钉", "else"),  # and 圆头 is no countersunk head
        ("圆头螺丝", "杯头螺丝", "else"),
    ],
)
def test_a_round_head_is_a_less_specific_pan_or_button_head(
    ours: str, theirs: str, level: str
) -> None:
    model = Model.default("material")
    a = build_profile("material", {**SCREW, "name": f"{ours} 不锈钢304"})
    b = build_profile("material", {**SCREW, "name": f"{theirs} 不锈钢304"})
    assert score(model, a, b).level_of(model, "name") == level
    assert score(model, b, a).level_of(model, "name") == level


# The demo's motor assemblies (decision 44): four PDM parts of one name and specification.
MOTOR = {"name": "电机组件", "specification": "直流电机 7000rpm", "uom": "PCE"}
MODELS = ("RS7100", "RS5200", "RS3300", "RS9900")


def _pdm(model: str) -> tuple[str, str, dict[str, Any]]:
    number = f"{model}-20-000"
    return "pdm", number, {**MOTOR, "code": number, "attributes": {"drawing_no": number}}


def _erp(drawing: str) -> tuple[str, str, dict[str, Any]]:
    # connectors/erp/mapping.py: MATNR is the code, ZEINR becomes attributes.drawing_no
    body = {**MOTOR, "code": "2000000017", "attributes": {"drawing_no": drawing}}
    return "erp", "2000000017", body


@pytest.mark.parametrize("erp_first", [False, True])
def test_an_erp_material_finds_its_own_pdm_part_by_the_drawing_number(erp_first: bool) -> None:
    pdm = [_pdm(m) for m in MODELS]
    rows = [_erp("RS5200-20-000"), *pdm] if erp_first else [*pdm, _erp("RS5200-20-000")]
    r = Resolver(Model.default("material"), IdentityConfig())
    decided = {sid: r.resolve(system, sid, body) for system, sid, body in rows}
    erp = decided["2000000017"]
    assert erp.golden_id == decided["RS5200-20-000"].golden_id
    others = [decided[f"{m}-20-000"] for m in MODELS if m != "RS5200"]
    assert all(d.golden_id != erp.golden_id for d in others)
    assert all(d.action != "merge" for d in (others if erp_first else others[1:]))
    # batch decides alike
    batch = run_batch("material", [InputRow(*row) for row in rows], model=Model.default("material"))
    assert {row["source_id"]: row["cluster_id"] for row in batch.rows} == {
        sid: d.golden_id for sid, d in decided.items()
    }


def test_an_erp_material_drawn_as_another_part_is_not_merged_into_it() -> None:
    r = Resolver(Model.default("material"), IdentityConfig())
    part = r.resolve(*_pdm("RS7100"))
    erp = r.resolve(*_erp("RS5200-20-000"))
    assert erp.action == "review" and erp.candidate_id == part.golden_id
    conflict = next(e for e in erp.evidence if e.level == "system conflict")
    assert "pdm code RS520020000" in conflict.detail


def test_a_part_in_other_words_is_scored_when_namesakes_in_other_sizes_share_more_keys() -> None:
    # twelve screws described alike in other lengths share the description's text, bigrams
    # and pinyin with the new record; the right part shares only the size (its description
    # is less specific, so not even the concepts are equal)
    def row(sid: str, name: str, spec: str, code: str) -> InputRow:
        return InputRow("erp", sid, {"code": code, "name": name, "specification": spec})

    rows = [row(f"N{n}", "杯头螺丝", f"M4x{n}", f"ERP1{n:05d}") for n in range(10, 34, 2)]
    rows.insert(5, row("T", "内六角螺钉", "M4x52", "P-7770000"))
    rows.append(row("V", "杯头螺丝", "M4×52", "ERP200052"))
    config = IdentityConfig(max_candidates=4)
    result = run_batch("material", rows, config, explain=True).rows
    out = {r["source_id"]: r["cluster_id"] for r in result}
    assert len({out[f"N{n}"] for n in range(10, 34, 2)}) == 12
    # the right part is the one the record is merged into or reviewed against (the default
    # model of a small input weighs a less specific description as review)
    assert result[-1]["evidence"]["candidate_id"] == out["T"]


def test_one_part_in_other_words_and_word_order_shares_a_block_with_itself_only() -> None:
    def sc_keys(name: str, spec: str) -> set[str]:
        profile = build_profile("material", {"name": name, "specification": spec})
        return {k for k in blocking_keys(profile) if k.startswith("sc:")}

    ours = sc_keys("不锈钢304内六角圆柱头螺钉", "M2x36")
    assert ours and ours == sc_keys("内六角圆柱头螺丝/不锈钢304", "Ｍ２ｘ３６")
    assert not ours & sc_keys("不锈钢304内六角圆柱头螺钉", "M2x32")  # another size
    assert not ours & sc_keys("十字盘头螺钉 不锈钢304", "M2x36")  # another part of this size


def _labelled_m(
    entity: str, profiles: list[Any], truth: list[dict[str, Any]], name: str
) -> list[float]:
    """Level shares of comparison `name` among the labelled matching pairs."""
    comp = next(c for c in COMPARISONS[entity] if c.name == name)
    members: dict[str, list[int]] = {}
    for i, t in enumerate(truth):
        members.setdefault(t["cluster_id"], []).append(i)
    counts: Counter[int] = Counter()
    for ids in members.values():
        for a in range(len(ids)):
            for b in range(a + 1, len(ids)):
                level = comp.compare(profiles[ids[a]], profiles[ids[b]], False)[0]
                if level != NULL:
                    counts[level] += 1
    total = sum(counts.values())
    return [counts[lv] / total for lv in range(len(comp.labels))]


def test_em_on_unlabelled_materials_finds_what_the_labels_say_matches_look_like() -> None:
    raw, truth = gen_materials.generate(1500, 5)
    profiles = [
        build_profile("material", r["record"], source_system=r["source_system"]) for r in raw
    ]
    model, _report = fit("material", profiles, IdentityConfig())
    for name in ("spec", "grade"):
        fitted = model.params[name].m[0]
        labelled = _labelled_m("material", profiles, truth, name)[0]
        assert abs(fitted - labelled) < 0.05, (name, fitted, labelled)
    # a code of the same numbering that differs is common among true matches (one part under
    # two numbers of one ERP); the fitted model must not make it a near-veto
    fitted_else = model.params["code"].m[2]
    labelled_else = _labelled_m("material", profiles, truth, "code")[2]
    assert fitted_else > labelled_else / 3, (fitted_else, labelled_else)


def test_a_material_sample_meets_the_issue_aim_at_default_settings() -> None:
    raw, truth = gen_materials.generate(1500, 5)
    rows = [InputRow(r["source_system"], r["source_id"], r["record"]) for r in raw]
    result = run_batch("material", rows, IdentityConfig())
    metrics = evaluate(result.rows, truth)
    # issue 4's aim, on a sample of its own seed (the bench measures 3,000 records, 5 seeds)
    assert metrics.precision >= 0.99
    assert metrics.recall >= 0.97
