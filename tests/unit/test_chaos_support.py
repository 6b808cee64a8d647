"""The chaos suite's own arithmetic: the expected state of the mixed stream and the report."""

from __future__ import annotations

from collections import Counter

from tests.chaos.conftest import render
from tests.chaos.mixed import build


def test_the_mixed_stream_expects_what_the_version_rules_say() -> None:
    s = build(2_000, seed=1)
    assert len(s.sends) == 2_000
    assert {"version", "overtaken", "replayed old", "replayed same", "redelivered"} <= set(s.kinds)
    # Redeliveries reuse a message id: one expected outcome per distinct id.
    assert len(s.outcome) == 2_000 - s.kinds["redelivered"]
    got = Counter(s.outcome.values())
    assert got["unchanged"] == s.kinds["replayed same"]
    # Every overtaken version and every replayed old one arrives below the stored version.
    assert got["stale"] == s.kinds["overtaken"] + s.kinds["replayed old"]
    # Each record ends at its highest version, revised once per applied version.
    for (_, system, sid), (version, _, revision) in s.final.items():
        versions = {
            e.source_version for _, e in s.sends if (e.source_system, e.source_id) == (system, sid)
        }
        assert version == max(v or 0 for v in versions)
        assert 1 <= revision <= version
    assert sum(rev for _, _, rev in s.final.values()) == got["applied"]


def test_a_partial_run_replaces_its_own_rows_and_keeps_the_others() -> None:
    earlier = render([("A", "lost", "0", "0"), ("B", "lost", "0", "0")], "", "2026-01-01")
    text = render([("B", "lost", "1", "0")], earlier, "2026-02-02")
    rows = [r for r in text.splitlines() if r.startswith("| A") or r.startswith("| B")]
    assert rows == ["| A | lost | 0 | 0 | 2026-01-01 |", "| B | lost | 1 | 0 | 2026-02-02 |"]
    legacy = "| scenario | figure | measured | required |\n| --- |\n| C | lost | 0 | 0 |\n"
    assert "| C | lost | 0 | 0 | earlier run |" in render([("B", "x", "1", "1")], legacy, "d")
