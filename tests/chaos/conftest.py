"""Figures collected by the chaos tests, written to docs/reliability.md at the end.

A run that measures only some scenarios (`pytest -m chaos tests/chaos/test_x.py`) replaces
those scenarios' rows and keeps the others, each row dated by the run that measured it, so a
partial run never erases figures it did not re-measure.
"""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

ROWS: list[tuple[str, str, str, str]] = []
REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"
HEADER = "| scenario | figure | measured | required | measured on |"


def record(scenario: str, figure: str, value: object, expected: str) -> None:
    ROWS.append((scenario, figure, str(value).replace("|", "/"), expected))


def _kept_rows(text: str, fresh: set[str]) -> list[str]:
    """Rows of an earlier report whose scenario this run did not measure."""
    rows = []
    in_table = False
    for line in text.splitlines():
        if line.startswith("| scenario |"):
            in_table = True
            continue
        if not in_table or line.startswith("| ---"):
            continue
        if not line.startswith("|"):
            break
        cells = [c.strip() for c in line.strip("|").split("|")]
        if cells[0] in fresh:
            continue
        if len(cells) == 4:  # a report from before the date column
            cells.append("earlier run")
        rows.append("| " + " | ".join(cells) + " |")
    return rows


def render(rows: list[tuple[str, str, str, str]], earlier: str, today: str) -> str:
    kept = _kept_rows(earlier, {r[0] for r in rows})
    return "\n".join(
        [
            "# Reliability figures",
            "",
            "Written by `make chaos` (tests/chaos/); every row was measured in the run dated in "
            "its last column (a partial run replaces only the scenarios it ran). A test fails "
            "when a figure is not what the `required` column says.",
            "",
            HEADER,
            "| --- | --- | --- | --- | --- |",
            *kept,
            *[f"| {a} | {b} | {c} | {d} | {today} |" for a, b, c, d in rows],
            "",
        ]
    )


@pytest.fixture(scope="session", autouse=True)
def reliability_report() -> Iterator[None]:
    yield
    if not ROWS:
        return
    earlier = REPORT.read_text(encoding="utf-8") if REPORT.exists() else ""
    text = render(ROWS, earlier, datetime.date.today().isoformat())
    REPORT.write_text(text, encoding="utf-8")
    print("\n" + text)
