"""Decision 50: the hub freezes its start-up heap and collects the young generation less
often, from start to stop."""

from __future__ import annotations

import gc
import inspect

from hub import heap
from hub.runtime import Hub


def test_freeze_then_thaw_restores_the_collector() -> None:
    before = gc.get_threshold()
    try:
        frozen = heap.freeze_startup_heap()
        assert frozen == gc.get_freeze_count() > 0
        assert gc.get_threshold() == heap.THRESHOLDS
        # objects made after the freeze are still collected, cycles included
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1
    finally:
        heap.thaw_heap()
    assert gc.get_freeze_count() == 0
    assert gc.get_threshold() == before


def test_the_hub_freezes_at_start_and_thaws_at_stop() -> None:
    # starting a hub needs a broker; the wiring is what this test holds in place
    assert "freeze_startup_heap()" in inspect.getsource(Hub.start)
    assert "thaw_heap()" in inspect.getsource(Hub.stop)
