"""Identifier and contact comparisons without per-pair allocations (decision 68b) answer as before.

`_cmp_strong_id` built a dict of sets of the cluster's ids for every pair scored and
`_cmp_tagged` sliced every value of both sides and built a set of tags; both now loop in place.
The former code is kept here as the reference and both are run on random small profiles
(several schemes and tags, shared and conflicting values, both orders, with and without the
evidence text): every outcome, level, value and detail must be the same.
"""

from __future__ import annotations

import random

import pytest

from flows.identity import scoring
from flows.identity.profile import Profile
from flows.identity.scoring import NULL, Outcome


def _strong_reference(a: Profile, b: Profile, explain: bool) -> Outcome:
    if not a.strong_ids or not b.strong_ids:
        return NULL, "", ""
    right: dict[str, set[str]] = {}
    for scheme, value in b.strong_ids:
        right.setdefault(scheme, set()).add(value)
    shared: Outcome | None = None
    for scheme, value in a.strong_ids:
        others = right.get(scheme)
        if not others:
            continue
        if value in others:
            shared = shared or (0, value, f"{scheme} {value} on both" if explain else "")
        elif not any(v == value for s, v in a.strong_ids if s == scheme and v in others):
            detail = f"{scheme} {value} vs {', '.join(sorted(others))}" if explain else ""
            return 1, value, detail
    return shared or (NULL, "", "")


def _tagged_reference(
    left: tuple[str, ...], right: tuple[str, ...], contact: str, explain: bool
) -> Outcome:
    if not left or not right:
        return NULL, "", ""
    for p in left:
        value = p[2:]
        for q in right:
            if q[2:] == value:
                return 0, value, f"{value!r} on both" if explain else ""
    tags = {p[0] for p in right if p[0] != contact}
    for p in left:
        if p[0] in tags:
            if not explain:
                return 1, "", ""
            other = next(q for q in right if q[0] == p[0])
            return 1, "", f"{p[2:]!r} vs {other[2:]!r}"
    return NULL, "", ""


def _ids(rng: random.Random) -> tuple[tuple[str, str], ...]:
    schemes = ("uscc", "national_id", "passport")
    values = ("91310000MA1K", "91440300MA5F", "110101199003071234", "E12345678")
    return tuple((rng.choice(schemes), rng.choice(values)) for _ in range(rng.randint(0, 3)))


def _tagged(rng: random.Random) -> tuple[str, ...]:
    tags = ("c", "m", "o", "f")
    values = ("13800138000", "13900139000", "075588886666", "a@x.cn", "")
    return tuple(f"{rng.choice(tags)}:{rng.choice(values)}" for _ in range(rng.randint(0, 3)))


@pytest.mark.parametrize("explain", [False, True])
def test_strong_ids_compare_as_the_reference_does(explain: bool) -> None:
    rng = random.Random(68)
    seen = set()
    for _ in range(3000):
        a = Profile("customer", strong_ids=_ids(rng))
        b = Profile("customer", strong_ids=_ids(rng))
        got = scoring._cmp_strong_id(a, b, explain)
        assert got == _strong_reference(a, b, explain), (a.strong_ids, b.strong_ids)
        seen.add(got[0])
    assert seen == {NULL, 0, 1}  # the random cases reach every outcome


@pytest.mark.parametrize("explain", [False, True])
def test_tagged_values_compare_as_the_reference_does(explain: bool) -> None:
    rng = random.Random(68)
    seen = set()
    for _ in range(3000):
        left, right = _tagged(rng), _tagged(rng)
        for contact in ("c", "o"):
            got = scoring._cmp_tagged(left, right, contact, explain)
            assert got == _tagged_reference(left, right, contact, explain), (left, right)
            seen.add(got[0])
    assert seen == {NULL, 0, 1}
