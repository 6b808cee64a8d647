"""The batch's shortcuts must not change a single decision: each is checked against the slow way."""

from __future__ import annotations

import gc
import random
from collections import Counter
from collections.abc import Iterable, Mapping

import pytest

from flows.identity import batch
from flows.identity.batch import InputRow, gc_paused, normalize_rows, run_batch
from flows.identity.blocking import FAMILIES, key_family
from flows.identity.config import IdentityConfig
from flows.identity.resolver import rank_candidates
from flows.identity.scoring import score
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


def test_candidate_ranking_equals_a_full_sort() -> None:
    rng = random.Random(7)
    prefixes = sorted(FAMILIES)
    gids = [f"G-{i:03d}" for i in range(60)]
    for _case in range(300):
        postings: dict[str, set[str] | None] = {}
        for k in range(rng.randrange(1, 25)):
            key = f"{rng.choice(prefixes)}:{k}"
            postings[key] = None if rng.random() < 0.1 else set(rng.sample(gids, rng.randrange(6)))
        keys = [k for k in postings if rng.random() < 0.8] + ["nm:absent"]
        limit = rng.randrange(1, 10)
        assert rank_candidates(postings, keys, limit) == _ranked_by_full_sort(postings, keys, limit)


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
