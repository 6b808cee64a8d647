"""The CRM pushing customer cards to the hub's webhook, from a process of its own.

``python -m bench.webhook_poster URL TAG N RATE OUT`` (the operator token in the environment
variable ``EAI_BENCH_TOKEN``): N cards nobody else has (``card``), posted to URL. RATE 0: as
fast as the hub accepts them, batches of 100, two calls in flight; RATE > 0: that many cards
per second, 50 calls a second. A 503 (the store busy) is retried after its Retry-After, as a
system pushing records would. Writes to OUT, as JSON, when posting started, when the last
call was answered and, per card name, when the call carrying it started (all
``time.monotonic()``, the clock bench/erp_arrivals.py timestamps arrivals with).

Why a process of its own (decision 66): in the hub's process the client's own work shared the
hub's event loop. At 40 cards/s the calls that waited for an answer piled up in httpx's
connection pool, whose bookkeeping scans every waiting request against every connection at
each event: the client took 2,754 of the loop's 6,178 samples (py-spy) and every stage of the
hub waited behind it, so the latency measured was the client's as much as the hub's.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BATCH = 100


def card(i: int, run: str) -> dict[str, Any]:
    """A CRM card nobody else has: its own name, phone and credit code (no merges)."""
    return {
        "cust_no": f"KH{i + 1:06d}",
        "cust_name": f"{run}测{i:05d}号客户有限公司",
        "cust_type": "01",
        "mobile": f"139{i:08d}",
        "credit_code": f"91{i:016d}",
        "status": "1",
        "frozen": "N",
        "stage": "01",
        "create_time": "2026-11-24 08:00:00",
    }


async def post(client: httpx.AsyncClient, url: str, chunk: list[dict[str, Any]]) -> None:
    while True:
        r = await client.post(url, json=chunk)
        if r.status_code != 503:
            assert r.status_code == 202, r.text
            return
        await asyncio.sleep(float(r.headers.get("Retry-After", "1")))


async def push(url: str, token: str, tag: str, n: int, rate: float | None) -> dict[str, Any]:
    cards = [card(i, tag) for i in range(n)]
    posted: dict[str, float] = {}
    step = BATCH if rate is None else max(1, int(rate / 50))  # 50 calls/s when paced
    async with httpx.AsyncClient(
        timeout=120, headers={"Authorization": f"Bearer {token}"}
    ) as client:
        t0 = time.monotonic()
        calls = []
        for k, i in enumerate(range(0, n, step)):
            chunk = cards[i : i + step]
            if rate is not None:
                due = t0 + k * step / rate
                await asyncio.sleep(max(0.0, due - time.monotonic()))
            start = time.monotonic()
            for c in chunk:
                posted[c["cust_name"]] = start
            calls.append(asyncio.create_task(post(client, url, chunk)))
            if rate is None and len(calls) >= 2:  # two requests in flight
                await calls.pop(0)
        for call in calls:
            await call
        done = time.monotonic()
    return {"t0": t0, "done": done, "posted": posted}


def post_cards() -> None:
    # not `main`: `make bench` runs every bench module that has one (bench/__main__.py), and
    # this is a part of bench.sync_throughput (as bench/erp_arrivals.py's `serve`)
    url, tag, n, rate, out = sys.argv[1:6]
    result = asyncio.run(push(url, os.environ["EAI_BENCH_TOKEN"], tag, int(n), float(rate) or None))
    Path(out).write_text(json.dumps(result))


if __name__ == "__main__":
    post_cards()
