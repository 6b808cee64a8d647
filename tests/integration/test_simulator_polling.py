"""Watermark polling of the ERP and PDM simulators' tables, resumed after a restart."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine
from sqlalchemy.ext.asyncio import create_async_engine

from connectors.common.errors import Rejection
from connectors.common.polling import poll_changes, poll_changes_sync, poll_envelopes
from connectors.common.simulator_base import SimStore
from connectors.erp.simulator import SPEC as ERP
from connectors.erp.simulator import generate as erp_traffic
from connectors.pdm.simulator import SPEC as PDM
from connectors.pdm.simulator import generate as pdm_traffic
from connectors.registry import build_connectors
from contracts.envelope import Envelope


def fill(store: SimStore, traffic: Any, n: int) -> None:
    spec = store.spec
    for entity, record in itertools.islice(traffic, n):
        store.write(spec.entity(entity), record, origin="user", upsert=True)


async def test_polling_resumes_from_the_stored_watermark(tmp_path: Path) -> None:
    db = tmp_path / "erp.sqlite"
    store = SimStore(db, ERP)
    fill(store, erp_traffic(3, 0.3), 200)
    expected = [
        r["local_id"] for r in store.db.execute("SELECT local_id FROM KNA1 ORDER BY change_seq")
    ]
    assert len(expected) > 12

    seen: list[str] = []
    watermark = None
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    async with engine.connect() as conn:
        for _ in range(2):  # two polls, then the worker "dies"
            rows, watermark = await poll_changes(conn, "KNA1", "change_seq", watermark, 5)
            seen += [r["local_id"] for r in rows]
    await engine.dispose()

    # More changes arrive while nobody polls; an old record is updated, too.
    fill(store, itertools.islice(erp_traffic(4, 0.3), 200, None), 100)
    store.write(ERP.entity("customer"), {"KUNNR": expected[0], "KTOKD": "Z001", "NAME1": "改名"},
                origin="user", upsert=True)  # fmt: skip
    expected_after = [
        r["local_id"] for r in store.db.execute("SELECT local_id FROM KNA1 ORDER BY change_seq")
    ]

    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")  # the restarted worker
    async with engine.connect() as conn:
        while True:
            rows, new = await poll_changes(conn, "KNA1", "change_seq", watermark, 5)
            if not rows:
                assert new == watermark
                break
            assert new > watermark
            watermark = new
            seen += [r["local_id"] for r in rows]
    await engine.dispose()
    store.close()

    # Everything seen, the updated record seen again after its change, nothing skipped.
    assert set(seen) == set(expected_after)
    assert seen[-1] == expected[0]
    assert seen.count(expected[0]) == 2


def test_timestamp_watermark_with_ties_loses_nothing(tmp_path: Path) -> None:
    db = tmp_path / "pdm.sqlite"
    store = SimStore(db, PDM)
    fill(store, pdm_traffic(5, 0.2), 120)
    # The simulator stamps with one-second resolution; force big groups of equal stamps.
    store.db.execute("UPDATE pdm_part SET changed_at = '2026-11-24 09:30:0' || (change_seq % 3)")
    total = store.db.execute("SELECT COUNT(*) FROM pdm_part").fetchone()[0]
    engine = create_engine(f"sqlite:///{db}")
    seen: list[str] = []
    watermark = None
    with engine.connect() as conn:
        for _ in range(total):
            rows, watermark = poll_changes_sync(conn, "pdm_part", "changed_at", watermark, 7)
            if not rows:
                break
            seen += [r["local_id"] for r in rows]
    engine.dispose()
    store.close()
    assert sorted(seen) == sorted(set(seen)) and len(seen) == total


async def test_polled_rows_become_envelopes_with_the_change_counter_as_version(
    tmp_path: Path,
) -> None:
    db = tmp_path / "erp.sqlite"
    store = SimStore(db, ERP)
    fill(store, erp_traffic(8, 0.3), 150)
    # A row a clerk broke by hand in the database: it must come out as a rejection.
    store.db.execute(
        "UPDATE MARA SET payload = json_set(payload, '$.MEINS', 'XX') WHERE change_seq = "
        "(SELECT MIN(change_seq) FROM MARA)"
    )
    erp = build_connectors()["erp"]
    engine = create_async_engine(f"sqlite+aiosqlite:///{db}")
    async with engine.connect() as conn:
        results, watermark = await poll_envelopes(conn, erp, "material", None, limit=500)
    await engine.dispose()
    store.close()
    envelopes = [r for r in results if isinstance(r, Envelope)]
    [bad] = [r for r in results if isinstance(r, Rejection)]
    assert bad.field == "MEINS" and bad.source == "poll" and "erp.unit" in bad.rule
    assert envelopes and all(e.source_version is not None for e in envelopes)
    assert watermark == max(e.source_version for e in envelopes)  # type: ignore[type-var]
    assert erp.status.snapshot()["entities"]["material"]["rejected"] == 1
