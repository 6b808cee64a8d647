"""Decision 69: the batch's output lines spelled out, and the normalizing processes claiming
slices through shared counters; each as before, faster."""

from __future__ import annotations

import json
import multiprocessing
import random

import pytest

from flows.identity import batch
from flows.identity.batch import _Claims, _row_line


@pytest.mark.parametrize(
    "row",
    [
        {"source_system": "crm", "source_id": "C-1", "cluster_id": "G-0f"},
        {"source_system": 'c"r\\m', "source_id": "中\u2028\n\t\x01", "cluster_id": "G-\ud800"},
        # not the plain shape: the encoder writes them
        {"source_system": "crm", "source_id": 7, "cluster_id": "G-1"},
        {"source_id": "1", "source_system": "crm", "cluster_id": "G-1"},
        {"source_system": "crm", "source_id": "1", "cluster_id": "G-1", "evidence": {"s": 0.5}},
        {"source_system": "crm", "source_id": "1"},
    ],
)
def test_an_output_line_is_what_json_writes(row: dict[str, object]) -> None:
    assert _row_line(row) == json.dumps(row, ensure_ascii=False) + "\n"


def test_the_claims_hand_out_every_slice_once_from_both_ends() -> None:
    context = multiprocessing.get_context("fork")
    rng = random.Random(5)
    for total in (0, 1, 2, 7, 40):
        claims = _Claims(context.Lock(), context.RawArray("q", [0, total]))
        front: list[int] = []
        back: list[int] = []
        while True:
            side = front if rng.random() < 0.5 else back
            k = claims.from_front() if side is front else claims.from_back()
            if k is None:
                break
            side.append(k)
        assert front == list(range(len(front)))
        assert back == list(range(total - 1, len(front) - 1, -1))
        assert claims.from_front() is None and claims.from_back() is None


def test_the_batch_s_own_process_and_its_worker_both_normalize(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    gen = pytest.importorskip("bench.data.gen_customers")
    raw, _truth = gen.generate(400, 3, "cn")
    rows = [batch.InputRow(r["source_system"], str(r["source_id"]), r["record"]) for r in raw]
    monkeypatch.setattr(batch, "POOL_MIN_ROWS", 10)
    monkeypatch.setattr(batch, "_CHUNK", 20)
    mine: list[int] = []
    real = batch._normalize_chunk

    def spy(*args: object, **kwargs: object) -> object:
        mine.append(int(args[3]))  # type: ignore[call-overload]
        return real(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(batch, "_normalize_chunk", spy)
    pooled = batch.normalize_rows("customer", rows, batch.IdentityConfig(), workers=2)
    monkeypatch.setattr(batch, "_normalize_chunk", real)
    assert pooled == batch.normalize_rows("customer", rows, batch.IdentityConfig())
    # this process took slices from the back, one after another from the last; the worker (its
    # calls are not seen here) the rest, if it started before this process was through
    assert mine and mine == list(range(380, 380 - 20 * len(mine), -20))
