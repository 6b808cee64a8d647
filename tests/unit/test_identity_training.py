"""Fitting m, u and the prior from unlabelled data, and the batch command built on it."""

from __future__ import annotations

import json
import random
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from flows.identity.batch import InputRow, evaluate, run_batch
from flows.identity.cli import dedup_app
from flows.identity.config import IdentityConfig
from flows.identity.flow import default_model
from flows.identity.profile import customer_profile
from flows.identity.scoring import Model
from flows.identity.training import fit

FIRST = [
    "anna",
    "ben",
    "carla",
    "david",
    "emma",
    "felix",
    "greta",
    "hugo",
    "ines",
    "jonas",
    "karin",
    "lukas",
    "mia",
    "noah",
    "olga",
    "paul",
    "rosa",
    "sven",
    "tara",
    "ugo",
    "vera",
    "walt",
    "xenia",
    "yann",
    "zoe",
    "amir",
    "bela",
    "cleo",
    "dario",
    "elif",
]
LAST = [
    "meyer",
    "schulz",
    "novak",
    "rossi",
    "dubois",
    "jensen",
    "kowalski",
    "silva",
    "costa",
    "weber",
    "fischer",
    "bauer",
    "moreau",
    "lindgren",
    "horvat",
    "petrov",
    "okafor",
    "tanaka",
    "nguyen",
    "alvarez",
    "brennan",
    "dekker",
    "haas",
]


def _typo(rng: random.Random, word: str) -> str:
    i = rng.randrange(1, len(word))
    return word[:i] + rng.choice("aeiourstn") + word[i + 1 :]


def synthetic(n_entities: int, seed: int = 1) -> tuple[list[InputRow], list[dict[str, Any]]]:
    """People entered 1-3 times with typos and missing fields; truth = entity id."""
    rng = random.Random(seed)
    rows: list[InputRow] = []
    truth: list[dict[str, Any]] = []
    for e in range(n_entities):
        first, last = rng.choice(FIRST), rng.choice(LAST)
        dob = f"{rng.randrange(1950, 2000)}-{rng.randrange(1, 13):02d}-{rng.randrange(1, 29):02d}"
        phone = f"+49 151 {rng.randrange(10_000_000, 99_999_999)}"
        for k in range(rng.choice([1, 1, 2, 2, 3])):
            name = f"{first} {_typo(rng, last) if rng.random() < 0.2 else last}"
            record: dict[str, Any] = {"kind": "person", "name": name.title()}
            if rng.random() < 0.8:
                record["birth_date"] = dob
            if rng.random() < 0.7:
                record["phones"] = [phone]
            sid = f"{e}-{k}"
            rows.append(InputRow("crm", sid, record))
            truth.append({"source_system": "crm", "source_id": sid, "cluster_id": f"E{e}"})
    order = list(range(len(rows)))
    rng.shuffle(order)
    return [rows[i] for i in order], [truth[i] for i in order]


@pytest.fixture(scope="module")
def data() -> tuple[list[InputRow], list[dict[str, Any]]]:
    return synthetic(700)


def test_em_learns_which_agreements_matter(data: tuple[list[InputRow], list[Any]]) -> None:
    rows, truth = data
    profiles = [customer_profile(r.record) for r in rows]
    model, report = fit("customer", profiles, IdentityConfig())
    dob = model.params["dob"]
    # true matches agree on the birth date, random pairs almost never do
    assert dob.m[0] > 0.8 and dob.u[0] < 0.01
    place = model.params["place"]
    assert place.m[1] > 0.5 and place.u[1] < 1e-3
    assert report.sessions, "EM ran on blocked pairs"
    # the prior is close to the share of matching pairs
    n = len(rows)
    clusters: dict[str, int] = {}
    for t in truth:
        clusters[t["cluster_id"]] = clusters.get(t["cluster_id"], 0) + 1
    true_prior = sum(c * (c - 1) / 2 for c in clusters.values()) / (n * (n - 1) / 2)
    assert true_prior / 3 < model.prior < true_prior * 3


def test_fitted_batch_finds_the_duplicates(data: tuple[list[InputRow], list[Any]]) -> None:
    rows, truth = data
    result = run_batch("customer", rows)
    metrics = evaluate(result.rows, truth)
    assert metrics.precision >= 0.97
    # about a sixth of the true pairs share nothing but a name another person also has
    assert metrics.recall >= 0.8
    assert len(result.rows) == len(rows)


def test_configured_parameters_override_estimates(data: tuple[list[InputRow], list[Any]]) -> None:
    rows, _ = data
    profiles = [customer_profile(r.record) for r in rows]
    cfg = IdentityConfig(prior=1e-3, m={"dob": {"exact": 0.5}})
    model, _ = fit("customer", profiles, cfg)
    assert model.prior == 1e-3
    assert model.params["dob"].m[0] == 0.5
    with pytest.raises(ValueError, match="unknown level"):
        fit("customer", profiles, IdentityConfig(m={"dob": {"nearly": 0.5}}))


def test_small_input_keeps_default_parameters() -> None:
    rows, _ = synthetic(20)
    model, report = fit("customer", [customer_profile(r.record) for r in rows], IdentityConfig())
    assert model.params["dob"].m == Model.default("customer").params["dob"].m
    # the prior too (decision 41): a prior fitted on a few pairs made merges easy
    assert model.prior == Model.default("customer").prior and not model.kind_priors
    assert report.notes and "default" in report.notes[0]
    configured, _ = fit(
        "customer", [customer_profile(r.record) for r in rows], IdentityConfig(prior=1e-3)
    )
    assert configured.prior == 1e-3


def _part(sid: str, name: str, spec: str, code: str) -> InputRow:
    return InputRow("erp", sid, {"code": code, "name": name, "specification": spec, "uom": "PCS"})


def test_a_handful_of_materials_is_decided_as_streaming_decides_it() -> None:
    # the five screws of docs/identity.md: with a fitted prior (0.1, its cap) S4 joined the
    # Phillips pan-head screw on the specification alone at p 0.62
    rows = [
        _part("P1", "十字盘头螺钉", "M3x8", "SCR-M3X8"),
        _part("P2", "十字槽盘头螺丝", "M3*8", "SCRM3X8"),
        _part("P3", "十字盘头螺钉", "M3x10", "SCR-M3X10"),
        _part("S4", "不锈钢304内六角螺钉", "M3x8", "P-300"),
        _part("S6", "不锈钢316内六角螺钉", "M3x8", "P-400"),
    ]
    batch = run_batch("material", rows, explain=True)
    streaming = run_batch("material", rows, model=default_model("material"), explain=True)
    assert batch.rows == streaming.rows
    out = {r["source_id"]: r["cluster_id"] for r in batch.rows}
    assert out["P1"] == out["P2"]
    assert len({out["P1"], out["P3"], out["S4"], out["S6"]}) == 4
    s4 = next(r for r in batch.rows if r["source_id"] == "S4")["evidence"]
    assert s4["action"] == "new" and s4["score"] < 0.01


def test_pairwise_metrics_by_hand() -> None:
    truth = [
        {"source_system": "s", "source_id": i, "cluster_id": c}
        for i, c in [("1", "A"), ("2", "A"), ("3", "A"), ("4", "B")]
    ]
    pred = [
        {"source_system": "s", "source_id": i, "cluster_id": c}
        for i, c in [("1", "x"), ("2", "x"), ("3", "y"), ("4", "y")]
    ]
    m = evaluate(pred, truth)
    # true pairs 12 13 23; predicted 12 34; correct 12
    assert (m.true_positives, m.predicted_pairs, m.true_pairs) == (1, 2, 3)
    assert m.precision == pytest.approx(0.5) and m.recall == pytest.approx(1 / 3)


def _write(path: Path, rows: list[InputRow]) -> None:
    path.write_text(
        "".join(
            json.dumps(
                {"source_system": r.source_system, "source_id": r.source_id, "record": r.record},
                ensure_ascii=False,
            )
            + "\n"
            for r in rows
        ),
        encoding="utf-8",
    )


def test_cli_batch_and_eval(tmp_path: Path, data: tuple[list[InputRow], list[Any]]) -> None:
    rows, truth = data
    src, out, truth_file = tmp_path / "in.jsonl", tmp_path / "out.jsonl", tmp_path / "t.jsonl"
    _write(src, rows)
    truth_file.write_text("".join(json.dumps(t) + "\n" for t in truth), encoding="utf-8")
    runner = CliRunner()
    result = runner.invoke(
        dedup_app,
        ["batch", "--entity", "customer", "--input", str(src), "--output", str(out), "--explain"],
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()]
    assert [(x["source_system"], x["source_id"]) for x in lines] == [
        (r.source_system, r.source_id) for r in rows
    ]
    assert all("cluster_id" in x and "evidence" in x for x in lines)
    assert {x["evidence"]["action"] for x in lines} <= {"merge", "review", "new"}
    result = runner.invoke(dedup_app, ["eval", "--input", str(out), "--truth", str(truth_file)])
    assert result.exit_code == 0, result.output
    assert "precision" in result.output and "recall" in result.output


def test_cli_rejects_a_bad_line_with_its_number(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text('{"source_system": "a", "source_id": "1", "record": {}}\nnot json\n')
    result = CliRunner().invoke(
        dedup_app,
        ["batch", "--entity", "customer", "--input", str(src), "--output", str(tmp_path / "o")],
    )
    assert result.exit_code == 2
    assert "line 2" in result.output


def test_the_prior_leaves_out_what_the_blocking_key_made_agree() -> None:
    """Decision 51: a pair found only through name keys agrees on the name because it was
    selected on it; the prior's pattern of that pair leaves the name out (FAMILY_FIXES), while a
    pair also found through its phone keeps it."""
    from flows.identity.blocking import blocking_keys
    from flows.identity.scoring import COMPARISONS, NULL, comparison_vector
    from flows.identity.training import (
        FitReport,
        _postings,
        _prior_pair_ids,
        _prior_patterns,
        _prior_samples,
    )

    records = [
        {"kind": "person", "name": "Lena Vogt", "phones": ["+49 151 11111111"]},
        {"kind": "person", "name": "Lena Vogt", "phones": ["+49 151 22222222"]},
        {"kind": "person", "name": "Mara Lind", "phones": ["+49 151 33333333"]},
        {"kind": "person", "name": "Mara Lind", "phones": ["+49 151 33333333"]},
    ]
    profiles = [customer_profile(r) for r in records]
    comparisons = COMPARISONS["customer"]
    names = [c.name for c in comparisons]
    config = IdentityConfig()
    postings = _postings([blocking_keys(p) for p in profiles], config.block_cap)

    def vector(pair: tuple[int, int]) -> tuple[int, ...]:
        return comparison_vector(comparisons, profiles[pair[0]], profiles[pair[1]])

    by_kind, families = _prior_pair_ids(profiles, postings, config, FitReport())
    samples = _prior_samples(by_kind, config, random.Random(1))
    vectors = {
        (pid // len(profiles), pid % len(profiles)): vector(
            (pid // len(profiles), pid % len(profiles))
        )
        for sample, _total in samples.values()
        for pid in sample
    }
    patterns = _prior_patterns(profiles, samples, families, vectors, names)
    counts, pairs = patterns["person"]
    assert pairs == 2
    name, place = names.index("person_name"), names.index("place")
    namesakes = vector((0, 1))
    assert namesakes[name] == 0  # the comparison itself still sees the names agree
    by_place = {vec[place]: vec for vec in counts}
    assert by_place[namesakes[place]][name] == NULL  # found through the name only
    assert by_place[vector((2, 3))[place]][name] == 0  # found through the phone too


def _share_of_matches_by_bucket(
    model: Model, profiles: list[Any], truth: list[Any]
) -> dict[int, tuple[int, float]]:
    from flows.identity.scoring import bucket_of

    tf = model.tf["person_name"]
    holders: dict[str, list[int]] = {}
    for i, p in enumerate(profiles):
        for value in set(p.names):
            holders.setdefault(value, []).append(i)
    found: dict[int, list[int]] = {}
    for value, members in holders.items():
        if len(members) < 2:
            continue
        counts = found.setdefault(bucket_of(tf.counts.get(value, 1)), [0, 0])
        for a in range(len(members)):
            for b in range(a + 1, len(members)):
                i, j = members[a], members[b]
                counts[0] += 1
                counts[1] += truth[i]["cluster_id"] == truth[j]["cluster_id"]
    return {b: (n, same / n) for b, (n, same) in found.items()}


def test_an_exact_name_is_weighed_by_em_per_frequency_bucket(
    data: tuple[list[InputRow], list[Any]],
) -> None:
    """Decision 51: the weight of an exact name is estimated per frequency bucket from the
    other fields of the pairs that share such a name, not from a floor of one record; a pair
    agreeing on the name alone then scores the share of matches among such pairs."""
    from flows.identity.scoring import log2_odds, probability, score

    rows, truth = data
    profiles = [customer_profile(r.record) for r in rows]
    model, _ = fit("customer", profiles, IdentityConfig())
    buckets = model.tf["person_name"].buckets
    assert buckets, "no bucket estimated"
    prior = model.kind_priors.get("person", model.prior)
    checked = 0
    for bucket, (pairs, share) in _share_of_matches_by_bucket(model, profiles, truth).items():
        if bucket not in buckets or pairs < 100:
            continue
        estimated = probability(buckets[bucket] + log2_odds(prior))
        assert abs(estimated - share) < 0.08, (bucket, pairs, share, estimated)
        checked += 1
    assert checked >= 2
    # a name held by two records, nothing else to compare: the bucket's estimate decides,
    # and a model loaded from its file (streaming) scores the same
    name = next(v for v, c in model.tf["person_name"].counts.items() if c == 2)
    a = customer_profile({"kind": "person", "name": name.title()})
    b = customer_profile({"kind": "person", "name": name.title(), "email": "x@example.org"})
    expected = probability(buckets[2] + log2_odds(prior))
    assert score(model, a, b).probability == pytest.approx(expected)
    assert score(model, a, b, explain=True).probability == pytest.approx(expected)
    loaded = Model.from_dict(json.loads(json.dumps(model.to_dict())))
    assert loaded.tf["person_name"].buckets == pytest.approx(buckets)
    assert score(loaded, a, b).probability == pytest.approx(expected)
