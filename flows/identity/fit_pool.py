"""Fit's pure, expensive parts in forked processes, for `dedup batch` (decision 49).

`training.fit` draws every pair itself, from its one seeded random sequence; what it hands out
is work with no draw in it: the random-pair stage (term frequencies and u, the first draws of
the sequence, whose end state comes back) and comparison vectors of pairs already drawn. The
workers are forked after normalization, so they read the profiles from the memory they
inherit; only pairs go out and small results come back. The model is the same to the last
bit with or without them (tests/unit/test_identity_batch_pool.py).
"""

from __future__ import annotations

import multiprocessing
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from contextlib import contextmanager
from multiprocessing.synchronize import Event as EventType

from flows.identity.config import IdentityConfig
from flows.identity.profile import Profile
from flows.identity.scoring import COMPARISONS
from flows.identity.training import (
    FitOffload,
    Pair,
    RandomPairStage,
    Vector,
    comparison_vectors,
    random_pair_stage,
)

# Pairs per task: small enough that this process, taking tasks from the end, and the workers
# finish together; large enough that a task costs far more than sending it (~10 ms of work).
_CHUNK = 2000
# Inputs of running pools, by token (as in batch._FORKED_INPUTS): the workers inherit them.
_FORKED: dict[int, tuple[str, Sequence[Profile], IdentityConfig]] = {}
# Set by the worker when it starts the random-pair stage, by token (see random_pair_stage).
_STARTED: dict[int, EventType] = {}


class ForkedFitOffload:
    """`training.FitOffload` over a pool of processes forked with the profiles in memory."""

    def __init__(
        self,
        entity: str,
        profiles: Sequence[Profile],
        pool: ProcessPoolExecutor,
        token: int,
        started: EventType,
    ) -> None:
        self._entity = entity
        self._profiles = profiles
        self._pool = pool
        self._token = token
        self._started = started

    def random_pair_stage(self) -> Callable[[], RandomPairStage]:
        future: Future[RandomPairStage] = self._pool.submit(_random_pair_stage, self._token)
        # Returns once the worker has the task. The pool's manager and feeder threads send it
        # only when they get the GIL, and fit's next steps are compiled code (decision 63) that
        # never gives it up on its own: the task used to leave only when fit came to wait for
        # it, 1.3-1.5 s later, and the worker ran while this process waited (4 runs in 5).
        while not self._started.wait(0.05):
            if future.done():  # failed to start: its error comes with the result
                break
        return future.result

    def vectors(self, pairs: Sequence[Pair]) -> list[Vector]:
        comparisons = COMPARISONS[self._entity]
        chunks = [pairs[i : i + _CHUNK] for i in range(0, len(pairs), _CHUNK)]
        futures = [self._pool.submit(_vectors, self._token, chunk) for chunk in chunks]
        done: dict[int, list[Vector]] = {}
        # from the end until a task a worker has started: neither side waits on a busy machine
        for k in range(len(chunks) - 1, -1, -1):
            if not futures[k].cancel():
                break
            done[k] = comparison_vectors(comparisons, self._profiles, chunks[k])
        out: list[Vector] = []
        for k, future in enumerate(futures):
            out.extend(done[k] if k in done else future.result())
        return out


@contextmanager
def fit_offload(
    entity: str, profiles: Sequence[Profile], config: IdentityConfig, workers: int
) -> Iterator[FitOffload | None]:
    """A `FitOffload` over `workers - 1` forked processes; None with one worker or no fork
    (not Linux)."""
    if workers <= 1 or "fork" not in multiprocessing.get_all_start_methods():
        yield None
        return
    token = id(profiles)
    _FORKED[token] = (entity, profiles, config)
    context = multiprocessing.get_context("fork")
    started = _STARTED[token] = context.Event()  # before the fork: the workers inherit it
    try:
        with ProcessPoolExecutor(workers - 1, mp_context=context) as pool:
            yield ForkedFitOffload(entity, profiles, pool, token, started)
    finally:
        del _FORKED[token]
        del _STARTED[token]


def _random_pair_stage(token: int) -> RandomPairStage:
    _STARTED[token].set()
    entity, profiles, config = _FORKED[token]
    return random_pair_stage(entity, [p for p in profiles if p.usable()], config)


def _vectors(token: int, pairs: Sequence[Pair]) -> list[Vector]:
    entity, profiles, _config = _FORKED[token]
    return comparison_vectors(COMPARISONS[entity], profiles, pairs)
