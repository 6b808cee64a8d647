"""Figures collected by the chaos tests, written to docs/reliability.md at the end."""

from __future__ import annotations

import datetime
from collections.abc import Iterator
from pathlib import Path

import pytest

ROWS: list[tuple[str, str, str, str]] = []
REPORT = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


def record(scenario: str, figure: str, value: object, expected: str) -> None:
    ROWS.append((scenario, figure, str(value), expected))


@pytest.fixture(scope="session", autouse=True)
def reliability_report() -> Iterator[None]:
    yield
    if not ROWS:
        return
    lines = [
        "# Reliability figures",
        "",
        "Written by `make chaos` (tests/chaos/) on "
        f"{datetime.date.today().isoformat()}; every row is measured in that run. A test fails "
        "when a figure is not what the last column requires.",
        "",
        "| scenario | figure | measured | required |",
        "| --- | --- | --- | --- |",
        *[f"| {a} | {b} | {c} | {d} |" for a, b, c, d in ROWS],
        "",
    ]
    REPORT.write_text("\n".join(lines), encoding="utf-8")
    print("\n" + "\n".join(lines))
