"""Dedup quality at default settings on labelled data: pairwise precision, recall, F1.

Two sets from bench/data/gen_customers.py: Chinese customers (the targets apply there:
precision >= 0.99, recall >= 0.97) and Latin-script customers, a check that the method is not
tuned to one generator. The model is fitted on each input, unlabelled, as `dedup batch` does.

    python -m bench.dedup_quality [--cn 20000] [--latin 10000] [--seed 7]
"""

from __future__ import annotations

import argparse
import time
from collections import Counter

from bench.data.gen_customers import generate
from flows.identity.batch import InputRow, evaluate, run_batch
from flows.identity.config import IdentityConfig

TARGET_PRECISION, TARGET_RECALL = 0.99, 0.97


def measure(dataset: str, n: int, seed: int) -> dict[str, float]:
    raw, truth = generate(n, seed, dataset)
    rows = [InputRow(r["source_system"], r["source_id"], r["record"]) for r in raw]
    started = time.perf_counter()
    result = run_batch("customer", rows, IdentityConfig())
    elapsed = time.perf_counter() - started
    m = evaluate(result.rows, truth)
    entities = len({t["cluster_id"] for t in truth})
    actions = Counter(result.actions)
    print(
        f"{dataset:<6} {n:>7} records {entities:>6} entities  "
        f"P={m.precision:.4f} R={m.recall:.4f} F1={m.f1:.4f}  "
        f"clusters={result.clusters} review={actions['review']}  {elapsed:.1f} s"
    )
    return {"precision": m.precision, "recall": m.recall, "f1": m.f1}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cn", type=int, default=20_000)
    parser.add_argument("--latin", type=int, default=10_000)
    parser.add_argument("--seed", type=int, default=7)
    args = parser.parse_args()
    cn = measure("cn", args.cn, args.seed)
    measure("latin", args.latin, args.seed)
    ok = cn["precision"] >= TARGET_PRECISION and cn["recall"] >= TARGET_RECALL
    print(f"target on cn (P>={TARGET_PRECISION}, R>={TARGET_RECALL}): {'met' if ok else 'NOT met'}")


if __name__ == "__main__":
    main()
