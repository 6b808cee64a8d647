"""Decision 49: fit's pure parts and the parsing of the input in the batch's worker processes.

Every check compares the pooled way with the one-process way: the model must be equal to the
last bit (every pair still drawn in this process from one seeded sequence) and the batch's
output, its progress and its first input error the same.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import pytest

from flows.identity import batch, fit_pool
from flows.identity.batch import (
    InputError,
    InputRow,
    normalize_rows,
    read_rows,
    run_batch,
    run_batch_file,
)
from flows.identity.config import IdentityConfig
from flows.identity.fit_pool import fit_offload
from flows.identity.profile import Profile
from flows.identity.scoring import COMPARISONS
from flows.identity.training import (
    Pair,
    RandomPairStage,
    Vector,
    comparison_vectors,
    fit,
    random_pair_stage,
)


@pytest.fixture(scope="module")
def raw() -> list[dict[str, object]]:
    gen = pytest.importorskip("bench.data.gen_customers")
    records, _truth = gen.generate(700, 9, "cn")
    return list(records)


@pytest.fixture(scope="module")
def prepared(raw: list[dict[str, object]]) -> tuple[list[Profile], list[frozenset[str]]]:
    rows = [InputRow(str(r["source_system"]), str(r["source_id"]), r["record"]) for r in raw]  # type: ignore[arg-type]
    return normalize_rows("customer", rows, IdentityConfig())


class _Recording:
    """A FitOffload that computes here and records what fit handed it."""

    def __init__(self, profiles: Sequence[Profile], config: IdentityConfig) -> None:
        self.profiles, self.config = profiles, config
        self.stages = 0
        self.pairs: list[Pair] = []

    def random_pair_stage(self) -> Callable[[], RandomPairStage]:
        self.stages += 1
        usable = [p for p in self.profiles if p.usable()]
        done = random_pair_stage("customer", usable, self.config)
        return lambda: done

    def vectors(self, pairs: Sequence[Pair]) -> list[Vector]:
        self.pairs.extend(pairs)
        return comparison_vectors(COMPARISONS["customer"], self.profiles, pairs)


def test_fit_hands_out_its_stage_and_vectors_and_fits_the_same_model(
    prepared: tuple[list[Profile], list[frozenset[str]]],
) -> None:
    profiles, keys = prepared
    config = IdentityConfig()
    alone, alone_report = fit("customer", profiles, config, keys)
    recording = _Recording(profiles, config)
    handed, handed_report = fit("customer", profiles, config, keys, offload=recording)
    assert recording.stages == 1
    assert len(recording.pairs) == len(set(recording.pairs)) > 1000  # each pair scored once
    assert handed.to_dict() == alone.to_dict()
    assert handed_report == alone_report


# sha256 of the model (JSON, sorted keys) that main's fit, without decision 49, draws on this
# fixture (main at a2af7b8, with decision 51's prior and buckets; f3126c6f... at aede1d4, before
# decision 51): the pairs drawn where they always were, from the same random sequence. A change
# that means to fit differently updates it; one that means to fit faster must not.
MODEL_BEFORE_49 = "e818a1d5ca23b65d1622b9ae2edc32740da0fe2c6946c06e51d82d0cf193cdd9"


def test_fit_with_forked_workers_fits_the_same_model_to_the_last_bit(
    prepared: tuple[list[Profile], list[frozenset[str]]], monkeypatch: pytest.MonkeyPatch
) -> None:
    profiles, keys = prepared
    config = IdentityConfig()
    monkeypatch.setattr(fit_pool, "_CHUNK", 300)  # several tasks, some taken by this process
    alone, _ = fit("customer", profiles, config, keys)
    with fit_offload("customer", profiles, config, 2) as offload:
        assert isinstance(offload, fit_pool.ForkedFitOffload)
        pooled, _ = fit("customer", profiles, config, keys, offload=offload)
    assert pooled.to_dict() == alone.to_dict()
    assert fit_pool._FORKED == {}
    with fit_offload("customer", profiles, config, 1) as none:
        assert none is None
    # and both draw what fit drew before the workers: the same model to the byte
    for model in (alone, pooled):
        text = json.dumps(model.to_dict(), sort_keys=True)
        assert hashlib.sha256(text.encode()).hexdigest() == MODEL_BEFORE_49


def test_the_worker_has_the_random_pair_stage_before_fit_goes_on(
    prepared: tuple[list[Profile], list[frozenset[str]]],
) -> None:
    """Decision 63b: while fit runs compiled code, which holds the GIL, the pool's threads cannot
    send a task; the stage must have reached the worker before fit goes on, so that it runs
    meanwhile instead of starting when fit comes to wait for it."""
    profiles, _keys = prepared
    config = IdentityConfig()
    usable = [p for p in profiles if p.usable()]
    started = time.perf_counter()
    random_pair_stage("customer", usable, config)
    alone = time.perf_counter() - started
    with fit_offload("customer", profiles, config, 2) as offload:
        assert isinstance(offload, fit_pool.ForkedFitOffload)
        wait = offload.random_pair_stage()
        assert fit_pool._STARTED[id(profiles)].is_set()
        # hold the GIL in one C call (no bytecode runs, so no thread switch) for longer than
        # the stage takes
        started = time.perf_counter()
        sum(range(1_000_000))
        per_million = time.perf_counter() - started
        sum(range(int((2 * alone + 0.3) / per_million * 1_000_000)))
        started = time.perf_counter()
        wait()
        waited = time.perf_counter() - started
    assert waited < alone / 2, f"waited {waited:.3f} s for a stage of {alone:.3f} s"
    assert fit_pool._STARTED == {}


def _lines(raw: list[dict[str, object]]) -> str:
    # a byte order mark, CRLF and lone CR line ends, blank lines and a U+2028 inside a JSON
    # string: what reading the file line by line copes with, the batch's own reading must too
    raw = [dict(r) for r in raw]
    raw[3] = {**raw[3], "note": "a\u2028b"}
    text = "".join(
        json.dumps(r, ensure_ascii=False) + ("\n\n" if i % 7 == 0 else "\r" if i % 3 else "\r\n")
        for i, r in enumerate(raw)
    )
    return "\ufeff" + text


@pytest.fixture(params=[1, 2])
def workers(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> int:
    """One process, or two over slices small enough that each side takes several."""
    monkeypatch.setattr(batch, "POOL_MIN_ROWS", 10)
    monkeypatch.setattr(batch, "_CHUNK", 100)
    return int(request.param)


def test_the_batch_of_a_file_equals_the_batch_of_its_rows(
    raw: list[dict[str, object]], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, workers: int
) -> None:
    monkeypatch.setattr(batch, "_spool_dir", lambda: str(tmp_path / "spool"))
    (tmp_path / "spool").mkdir()
    src = tmp_path / "in.jsonl"
    src.write_text(_lines(raw), encoding="utf-8", newline="")
    rows = list(read_rows(src))
    assert len(rows) == len(raw)
    expected = run_batch("customer", rows, explain=True)
    seen: dict[str, int] = {}
    totals: set[int] = set()

    def progress(stage: str, advance: int, total: int) -> None:
        seen[stage] = seen.get(stage, 0) + advance
        totals.add(total)

    got = run_batch_file("customer", src, explain=True, progress=progress, workers=workers)
    assert got.rows == expected.rows
    assert got.model.to_dict() == expected.model.to_dict()
    assert seen == {"normalize": len(rows), "fit": len(rows), "resolve": len(rows)}
    assert totals == {len(rows)}
    assert list((tmp_path / "spool").iterdir()) == []


def test_the_first_bad_line_of_the_file_is_reported_whoever_parses_it(
    raw: list[dict[str, object]], tmp_path: Path, workers: int
) -> None:
    lines = [json.dumps(r, ensure_ascii=False) for r in raw]
    # one bad line early (a worker's slice) and one late (a slice this process takes first)
    lines[150] = "not json"
    lines[650] = "[1, 2]"
    src = tmp_path / "in.jsonl"
    src.write_text("\n".join(lines) + "\n", encoding="utf-8")
    with pytest.raises(InputError) as expected:
        list(read_rows(src))
    with pytest.raises(InputError) as got:
        run_batch_file("customer", src, workers=workers)
    assert str(got.value) == str(expected.value)
    assert str(got.value).startswith("line 151:")
