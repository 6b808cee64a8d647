"""One computation shared by concurrent requests, reused for a short time, refreshed behind.

Monitoring endpoints that ask the broker (``/topics``: end offsets and every consumer group's
committed offsets, a dozen round trips) must not repeat that work for each of fifty dashboards
polling at once, and must not make a dashboard wait for it either (bench/api_latency.py: a
request that waited for the round was the endpoint's whole p99). So:

- younger than ``ttl_s``: answered as is;
- older, but younger than ``max_stale_s`` (default ten times ``ttl_s``): answered as is at
  once, and one refresh starts in the background for the callers that come after;
- older than that, or nothing yet: the caller waits for a refresh, shared with every caller
  that arrives while it runs. A dashboard that polls again after a long pause must not be
  shown figures that old as if they were current.

A background refresh that fails leaves the last good value in place (it keeps aging towards
``max_stale_s``, where callers wait for a refresh again and see its error); the next stale call
tries again. Never more than one refresh runs at a time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

T = TypeVar("T")
log = logging.getLogger(__name__)


class Coalesced(Generic[T]):
    def __init__(
        self,
        ttl_s: float,
        max_stale_s: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ttl_s = ttl_s
        self._clock = clock
        self.max_stale_s = 10 * ttl_s if max_stale_s is None else max_stale_s
        self._value: T | None = None
        self._has_value = False
        self._at = float("-inf")
        self._running: asyncio.Future[T] | None = None

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        age = self._clock() - self._at
        if self._has_value and age < self.max_stale_s:
            if age >= self.ttl_s and self._running is None:
                self._start(compute).add_done_callback(_log_background_failure)
            return self._value  # type: ignore[return-value]  # _has_value: it is a T
        running = self._running if self._running is not None else self._start(compute)
        # shield: a client that disconnects must not cancel the others' computation
        return await asyncio.shield(running)

    def _start(self, compute: Callable[[], Awaitable[T]]) -> asyncio.Future[T]:
        # self._running holds the only strong reference the loop needs to keep the task alive
        self._running = asyncio.ensure_future(self._refresh(compute))
        return self._running

    async def _refresh(self, compute: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await compute()
            self._value, self._has_value, self._at = value, True, self._clock()
            return value
        finally:
            self._running = None


def _log_background_failure(task: asyncio.Future[Any]) -> None:
    # Nobody awaits a background refresh: without this its error would only surface as
    # "exception was never retrieved" when the task is collected.
    if not task.cancelled() and (exc := task.exception()) is not None:
        log.warning("background refresh failed, serving the last value: %r", exc)
