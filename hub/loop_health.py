"""The event loop of a hub process: how late it runs, and a heap the collector can skip.

One thread runs the admin API, the flows, the relay and housekeeping. Anything that holds it
(CPU work in a handler, a full garbage collection, a process descheduled on a busy machine)
delays every request at once, ``/health`` included: bench/api_latency.py saw slow requests in
groups of up to 100. The lag probe makes that visible from outside (``eai_event_loop_lag_seconds``
on ``/metrics``), so a slow endpoint can be told apart from a stalled process.
"""

from __future__ import annotations

import asyncio
import gc

from hub.metrics import EVENT_LOOP_LAG

PROBE_INTERVAL_S = 0.05


async def probe_lag(interval_s: float = PROBE_INTERVAL_S) -> None:
    """Forever: sleep ``interval_s`` and record how much later than due the loop woke."""
    loop = asyncio.get_running_loop()
    while True:
        due = loop.time() + interval_s
        await asyncio.sleep(interval_s)
        EVENT_LOOP_LAG.observe(max(0.0, loop.time() - due))


def settle_heap() -> None:
    """Once the hub has started: move everything allocated so far (modules, FastAPI's routes
    and pydantic validators, SQLAlchemy's mappers, the flows' configuration) out of the
    collector's reach. A full collection otherwise walks all of it again and again: 200-380 ms
    with the loop held, every 10-15 s under 50 dashboards (decision 39). Called again after a
    restart of the hub in the same process, so the previous hub's cycles can still be freed.
    """
    gc.unfreeze()
    gc.collect()
    gc.freeze()
