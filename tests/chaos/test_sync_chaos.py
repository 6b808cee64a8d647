"""Issue 5's proof under load and faults (``make chaos``): the 10,000-message synchronization
run of tests/e2e/test_sync_e2e.py (whose docstring defines lost and duplicated effects) clean,
with ERP down for 30 s in the middle, and with the hub worker SIGKILLed three times on
PostgreSQL. Each must end in the same state: every customer held once everywhere, every order
in ERP with ERP's keys, 0 lost, 0 duplicated. Figures go to docs/reliability.md."""

from __future__ import annotations

import asyncio
import signal
import time
from pathlib import Path

import pytest

from tests.chaos.conftest import record
from tests.e2e import sync_harness as h

pytestmark = pytest.mark.chaos

N = 10_000


def report(scenario: str, run: h.Run) -> None:
    a = run.audit
    assert a is not None
    record(scenario, "messages lost", a.lost_total, "0")
    record(scenario, "effects duplicated", a.duplicated_total, "0")
    record(
        scenario,
        "golden customers held by CRM / ERP / DRP (due)",
        f"{a.held['crm']} / {a.held['erp']} / {a.held['drp']} "
        f"({a.due['crm']} / {a.due['erp']} / {a.due['drp']})",
        "held = due",
    )
    record(scenario, "orders in ERP with ERP keys", f"{a.orders_in_erp}", str(a.orders_expected))
    record(
        scenario, "older versions recorded stale", a.stale_recorded, f">= {run.traffic.reordered}"
    )
    record(scenario, "refused by a target (dead letters with reason)", len(a.refused), "reported")
    record(scenario, "repeated calls answered 409 (CRM/ERP/DRP)", a.collisions, "reported")
    for k, v in run.notes.items():
        record(scenario, k, v, "reported")
    record(scenario, "push s / settled s", f"{run.push_s:.0f} / {run.total_s:.0f}", "reported")


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_sync_10000_clean(broker: str, store_url: str, tmp_path: Path) -> None:
    run = await h.run_sync(N, broker, store_url, tmp_path)
    print("\n" + h.summary(run))
    report(f"sync e2e: {N} messages, 20% re-entered, SQLite", run)
    h.assert_proof(run)


@pytest.mark.parametrize("store_url", ["sqlite"], indirect=True)
async def test_sync_10000_erp_down_30s(broker: str, store_url: str, tmp_path: Path) -> None:
    async def erp_down(sims: dict[str, h.Sim], progress: dict[str, int], run: h.Run) -> None:
        while sum(progress.values()) < N // 3:
            await asyncio.sleep(0.2)
        erp = sims["erp"]
        before = (await erp.stats())["faults"].get("down", 0)
        await erp.fault("down")
        t0 = time.monotonic()
        await asyncio.sleep(30)
        await erp.fault("none")
        run.notes["ERP down s (calls refused 503 meanwhile)"] = (
            f"{time.monotonic() - t0:.0f} ({(await erp.stats())['faults'].get('down', 0) - before})"
        )
        run.notes["pushed when ERP went down / came back"] = f"{N // 3} / {sum(progress.values())}"

    run = await h.run_sync(N, broker, store_url, tmp_path, chaos=erp_down)
    print("\n" + h.summary(run))
    report(f"sync e2e: {N} messages, ERP down 30 s mid-run, SQLite", run)
    h.assert_proof(run)


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_sync_10000_worker_killed_3x(broker: str, store_url: str, tmp_path: Path) -> None:
    kills: list[str] = []

    async def kill_3x(sims: dict[str, h.Sim], progress: dict[str, int], run: h.Run) -> None:
        for third in (1, 2, 3):
            while sum(progress.values()) < N * third // 4:
                await asyncio.sleep(0.2)
            await asyncio.sleep(1.0)
            assert run.worker is not None and run.worker.poll() is None, "worker died"
            run.worker.send_signal(signal.SIGKILL)
            await asyncio.to_thread(run.worker.wait)
            kills.append(str(sum(progress.values())))
            run.start_worker()
        run.notes["SIGKILLs at pushed message"] = ", ".join(kills)

    run = await h.run_sync(N, broker, store_url, tmp_path, chaos=kill_3x, worker=True)
    print("\n" + h.summary(run))
    report(f"sync e2e: {N} messages, hub worker SIGKILLed 3x, PostgreSQL", run)
    h.assert_proof(run)
    assert len(kills) == 3
