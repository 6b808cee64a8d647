"""Estimating the model from unlabelled data, the way Splink does.

- u (P(level | non-match)) from random pairs: random pairs are almost all non-matches. For the
  exact level of fields with term frequencies the sample is too sparse, so u is computed from
  the value frequencies instead (the chance that two random records share a value).
- m (P(level | match)) by expectation maximisation over blocked pairs, u held fixed. EM runs
  once per family of blocking keys, and the fields a family blocks on are left out of that
  session because blocking on them biases their agreement rate. Each field's m is the average
  over the sessions that could estimate it, weighted by the expected matches in each.
- the prior (probability that two random records match) from the expected number of matching
  pairs among pairs that share a rare blocking key, over the number of all pairs.
"""

from __future__ import annotations

import heapq
import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass, field
from operator import itemgetter
from typing import Any, Protocol

from flows.identity.blocking import blocking_keys, key_family
from flows.identity.config import IdentityConfig
from flows.identity.profile import Profile
from flows.identity.scoring import (
    COMPARISONS,
    DEFAULT_M,
    DEFAULT_U,
    NULL,
    STRONG_ID,
    Comparison,
    FieldParams,
    Model,
    TermFrequencies,
    bucket_of,
    compare_direct,
    comparison_vector,
    direct_number,
)

Vector = tuple[int, ...]

TF_VALUES: dict[str, Callable[[Profile], Iterable[str]]] = {
    "name": lambda p: p.names,
    "org_name": lambda p: p.names if p.kind == "organization" else (),
    "person_name": lambda p: p.names if p.kind != "organization" else (),
    "place": lambda p: (*(x[2:] for x in p.phones), *p.streets),
    "email": lambda p: (x[2:] for x in p.emails),
    "dob": lambda p: p.dobs,
    "code": lambda p: p.codes,
    "spec": lambda p: p.specs,
    "weak_id": lambda p: (f"{s}:{v}" for s, v in p.weak_ids),
}

# fields whose agreement a family of blocking keys forces or biases. Materials (decision 45):
# a part's grade and material are read from its description and its category follows from
# the part type, so pairs blocked on a name agree on them however many sizes apart they are;
# a specification (M6X38 is a screw size, 6204 a bearing) fixes the part type, so pairs
# blocked on it agree on category and concept name, and on grade far more often than random
# pairs do (one size comes in the type's few grades). Left active, EM took that agreement of
# siblings for the mark of a match (lambda 0.98 and m(spec exact) 0.02 among pairs of one
# name; lambda 0.92 and m(grade exact) 0.34 among pairs of one specification, and with name
# and category held, m(code else) 0: every pair whose codes differ counted as two parts).
FAMILY_FIXES: dict[str, tuple[str, ...]] = {
    "id": (STRONG_ID, "weak_id"),
    "contact": ("place", "email"),
    "name": ("name", "org_name", "person_name", "city", "grade", "category"),
    "dob": ("dob", "name", "person_name"),
    "street": ("place", "city"),
    "code": ("code",),
    "spec": ("spec", "uom", "category", "name", "grade"),
}


# A session estimates m only with at least this many comparisons observed (not null) in at
# least MIN_OBSERVED of its pairs. With u held fixed, the levels of one comparison alone are a
# mix lambda * m + (1 - lambda) * u in which lambda and m cannot be told apart; EM then returns
# its starting point or whatever the blocking made of it.
MIN_INDICATORS = 2
MIN_OBSERVED = 50


def _observed(patterns: Counter[Vector], k: int) -> int:
    return sum(count for vec, count in patterns.items() if vec[k] != NULL)


@dataclass(slots=True)
class FitReport:
    records: int = 0
    random_pairs: int = 0
    sessions: dict[str, dict[str, float]] = field(default_factory=dict)
    prior_pairs: int = 0
    notes: list[str] = field(default_factory=list)
    unestimated: list[str] = field(default_factory=list)


def term_frequencies(
    comparisons: Sequence[Comparison], profiles: Sequence[Profile], keep: int
) -> dict[str, TermFrequencies]:
    out: dict[str, TermFrequencies] = {}
    for comp in comparisons:
        getter = TF_VALUES.get(comp.name)
        if not comp.adjusted_levels or getter is None:
            continue
        # a plain dict and Counter.most_common's own selection: Counter.update is Python code,
        # a call per profile and comparison that cost more than the counting (~600,000 a batch)
        counts: dict[str, int] = {}
        total = 0
        for p in profiles:
            values = set(getter(p))
            if values:
                total += 1
                for v in values:
                    counts[v] = counts.get(v, 0) + 1
        most = heapq.nlargest(keep, counts.items(), key=itemgetter(1))
        common = {v: c for v, c in most if c >= 2}
        out[comp.name] = TermFrequencies(total, common)
    return out


def _analytic_u_exact(tf: TermFrequencies) -> float:
    # chance that two distinct random records carrying the field share a value
    n = max(tf.total, 2)
    return sum(c * (c - 1) for c in tf.counts.values()) / (n * (n - 1))


def estimate_u(
    comparisons: Sequence[Comparison],
    profiles: Sequence[Profile],
    tf: dict[str, TermFrequencies],
    max_pairs: int,
    rng: random.Random,
) -> tuple[dict[str, tuple[float, ...]], int]:
    """Level distribution of each comparison among random pairs where both sides have the field.

    Sampling per comparison, keeping only pairs where it is not null, gives every field the same
    number of informative pairs however sparse it is.
    """
    n = len(profiles)
    per_field = max(max_pairs // max(len(comparisons), 1), 100)
    out: dict[str, tuple[float, ...]] = {}
    evaluated = 0
    entity = profiles[0].entity if profiles else "customer"
    getrandbits = rng.getrandbits
    bits = n.bit_length()
    for comp in comparisons:
        counts: Counter[int] = Counter()
        seen = 0
        # Each pair is drawn in the loop that uses it, not by a generator: compiled (decision
        # 63), the generator abandoned by `break` had drawn ahead, which moved every later draw
        # of the seeded sequence and so the model.
        every: list[tuple[int, int]] | None = None
        if n >= 2 and n * (n - 1) // 2 <= per_field:
            every = [(i, j) for i in range(n) for j in range(i + 1, n)]
        direct = direct_number(comp.compare)
        for t in range(len(every) if every is not None else per_field * 20):
            if every is not None:
                i, j = every[t]
            elif n < 2:
                i = rng.randrange(n)  # no pair to draw; randrange raises on an empty range
                j = rng.randrange(n)
            else:
                # rng.randrange(n) spelled out as CPython's Random does it (_randbelow): the
                # same draws without randrange's Python-level argument handling, twice per pair
                # of up to 1.2M pairs (tests/unit/test_identity_batch_speed.py checks the sequence)
                i = getrandbits(bits)
                while i >= n:
                    i = getrandbits(bits)
                j = getrandbits(bits)
                while j >= n:
                    j = getrandbits(bits)
            if i == j:
                continue
            evaluated += 1
            a, b = profiles[i], profiles[j]
            level = (compare_direct(direct, a, b) if direct else comp.compare(a, b, False))[0]
            if level != NULL:
                counts[level] += 1
                seen += 1
                if seen >= per_field:
                    break
        n_levels = len(comp.labels)
        if seen < 50:
            out[comp.name] = DEFAULT_U[entity][comp.name]
            continue
        floor = 0.5 / seen
        u = [max(counts[lv] / seen, floor) for lv in range(n_levels)]
        if comp.tf and comp.name in tf and counts[0] < 30:
            u[0] = max(_analytic_u_exact(tf[comp.name]), floor / 10)
        rest = sum(u[1:])
        scale = (1 - u[0]) / rest if rest > 0 else 1.0
        out[comp.name] = (u[0], *(x * scale for x in u[1:]))
    return out, evaluated


def _em(
    patterns: Counter[Vector],
    active: list[int],
    m: list[list[float]],
    u: list[tuple[float, ...]],
    prior: float,
    iterations: int,
) -> tuple[list[list[float]], float, float]:
    """EM over distinct comparison patterns; returns (m, lambda, expected matches)."""
    total = sum(patterns.values())
    expected = 0.0
    for _ in range(iterations):
        num = [[0.0] * len(m[k]) for k in range(len(m))]
        den = [0.0] * len(m)
        expected = 0.0
        base = math.log(prior / (1 - prior))
        for vec, count in patterns.items():
            logit = base
            for k in active:
                lv = vec[k]
                if lv != NULL:
                    logit += math.log(max(m[k][lv], 1e-12) / max(u[k][lv], 1e-12))
            p = 1.0 / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
            w = p * count
            expected += w
            for k in active:
                lv = vec[k]
                if lv != NULL:
                    num[k][lv] += w
                    den[k] += w
        new_prior = min(max(expected / total, 1e-9), 1 - 1e-9)
        delta = abs(new_prior - prior)
        for k in active:
            if den[k] > 0:
                raw = [max(x / den[k], 1e-6) for x in num[k]]
                s = sum(raw)
                new = [x / s for x in raw]
                delta = max(delta, max(abs(a - b) for a, b in zip(new, m[k], strict=True)))
                m[k] = new
        prior = new_prior
        if delta < 1e-5:
            break
    return m, prior, expected


def _postings(keys_per_record: Sequence[Set[str]], cap: int) -> dict[str, list[int]]:
    # a plain dict, not a defaultdict: compiled, its lookups are direct calls where the
    # defaultdict's went through the generic item protocol and __missing__ (~1M keys a batch)
    postings: dict[str, list[int]] = {}
    for i, ks in enumerate(keys_per_record):
        for k in ks:
            members = postings.get(k)
            if members is None:
                postings[k] = [i]
            else:
                members.append(i)
    return {k: v for k, v in postings.items() if 2 <= len(v) <= cap}


def _pairs_of(members: list[int], limit: int, rng: random.Random) -> list[tuple[int, int]]:
    n = len(members)
    total = n * (n - 1) // 2
    if total <= limit:
        return [(members[a], members[b]) for a in range(n) for b in range(a + 1, n)]
    out: set[tuple[int, int]] = set()
    while len(out) < limit:
        a, b = rng.sample(members, 2)
        out.add((min(a, b), max(a, b)))
    return sorted(out)


Pair = tuple[int, int]
# (term frequencies, u per comparison, pairs evaluated, state of the random sequence after them)
RandomPairStage = tuple[
    dict[str, TermFrequencies], dict[str, tuple[float, ...]], int, tuple[Any, ...]
]


class FitOffload(Protocol):
    """Runs fit's two expensive pure parts elsewhere (the batch's forked workers)."""

    def random_pair_stage(self) -> Callable[[], RandomPairStage]:
        """Start `random_pair_stage` on the same profiles and config; returns its waiter."""
        ...

    def vectors(self, pairs: Sequence[Pair]) -> list[Vector]:
        """`comparison_vectors` of these pairs of the same profiles, in order."""
        ...


def random_pair_stage(
    entity: str, usable: Sequence[Profile], config: IdentityConfig
) -> RandomPairStage:
    """Term frequencies and u from random pairs: the first draws of fit's seeded sequence.

    How many pairs it draws depends on the profiles (a comparison stops at its quota of pairs
    where both sides have the field), so what fit draws next starts from the state returned.
    """
    comparisons = COMPARISONS[entity]
    rng = random.Random(config.seed)
    tf = term_frequencies(comparisons, usable, config.tf_max_values)
    u, evaluated = estimate_u(comparisons, usable, tf, config.u_max_pairs, rng)
    return tf, u, evaluated, rng.getstate()


def _ready(stage: RandomPairStage) -> Callable[[], RandomPairStage]:
    return lambda: stage


def comparison_vectors(
    comparisons: tuple[Comparison, ...], profiles: Sequence[Profile], pairs: Iterable[Pair]
) -> list[Vector]:
    return [comparison_vector(comparisons, profiles[i], profiles[j]) for i, j in pairs]


def fit(
    entity: str,
    profiles: Sequence[Profile],
    config: IdentityConfig | None = None,
    keys_per_record: Sequence[Set[str]] | None = None,
    *,
    offload: FitOffload | None = None,
) -> tuple[Model, FitReport]:
    """Fit a model to unlabelled profiles. Deterministic for a given input and seed.

    `offload` (the batch's process pool, decision 49) runs the random-pair stage and the
    comparison vectors elsewhere; every pair is still drawn here, from the same random
    sequence, so the model is the same to the last bit with or without it.
    """
    config = config or IdentityConfig()
    comparisons = COMPARISONS[entity]
    report = FitReport(records=len(profiles))
    usable = [p for p in profiles if p.usable()]
    if len(usable) < config.min_fit_records:
        return _small_input_model(entity, profiles, config, report), report

    # the random-pair stage draws first from the seeded sequence; a worker can run it while
    # this process builds the postings, which need no random draw
    if offload is not None:
        wait = offload.random_pair_stage()
    else:
        wait = _ready(random_pair_stage(entity, usable, config))

    if keys_per_record is None:
        keys_per_record = [blocking_keys(p) for p in profiles]
    postings = _postings(keys_per_record, config.block_cap)
    by_family: dict[str, list[str]] = defaultdict(list)
    for key in postings:
        by_family[key_family(key)].append(key)
    for grouped in by_family.values():
        # each family's keys in order, as when they were taken from all keys sorted: fewer
        # comparisons in several small sorts than in one of all 165,000 (decision 69)
        grouped.sort()
    prior_ids, prior_families = _prior_pair_ids(profiles, postings, config, report)

    tf, u, report.random_pairs, rng_state = wait()
    rng = random.Random()
    rng.setstate(rng_state)

    names = [c.name for c in comparisons]
    m_start = [list(DEFAULT_M[entity][n]) for n in names]
    observed = [u[n] for n in names]  # level distribution among random pairs
    families = [f for f in sorted(by_family) if f in FAMILY_FIXES]
    budget = max(config.em_max_pairs // max(len(families), 1), 1)
    # every pair first (the draws in the order they always had), then their vectors at once
    drawn: list[tuple[str, list[Pair]]] = []
    for family in families:
        family_keys = list(by_family[family])
        rng.shuffle(family_keys)
        pairs: set[Pair] = set()
        for key in family_keys:
            pairs.update(_pairs_of(postings[key], config.em_pairs_per_block, rng))
            if len(pairs) >= budget:
                break
        if len(pairs) >= 50:
            drawn.append((family, sorted(pairs)))
    prior_samples = _prior_samples(prior_ids, config, rng)
    # decision 51's bucket pairs: the last draws, as before the offload; drawn here so that
    # their vectors go out with the others
    bucket_pairs = _bucket_pairs(profiles, tf, names, config, rng)
    n = len(profiles)
    needed = list(
        dict.fromkeys(
            [p for _family, ps in drawn for p in ps]
            + [(pid // n, pid % n) for sample, _total in prior_samples.values() for pid in sample]
            + [p for by_bucket in bucket_pairs.values() for ps in by_bucket.values() for p in ps]
        )
    )
    if offload is not None:
        found = offload.vectors(needed)
    else:
        found = comparison_vectors(comparisons, profiles, needed)
    vector = dict(zip(needed, found, strict=True))

    sessions: list[tuple[str, Counter[Vector], list[int]]] = []
    for family, family_pairs in drawn:
        patterns = Counter(vector[p] for p in family_pairs)
        fixed = FAMILY_FIXES[family]
        active = [k for k, n in enumerate(names) if n not in fixed]
        observed_in = [k for k in active if _observed(patterns, k) >= MIN_OBSERVED]
        if len(observed_in) < MIN_INDICATORS:
            # decision 45: materials blocked on a specification keep only the code to compare
            report.notes.append(
                f"EM session {family} left out: only "
                f"{', '.join(names[k] for k in observed_in) or 'no field'} to compare"
            )
            continue
        sessions.append((family, patterns, active))

    u_list = list(observed)
    prior_patterns = _prior_patterns(profiles, prior_samples, prior_families, vector, names)
    prior = 1.0 / max(len(profiles) ** 2, 1)
    priors: dict[str, float] = {}
    params: dict[str, FieldParams] = {}
    for _round in range(config.fit_rounds):
        m_est = _run_sessions(sessions, names, m_start, u_list, config, report)
        params = {}
        for k, name in enumerate(names):
            estimate = m_est[k]
            if estimate is None:
                m_final = tuple(m_start[k])
            elif name == STRONG_ID:
                m_final = tuple(estimate)
            else:
                m_final = _floor(tuple(estimate), config.m_floor)
            params[name] = FieldParams(m_final, u_list[k])
        prior, priors = _prior_from(prior_patterns, profiles, params, names)
        # random pairs include the true matches; take their share out of u (u = P(. | non-match))
        u_list = [_correct_u(observed[k], params[n].m, prior) for k, n in enumerate(names)]
    for k, name in enumerate(names):
        params[name].u = u_list[k]
    _estimate_buckets(bucket_pairs, tf, params, names, prior, priors, vector)
    report.notes.extend(
        f"m of {name} not estimable from this data: default used"
        for name in names
        if name in report.unestimated
    )
    # mean number of other records of a record's entity, from the prior: lambda * (n - 1)
    discount = prior * (n - 1)
    model = Model(entity, prior, params, tf, config.tf_weight, n, report.notes, discount, priors)
    _apply_overrides(model, config)
    return model, report


# name comparisons whose exact agreement is weighed per frequency bucket, and the kind of
# record they compare (its prior is the one a name-only pair starts from)
BUCKETED: dict[str, str] = {"person_name": "person", "org_name": "organization"}
MIN_BUCKET_PAIRS = 50


def _bucket_pairs(
    profiles: Sequence[Profile],
    tf: dict[str, TermFrequencies],
    names: list[str],
    config: IdentityConfig,
    rng: random.Random,
) -> dict[str, dict[int, list[Pair]]]:
    """Per bucketed name comparison, the pairs of records sharing a name of each frequency
    bucket (`_estimate_buckets`), sorted; the draws of decision 51, in their order."""
    out: dict[str, dict[int, list[Pair]]] = {}
    for comp_name in BUCKETED:
        freq = tf.get(comp_name)
        if freq is None or comp_name not in names:
            continue
        getter = TF_VALUES[comp_name]
        holders: dict[str, list[int]] = defaultdict(list)
        for i, p in enumerate(profiles):
            for value in set(getter(p)):
                if freq.counts.get(value, 1) >= 2:
                    holders[value].append(i)
        by_bucket: dict[int, set[Pair]] = defaultdict(set)
        for value in sorted(holders):
            members = holders[value]
            if len(members) < 2 or len(members) > config.block_cap:
                continue
            pairs = by_bucket[bucket_of(freq.counts[value])]
            if len(pairs) < config.em_max_pairs:
                pairs.update(_pairs_of(members, config.em_pairs_per_block, rng))
        out[comp_name] = {bucket: sorted(pairs) for bucket, pairs in sorted(by_bucket.items())}
    return out


def _estimate_buckets(
    bucket_pairs: dict[str, dict[int, list[Pair]]],
    tf: dict[str, TermFrequencies],
    params: dict[str, FieldParams],
    names: list[str],
    prior: float,
    priors: dict[str, float],
    vector: Mapping[Pair, Vector],
) -> None:
    """Bayes factor of an exact name agreement per frequency bucket, estimated by EM.

    Decision 51. The per-value adjustment divides by the value's share of records less the
    copies expected from duplicates, floored at one record: for a rare name that floor, not
    the data, sets the weight. Here the pairs of records that share a name of one bucket
    (held by 2, 3, 4-7, ... records; drawn by `_bucket_pairs`) are scored on everything but
    the name and the fields a name forces (FAMILY_FIXES["name"]); lambda, the share of
    matches among them, is P(match | exact name of this bucket), and its odds over the
    prior's are the bucket's Bayes factor (Splink's term-frequency idea, with the
    frequency's effect measured on matches rather than assumed from the counts).
    """
    m = [list(params[x].m) for x in names]
    u = [params[x].u for x in names]
    left_out = set(FAMILY_FIXES["name"])
    for comp_name, by_bucket in bucket_pairs.items():
        freq = tf[comp_name]
        kind = BUCKETED[comp_name]
        k = names.index(comp_name)
        start = priors.get(kind, prior) if kind else prior
        base = math.log2(start / (1 - start))
        for bucket, pairs in by_bucket.items():
            patterns: Counter[Vector] = Counter()
            for pair in pairs:
                vec = vector[pair]
                if vec[k] != 0:
                    continue  # another kind of record, or not the exact level
                patterns[
                    tuple(NULL if n in left_out else lv for n, lv in zip(names, vec, strict=True))
                ] += 1
            if sum(patterns.values()) < MIN_BUCKET_PAIRS:
                continue
            lam = min(max(_lambda_only(patterns, m, u), 1e-6), 1 - 1e-6)
            freq.buckets[bucket] = math.log2(lam / (1 - lam)) - base


def _run_sessions(
    sessions: list[tuple[str, Counter[Vector], list[int]]],
    names: list[str],
    m_start: list[list[float]],
    u_list: list[tuple[float, ...]],
    config: IdentityConfig,
    report: FitReport,
) -> list[list[float] | None]:
    sums = [[0.0] * len(m) for m in m_start]
    weights = [0.0] * len(names)
    for family, patterns, active in sessions:
        m, lam, expected = _em(
            patterns, active, [list(x) for x in m_start], u_list, 0.1, config.em_iterations
        )
        report.sessions[family] = {
            "pairs": float(sum(patterns.values())),
            "lambda": lam,
            "matches": expected,
        }
        if expected < 10:
            continue
        for k in active:
            for lv, value in enumerate(m[k]):
                sums[k][lv] += value * expected
            weights[k] += expected
    out: list[list[float] | None] = []
    report.unestimated = [n for k, n in enumerate(names) if weights[k] <= 0]
    for k in range(len(names)):
        out.append([x / weights[k] for x in sums[k]] if weights[k] > 0 else None)
    return out


def _correct_u(
    observed: tuple[float, ...], m: tuple[float, ...], prior: float
) -> tuple[float, ...]:
    raw = [
        max((p - prior * mm) / (1 - prior), p * 0.02, 1e-12)
        for p, mm in zip(observed, m, strict=True)
    ]
    total = sum(raw)
    return tuple(x / total for x in raw)


def _small_input_model(
    entity: str, profiles: Sequence[Profile], config: IdentityConfig, report: FitReport
) -> Model:
    """The streaming default model when the input is too small to estimate from (decision 41).

    Frequencies and random-pair agreement rates of a few hundred records say more about chance
    than about the data, so m and u keep their defaults. The prior does too: estimated from a
    few dozen pairs scored with default m/u it reached its cap of 0.1 on five records and
    merged parts on a shared specification alone, and on small labelled samples it cost
    precision the default prior did not (Chinese customers P 0.93-0.96 against 1.0). A small
    batch therefore decides exactly as streaming does without a model file.
    """
    model = Model.default(entity)
    n = len(profiles)
    model.trained_on = n
    model.notes = [
        f"{n} records (under min_fit_records): default m, u and prior, as streaming; "
        "set prior in the configuration to override"
    ]
    report.notes.extend(model.notes)
    _apply_overrides(model, config)
    return model


def _floor(m: tuple[float, ...], floor: float) -> tuple[float, ...]:
    # EM on clean data can drive a level's m to ~0, turning one typo into a veto; real data
    # always has some true matches at every level
    raised = [max(x, floor) for x in m]
    total = sum(raised)
    return tuple(x / total for x in raised)


PriorPatterns = dict[str, tuple[Counter[Vector], int]]


def _prior_pair_ids(
    profiles: Sequence[Profile],
    postings: dict[str, list[int]],
    config: IdentityConfig,
    report: FitReport,
) -> tuple[dict[str, list[int]], dict[int, set[str]]]:
    """The pairs that share a rare blocking key (as a * n + b), per kind, and the families
    of the keys each pair was found through; no random draw.

    Nearly every true match shares some rare key, so lambda among these pairs times their
    number estimates the number of matching pairs. Pairs of an organization and a person
    never match, so each kind gets its own count.
    """
    n = len(profiles)
    # pair id -> families of the rare keys the pair was found through; once the sample is
    # full, later keys add only their family to pairs already in it
    pair_ids: dict[int, set[str]] = {}
    full = False
    # the settings read once, not per key (a pydantic attribute is a Python-level look-up),
    # and each pair id computed once (decision 69)
    block_size = config.prior_block_size
    max_pairs = config.prior_max_pairs
    for key, members in postings.items():
        size = len(members)
        if size > block_size:
            continue
        family = key_family(key)
        for a in range(size - 1):
            base = members[a] * n
            for b in range(a + 1, size):
                pid = base + members[b]
                found = pair_ids.get(pid)
                if found is not None:
                    found.add(family)
                elif not full:
                    pair_ids[pid] = {family}
        full = full or len(pair_ids) > max_pairs
    report.prior_pairs = len(pair_ids)
    by_kind: dict[str, list[int]] = defaultdict(list)
    for pid in sorted(pair_ids):
        ka, kb = profiles[pid // n].kind or "", profiles[pid % n].kind or ""
        if ka and kb and ka != kb:
            continue
        by_kind[ka or kb].append(pid)
    return by_kind, pair_ids


def _prior_samples(
    by_kind: dict[str, list[int]], config: IdentityConfig, rng: random.Random
) -> dict[str, tuple[list[int], int]]:
    """Per kind, the pairs whose patterns estimate the prior (a sample of at most
    `em_max_pairs`), and how many pairs of that kind share a rare key."""
    return {
        kind: (
            pids if len(pids) <= config.em_max_pairs else rng.sample(pids, config.em_max_pairs),
            len(pids),
        )
        for kind, pids in by_kind.items()
    }


def _prior_patterns(
    profiles: Sequence[Profile],
    samples: dict[str, tuple[list[int], int]],
    families: dict[int, set[str]],
    vector: Mapping[Pair, Vector],
    names: Sequence[str],
) -> PriorPatterns:
    """Comparison patterns of the prior's sample of pairs, per kind; for PRIOR_UNFIXED
    entities without the fields their blocking made agree (decision 51)."""
    n = len(profiles)
    out: PriorPatterns = {}
    unfix = bool(profiles) and profiles[0].entity in PRIOR_UNFIXED
    for kind, (sample, total) in samples.items():
        if unfix:
            counts = Counter(
                _unfixed(vector[(pid // n, pid % n)], families[pid], names) for pid in sample
            )
        else:
            counts = Counter(vector[(pid // n, pid % n)] for pid in sample)
        out[kind] = (counts, total)
    return out


# Entities whose prior leaves out what the blocking keys made agree (decision 51). Not
# materials: there it moved the prior by 1-4% and left it twice the labelled share (the bias is
# the siblings of decision 45, not the keys), and it cost recall on seeds 3 and 13.
PRIOR_UNFIXED = ("customer",)


def _unfixed(vec: Vector, families: Set[str], names: Sequence[str]) -> Vector:
    """The pair's comparison pattern without the fields its blocking made agree (decision 51).

    A pair found only through name keys agrees on the name because it was selected on it, as
    in the EM sessions (FAMILY_FIXES); counted as evidence, that agreement made namesakes look
    like matches and overestimated the prior. A field counts as fixed when every family the
    pair was found through fixes it: a pair found through a name and a phone key still says
    something with its name (the phone found it too).
    """
    fixed: set[str] | None = None
    for family in families:
        fields = set(FAMILY_FIXES.get(family, ()))
        fixed = fields if fixed is None else fixed & fields
    if not fixed:
        return vec
    return tuple(NULL if name in fixed else lv for name, lv in zip(names, vec, strict=True))


def _prior_from(
    patterns: PriorPatterns,
    profiles: Sequence[Profile],
    params: dict[str, FieldParams],
    names: list[str],
) -> tuple[float, dict[str, float]]:
    """(prior over all pairs, prior over pairs of two records of one kind, per kind)."""
    n = len(profiles)
    all_pairs = max(n * (n - 1) / 2, 1.0)
    m = [list(params[x].m) for x in names]
    u = [params[x].u for x in names]
    kinds = Counter(p.kind or "" for p in profiles)
    matches: dict[str, float] = {}
    for kind, (counts, total_pairs) in patterns.items():
        if counts:
            matches[kind] = _lambda_only(counts, m, u) * total_pairs
    overall = sum(matches.values())
    prior = min(max(overall / all_pairs, 1e-12), 0.5)
    by_kind: dict[str, float] = {}
    for kind, found in matches.items():
        if kind and kinds[kind] >= 2:
            # pairs within this kind, plus pairs with records of unknown kind
            pairs = kinds[kind] * (kinds[kind] - 1) / 2 + kinds[kind] * kinds[""]
            by_kind[kind] = min(max(found / max(pairs, 1.0), 1e-12), 0.5)
    return prior, by_kind


def _lambda_only(
    patterns: Counter[Vector], m: list[list[float]], u: list[tuple[float, ...]]
) -> float:
    total = sum(patterns.values())
    bf: dict[Vector, float] = {}
    for vec in patterns:
        s = 0.0
        for k, lv in enumerate(vec):
            if lv != NULL:
                s += math.log(max(m[k][lv], 1e-12) / max(u[k][lv], 1e-12))
        bf[vec] = s
    lam = 0.1
    for _ in range(200):
        base = math.log(lam / (1 - lam))
        expected = 0.0
        for vec, count in patterns.items():
            logit = base + bf[vec]
            expected += count / (1.0 + math.exp(-logit)) if logit > -700 else 0.0
        new = min(max(expected / total, 1e-9), 1 - 1e-9)
        if abs(new - lam) < 1e-7:
            return new
        lam = new
    return lam


def _apply_overrides(model: Model, config: IdentityConfig) -> None:
    if config.prior is not None:
        model.prior = config.prior
        model.kind_priors = {}
    model.tf_weight = config.tf_weight
    # IdentityConfig has checked names, levels and values and keyed them by entity, so a
    # comparison of the other entity never reaches this model
    for kind, overrides in (("m", config.m), ("u", config.u)):
        for name, levels in overrides.get(model.entity, {}).items():
            labels = model.labels(name)
            current = list(getattr(model.params[name], kind))
            for label, value in levels.items():
                current[labels.index(label)] = value
            setattr(model.params[name], kind, tuple(current))
    model.refresh()
