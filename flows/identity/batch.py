"""Batch deduplication of a JSONL backlog, and pairwise evaluation against a truth file.

The batch path fits the model on its own input (unless given one), then feeds records in input
order through the same `Resolver`/`decide` the streaming flow uses.
"""

from __future__ import annotations

import gc
import json
import marshal
import multiprocessing
import os
import tempfile
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from flows.identity.blocking import blocking_keys
from flows.identity.config import IdentityConfig
from flows.identity.fit_pool import fit_offload
from flows.identity.profile import ENTITIES, Profile, build_profile, profile_values
from flows.identity.resolver import Decision, Resolver
from flows.identity.scoring import Model
from flows.identity.training import FitReport, fit

# progress(stage, advance, total): stage is "normalize" | "fit" | "resolve"
Progress = Callable[[str, int, int], None]


class InputError(ValueError):
    """A line of the input file is not a usable record; carries the line number."""


@dataclass(frozen=True, slots=True)
class InputRow:
    source_system: str
    source_id: str
    record: Mapping[str, Any]


def parse_row(line: str, lineno: int) -> InputRow:
    try:
        data = json.loads(line)
    except json.JSONDecodeError as exc:
        raise InputError(f"line {lineno}: not JSON ({exc.msg})") from exc
    if not isinstance(data, dict):
        raise InputError(f"line {lineno}: expected a JSON object")
    system, sid, record = data.get("source_system"), data.get("source_id"), data.get("record")
    if not isinstance(system, str) or sid is None or not isinstance(record, dict):
        raise InputError(f"line {lineno}: needs source_system, source_id and record")
    return InputRow(system, str(sid), record)


def read_rows(path: Path) -> Iterator[InputRow]:
    with path.open(encoding="utf-8-sig") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                yield parse_row(line, lineno)


@dataclass(slots=True)
class BatchResult:
    rows: list[dict[str, Any]]
    model: Model
    fit_report: FitReport
    actions: Counter[str] = field(default_factory=Counter)
    clusters: int = 0


@contextmanager
def gc_paused() -> Iterator[None]:
    """Python's cyclic garbage collector off for the duration; restored afterwards.

    A batch allocates millions of small, long-lived, acyclic objects (profiles, keys, postings);
    every few thousand allocations the collector walks them all again, which made up more than
    half of a 100,000-record run (237 s with it, 63 s without, same machine). Reference counting
    still frees everything; only reference cycles wait until the collector is back on.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if was_enabled:
            _age_paused_objects()
            gc.enable()


def _age_paused_objects() -> None:
    """Move what was allocated while the collector was paused to its oldest generation.

    Left young, the first collection after the pause walks every one of those millions of
    objects (1.4 s after a 100,000-record batch on the shared machine, inside `dedup batch`'s
    time), only to find them alive. `freeze` moves every tracked object to the permanent
    generation without walking it and `unfreeze` moves them all back to the oldest one, so
    nothing stays frozen; cycles among them are freed by the next full collection instead.
    Skipped when the program has frozen objects of its own (`unfreeze` would release them).
    """
    if gc.get_freeze_count() == 0:
        gc.freeze()
        gc.unfreeze()


def default_workers() -> int:
    """Processes for normalization in `dedup batch`: the CPUs this process may use."""
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except AttributeError:  # not on Linux
        return max(os.cpu_count() or 1, 1)


def run_batch(
    entity: str,
    rows: Sequence[InputRow],
    config: IdentityConfig | None = None,
    *,
    model: Model | None = None,
    explain: bool = False,
    progress: Progress | None = None,
    workers: int = 1,
) -> BatchResult:
    """Cluster `rows`; `workers` > 1 normalizes in that many processes (same result)."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
    config = config or IdentityConfig()
    with gc_paused():
        tick = _ticker(progress, len(rows))
        profiles, keys = normalize_rows(
            entity, rows, config, lambda n: tick("normalize", n), workers=workers
        )
        ids = [(row.source_system, row.source_id) for row in rows]
        return _cluster(entity, ids, profiles, keys, config, model, explain, tick, workers)


def run_batch_file(
    entity: str,
    path: Path,
    config: IdentityConfig | None = None,
    *,
    model: Model | None = None,
    explain: bool = False,
    progress: Progress | None = None,
    workers: int = 1,
) -> BatchResult:
    """`run_batch` on the records of a JSONL file (`read_rows`), each line parsed by the
    process that normalizes it (decision 49); the same result, and the same `InputError` for
    the first bad line."""
    if entity not in ENTITIES:
        raise ValueError(f"unknown entity {entity!r}; expected one of {ENTITIES}")
    config = config or IdentityConfig()
    with gc_paused():
        lines = _file_lines(path)
        total = sum(1 for line in lines if line.strip())
        tick = _ticker(progress, total)
        ids, profiles, keys = _normalize(
            entity, _Lines(lines), config, lambda n: tick("normalize", n), workers
        )
        return _cluster(entity, ids, profiles, keys, config, model, explain, tick, workers)


def _file_lines(path: Path) -> list[str]:
    """The lines of a UTF-8 file as `read_rows` iterates them: a byte order mark dropped, "\r\n"
    and a lone "\r" ending a line as "\n" does, split on "\n" alone (str.splitlines would also
    split on U+2028 and others inside a JSON string).

    One decode and, only if the text has a "\r", one translation: a third of the time of the
    text layer's read() (0.09 against 0.27 s for 100,000 customers, before the workers fork).
    """
    text = path.read_bytes().decode("utf-8-sig")
    if "\r" in text:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text.split("\n")


def _ticker(progress: Progress | None, total: int) -> Callable[[str, int], None]:
    def tick(stage: str, n: int) -> None:
        if progress is not None:
            progress(stage, n, total)

    return tick


def _cluster(
    entity: str,
    ids: Sequence[tuple[str, str]],
    profiles: list[Profile],
    keys: list[frozenset[str]],
    config: IdentityConfig,
    model: Model | None,
    explain: bool,
    tick: Callable[[str, int], None],
    workers: int,
) -> BatchResult:
    total = len(ids)
    report = FitReport(records=total)
    if model is None:
        # fit's pure parts in forked workers, as normalization (decision 49); the same model
        pool_size = workers if total >= POOL_MIN_ROWS else 1
        with fit_offload(entity, profiles, config, pool_size) as offload:
            model, report = fit(entity, profiles, config, keys, offload=offload)
    tick("fit", total)

    resolver = Resolver(model, config, explain=explain)
    out: list[dict[str, Any]] = []
    actions: Counter[str] = Counter()
    for i, ((system, sid), profile, record_keys) in enumerate(
        zip(ids, profiles, keys, strict=True), 1
    ):
        decision = resolver.resolve_profile(system, sid, profile, record_keys)
        actions[decision.action] += 1
        out.append(_output_row(system, sid, decision, explain))
        if i % 1000 == 0 or i == total:
            tick("resolve", (i - 1) % 1000 + 1)
    clusters = len({r["cluster_id"] for r in out})
    return BatchResult(out, model, report, actions, clusters)


Prepared = tuple[list[Profile], list[frozenset[str]]]
# a slice's (source_system, source_id) per record, profiles and keys
Normalized = tuple[list[tuple[str, str]], list[Profile], list[frozenset[str]]]


@dataclass(frozen=True, slots=True)
class _Lines:
    """The lines of a JSONL file, to be parsed where they are normalized (run_batch_file)."""

    lines: list[str]

    def __len__(self) -> int:
        return len(self.lines)


Items = Sequence[InputRow] | _Lines

# Below this many rows a pool costs more to start than it saves.
POOL_MIN_ROWS = 4000
# Records per slice: when the claims meet, a worker may still have one slice in hand (~45 ms
# at 1,000), while this process waits; smaller, the files and claims per record cost more.
_CHUNK = 1000
# Inputs of running pools, by token: forked workers find their rows here instead of being sent
# them (pickling 100,000 records to the workers cost more than the second process saved).
_FORKED_INPUTS: dict[int, tuple[str, str, Items]] = {}
# The slices, their claims, which slices' files are written and where, by token (_normalize)
_FORKED_CLAIMS: dict[int, tuple[list[tuple[int, int]], _Claims, Any, str]] = {}


def normalize_rows(
    entity: str,
    rows: Sequence[InputRow],
    config: IdentityConfig,
    advance: Callable[[int], None] | None = None,
    *,
    workers: int = 1,
) -> Prepared:
    """Profiles and blocking keys of all rows, in order; the same whatever `workers` is."""
    _ids, profiles, keys = _normalize(entity, rows, config, advance, workers)
    return profiles, keys


def _normalize(
    entity: str,
    items: Items,
    config: IdentityConfig,
    advance: Callable[[int], None] | None,
    workers: int,
) -> Normalized:
    """Ids, profiles and blocking keys of all rows (or lines), in order, whatever `workers` is.

    Normalizing is independent per record, so a batch spreads it over `workers` processes: this
    one and `workers - 1` forked ones, which read their slices of `items` from the memory they
    inherited and send back only ids, profiles and keys. The workers claim slices one at a time
    from the front and this process from the back, through two shared counters, until they
    meet; so neither side waits for the other on a busy machine, and when they meet no worker
    has more than the slice in its hands left (decision 69). A worker writes a slice's result
    to a file (in memory on Linux, /dev/shm) and flags it; this process reads finished slices
    back between its own: sent back through the pool's pipe, the results made two processes
    slower than one (decision 46). Lines are parsed in the slice that normalizes them; the
    first bad line (in file order) raises its `InputError`.
    """
    n = len(items)
    country = config.default_country
    if workers <= 1 or n < POOL_MIN_ROWS or "fork" not in multiprocessing.get_all_start_methods():
        return _normalize_chunk(entity, country, items, 0, n, advance)
    slices = [(i, min(i + _CHUNK, n)) for i in range(0, n, _CHUNK)]
    token = id(items)
    context = multiprocessing.get_context("fork")
    # created before the workers fork, so that they share them
    claims = _Claims(context.Lock(), context.RawArray("q", [0, len(slices)]))
    written = context.RawArray("b", len(slices))  # which slices' files a worker has written
    _FORKED_INPUTS[token] = (entity, country, items)
    done: dict[int, Normalized | InputError] = {}
    ids: list[tuple[str, str]] = []
    profiles: list[Profile] = []
    keys: list[frozenset[str]] = []
    try:
        with (
            tempfile.TemporaryDirectory(prefix="eai-normalize-", dir=_spool_dir()) as spool,
            ProcessPoolExecutor(workers - 1, mp_context=context) as pool,
        ):
            # a lock passes to another process only by inheritance: the workers, forked at
            # the first submit, find it here
            _FORKED_CLAIMS[token] = (slices, claims, written, spool)
            futures = [pool.submit(_normalize_front, token) for _ in range(workers - 1)]
            taken = 0  # the workers' slices before this one are read back
            while (k := claims.from_back()) is not None:
                a, b = slices[k]
                try:
                    mine = _normalize_chunk(entity, country, items, a, b)
                except InputError as exc:  # raised below, once the slices before it are in
                    done[k] = exc
                else:
                    done[k] = mine
                    if advance is not None:
                        advance(len(mine[0]))
                while taken < k and written[taken]:
                    done[taken] = _load_normalized(_slice_path(spool, taken), advance)
                    taken += 1
            for future in futures:
                failed = future.result()
                if failed is not None:
                    done[failed[0]] = failed[1]
            for k in range(len(slices)):
                part = done.get(k)
                if part is None:
                    part = _load_normalized(_slice_path(spool, k), advance)
                if isinstance(part, InputError):
                    raise part
                ids.extend(part[0])
                profiles.extend(part[1])
                keys.extend(part[2])
    finally:
        del _FORKED_INPUTS[token]
        _FORKED_CLAIMS.pop(token, None)
    return ids, profiles, keys


@dataclass(frozen=True, slots=True)
class _Claims:
    """Slices claimed by the normalizing processes: workers from the front, the batch's own
    process from the back; `counters` holds [next from the front, last claimed from the back]."""

    lock: Any  # multiprocessing's Lock, shared with the forked workers
    counters: Any  # RawArray("q", 2)

    def from_front(self) -> int | None:
        with self.lock:
            k = int(self.counters[0])
            if k >= self.counters[1]:
                return None
            self.counters[0] = k + 1
            return k

    def from_back(self) -> int | None:
        with self.lock:
            k = int(self.counters[1]) - 1
            if k < self.counters[0]:
                return None
            self.counters[1] = k
            return k


def _normalize_front(token: int) -> tuple[int, InputError] | None:
    """A worker's share: slices from the front until the claims meet. On a bad line, its
    slice and error (no later slice of this worker's matters then)."""
    slices, claims, written, spool = _FORKED_CLAIMS[token]
    while (k := claims.from_front()) is not None:
        a, b = slices[k]
        try:
            _normalize_slice(token, a, b, _slice_path(spool, k))
        except InputError as exc:
            return k, exc
        written[k] = 1
    return None


def _slice_path(spool: str, k: int) -> str:
    return os.path.join(spool, f"{k}.marshal")


def _spool_dir() -> str | None:
    """Where workers leave their results: memory-backed if the system has it, else the default."""
    return "/dev/shm" if os.path.isdir("/dev/shm") and os.access("/dev/shm", os.W_OK) else None


def _normalize_slice(token: int, start: int, end: int, path: str) -> None:
    """Rows `start` to `end` of the forked input `token`, normalized, written to `path`."""
    entity, default_country, items = _FORKED_INPUTS[token]
    ids, profiles, keys = _normalize_chunk(entity, default_country, items, start, end)
    # Flat tuples through marshal, not Profile objects through pickle (decision 59): pickle
    # runs the dataclass's Python __getstate__/__setstate__ per profile; this takes about half
    # the time to write and two thirds to read back. Version 4 shares an object met twice, as
    # pickle's memo does. A key set travels as its elements in iteration order and is rebuilt
    # from them, as pickle rebuilt a frozenset: the same sets, built the same way.
    data = marshal.dumps((ids, list(map(profile_values, profiles)), list(map(tuple, keys))), 4)
    with open(path, "wb") as fh:
        fh.write(data)


def _load_normalized(path: str, advance: Callable[[int], None] | None = None) -> Normalized:
    with open(path, "rb") as fh:
        ids, values, keys = marshal.loads(fh.read())
    os.unlink(path)
    if advance is not None:
        advance(len(ids))
    return ids, [Profile(*v) for v in values], list(map(frozenset, keys))


def _normalize_chunk(
    entity: str,
    default_country: str,
    items: Items,
    start: int,
    end: int,
    advance: Callable[[int], None] | None = None,
) -> Normalized:
    with gc_paused():
        if isinstance(items, _Lines):
            rows = [
                parse_row(line, lineno)
                for lineno, line in enumerate(items.lines[start:end], start + 1)
                if line.strip()
            ]
        else:
            rows = list(items[start:end])
        ids: list[tuple[str, str]] = []
        profiles: list[Profile] = []
        keys: list[frozenset[str]] = []
        for i, row in enumerate(rows, 1):
            profile = build_profile(entity, row.record, default_country, row.source_system)
            ids.append((row.source_system, row.source_id))
            profiles.append(profile)
            keys.append(frozenset(blocking_keys(profile)) if profile.usable() else frozenset())
            if advance is not None and (i % 1000 == 0 or i == len(rows)):
                advance((i - 1) % 1000 + 1)
        return ids, profiles, keys


def _output_row(system: str, sid: str, decision: Decision, explain: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "source_system": system,
        "source_id": sid,
        "cluster_id": decision.golden_id,
    }
    if explain:
        out["evidence"] = decision.to_dict()
    return out


# json.dumps with a non-default option builds a new encoder per call; one encoder writes the
# same text (a third less time for 100,000 output lines)
_encode = json.JSONEncoder(ensure_ascii=False).encode
# the encoder's own escaping of a string (ensure_ascii=False), quotes included
_escape: Callable[[str], str] = json.encoder.encode_basestring


# the keys of an output line without evidence, in their order
_PLAIN_ROW = ("source_system", "source_id", "cluster_id")


def write_rows(path: Path, rows: Iterable[Mapping[str, Any]]) -> None:
    with path.open("w", encoding="utf-8") as fh:
        for row in rows:
            fh.write(_row_line(row))


def _row_line(row: Mapping[str, Any]) -> str:
    """`row` as one line of JSON, as `_encode` writes it.

    A line without evidence is spelled out around its three escaped strings: the encoder's
    walk of the dict took a fifth of a second of `dedup batch` for 100,000 lines, this a
    thirtieth (decision 69).
    """
    if len(row) == 3 and tuple(row) == _PLAIN_ROW:
        system, sid, cluster = row["source_system"], row["source_id"], row["cluster_id"]
        if type(system) is str and type(sid) is str and type(cluster) is str:
            return (
                f'{{"source_system": {_escape(system)}, "source_id": {_escape(sid)}, '
                f'"cluster_id": {_escape(cluster)}}}\n'
            )
    return _encode(row) + "\n"


# --------------------------------------------------------------------------- evaluation


@dataclass(frozen=True, slots=True)
class PairwiseMetrics:
    precision: float
    recall: float
    f1: float
    true_positives: int
    predicted_pairs: int
    true_pairs: int
    records: int
    missing: int  # records in the truth without a prediction (scored as singletons)

    def as_dict(self) -> dict[str, float | int]:
        return {
            "precision": self.precision,
            "recall": self.recall,
            "f1": self.f1,
            "true_positives": self.true_positives,
            "predicted_pairs": self.predicted_pairs,
            "true_pairs": self.true_pairs,
            "records": self.records,
            "missing": self.missing,
        }


def _pairs(n: int) -> int:
    return n * (n - 1) // 2


def _clusters(rows: Iterable[Mapping[str, Any]]) -> dict[tuple[str, str], str]:
    return {(str(r["source_system"]), str(r["source_id"])): str(r["cluster_id"]) for r in rows}


def evaluate(
    predicted: Iterable[Mapping[str, Any]], truth: Iterable[Mapping[str, Any]]
) -> PairwiseMetrics:
    """Pairwise precision/recall/F1: a pair is positive when both records share a cluster."""
    pred = _clusters(predicted)
    true = _clusters(truth)
    missing = 0
    joint: Counter[tuple[str, str]] = Counter()
    pred_sizes: Counter[str] = Counter()
    true_sizes: Counter[str] = Counter()
    for key, true_cluster in true.items():
        pred_cluster = pred.get(key)
        if pred_cluster is None:
            missing += 1
            pred_cluster = f"\0missing:{key}"
        joint[(pred_cluster, true_cluster)] += 1
        pred_sizes[pred_cluster] += 1
        true_sizes[true_cluster] += 1
    tp = sum(_pairs(n) for n in joint.values())
    pp = sum(_pairs(n) for n in pred_sizes.values())
    tpairs = sum(_pairs(n) for n in true_sizes.values())
    precision = tp / pp if pp else 1.0
    recall = tp / tpairs if tpairs else 1.0
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return PairwiseMetrics(precision, recall, f1, tp, pp, tpairs, len(true), missing)
