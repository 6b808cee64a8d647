"""SQLite transactions of one process (decision 19b): writers queue in a FIFO gate in front of
BEGIN IMMEDIATE, read-only sessions begin deferred and never wait, and however a write
transaction ends (commit, rollback, a session closed mid-transaction, a connection
invalidated) the gate is free again."""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import func, insert, select
from sqlalchemy.exc import OperationalError
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.store import db
from hub.store.models import KeyValue

# Long enough for a loaded machine, far below the 30 s a blocked BEGIN IMMEDIATE would wait.
QUICK_S = 3.0


@pytest.fixture
async def engine(sqlite_url: str) -> AsyncIterator[AsyncEngine]:
    eng = db.create_engine(sqlite_url)
    await db.migrate(eng)
    try:
        yield eng
    finally:
        await eng.dispose()


def row(name: str) -> dict[str, Any]:
    return {"name": name, "value": {}, "updated_at": datetime.now(UTC)}


async def count(engine: AsyncEngine) -> int:
    async with db.read_sessionmaker(db.sessionmaker(engine))() as s:
        return int(await s.scalar(select(func.count()).select_from(KeyValue)) or 0)


async def test_a_read_only_session_reads_while_a_writer_holds_the_lock(
    engine: AsyncEngine,
) -> None:
    sessions = db.sessionmaker(engine)
    async with sessions() as w, w.begin():
        await w.execute(insert(KeyValue), [row("a")])
        async with asyncio.timeout(QUICK_S):
            # a snapshot from before the writer's commit: the uncommitted row is not there
            assert await count(engine) == 0
    assert await count(engine) == 1


async def test_a_read_only_session_refuses_to_write(engine: AsyncEngine) -> None:
    readers = db.read_sessionmaker(db.sessionmaker(engine))
    with pytest.raises(OperationalError, match="read-only"):
        async with readers() as s, s.begin():
            await s.execute(insert(KeyValue), [row("a")])
    assert await count(engine) == 0


async def test_writers_of_one_process_take_turns_in_arrival_order(engine: AsyncEngine) -> None:
    sessions = db.sessionmaker(engine)
    order: list[str] = []
    release = asyncio.Event()

    async def writer(name: str, hold: asyncio.Event | None = None) -> None:
        async with sessions() as s, s.begin():
            await s.execute(insert(KeyValue), [row(name)])
            order.append(name)
            if hold is not None:
                await hold.wait()

    first = asyncio.create_task(writer("first", release))
    while not order:
        await asyncio.sleep(0.01)
    later = []
    for name in ("second", "third", "fourth"):
        later.append(asyncio.create_task(writer(name)))
        await asyncio.sleep(0.05)  # each is waiting for the gate before the next comes
    assert order == ["first"]
    release.set()
    async with asyncio.timeout(QUICK_S):
        await asyncio.gather(first, *later)
    assert order == ["first", "second", "third", "fourth"]


async def test_a_transaction_ended_without_commit_or_rollback_frees_the_gate(
    engine: AsyncEngine,
) -> None:
    sessions = db.sessionmaker(engine)
    # a session closed in the middle of its transaction (no commit, no rollback call)
    async with sessions() as s:
        await s.execute(insert(KeyValue), [row("dropped")])
    # a connection invalidated in the middle of its transaction
    async with engine.connect() as conn:
        await conn.execute(insert(KeyValue), [row("invalidated")])
        await conn.invalidate()
    async with asyncio.timeout(QUICK_S):
        async with sessions() as s, s.begin():
            await s.execute(insert(KeyValue), [row("next")])
    assert await count(engine) == 1


async def test_a_writer_that_waits_longer_than_the_timeout_gets_database_is_locked(
    engine: AsyncEngine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(db, "GATE_TIMEOUT_S", 0.2)
    sessions = db.sessionmaker(engine)
    async with sessions() as w, w.begin():
        await w.execute(insert(KeyValue), [row("a")])
        with pytest.raises(OperationalError) as info:
            async with sessions() as s, s.begin():
                await s.execute(insert(KeyValue), [row("b")])
        assert isinstance(info.value.orig, sqlite3.OperationalError)
        assert "locked" in str(info.value.orig)
    assert await count(engine) == 1
