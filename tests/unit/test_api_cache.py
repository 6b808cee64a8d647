"""hub.api.cache.Coalesced: concurrent callers share one computation; results expire."""

from __future__ import annotations

import asyncio

import pytest

from hub.api.cache import Coalesced


async def test_concurrent_callers_share_one_computation_and_results_expire() -> None:
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    cache: Coalesced[int] = Coalesced(ttl_s=0.2)
    got = await asyncio.gather(*(cache.get(compute) for _ in range(50)))
    assert got == [1] * 50 and calls == 1
    assert await cache.get(compute) == 1  # still fresh
    await asyncio.sleep(0.25)
    assert await cache.get(compute) == 2 and calls == 2


async def test_a_failure_reaches_every_waiter_and_the_next_call_tries_again() -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 1:
            raise ConnectionError("broker down")
        return "ok"

    cache: Coalesced[str] = Coalesced(ttl_s=10)
    results = await asyncio.gather(*(cache.get(flaky) for _ in range(5)), return_exceptions=True)
    assert all(isinstance(r, ConnectionError) for r in results) and attempts == 1
    assert await cache.get(flaky) == "ok"


async def test_a_cancelled_caller_does_not_cancel_the_others() -> None:
    async def slow() -> str:
        await asyncio.sleep(0.1)
        return "done"

    cache: Coalesced[str] = Coalesced(ttl_s=10)
    first = asyncio.ensure_future(cache.get(slow))
    second = asyncio.ensure_future(cache.get(slow))
    await asyncio.sleep(0.01)
    first.cancel()
    with pytest.raises(asyncio.CancelledError):
        await first
    assert await second == "done"
