"""The replay dry run against each store. A chunk's ledger and record lookups take a way of their
own per store (hub/replay.py, decision 38): one statement on a connection the job holds on
PostgreSQL, one worker-thread call on a connection of its own on a SQLite file, sessions where
the dry run is given sessions not bound to an engine. The counts are the same every way and
follow the records flow's rules."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from sqlalchemy.ext.asyncio import async_sessionmaker

from contracts.envelope import Envelope
from flows.records.flow import spec
from hub.core.inbound import InboundRecord
from hub.core.processor import BatchProcessor
from hub.replay import FlowDryRun
from hub.store import db
from tests.helpers import customer_env

pytestmark = pytest.mark.integration

T1, T2 = datetime(2026, 11, 24, 9, tzinfo=UTC), datetime(2026, 11, 24, 10, tzinfo=UTC)


def env(sid: str, version: int | None, name: str, ts: datetime = T1) -> Envelope:
    e = customer_env(0, version=version or 1, name=name)
    return e.model_copy(update={"source_id": sid, "source_version": version, "source_ts": ts})


def rec(e: Envelope, offset: int) -> InboundRecord:
    return InboundRecord("canonical.customer", 0, offset, e.to_bytes(), e.key.encode())


@pytest.mark.parametrize("via", ["engine", "connection"])
@pytest.mark.parametrize("force", [False, True])
@pytest.mark.parametrize("pipeline", [False, True])
async def test_dry_run_counts_on_each_store(
    store_url: str, force: bool, pipeline: bool, via: str
) -> None:
    engine = db.create_engine(store_url)
    await db.migrate(engine)
    sessions = db.sessionmaker(engine)
    conn = await engine.connect()
    try:
        stored = [env("A", 2, "甲"), env("B", None, "乙")]
        await BatchProcessor(spec(), sessions, max_message_bytes=100_000).process(
            [rec(e, i) for i, e in enumerate(stored)]
        )
        chunks = [
            [
                stored[0],  # applied before: the ledger holds it (with force: unchanged)
                env("A", 1, "甲"),  # stale
                env("A", 3, "甲三"),  # update
                env("C", 1, "丙"),  # create
            ],
            [
                env("A", 3, "甲三"),  # unchanged: the version and content of chunk 1's
                env("C", 1, "丙二"),  # stale: that version with other content
                stored[1],  # applied before (with force: same timestamp and content)
                env("B", None, "乙二", T2),  # update by timestamp
            ],
        ]
        readers = sessions if via == "engine" else async_sessionmaker(conn)
        dry = FlowDryRun(readers, spec(), force=force, pipeline=pipeline)
        try:
            offset = 0
            for chunk in chunks:
                await dry.submit([rec(e, offset + i) for i, e in enumerate(chunk)])
                offset += len(chunk)
            await dry.settle()
        finally:
            await dry.close()
        assert dry.per_entity["customer"] == {
            "would_create": 1,
            "would_update": 2,
            "unchanged": 3,
            "stale": 2,
        }, dry.per_entity
        assert dry.already_applied == (0 if force else 2)
        assert dry.invalid == 0
    finally:
        await conn.close()
        await engine.dispose()
