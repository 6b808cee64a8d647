"""One computation shared by concurrent requests, reused for a short time.

Monitoring endpoints that ask the broker (``/topics``: end offsets and every consumer group's
committed offsets, a dozen round trips) must not repeat that work for each of fifty dashboards
polling at once: requests arriving while it runs wait for the same result, and a result younger
than ``ttl_s`` is answered as is (bench/api_latency.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class Coalesced(Generic[T]):
    def __init__(self, ttl_s: float) -> None:
        self.ttl_s = ttl_s
        self._value: T | None = None
        self._at = float("-inf")
        self._running: asyncio.Future[T] | None = None

    async def get(self, compute: Callable[[], Awaitable[T]]) -> T:
        if self._value is not None and time.monotonic() - self._at < self.ttl_s:
            return self._value
        if self._running is None:
            self._running = asyncio.ensure_future(self._refresh(compute))
        # shield: a client that disconnects must not cancel the others' computation
        return await asyncio.shield(self._running)

    async def _refresh(self, compute: Callable[[], Awaitable[T]]) -> T:
        try:
            value = await compute()
            self._value, self._at = value, time.monotonic()
            return value
        finally:
            self._running = None
