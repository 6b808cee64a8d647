"""The level functions' memos (decision 68) answer what the functions answer.

The memos replaced functools.lru_cache for speed only: a memo keyed wrongly (one value of two,
the pair in sorted order) or not emptied at its bound would change decisions or grow without
end in a long-running hub. Each memoized function is compared with its uncached body on values
that reach every level, in both orders (`_code_level` is not symmetric), twice (the second
answer comes from the memo).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from flows.identity import scoring

PAIRS = [
    ("华为技术", "华为技术"),
    ("华为技术", "华为科技"),
    ("张伟", "张玮"),
    ("方锐科技", "方合科技"),
    ("river logistics", "river apex logistics"),
    ("john smith", "jon smith"),
    ("j smith", "john smith"),
    ("smith john", "john smith"),
    ("深圳市南山区科技园南区88号", "深圳市南山区科技园南区88号A座"),
    ("12 main street", "14 main street"),
    ("1990-03-04", "1990-04-03"),
    ("1990-03-04", "1991-03-04"),
    ("1990-03-04", "not a date"),
    ("ERP12", "ERP1"),
    ("P1234567", "P1234568"),
    ("P1234567", "ERP012345"),
]

TWO_VALUES: list[tuple[str, Callable[[str, str], Any], Callable[[str, str], Any]]] = [
    ("_NAME_LEVELS", scoring._name_level, scoring._name_level_of),
    ("_PERSON_LEVELS", scoring._person_level, scoring._person_level_of),
    ("_STREET_LEVELS", scoring._street_level, scoring._street_level_of),
    ("_DAYS_APART", scoring._days_apart, scoring._days_apart_of),
    ("_CODE_LEVELS", scoring._code_level, scoring._code_level_of),
]


@pytest.mark.parametrize(("memo", "cached", "body"), TWO_VALUES, ids=[t[0] for t in TWO_VALUES])
def test_a_memo_answers_what_the_function_answers_in_both_orders(
    memo: str, cached: Callable[[str, str], Any], body: Callable[[str, str], Any]
) -> None:
    getattr(scoring, memo).clear()
    for a, b in PAIRS:
        for x, y in ((a, b), (b, a)):
            expected = body(x, y)
            assert cached(x, y) == expected, (x, y)
            assert cached(x, y) == expected, (x, y)  # from the memo this time
            assert getattr(scoring, memo)[(x, y)] == expected


def test_the_code_level_is_not_symmetric_so_the_memo_keeps_the_order() -> None:
    # the case the test above needs to see a memo keyed by the sorted pair
    assert scoring._code_level_of("ERP12", "ERP1") != scoring._code_level_of("ERP1", "ERP12")


def test_one_value_memos_and_log2_odds() -> None:
    for name in ("华为技术", "张伟", "Zhang Wei"):
        assert scoring._phonetic(name) == "".join(sorted(scoring.pinyin(name).split()))
        assert scoring._phonetic(name) == scoring._PHONETIC[name]
    for street in ("深圳市南山区科技园南区88号A座", "12 main street"):
        assert scoring._street_core(street) == scoring.street_core(street)
        assert scoring._STREET_CORES[street] == scoring.street_core(street)
    for p in (1e-9, 1e-5, 0.5, 0.999):
        expected = scoring.math.log2(p / (1 - p))
        assert scoring.log2_odds(p) == expected
        assert scoring.log2_odds(p) == expected
    # probabilities beyond the floor are clamped, and remembered as asked
    floor = scoring.PROB_FLOOR
    assert scoring.log2_odds(0.0) == scoring.math.log2(floor / (1 - floor))
    top = 1 - floor
    assert scoring.log2_odds(1.0) == scoring.math.log2(top / (1 - top))


def test_a_memo_at_its_bound_is_emptied_before_it_grows() -> None:
    memo = scoring._NAME_LEVELS
    memo.clear()
    memo.update({(f"x{i}", "y"): 3 for i in range(scoring.MEMO_BOUND)})
    assert scoring._name_level("张伟", "张玮") == scoring._name_level_of("张伟", "张玮")
    assert len(memo) == 1
    memo.clear()
