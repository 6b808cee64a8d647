"""The store engine's PostgreSQL sessions plan each statement for its parameters (decision 31):
with PostgreSQL's default, a 500-id ledger lookup fell to a generic plan made while the ledger
was small, 300 ms instead of 5 ms (bench/ledger_plans.py)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine

from hub.store import db


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_postgres_sessions_plan_each_statement_for_its_parameters(store_url: str) -> None:
    engine = db.create_engine(store_url)
    try:
        async with db.sessionmaker(engine)() as s:
            assert await s.scalar(text("SHOW plan_cache_mode")) == "force_custom_plan"
    finally:
        await engine.dispose()


async def _backend_pid(engine: AsyncEngine) -> int:
    async with engine.connect() as conn:
        return int(await conn.scalar(text("SELECT pg_backend_pid()")))


def _pings(engine: AsyncEngine) -> list[str]:
    """Queries asyncpg ran that SQLAlchemy did not prepare: the pre-ping's ';' among them."""
    seen: list[str] = []

    def logged(query: Any) -> None:
        seen.append(query.query)

    @event.listens_for(engine.sync_engine, "checkout", insert=True)
    def _checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
        record.driver_connection.add_query_logger(logged)

    return seen


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_connection_back_from_a_transaction_a_moment_ago_is_not_pinged(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Decision 47: asyncpg's pre-ping is three round trips; a connection checked in less than
    PING_IDLE_S ago is used at once, one that sat idle longer is pinged."""
    engine = db.create_engine(store_url)
    sent = _pings(engine)
    try:
        first = await _backend_pid(engine)
        for _ in range(3):
            assert await _backend_pid(engine) == first
        await asyncio.sleep(0)
        assert ";" not in sent, sent
        monkeypatch.setattr(db, "PING_IDLE_S", 0.0)
        assert await _backend_pid(engine) == first
        await asyncio.sleep(0)
        assert sent.count(";") == 1, sent
    finally:
        await engine.dispose()


async def _terminate(url: str, pid: int) -> None:
    """Terminate a backend from a connection of its own (the pool's is the one terminated)."""
    import asyncpg

    conn = await asyncpg.connect(url.replace("postgresql+asyncpg", "postgresql"))
    try:
        assert await conn.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await conn.close()
    await asyncio.sleep(0.2)  # the server's close reaches asyncpg


@pytest.mark.parametrize("store_url", ["postgres"], indirect=True)
async def test_a_connection_the_server_closed_is_replaced_without_an_error(
    store_url: str,
) -> None:
    """A backend terminated (as by a restart) right after its connection went back to the
    pool: the next checkout, too soon for a ping, sees asyncpg's closed connection and the pool
    connects afresh; nothing fails, neither through SQLAlchemy nor straight through asyncpg."""
    engine = db.create_engine(store_url)
    try:
        first = await _backend_pid(engine)
        await _terminate(store_url, first)
        assert await _backend_pid(engine) != first
        second = await _backend_pid(engine)
        await _terminate(store_url, second)
        async with db.sessionmaker(engine)() as s, s.begin():
            driver = await db.pg_driver(s)
            assert driver is not None
            assert await driver.fetchval("SELECT pg_backend_pid()") not in (first, second)
    finally:
        await engine.dispose()
