"""hub.loop_health: the lag probe sees a stalled loop; a settled heap is out of the collector's
reach while new garbage is still collected."""

from __future__ import annotations

import asyncio
import gc
import time

from hub.loop_health import probe_lag, settle_heap
from hub.metrics import REGISTRY


def _over(seconds: float) -> float:
    """Probes that found the loop later than ``seconds`` (a bucket bound) so far."""
    name = "eai_event_loop_lag_seconds_bucket"
    total = REGISTRY.get_sample_value(name, {"le": "+Inf"}) or 0.0
    return total - (REGISTRY.get_sample_value(name, {"le": str(seconds)}) or 0.0)


async def test_the_lag_probe_records_a_loop_held_by_blocking_work() -> None:
    task = asyncio.create_task(probe_lag(interval_s=0.01))
    try:
        await asyncio.sleep(0.05)
        before = _over(0.25)
        time.sleep(0.3)  # what a handler doing CPU work in the loop does to every request
        await asyncio.sleep(0.05)
        assert _over(0.25) - before >= 1
    finally:
        task.cancel()


def test_settle_heap_freezes_what_exists_and_later_cycles_are_still_freed() -> None:
    class Node:
        other: object

    try:
        settle_heap()
        assert gc.get_freeze_count() > 1000
        a, b = Node(), Node()
        a.other, b.other = b, a
        del a, b
        assert gc.collect() >= 2
    finally:
        gc.unfreeze()
