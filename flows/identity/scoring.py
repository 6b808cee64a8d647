"""Fellegi-Sunter scoring, in the manner of Splink.

Each comparison puts a pair of profiles into one of a few ordered levels (exact, close, ...,
else) or `null` when either side lacks the field. Level l carries m = P(level | match) and
u = P(level | non-match); the pair's match weight is log2 of the prior odds plus the sum of
log2(m/u) over the fields, and its match probability follows from that. Exact agreement on a
rare value is worth more than on a common one: for fields with term-frequency adjustment the u
of an exact match is replaced by the value's own frequency, as Splink does.

Two rules sit above the sum: an identical identifier validated by its check character decides
alone, and conflicting validated identifiers of the same scheme (or an organization against a
person) keep the pair apart whatever the other fields say.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import cache
from typing import Any, Final, NamedTuple

from rapidfuzz.distance import JaroWinkler, Levenshtein
from rapidfuzz.fuzz import partial_ratio, token_set_ratio

from flows.identity.latin import house_numbers_differ, person_name_level
from flows.identity.normalize import code_scheme, has_cjk, pinyin, street_core
from flows.identity.parts import CANONICAL_PREFIX, canonical_level, grade_level
from flows.identity.profile import CUSTOMER, MATERIAL, ORGANIZATION, Profile

NULL = -1
# Level outcome: (level index or NULL, value the tf adjustment looks up, human-readable detail).
# The detail is only built when asked for (explain=True): most comparisons are never shown.
Outcome = tuple[int, str, str]


@dataclass(frozen=True, slots=True)
class Comparison:
    name: str
    labels: tuple[str, ...]  # ordered best first; the last one is the disagreement level
    compare: Callable[[Profile, Profile, bool], Outcome]
    tf: bool = False  # term-frequency adjustment of the exact level
    tf_levels: tuple[int, ...] = ()  # or of these levels

    @property
    def adjusted_levels(self) -> tuple[int, ...]:
        return self.tf_levels or ((0,) if self.tf else ())


# --------------------------------------------------------------------------- level functions


def _best(
    left: tuple[str, ...],
    right: tuple[str, ...],
    level: Callable[[str, str], int],
    worst: int,
    explain: bool,
) -> Outcome:
    if not left or not right:
        return NULL, "", ""
    if len(left) == 1 and len(right) == 1:
        # one value on each side (a record against a one-member cluster): the loop below, unrolled
        a, b = left[0], right[0]
        lv = level(a, b)
        if lv == 0:
            return 0, a, f"{a!r} = {b!r}" if explain else ""
        return min(lv, worst), a, f"{a!r} vs {b!r}" if explain else ""
    best, pair = worst + 1, (left[0], right[0])
    for a in left:
        for b in right:
            lv = level(a, b)
            if lv < best:
                best, pair = lv, (a, b)
                if lv == 0:
                    return 0, a, f"{a!r} = {b!r}" if explain else ""
    detail = f"{pair[0]!r} vs {pair[1]!r}" if explain else ""
    return min(best, worst), pair[0], detail


# Memos of the level functions and their helpers: plain dicts, emptied when they reach their
# bound. Compiled, a look-up in one is a direct dict call; functools.lru_cache's wrapper is a
# call through Python's calling convention that also keeps its recency list on every hit and
# miss, and was 16% of resolve's perf samples on its own (decision 68). A memo answers what the
# function answers, so only the time changes; the bounds are the caches' sizes before.
MEMO_BOUND: Final = 262144
_PHONETIC: Final[dict[str, str]] = {}
_NAME_LEVELS: Final[dict[tuple[str, str], int]] = {}
_PERSON_LEVELS: Final[dict[tuple[str, str], int]] = {}
_STREET_CORES: Final[dict[str, str]] = {}
_STREET_LEVELS: Final[dict[tuple[str, str], int]] = {}
_DAYS_APART: Final[dict[tuple[str, str], int]] = {}
_CODE_LEVELS: Final[dict[tuple[str, str], int]] = {}
_LOG2_ODDS: Final[dict[float, float]] = {}


def _remembered_text(memo: dict[str, str], of: Callable[[str], str], value: str, bound: int) -> str:
    got = memo.get(value)
    if got is None:
        got = of(value)  # a call through the function object, on a miss only
        if len(memo) >= bound:
            memo.clear()
        memo[value] = got
    return got


def _remembered_level(
    memo: dict[tuple[str, str], int], of: Callable[[str, str], int], a: str, b: str, bound: int
) -> int:
    key = (a, b)  # in this order: not every level function is symmetric (_code_level)
    got = memo.get(key)
    if got is None:
        got = of(a, b)
        if len(memo) >= bound:
            memo.clear()
        memo[key] = got
    return got


def _phonetic(name: str) -> str:
    return _remembered_text(_PHONETIC, _phonetic_of, name, MEMO_BOUND)


def _phonetic_of(name: str) -> str:
    return "".join(sorted(pinyin(name).split()))


# The rapidfuzz calls below get a score_cutoff one point (of 100) under the threshold they
# are compared with: below its cutoff a scorer stops early and answers 0 (partial_ratio 2.1 ->
# 1.5 us per street pair), above it the score is the same. Not at the threshold itself: there
# a float conversion inside can answer 0 for a score equal to it (normalized_similarity 17/20
# with cutoff 0.85). Checked on 1.5M street and 0.8M name pairs of the generated sets.
# A batch compares the same pair of values again and again (a name shared by the duplicates
# of one entity against the same cluster values); levels are pure functions of the two values.
def _name_level(a: str, b: str) -> int:
    """0 exact, 1 close, 2 similar, 3 different."""
    return _remembered_level(_NAME_LEVELS, _name_level_of, a, b, MEMO_BOUND)


def _name_level_of(a: str, b: str) -> int:
    if a == b:
        return 0
    if a.startswith(CANONICAL_PREFIX) or b.startswith(CANONICAL_PREFIX):
        # issue 4: a part's concept name is compared with concept names only (parts.py)
        both = a.startswith(CANONICAL_PREFIX) and b.startswith(CANONICAL_PREFIX)
        return canonical_level(a, b) if both else 3
    cjk = has_cjk(a) or has_cjk(b)
    if not cjk and " " in a and sorted(a.split()) == sorted(b.split()):
        return 0
    if _phonetic(a) == _phonetic(b):
        # homophones (张伟/张玮) and the same name across scripts or word orders
        return 1
    if cjk and has_cjk(a) and has_cjk(b):
        # One character off is "similar", not "close": in a four-character company name it is
        # as often another company (方锐 / 方合) as a typo, and homophone typos, the usual IME
        # error, were caught above.
        longest = max(len(a), len(b))
        dist = Levenshtein.distance(a, b, score_cutoff=2)
        if (dist <= 1 and longest >= 3) or (dist <= 2 and longest >= 6):
            return 2
        if min(len(a), len(b)) >= 2 and (a.startswith(b) or b.startswith(a)):
            return 2
        return 3
    # edit distance, not Jaro-Winkler, for "close": JW rewards a shared prefix, so
    # "river logistics" would be close to "river apex logistics"
    longest = max(len(a), len(b))
    dist = Levenshtein.distance(a, b, score_cutoff=3)
    if (dist <= 1 and longest >= 5) or (dist <= 2 and longest >= 12):
        return 1
    if (
        JaroWinkler.similarity(a, b, score_cutoff=0.89) >= 0.9
        or token_set_ratio(a, b, score_cutoff=89) >= 90
    ):
        return 2
    ta, tb = a.split(), b.split()
    if len(ta) >= 2 and len(tb) >= 2 and ta[-1] == tb[-1]:
        fa, fb = ta[0], tb[0]
        # "j smith" / "john smith", "chris smith" / "christopher smith"
        if fa.startswith(fb) or fb.startswith(fa):
            return 2
    return 3


def _cmp_name(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    """Material descriptions: the text levels, unless the part concepts of both disagree.

    杯头螺丝 / 圆头螺丝 are one character apart ("similar" as text) and two heads as concepts
    (decision 45): when both descriptions were read as concepts and no concept name of one is
    the other's or a less specific form of it, a close or similar text is not agreement.
    """
    outcome = _name_outcome(a, b, explain)
    if outcome[0] in (1, 2) and _concepts_disagree(a.names, b.names):
        return 3, outcome[1], f"part concepts differ; text {outcome[2]}" if explain else ""
    return outcome


def _concepts_disagree(left: tuple[str, ...], right: tuple[str, ...]) -> bool:
    ours = [n for n in left if n.startswith(CANONICAL_PREFIX)]
    theirs = [n for n in right if n.startswith(CANONICAL_PREFIX)]
    if not ours or not theirs:
        return False
    return all(canonical_level(x, y) == 3 for x in ours for y in theirs)


def _cmp_org_name(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    if a.kind != ORGANIZATION and b.kind != ORGANIZATION:
        return NULL, "", ""
    return _name_outcome(a, b, explain)


def _cmp_person_name(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    if a.kind == ORGANIZATION or b.kind == ORGANIZATION:
        return NULL, "", ""
    return _name_outcome(a, b, explain, _person_level)


def _person_level(a: str, b: str) -> int:
    return _remembered_level(_PERSON_LEVELS, _person_level_of, a, b, MEMO_BOUND)


def _person_level_of(a: str, b: str) -> int:
    # issue 4: Latin person names also get word-wise Jaro-Winkler levels (flows/identity/latin)
    level = _name_level(a, b)
    if level > 1 and not has_cjk(a) and not has_cjk(b):
        level = min(level, person_name_level(a, b))
    return level


def _name_outcome(
    a: Profile, b: Profile, explain: bool, level_of: Callable[[str, str], int] = _name_level
) -> Outcome:
    level, value, detail = _best(a.names, b.names, level_of, 3, explain)
    if level > 2:
        # same brand, different industry word: 华为 / 华为技术
        for x in a.brands:
            if x and x in b.brands:
                return 2, value, f"brand {x!r} shared; {detail}" if explain else ""
    return level, value, detail


def _eq(a: str, b: str) -> int:
    return 0 if a == b else 1


def _best_eq(left: tuple[str, ...], right: tuple[str, ...], explain: bool) -> Outcome:
    """`_best(left, right, _eq, 1, explain)` without a call per pair of values."""
    if not left or not right:
        return NULL, "", ""
    for a in left:
        if a in right:
            return 0, a, f"{a!r} = {a!r}" if explain else ""
    return 1, left[0], f"{left[0]!r} vs {right[0]!r}" if explain else ""


def _cmp_tagged(
    left: tuple[str, ...], right: tuple[str, ...], contact: str, explain: bool
) -> Outcome:
    """Any shared value agrees; a disagreement needs own values of one tag on both sides.

    A company's switchboard against a buyer's mobile, or one buyer's mobile against another
    buyer's, is not a conflict: different channels or people of the same company. Such pairs
    are null, not "else".
    """
    if not left or not right:
        return NULL, "", ""
    # loops, not sets of the right side's values or tags: both sides hold one or two values
    # mostly. Every value is "<tag>:<value>" (profile.build_profile), so the right side's value
    # is compared in place after its tag instead of sliced out for every pair.
    for p in left:
        value = p[2:]
        size = len(p)
        for q in right:
            if len(q) == size and q.startswith(value, 2):
                return 0, value, f"{value!r} on both" if explain else ""
    for p in left:
        tag = p[0]
        if tag == contact:  # a contact person's value disagrees with nothing
            continue
        for q in right:
            if q[0] == tag:
                return 1, "", f"{p[2:]!r} vs {q[2:]!r}" if explain else ""
    return NULL, "", ""


def _cmp_phone(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _cmp_tagged(a.phones, b.phones, "c", explain)


def _cmp_email(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _cmp_tagged(a.emails, b.emails, "c", explain)


def _cmp_city(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _best_eq(a.cities, b.cities, explain)


def _street_core(street: str) -> str:
    return _remembered_text(_STREET_CORES, street_core, street, MEMO_BOUND)


def _street_level(a: str, b: str) -> int:
    return _remembered_level(_STREET_LEVELS, _street_level_of, a, b, MEMO_BOUND)


def _street_level_of(a: str, b: str) -> int:
    if a == b:
        return 0
    core_a, core_b = _street_core(a), _street_core(b)
    if core_a == core_b and len(core_a) >= 4:
        # same street and number; building, floor or unit written differently
        return 1
    if not has_cjk(a) and house_numbers_differ(a, b):
        # issue 4: another house number on the same street is another address
        return 2
    short, long_ = (a, b) if len(a) <= len(b) else (b, a)
    # the same address with or without building/floor detail or a leading development zone
    if len(short) >= 4 and short in long_:
        return 1
    if Levenshtein.normalized_similarity(a, b, score_cutoff=0.84) >= 0.85:
        return 1
    if len(short) >= 5 and partial_ratio(short, long_, score_cutoff=84) >= 85:
        # a typo in the street plus building detail on one side only
        return 1
    return 2


def _cmp_street(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _best(a.streets, b.streets, _street_level, 2, explain)


def _dob_level(a: str, b: str) -> int:
    if a == b:
        return 0
    if a[:4] == b[:4] and a[4:6] == b[6:8] and a[6:8] == b[4:6]:
        return 1  # day and month swapped
    if Levenshtein.distance(a, b, score_cutoff=1) <= 1:
        return 1
    if _days_apart(a, b) <= 31:
        # issue 4: Splink's "within one month" level: 19 -> 20 changes two digits
        return 1
    return 2


def _days_apart(a: str, b: str) -> int:
    return _remembered_level(_DAYS_APART, _days_apart_of, a, b, 65536)


def _days_apart_of(a: str, b: str) -> int:
    try:
        return abs((dt.date.fromisoformat(a) - dt.date.fromisoformat(b)).days)
    except ValueError:
        return 1 << 30


def _cmp_dob(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _best(a.dobs, b.dobs, _dob_level, 2, explain)


def _cmp_strong_id(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    """0 identical validated id, 1 conflicting validated ids of one scheme.

    A conflict wins over a shared id: a cluster that somehow holds two credit codes must not
    pull in a third entity through one of them.
    """
    if not a.strong_ids or not b.strong_ids:
        return NULL, "", ""
    # loops over the few ids on each side, not a dict of sets built for every pair scored
    shared: Outcome | None = None
    for scheme, value in a.strong_ids:
        same_scheme = False
        found = False
        for other_scheme, other in b.strong_ids:
            if other_scheme == scheme:
                same_scheme = True
                if other == value:
                    found = True
                    break
        if not same_scheme:
            continue
        if found:
            shared = shared or (0, value, f"{scheme} {value} on both" if explain else "")
        else:
            # another id of the scheme only: a conflict (a cluster holding two credit codes
            # must not pull in a third entity through one of them)
            others = sorted({v for s, v in b.strong_ids if s == scheme}) if explain else []
            detail = f"{scheme} {value} vs {', '.join(others)}" if explain else ""
            return 1, value, detail
    return shared or (NULL, "", "")


def _cmp_weak_id(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    """Identifiers without a check character, compared within one scheme.

    No "close" level: numbers one keystroke apart are as often neighbours in a sequence (the
    next customer number) as they are typos.
    """
    if not a.weak_ids or not b.weak_ids:
        return NULL, "", ""
    best: Outcome = (NULL, "", "")
    for scheme, x in a.weak_ids:
        for scheme_b, y in b.weak_ids:
            if scheme != scheme_b:
                continue
            if x == y:
                return 0, f"{scheme}:{x}", f"{scheme} {x} on both" if explain else ""
            if best[0] == NULL:
                if not explain:
                    # only an exact agreement looks its value up (term frequencies)
                    best = (1, "", "")
                    continue
                best = (1, f"{scheme}:{x}", f"{scheme} {x} vs {y}")
    return best


def _cmp_place(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    """Phone and street as one comparison.

    They are not independent among non-matches: family members and companies in one building
    share both. Scoring them jointly lets the data say how rare agreement on both is, instead
    of multiplying two small u probabilities as if they were unrelated.
    """
    # _cmp_phone and _cmp_street spelled out: two calls fewer per pair scored
    phone = _cmp_tagged(a.phones, b.phones, "c", explain)
    street = _best(a.streets, b.streets, _street_level, 2, explain)
    if phone[0] == NULL and street[0] == NULL:
        return NULL, "", ""
    detail = ""
    if explain:
        parts = [f"phone {phone[2]}" if phone[0] != NULL else ""]
        parts.append(f"street {street[2]}" if street[0] != NULL else "")
        detail = "; ".join(p for p in parts if p)
    if phone[0] == 0:
        return (0 if street[0] in (0, 1) else 1), phone[1], detail
    if street[0] in (0, 1):
        return 2 + street[0], street[1], detail
    return 4, "", detail


_INCOMPARABLE = 3


def _code_level(a: str, b: str) -> int:
    """0 exact, 1 one keystroke apart, 2 else within one numbering, 3 two numberings."""
    return _remembered_level(_CODE_LEVELS, _code_level_of, a, b, 65536)


def _code_level_of(a: str, b: str) -> int:
    if a == b:
        return 0
    if len(a) >= 5 and Levenshtein.distance(a, b, score_cutoff=1) <= 1:
        return 1
    return 2 if code_scheme(a) == code_scheme(b) else _INCOMPARABLE


def _cmp_code(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    """Material codes, compared within one numbering scheme (decision 45).

    An ERP's own number (ERP012345) and a PDM drawing number (P1234567) for one part are not
    a disagreement but two numberings, like a phone against an e-mail: null, not "else". Only
    numbers of one scheme that differ (P1234567 / P7654321, two ERP numbers) are "else"; a
    re-typed drawing number (p-1234567, P 1234567) normalizes equal, one wrong digit is close.
    """
    outcome = _best(a.codes, b.codes, _code_level, _INCOMPARABLE, explain)
    if outcome[0] == _INCOMPARABLE:
        return NULL, "", ""
    return outcome


def _cmp_spec(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _best_eq(a.specs, b.specs, explain)


def _cmp_uom(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _best_eq(a.uoms, b.uoms, explain)


def _cmp_category(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    return _best_eq(a.categories, b.categories, explain)


def _cmp_grade(a: Profile, b: Profile, explain: bool = False) -> Outcome:
    # issue 4: grade numbers and material words are judged apart (parts.grade_level)
    level = grade_level(a.grades, b.grades)
    if level == NULL:
        return NULL, "", ""
    detail = f"{list(a.grades)} vs {list(b.grades)}" if explain else ""
    return level, "", detail


def compare_direct(direct: int, a: Profile, b: Profile) -> Outcome:
    """The level function numbered `direct` (`direct_number`), called directly: compiled
    (decision 63), a call through the plan's function object goes through Python's calling
    convention, ~4M times in a batch of 100,000 (decision 64)."""
    if direct == 1:
        return _cmp_strong_id(a, b, False)
    if direct == 2:
        return _cmp_weak_id(a, b, False)
    if direct == 3:
        return _cmp_org_name(a, b, False)
    if direct == 4:
        return _cmp_person_name(a, b, False)
    if direct == 5:
        return _cmp_place(a, b, False)
    if direct == 6:
        return _cmp_email(a, b, False)
    if direct == 7:
        return _cmp_city(a, b, False)
    if direct == 8:
        return _cmp_dob(a, b, False)
    if direct == 9:
        return _cmp_code(a, b, False)
    if direct == 10:
        return _cmp_name(a, b, False)
    if direct == 11:
        return _cmp_spec(a, b, False)
    if direct == 12:
        return _cmp_uom(a, b, False)
    if direct == 13:
        return _cmp_category(a, b, False)
    return _cmp_grade(a, b, False)


_DIRECT: dict[Callable[[Profile, Profile, bool], Outcome], int] = {
    _cmp_strong_id: 1,
    _cmp_weak_id: 2,
    _cmp_org_name: 3,
    _cmp_person_name: 4,
    _cmp_place: 5,
    _cmp_email: 6,
    _cmp_city: 7,
    _cmp_dob: 8,
    _cmp_code: 9,
    _cmp_name: 10,
    _cmp_spec: 11,
    _cmp_uom: 12,
    _cmp_category: 13,
    _cmp_grade: 14,
}


def direct_number(compare: Callable[[Profile, Profile, bool], Outcome]) -> int:
    """The number `compare_direct` calls `compare` by; 0 for a function it does not know."""
    return _DIRECT.get(compare, 0)


STRONG_ID = "id"

COMPARISONS: dict[str, tuple[Comparison, ...]] = {
    CUSTOMER: (
        Comparison(STRONG_ID, ("exact", "conflict"), _cmp_strong_id),
        Comparison("weak_id", ("exact", "else"), _cmp_weak_id, tf=True),
        # company names are unique within a registration area, person names are not: separate
        # comparisons let each have its own m and u
        Comparison("org_name", ("exact", "close", "similar", "else"), _cmp_org_name, tf=True),
        Comparison("person_name", ("exact", "close", "similar", "else"), _cmp_person_name, tf=True),
        Comparison(
            "place",
            ("phone+street", "phone", "street", "street close", "else"),
            _cmp_place,
            tf_levels=(1, 2),
        ),
        Comparison("email", ("exact", "else"), _cmp_email, tf=True),
        Comparison("city", ("exact", "else"), _cmp_city),
        Comparison("dob", ("exact", "close", "else"), _cmp_dob, tf=True),
    ),
    MATERIAL: (
        Comparison(STRONG_ID, ("exact", "conflict"), _cmp_strong_id),
        Comparison("weak_id", ("exact", "else"), _cmp_weak_id, tf=True),
        Comparison("code", ("exact", "close", "else"), _cmp_code, tf=True),
        Comparison("name", ("exact", "close", "similar", "else"), _cmp_name, tf=True),
        Comparison("spec", ("exact", "else"), _cmp_spec, tf=True),
        Comparison("uom", ("exact", "else"), _cmp_uom),
        Comparison("category", ("exact", "else"), _cmp_category),
        Comparison("grade", ("exact", "else"), _cmp_grade),
    ),
}

# Starting points for EM and the fallback when the data cannot inform a field. u values here
# are only used when no data at all is available (Model.default).
DEFAULT_M: dict[str, dict[str, tuple[float, ...]]] = {
    CUSTOMER: {
        STRONG_ID: (0.99, 0.01),
        "weak_id": (0.5, 0.5),
        "org_name": (0.6, 0.2, 0.15, 0.05),
        "person_name": (0.6, 0.2, 0.15, 0.05),
        "place": (0.3, 0.3, 0.2, 0.1, 0.1),
        "email": (0.8, 0.2),
        "city": (0.95, 0.05),
        "dob": (0.9, 0.07, 0.03),
    },
    MATERIAL: {
        STRONG_ID: (0.99, 0.01),
        "weak_id": (0.5, 0.5),
        "code": (0.8, 0.1, 0.1),
        "name": (0.6, 0.2, 0.15, 0.05),
        "spec": (0.9, 0.1),
        "uom": (0.95, 0.05),
        "category": (0.9, 0.1),
        "grade": (0.95, 0.05),
    },
}
DEFAULT_U: dict[str, dict[str, tuple[float, ...]]] = {
    CUSTOMER: {
        STRONG_ID: (1e-7, 1 - 1e-7),
        "weak_id": (1e-5, 1 - 1e-5),
        "org_name": (1e-5, 1e-4, 2e-3, 1 - 2.11e-3),
        "person_name": (1e-4, 5e-4, 5e-3, 1 - 5.6e-3),
        "place": (1e-6, 1e-5, 1e-5, 1e-4, 1 - 1.21e-4),
        "email": (1e-5, 1 - 1e-5),
        "city": (0.05, 0.95),
        "dob": (1e-4, 2e-3, 1 - 2.1e-3),
    },
    MATERIAL: {
        STRONG_ID: (1e-7, 1 - 1e-7),
        "weak_id": (1e-5, 1 - 1e-5),
        "code": (1e-5, 1e-4, 1 - 1.1e-4),
        "name": (1e-3, 3e-3, 1e-2, 1 - 1.4e-2),
        "spec": (1e-3, 1 - 1e-3),
        "uom": (0.3, 0.7),
        "category": (0.05, 0.95),
        "grade": (0.2, 0.8),
    },
}
PROB_FLOOR = 1e-9


# --------------------------------------------------------------------------- model


@dataclass(slots=True)
class FieldParams:
    m: tuple[float, ...]
    u: tuple[float, ...]


@dataclass(slots=True)
class TermFrequencies:
    """How many records carry each value; values seen once are left out to bound memory."""

    total: int
    counts: dict[str, int] = field(default_factory=dict)
    # log2 Bayes factor of an exact agreement on a value held by `bucket_of(count)` records,
    # estimated by EM where the data allowed (decision 51); it replaces the level's weight and
    # the value's adjustment
    buckets: dict[int, float] = field(default_factory=dict)

    def bucket_weight(self, value: str) -> float | None:
        if not self.buckets:
            return None
        return self.buckets.get(bucket_of(self.counts.get(value, 1)))

    def frequency(self, value: str, discount: float = 0.0) -> tuple[float, bool]:
        """(share of records with `value` less the copies expected from duplicates, is_common).

        In a deduplication input a value also repeats because its entity was entered several
        times; those copies say nothing about how common the value is among other entities. A
        value seen no more often than one entity's duplicates is not common.
        """
        count = self.counts.get(value, 1)
        return max(count - discount, 1.0) / max(self.total, 1), count > discount + 1


def bucket_of(count: int) -> int:
    """Frequency bucket of a value held by `count` records: 2, 3, then powers of two.

    A value held by one record in the training data counts as held by two: a new record that
    agrees with it makes two.
    """
    if count <= 3:
        return max(count, 2)
    return 1 << (count.bit_length() - 1)


@dataclass(frozen=True, slots=True)
class _Step:
    comparison: Comparison
    weights: tuple[float, ...]
    u: tuple[float, ...]
    tf_levels: tuple[int, ...]
    tf: TermFrequencies | None
    # (level, value) -> weight + tf adjustment: a value's adjustment never changes for a plan,
    # and the same names and phones are scored again and again in a batch
    memo: dict[tuple[int, str], float] = field(default_factory=dict)


# (level function, its number for compare_direct, weights, adjusted levels, memo, is the
# validated identifier, step)
_QuietStep = tuple[
    Callable[[Profile, Profile, bool], Outcome],
    int,
    tuple[float, ...],
    tuple[int, ...],
    dict[tuple[int, str], float],
    bool,
    _Step,
]


@dataclass(slots=True)
class Model:
    """Everything scoring needs; batch fits it, streaming loads it, so both decide alike."""

    entity: str
    prior: float  # probability that two random records are the same entity
    params: dict[str, FieldParams]
    tf: dict[str, TermFrequencies] = field(default_factory=dict)
    tf_weight: float = 1.0
    trained_on: int = 0
    notes: list[str] = field(default_factory=list)
    tf_discount: float = 0.0  # expected other records of the same entity (see frequency())
    # prior among pairs of two organizations / two persons: mixed pairs never match, so the
    # prior within a kind is higher than over all pairs
    kind_priors: dict[str, float] = field(default_factory=dict)
    _weights: dict[str, tuple[float, ...]] | None = field(default=None, repr=False, compare=False)
    _plan: list[_Step] | None = field(default=None, repr=False, compare=False)
    # what the plan's memoized adjustments were computed with (see plan())
    _plan_key: tuple[float, float] = field(default=(0.0, 0.0), repr=False, compare=False)
    # the plan it was built from, and _score_quiet's flat tuple of it (quiet_plan())
    _quiet: tuple[list[_Step], tuple[_QuietStep, ...]] | None = field(
        default=None, repr=False, compare=False
    )

    def weight_table(self) -> dict[str, tuple[float, ...]]:
        """log2(m/u) per comparison and level; call refresh() after changing params."""
        if self._weights is None:
            self._weights = {
                name: tuple(
                    math.log2(max(m, PROB_FLOOR) / max(u, PROB_FLOOR))
                    for m, u in zip(p.m, p.u, strict=True)
                )
                for name, p in self.params.items()
            }
        return self._weights

    def refresh(self) -> None:
        self._weights = None
        self._plan = None

    def plan(self) -> list[_Step]:
        """Per comparison, everything score() looks up, resolved once.

        Rebuilt when tf_weight or tf_discount changed since, so that no memoized adjustment
        outlives the figures it was computed from.
        """
        key = (self.tf_weight, self.tf_discount)
        if self._plan is None or self._plan_key != key:
            self._plan_key = key
            table = self.weight_table()
            self._plan = [
                _Step(
                    c,
                    table[c.name],
                    self.params[c.name].u,
                    c.adjusted_levels if self.tf_weight and c.name in self.tf else (),
                    self.tf.get(c.name),
                )
                for c in self.comparisons
            ]
        return self._plan

    def quiet_plan(self) -> tuple[_QuietStep, ...]:
        """`plan()` flattened for `_score_quiet`, rebuilt whenever the plan is.

        Per step: the level function and its number, the weights, the levels with a term-frequency
        adjustment (none without term frequencies), the memo, whether it is the validated
        identifier, and the step itself. Unpacked from a tuple per step, not read as
        attributes: the batch scores ~490,000 pairs with eight steps each.
        """
        plan = self.plan()
        quiet = self._quiet
        if quiet is None or quiet[0] is not plan:
            steps = tuple(
                (
                    s.comparison.compare,
                    direct_number(s.comparison.compare),
                    s.weights,
                    s.tf_levels if s.tf is not None else (),
                    s.memo,
                    s.comparison.name == STRONG_ID,
                    s,
                )
                for s in plan
            )
            quiet = self._quiet = (plan, steps)
        return quiet[1]

    @property
    def comparisons(self) -> tuple[Comparison, ...]:
        return COMPARISONS[self.entity]

    @classmethod
    def default(cls, entity: str, prior: float = 1e-5) -> Model:
        params = {
            c.name: FieldParams(DEFAULT_M[entity][c.name], DEFAULT_U[entity][c.name])
            for c in COMPARISONS[entity]
        }
        return cls(entity, prior, params, notes=["default parameters, not fitted"])

    def to_dict(self) -> dict[str, Any]:
        return {
            "entity": self.entity,
            "prior": self.prior,
            "tf_weight": self.tf_weight,
            "trained_on": self.trained_on,
            "notes": list(self.notes),
            "tf_discount": self.tf_discount,
            "kind_priors": dict(self.kind_priors),
            "params": {name: {"m": list(p.m), "u": list(p.u)} for name, p in self.params.items()},
            "tf": {
                name: {
                    "total": t.total,
                    # most common first, ties by value: the same model writes the same bytes
                    # whatever order the fit's sets (hash-seeded) produced the counts in
                    "counts": dict(sorted(t.counts.items(), key=lambda kv: (-kv[1], kv[0]))),
                    **(
                        {"buckets": {str(b): t.buckets[b] for b in sorted(t.buckets)}}
                        if t.buckets
                        else {}
                    ),
                }
                for name, t in self.tf.items()
            },
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Model:
        params = {
            name: FieldParams(tuple(p["m"]), tuple(p["u"])) for name, p in data["params"].items()
        }
        entity = data["entity"]
        for comp in COMPARISONS.get(entity, ()):
            # a model saved before a comparison existed scores it with the defaults
            if comp.name not in params:
                params[comp.name] = FieldParams(
                    DEFAULT_M[entity][comp.name], DEFAULT_U[entity][comp.name]
                )
        tf = {
            name: TermFrequencies(
                int(t["total"]),
                {str(k): int(v) for k, v in t["counts"].items()},
                {int(b): float(w) for b, w in t.get("buckets", {}).items()},
            )
            for name, t in data.get("tf", {}).items()
        }
        return cls(
            entity=data["entity"],
            prior=float(data["prior"]),
            params=params,
            tf=tf,
            tf_weight=float(data.get("tf_weight", 1.0)),
            trained_on=int(data.get("trained_on", 0)),
            notes=list(data.get("notes", [])),
            tf_discount=float(data.get("tf_discount", 0.0)),
            kind_priors={str(k): float(v) for k, v in data.get("kind_priors", {}).items()},
        )

    def labels(self, comparison: str) -> tuple[str, ...]:
        for c in self.comparisons:
            if c.name == comparison:
                return c.labels
        raise KeyError(comparison)


# --------------------------------------------------------------------------- scoring

MATCH, NON_MATCH = "id_match", "conflict"


@dataclass(frozen=True, slots=True)
class FieldEvidence:
    field: str
    level: str  # a comparison level label, "null", or "rule"
    weight: float  # log2 Bayes factor contributed, tf adjustment included
    detail: str = ""
    tf_adjustment: float = 0.0

    def as_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "field": self.field,
            "level": self.level,
            "weight": round(self.weight, 3),
        }
        if self.detail:
            out["detail"] = self.detail
        if self.tf_adjustment:
            out["tf_adjustment"] = round(self.tf_adjustment, 3)
        return out


class Score(NamedTuple):
    """A pair's score. A named tuple, not a frozen dataclass: a batch builds one per candidate
    scored (~490,000 for 100,000 records), and a frozen dataclass's `__init__` sets each field
    through `object.__setattr__`, five times the cost of building a tuple."""

    weight: float
    probability: float
    evidence: tuple[FieldEvidence, ...]  # empty unless scored with explain=True
    rule: str | None = None  # id_match | conflict: decided by a rule, not by the weight
    levels: tuple[int, ...] = ()  # level per comparison of the model, NULL when not compared

    def level_of(self, model: Model, comparison: str) -> str:
        k = _position(model.entity).get(comparison, len(self.levels))
        if k >= len(self.levels) or self.levels[k] == NULL:
            return "null"
        return model.comparisons[k].labels[self.levels[k]]


@cache
def _position(entity: str) -> dict[str, int]:
    """Index of each comparison of an entity (what Score.level_of looks up per decision)."""
    return {c.name: k for k, c in enumerate(COMPARISONS[entity])}


def log2_odds(p: float) -> float:
    got = _LOG2_ODDS.get(p)
    if got is None:
        q = min(max(p, PROB_FLOOR), 1 - PROB_FLOOR)
        got = math.log2(q / (1 - q))
        if len(_LOG2_ODDS) >= 1024:
            _LOG2_ODDS.clear()
        _LOG2_ODDS[p] = got
    return got


def probability(weight: float) -> float:
    if weight > 60:
        return 1.0
    if weight < -60:
        return 0.0
    odds = math.pow(2.0, weight)
    return odds / (1 + odds)


def comparison_vector(
    comparisons: tuple[Comparison, ...], a: Profile, b: Profile
) -> tuple[int, ...]:
    return tuple(c.compare(a, b, False)[0] for c in comparisons)


def score(
    model: Model,
    record: Profile,
    other: Profile,
    explain: bool = False,
    *,
    stop_at_conflict: bool = False,
) -> Score:
    """Score a record against another record or a cluster profile.

    With explain=False (scoring many candidates) no evidence text is built; `Score.levels`
    still says which level each comparison reached. stop_at_conflict=True (with explain=False)
    returns as soon as validated identifiers conflict: the rule (NON_MATCH) is then final, and
    the weight and levels, which a kept-apart candidate never uses, stop at that comparison.
    """
    if record.kind and other.kind and record.kind != other.kind:
        rule_ev = FieldEvidence("kind", "rule", -math.inf, f"{record.kind} vs {other.kind}")
        return Score(-math.inf, 0.0, (rule_ev,), NON_MATCH, ())
    kind = record.kind or other.kind
    total = log2_odds(model.kind_priors.get(kind, model.prior) if kind else model.prior)
    if not explain:
        return _score_quiet(model, record, other, total, stop_at_conflict)
    evidence: list[FieldEvidence] = []
    levels: list[int] = []
    rule: str | None = None
    for step in model.plan():
        comp = step.comparison
        level, value, detail = comp.compare(record, other, explain)
        levels.append(level)
        if level == NULL:
            if explain:
                evidence.append(FieldEvidence(comp.name, "null", 0.0))
            continue
        weight = step.weights[level]
        adjustment = 0.0
        if step.tf is not None and level in step.tf_levels:
            adjustment = _adjustment(model, step, level, value)
        total += weight + adjustment
        if comp.name == STRONG_ID:
            rule = MATCH if level == 0 else NON_MATCH
        if explain:
            label = comp.labels[level]
            if comp.name == STRONG_ID:
                label = "exact (decides alone)" if level == 0 else "conflict (never merge)"
            evidence.append(
                FieldEvidence(comp.name, label, weight + adjustment, detail, adjustment)
            )
    if rule == MATCH:
        return Score(total, 1.0, tuple(evidence), rule, tuple(levels))
    if rule == NON_MATCH:
        return Score(total, 0.0, tuple(evidence), rule, tuple(levels))
    return Score(total, probability(total), tuple(evidence), None, tuple(levels))


def _adjustment(model: Model, step: _Step, level: int, value: str) -> float:
    """Term-frequency adjustment of an agreement on `value` at `level` (step.tf is set)."""
    tf = step.tf
    assert tf is not None
    bucket = tf.bucket_weight(value) if level == 0 else None
    if bucket is not None:
        # the EM estimate for values this frequent replaces the level's weight (decision 51)
        return model.tf_weight * (bucket - step.weights[level])
    freq, common = tf.frequency(value, model.tf_discount)
    adjustment = model.tf_weight * math.log2(max(step.u[level], PROB_FLOOR) / freq)
    if not common:
        # the frequency floor of a rare value is coarse; it may reward, never penalize
        adjustment = max(adjustment, 0.0)
    return adjustment


def _score_quiet(
    model: Model, record: Profile, other: Profile, total: float, stop_at_conflict: bool = False
) -> Score:
    """score() without evidence: the same arithmetic in the same order, adjustments memoized.

    The batch scores hundreds of thousands of pairs through here; `explain=True` and this path
    must agree to the last bit (tests/unit/test_identity_batch_speed.py).
    """
    levels: list[int] = []
    rule: str | None = None
    for compare, direct, weights, tf_levels, memo, strong, step in model.quiet_plan():
        level = compare_direct(direct, record, other) if direct else compare(record, other, False)
        lv = level[0]
        levels.append(lv)
        if lv == NULL:
            continue
        if lv in tf_levels:
            memo_key = (lv, level[1])
            contribution = memo.get(memo_key)
            if contribution is None:
                contribution = weights[lv] + _adjustment(model, step, lv, level[1])
                memo[memo_key] = contribution
            total += contribution
        else:
            total += weights[lv] + 0.0
        if strong:
            rule = MATCH if lv == 0 else NON_MATCH
            if stop_at_conflict and rule == NON_MATCH:
                # nothing after this changes the rule; decide() only keeps the pair apart
                return Score(total, 0.0, (), rule, tuple(levels))
    if rule == MATCH:
        return Score(total, 1.0, (), rule, tuple(levels))
    if rule == NON_MATCH:
        return Score(total, 0.0, (), rule, tuple(levels))
    return Score(total, probability(total), (), None, tuple(levels))
