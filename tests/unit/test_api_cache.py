"""hub.api.cache.Coalesced: concurrent callers share one computation; a stale value is served
at once while one refresh runs behind; a value too old is recomputed first."""

from __future__ import annotations

import asyncio
import logging

import pytest

from hub.api.cache import Coalesced


class Clock:
    """The cache's notion of now, moved by the test: no sleeping on a loaded machine."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


async def test_concurrent_callers_share_one_computation_and_results_expire() -> None:
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.05)
        return calls

    clock = Clock()
    cache: Coalesced[int] = Coalesced(ttl_s=1, clock=clock)
    got = await asyncio.gather(*(cache.get(compute) for _ in range(50)))
    assert got == [1] * 50 and calls == 1
    clock.now += 0.5
    assert await cache.get(compute) == 1 and calls == 1  # still fresh


async def test_a_stale_value_is_served_at_once_while_one_refresh_runs_behind() -> None:
    calls = 0
    release = asyncio.Event()

    async def compute() -> int:
        nonlocal calls
        calls += 1
        if calls > 1:
            await release.wait()
        return calls

    clock = Clock()
    cache: Coalesced[int] = Coalesced(ttl_s=1, clock=clock)
    assert await cache.get(compute) == 1
    clock.now += 2  # stale, well inside max_stale (10 s)
    # Fifty callers during the refresh: none waits for it, and it runs once.
    got = await asyncio.wait_for(asyncio.gather(*(cache.get(compute) for _ in range(50))), 1)
    assert got == [1] * 50
    await asyncio.sleep(0)
    assert calls == 2
    release.set()
    for _ in range(10):
        await asyncio.sleep(0)
    assert await cache.get(compute) == 2 and calls == 2  # the refreshed value, fresh again


async def test_a_value_older_than_max_stale_is_recomputed_before_answering() -> None:
    calls = 0

    async def compute() -> int:
        nonlocal calls
        calls += 1
        await asyncio.sleep(0.01)
        return calls

    clock = Clock()
    cache: Coalesced[int] = Coalesced(ttl_s=1, max_stale_s=5, clock=clock)
    assert await cache.get(compute) == 1
    clock.now += 5
    got = await asyncio.gather(*(cache.get(compute) for _ in range(5)))
    assert got == [2] * 5 and calls == 2


async def test_a_failing_background_refresh_keeps_the_last_value_and_is_tried_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    attempts = 0

    async def flaky() -> str:
        nonlocal attempts
        attempts += 1
        await asyncio.sleep(0.01)
        if attempts == 2:
            raise ConnectionError("broker down")
        return f"v{attempts}"

    clock = Clock()
    cache: Coalesced[str] = Coalesced(ttl_s=1, clock=clock)
    assert await cache.get(flaky) == "v1"
    clock.now += 2
    with caplog.at_level(logging.WARNING, logger="hub.api.cache"):
        assert await cache.get(flaky) == "v1"  # starts the refresh that fails
        await asyncio.sleep(0.05)
    assert attempts == 2 and "broker down" in caplog.text
    assert await cache.get(flaky) == "v1"  # not poisoned: last good value, new attempt
    await asyncio.sleep(0.05)
    assert attempts == 3
    assert await cache.get(flaky) == "v3"


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
