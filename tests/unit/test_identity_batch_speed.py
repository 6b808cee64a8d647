"""The batch's shortcuts must not change a single decision: each is checked against the slow way."""

from __future__ import annotations

import gc
import itertools
import random
import uuid
from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import fields, replace
from pathlib import Path
from typing import Any

import pytest

from flows.identity import batch, resolver, scoring, training
from flows.identity.batch import InputRow, gc_paused, normalize_rows, run_batch
from flows.identity.blocking import FAMILIES, key_family
from flows.identity.config import IdentityConfig
from flows.identity.profile import Profile, merge_profiles
from flows.identity.resolver import InMemoryIndex, golden_id_for, rank_candidates
from flows.identity.scoring import (
    COMPARISONS,
    NON_MATCH,
    NULL,
    Comparison,
    Model,
    Score,
    score,
)
from flows.identity.training import fit


@pytest.fixture(scope="module")
def rows() -> list[InputRow]:
    gen = pytest.importorskip("bench.data.gen_customers")
    raw, _truth = gen.generate(400, 5, "cn")
    return [InputRow(r["source_system"], r["source_id"], r["record"]) for r in raw]


def test_quiet_scoring_adds_up_to_the_same_bits_as_explained_scoring(
    rows: list[InputRow],
) -> None:
    profiles, keys = normalize_rows("customer", rows, IdentityConfig())
    model, _ = fit("customer", profiles, IdentityConfig(), keys)
    postings: dict[str, list[int]] = {}
    for i, ks in enumerate(keys):
        for k in ks:
            postings.setdefault(k, []).append(i)
    # pairs that share a key (what the resolver scores) and random ones (mostly "else")
    rng = random.Random(3)
    pairs = {(m[0], m[-1]) for m in postings.values() if len(m) > 1}
    pairs |= {(rng.randrange(len(rows)), rng.randrange(len(rows))) for _ in range(300)}
    adjusted = 0
    for _round in range(2):  # the second round reads the memoized adjustments
        for i, j in sorted(pairs):
            quiet = score(model, profiles[i], profiles[j])
            told = score(model, profiles[i], profiles[j], explain=True)
            assert (quiet.weight, quiet.probability, quiet.rule, quiet.levels) == (
                told.weight,
                told.probability,
                told.rule,
                told.levels,
            )
            adjusted += any(e.tf_adjustment for e in told.evidence)
    assert adjusted > 50, "the pairs must exercise term-frequency adjustments"


@pytest.mark.parametrize("entity", ["customer", "material"])
def test_every_comparison_is_called_directly_and_answers_as_its_function(entity: str) -> None:
    # decision 64: the quiet scorer calls each level function by its number; a number that
    # named another function would score every pair of a batch on the wrong field
    gen = pytest.importorskip(
        "bench.data.gen_customers" if entity == "customer" else "bench.data.gen_materials"
    )
    raw, _truth = gen.generate(300, 5, "cn") if entity == "customer" else gen.generate(300, 5)
    rows = [InputRow(r["source_system"], r["source_id"], r["record"]) for r in raw]
    profiles, _keys = normalize_rows(entity, rows, IdentityConfig())
    rng = random.Random(11)
    pairs = [(rng.choice(profiles), rng.choice(profiles)) for _ in range(400)]
    pairs += list(itertools.pairwise(profiles))  # neighbours: some duplicates
    for comparison in COMPARISONS[entity]:
        direct = scoring.direct_number(comparison.compare)
        assert direct, f"{comparison.name} is not called directly"
        answers = Counter()
        for a, b in pairs:
            expected = comparison.compare(a, b, False)
            assert scoring.compare_direct(direct, a, b) == expected, comparison.name
            answers[expected[0]] += 1
        assert len(answers) > 1 or comparison.name in ("id", "weak_id", "email"), (
            f"{comparison.name}: the pairs must reach more than one level, got {answers}"
        )


def _estimate_u_with_randrange(
    comparisons: tuple[Comparison, ...], profiles: list[Profile], max_pairs: int, rng: random.Random
) -> tuple[dict[str, tuple[int, ...]], int]:
    # the random pairs as estimate_u drew them before decision 64: rng.randrange per index
    n = len(profiles)
    per_field = max(max_pairs // len(comparisons), 100)
    levels: dict[str, tuple[int, ...]] = {}
    evaluated = 0
    for comp in comparisons:
        seen: list[int] = []
        for _t in range(per_field * 20):
            i, j = rng.randrange(n), rng.randrange(n)
            if i == j:
                continue
            evaluated += 1
            level = comp.compare(profiles[i], profiles[j], False)[0]
            if level != NULL:
                seen.append(level)
                if len(seen) >= per_field:
                    break
        levels[comp.name] = tuple(Counter(seen)[lv] for lv in range(len(comp.labels)))
    return levels, evaluated


@pytest.mark.parametrize("n", [300, 257, 1000])
def test_random_pairs_for_u_are_the_draws_randrange_makes(rows: list[InputRow], n: int) -> None:
    # decision 64: estimate_u draws its indices with getrandbits as CPython's randrange does;
    # the same pairs, the same u, and the sequence left where fit's next draws expect it
    profiles, _keys = normalize_rows("customer", rows, IdentityConfig())
    profiles = (profiles * 3)[:n]  # 257: just over a power of two, most draws rejected
    comparisons = COMPARISONS["customer"]
    max_pairs = 1600  # 200 per comparison, from fewer records than that: every draw counts
    ours_rng, theirs_rng = random.Random(5), random.Random(5)
    u, evaluated = training.estimate_u(comparisons, profiles, {}, max_pairs, ours_rng)
    levels, expected_evaluated = _estimate_u_with_randrange(
        comparisons, profiles, max_pairs, theirs_rng
    )
    assert evaluated == expected_evaluated
    assert ours_rng.getstate() == theirs_rng.getstate()
    for comp in comparisons:
        seen = sum(levels[comp.name])
        if seen >= 50:  # below that estimate_u keeps the default u
            floor = 0.5 / seen
            share = [max(c / seen, floor) for c in levels[comp.name]]
            assert u[comp.name][0] == share[0], comp.name


def _ranked_by_full_sort(
    postings: Mapping[str, set[str] | None], keys: Iterable[str], limit: int
) -> list[str]:
    # the ranking as decision 25d wrote it first (count, collect families, sort everything),
    # with decision 45's rarest shared key after the families
    shared: Counter[str] = Counter()
    families: dict[str, set[str]] = {}
    rarest: dict[str, int] = {}
    for key in keys:
        ids = postings.get(key)
        if ids:
            shared.update(ids)
            for gid in ids:
                families.setdefault(gid, set()).add(key_family(key))
                rarest[gid] = min(rarest.get(gid, len(ids)), len(ids))
    ranked = sorted(
        [(-len(families[gid]), rarest[gid], -count, gid) for gid, count in shared.items()]
    )
    return [gid for *_, gid in ranked[:limit]]


@pytest.mark.parametrize(("ids", "largest"), [(60, 6), (300, 45)])
def test_candidate_ranking_equals_a_full_sort(ids: int, largest: int) -> None:
    # (300, 45): dozens to hundreds of ids share a key with the record, past the number up to
    # which they are all sorted (decision 69) and below it
    rng = random.Random(7)
    prefixes = sorted(FAMILIES)
    gids = [f"G-{i:03d}" for i in range(ids)]
    for _case in range(300):
        postings: dict[str, set[str] | None] = {}
        for k in range(rng.randrange(1, 25)):
            key = f"{rng.choice(prefixes)}:{k}"
            size = rng.randrange(largest)
            postings[key] = None if rng.random() < 0.1 else set(rng.sample(gids, size))
        keys = [k for k in postings if rng.random() < 0.8] + ["nm:absent"]
        limit = rng.randrange(1, 10)
        assert rank_candidates(postings, keys, limit) == _ranked_by_full_sort(postings, keys, limit)
    # decision 49: every key shared leads to one and the same golden record (and the ways
    # that are not quite that: another id, a second id, a single key)
    one = {"G-1"}
    cases: list[dict[str, set[str] | None]] = [
        {"nm:a": one, "ph:1": {"G-1"}, "st:x": {"G-1"}, "id:c": None},
        {"nm:a": one, "ph:1": {"G-2"}, "st:x": {"G-1"}},
        {"nm:a": one, "ph:1": {"G-1", "G-2"}},
        {"nm:a": {"G-2", "G-1"}, "ph:1": {"G-1"}},
        {"nm:a": one},
    ]
    for postings in cases:
        for limit in (1, 8):
            expected = _ranked_by_full_sort(postings, list(postings), limit)
            assert rank_candidates(postings, list(postings), limit) == expected


def test_normalizing_in_worker_processes_gives_the_same_profiles_keys_and_progress(
    rows: list[InputRow], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(batch, "POOL_MIN_ROWS", 10)
    monkeypatch.setattr(batch, "_CHUNK", 90)
    alone = normalize_rows("customer", rows, IdentityConfig())
    advanced: list[int] = []
    pooled = normalize_rows("customer", rows, IdentityConfig(), advanced.append, workers=2)
    assert pooled == alone
    assert sum(advanced) == len(rows)
    one = run_batch("customer", rows[:200])
    two = run_batch("customer", rows[:200], workers=2)
    assert two.rows == one.rows


def test_gc_is_paused_inside_and_restored_after_even_on_error() -> None:
    assert gc.isenabled()
    with pytest.raises(RuntimeError), gc_paused():
        assert not gc.isenabled()
        raise RuntimeError("boom")
    assert gc.isenabled()
    gc.disable()
    try:
        with gc_paused():
            pass
        assert not gc.isenabled(), "a caller's disabled collector stays disabled"
    finally:
        gc.enable()


def test_what_the_batch_allocated_is_not_walked_by_the_first_collection_after_it() -> None:
    # decision 53: left young, the 100,000-record batch's objects cost the first collection
    # after the pause 1.4 s inside `dedup batch`; they go to the oldest generation instead
    gc.collect()
    with gc_paused():
        kept = [{"n": [i]} for i in range(50_000)]
        cycle: list[Any] = []
        cycle.append(cycle)
        cycle_ref = [cycle]
    made = kept[-1]
    assert not any(o is made for g in (0, 1) for o in gc.get_objects(generation=g)), (
        "left in a young generation for the next collections to walk"
    )
    assert any(o is made for o in gc.get_objects(generation=2))
    assert gc.get_freeze_count() == 0, "nothing stays frozen"
    # a cycle made during the pause is still freed, by the next full collection
    cycle_ref.clear()
    del cycle
    assert gc.collect() >= 1
    assert len(kept) == 50_000
    # objects the program froze itself (before forking workers, say) stay frozen
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        with gc_paused():
            _made = [{"n": [i]} for i in range(1_000)]
        assert gc.get_freeze_count() == frozen > 0
    finally:
        gc.unfreeze()


def _merged_the_generic_way(cluster: Profile, member: Profile, limit: int) -> Profile:
    # merge_profiles as written before decision 46: dataclasses.replace over every list field
    def uniq(values: Iterable[str]) -> tuple[str, ...]:
        return tuple(dict.fromkeys(v for v in values if v))

    updates: dict[str, Any] = {"issues": ()}
    for f in fields(Profile):
        if f.name in ("entity", "kind", "issues", "strong_ids", "weak_ids", "system_codes"):
            continue
        updates[f.name] = uniq((*getattr(cluster, f.name), *getattr(member, f.name)))[:limit]
    updates["strong_ids"] = tuple(dict.fromkeys((*cluster.strong_ids, *member.strong_ids)))
    updates["weak_ids"] = tuple(dict.fromkeys((*cluster.weak_ids, *member.weak_ids)))[: limit * 2]
    pairs = tuple(dict.fromkeys((*cluster.system_codes, *member.system_codes)))
    updates["system_codes"] = pairs[: limit * 2]
    updates["kind"] = cluster.kind or member.kind
    return replace(cluster, **updates)


def _random_profile(rng: random.Random) -> Profile:
    def values() -> tuple[str, ...]:
        return tuple(rng.choice(["", "a", "b", "c", "d", "e"]) for _ in range(rng.randrange(8)))

    def pairs() -> tuple[tuple[str, str], ...]:
        return tuple((rng.choice("xy"), rng.choice("123")) for _ in range(rng.randrange(5)))

    kwargs: dict[str, Any] = {"kind": rng.choice([None, "person", "organization"])}
    for f in fields(Profile):
        if f.name in ("strong_ids", "weak_ids", "system_codes"):
            kwargs[f.name] = pairs()
        elif f.name not in ("entity", "kind"):
            kwargs[f.name] = values()
    return Profile(rng.choice(["customer", "material"]), **kwargs)


def test_merging_profiles_field_by_field_equals_the_generic_merge() -> None:
    rng = random.Random(11)
    for _case in range(3000):
        cluster, member = _random_profile(rng), _random_profile(rng)
        limit = rng.randrange(1, 7)
        merged = merge_profiles(cluster, member, limit)
        assert merged == _merged_the_generic_way(cluster, member, limit)
        assert merged.issues == ()


def test_golden_ids_are_the_uuid5_they_always_were() -> None:
    rng = random.Random(5)
    alphabet = "abcXYZ019/-_ .é中文"
    for _case in range(3000):
        system = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        sid = "".join(rng.choice(alphabet) for _ in range(rng.randrange(12)))
        expected = "G-" + str(uuid.uuid5(resolver._NAMESPACE, f"customer/{system}/{sid}"))
        assert golden_id_for("customer", system, sid) == expected


def test_level_of_names_the_level_a_scan_of_the_comparisons_finds() -> None:
    rng = random.Random(2)
    for entity, comparisons in COMPARISONS.items():
        model = Model.default(entity)
        for _case in range(500):
            # short level tuples too: a kept-apart score stops at the conflicting identifier
            levels = tuple(
                rng.randrange(-1, len(c.labels)) for c in comparisons[: rng.randrange(9)]
            )
            result = Score(0.0, 0.0, (), None, levels)
            for comp in (*comparisons, Comparison("absent", ("x",), comparisons[0].compare)):
                found = "null"
                for c, level in zip(comparisons, levels, strict=False):
                    if c.name == comp.name:
                        found = "null" if level == NULL else c.labels[level]
                assert result.level_of(model, comp.name) == found


def test_stopping_at_a_conflict_keeps_the_rule_and_everything_else_scores_alike(
    rows: list[InputRow],
) -> None:
    profiles, keys = normalize_rows("customer", rows, IdentityConfig())
    model, _ = fit("customer", profiles, IdentityConfig(), keys)
    stopped = 0
    for i in range(0, len(profiles), 3):
        for j in range(1, len(profiles), 7):
            full = score(model, profiles[i], profiles[j])
            quick = score(model, profiles[i], profiles[j], stop_at_conflict=True)
            assert quick.rule == full.rule
            if full.rule == NON_MATCH:
                stopped += quick.levels != full.levels
            else:
                assert quick == full
    assert stopped > 100, "the pairs must include conflicting validated identifiers"


def test_worker_processes_leave_no_result_files_behind(
    rows: list[InputRow], monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setattr(batch, "POOL_MIN_ROWS", 10)
    monkeypatch.setattr(batch, "_CHUNK", 60)
    monkeypatch.setattr(batch, "_spool_dir", lambda: str(tmp_path))
    pooled = normalize_rows("customer", rows, IdentityConfig(), workers=2)
    assert pooled == normalize_rows("customer", rows, IdentityConfig())
    assert list(tmp_path.iterdir()) == []


def test_the_index_caps_keys_as_the_set_per_key_did() -> None:
    rng = random.Random(4)
    for cap in (1, 2, 3, 5):
        index = InMemoryIndex(cap)
        expected: dict[str, set[str] | None] = {}
        for _step in range(400):
            gid = f"G-{rng.randrange(30)}"
            keys = {f"k{rng.randrange(25)}" for _ in range(rng.randrange(5))}
            index.add(gid, keys)
            for key in keys:  # InMemoryIndex.add as decision 25d wrote it
                ids = expected.get(key, set())
                if ids is None:
                    continue
                ids.add(gid)
                expected[key] = None if len(ids) > cap else ids
            assert index._postings == expected
