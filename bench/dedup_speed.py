"""Dedup speed: 100,000 customers in batch, against recordlinkage's standard pipeline.

Both run in this process on the same generated records. eai-hub is timed end to end as
`dedup batch` runs it (read JSONL, normalize, fit by EM, resolve, write). recordlinkage
(optional: pip install recordlinkage) gets the same normalized fields (its own `clean()` drops
every Chinese character), so what differs is block + compare + classify: exact blocks on pinyin
initials with city, phone, credit code and resident id plus a sorted neighbourhood on the name;
Jaro-Winkler / Levenshtein / exact comparisons; the unsupervised ECM (Fellegi-Sunter by EM)
classifier; connected components of the matched pairs as clusters. Its normalization is ours,
run again on cold caches and counted in its time, in two variants measured in the same run:
"standard", a plain loop over the records in this process with the garbage collector as Python
leaves it (what the earlier figures measured, and what a recordlinkage user writes), and
"engineered", given everything `dedup batch` does outside its matching: the same call with the
same worker processes and the collector paused for its whole pipeline, so that the ratio
against it compares block + compare + classify with fit + resolve alone. The ratios printed
are recordlinkage time / eai-hub time; quality figures and CPU seconds (this process and its
workers) are printed next to them.

    python -m bench.dedup_speed [--records 100000] [--seed 11] [--workers N] [--no-baseline]
        [--baseline both|standard|engineered]
"""

from __future__ import annotations

import argparse
import gc
import os
import tempfile
import time
from pathlib import Path
from typing import Any

from bench.data.gen_customers import generate, write_jsonl
from flows.identity import normalize
from flows.identity.batch import (
    InputRow,
    default_workers,
    evaluate,
    gc_paused,
    normalize_rows,
    read_rows,
    run_batch_file,
    write_rows,
)
from flows.identity.config import IdentityConfig
from flows.identity.normalize import pinyin_initials
from flows.identity.profile import Profile, build_profile

TARGET_SECONDS = 60.0


def _clear_caches() -> None:
    for name in dir(normalize):
        fn = getattr(normalize, name)
        if hasattr(fn, "cache_clear"):
            fn.cache_clear()


def cpu_seconds() -> float:
    """CPU time of this process and its finished children (the normalization workers)."""
    t = os.times()
    return t.user + t.system + t.children_user + t.children_system


def run_ours(
    path: Path, out: Path, workers: int
) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    stages: dict[str, float] = {}
    last = [time.perf_counter()]

    def progress(stage: str, advance: int, total: int) -> None:
        now = time.perf_counter()
        stages[stage] = stages.get(stage, 0.0) + now - last[0]
        last[0] = now

    # as `eai-hub dedup batch` does it (flows/identity/cli.py): the file goes to the batch,
    # whose normalizing processes parse its lines (decision 49), so reading is in "normalize"
    started = time.perf_counter()
    cpu = cpu_seconds()
    last[0] = started
    result = run_batch_file("customer", path, IdentityConfig(), progress=progress, workers=workers)
    write_rows(out, result.rows)
    stages["cpu"] = cpu_seconds() - cpu
    return time.perf_counter() - started, result.rows, stages


def _flat(profile: Profile) -> dict[str, str]:
    name = profile.names[0] if profile.names else ""
    city = profile.cities[0] if profile.cities else ""
    return {
        "name": name,
        "block_py": f"{pinyin_initials(name)}|{city}" if name else "",
        "phone": profile.phones[0][2:] if profile.phones else "",
        "uscc": next((v for s, v in profile.strong_ids if s == "uscc"), ""),
        "national_id": next((v for s, v in profile.strong_ids if s == "national_id"), ""),
        "city": city,
        "street": profile.streets[0] if profile.streets else "",
        "dob": profile.dobs[0] if profile.dobs else "",
    }


def run_recordlinkage(
    rows: list[InputRow], workers: int, engineered: bool
) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    cpu = cpu_seconds()
    if engineered:
        with gc_paused():
            total, out, stages = _recordlinkage(rows, workers)
    else:
        total, out, stages = _recordlinkage(rows, 0)
    stages["cpu"] = cpu_seconds() - cpu
    return total, out, stages


def _recordlinkage(
    rows: list[InputRow], workers: int
) -> tuple[float, list[dict[str, Any]], dict[str, float]]:
    """workers 0: normalize in a plain loop here; otherwise as `dedup batch` does."""
    import numpy as np
    import pandas as pd
    import recordlinkage
    from recordlinkage.index import Block, SortedNeighbourhood

    stages: dict[str, float] = {}
    t = time.perf_counter()
    if workers:
        # the blocking keys this also returns are ours and not used
        profiles, _keys = normalize_rows("customer", rows, IdentityConfig(), workers=workers)
    else:
        profiles = [build_profile("customer", r.record) for r in rows]
    frame = pd.DataFrame([_flat(p) for p in profiles])
    stages["normalize"] = time.perf_counter() - t

    t = time.perf_counter()
    indexer = recordlinkage.Index()
    for column in ("block_py", "phone", "uscc", "national_id"):
        indexer.add(Block(column))
    # neighbours in name order catch typos that exact blocks miss (window 5 measured best)
    indexer.add(SortedNeighbourhood("name", window=5))
    # empty strings are "missing", not a block of their own
    frame_nan = frame.replace("", np.nan)
    pairs = indexer.index(frame_nan)
    stages["block"] = time.perf_counter() - t

    t = time.perf_counter()
    compare = recordlinkage.Compare()
    compare.string("name", "name", method="jarowinkler", threshold=0.85, label="name")
    compare.exact("phone", "phone", label="phone")
    compare.exact("uscc", "uscc", label="uscc")
    compare.exact("national_id", "national_id", label="national_id")
    compare.exact("city", "city", label="city")
    compare.string("street", "street", method="levenshtein", threshold=0.85, label="street")
    compare.exact("dob", "dob", label="dob")
    features = compare.compute(pairs, frame_nan)
    stages["compare"] = time.perf_counter() - t

    t = time.perf_counter()
    classifier = recordlinkage.ECMClassifier(binarize=0.5)
    matches = classifier.fit_predict(features)
    # clusters: connected components of the matched pairs
    parent = list(range(len(rows)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for a, b in matches:
        ra, rb = find(int(a)), find(int(b))
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    stages["classify"] = time.perf_counter() - t
    out = [
        {"source_system": r.source_system, "source_id": r.source_id, "cluster_id": str(find(i))}
        for i, r in enumerate(rows)
    ]
    total = sum(stages.values())
    stages["pairs"] = float(len(pairs))
    return total, out, stages


def _line(
    label: str,
    seconds: float,
    stages: dict[str, float],
    rows: list[dict[str, Any]],
    truth: list[dict[str, Any]],
) -> str:
    m = evaluate(rows, truth)
    detail = ", ".join(f"{k} {v:.1f}" for k, v in stages.items() if k not in ("cpu", "pairs"))
    pairs = f"; {int(stages['pairs'])} pairs" if "pairs" in stages else ""
    return (
        f"{label:<30} {seconds:6.1f} s ({detail}{pairs}; cpu {stages['cpu']:.1f}); "
        f"P={m.precision:.4f} R={m.recall:.4f}"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=11)
    parser.add_argument("--workers", type=int, default=default_workers())
    parser.add_argument("--no-baseline", action="store_true")
    parser.add_argument("--baseline", choices=("both", "standard", "engineered"), default="both")
    args = parser.parse_args()

    raw, truth = generate(args.records, args.seed, "cn")
    with tempfile.TemporaryDirectory() as tmp:
        src, out = Path(tmp) / "in.jsonl", Path(tmp) / "out.jsonl"
        write_jsonl(src, raw)
        del raw
        gc.collect()
        ours, our_rows, our_stages = run_ours(src, out, args.workers)
        rows = list(read_rows(src))
    print(f"load average {os.getloadavg()[0]:.1f}, {args.workers} worker process(es)")
    our_cpu = our_stages["cpu"]
    line = _line(f"eai-hub batch {args.records} records", ours, our_stages, our_rows, truth)
    print(
        f"{line}; target < {TARGET_SECONDS:.0f} s: {'met' if ours < TARGET_SECONDS else 'NOT met'}"
    )
    if args.no_baseline:
        return
    try:
        import recordlinkage  # noqa: F401
    except ImportError:
        print("recordlinkage not installed (pip install recordlinkage): no baseline")
        return
    variants = ("standard", "engineered") if args.baseline == "both" else (args.baseline,)
    for variant in variants:
        _clear_caches()
        gc.collect()
        theirs, rl_rows, rl_stages = run_recordlinkage(rows, args.workers, variant == "engineered")
        rl_cpu = rl_stages["cpu"]
        line = _line(f"recordlinkage, {variant}", theirs, rl_stages, rl_rows, truth)
        print(f"{line}; load average {os.getloadavg()[0]:.1f}")
        print(
            f"ratio recordlinkage ({variant}) / eai-hub: {theirs / ours:.2f}x wall, "
            f"{rl_cpu / our_cpu:.2f}x CPU"
        )


if __name__ == "__main__":
    main()
