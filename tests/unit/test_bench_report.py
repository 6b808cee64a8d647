"""`make bench` rewrites only its generated section of docs/benchmarks.md."""

from __future__ import annotations

from pathlib import Path

from bench.__main__ import END, START, generated, write_doc


def test_regeneration_keeps_the_hand_written_sections(tmp_path: Path) -> None:
    doc = tmp_path / "benchmarks.md"
    doc.write_text("# Benchmarks\n\n## Identity\n\nhand-written\n", encoding="utf-8")
    write_doc(generated([("scaling", 12.0, "first run", "| a | b |")]), doc)
    text = doc.read_text(encoding="utf-8")
    assert text.startswith("# Benchmarks\n\n## Identity\n\nhand-written\n")
    assert text.count(START) == 1 and "first run" in text and "| a | b |" in text
    doc.write_text(text + "\n## Replay\n\nwritten later by hand\n", encoding="utf-8")
    write_doc(generated([("scaling", 9.0, "second run", None)]), doc)
    text = doc.read_text(encoding="utf-8")
    assert "first run" not in text and "second run" in text
    assert "hand-written" in text and "written later by hand" in text
    assert text.count(START) == 1 and text.count(END) == 1
