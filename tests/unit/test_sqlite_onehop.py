"""The hub's SQLite engine runs each statement in one hop to aiosqlite's thread (decision 66)
and answers every statement as SQLAlchemy's own aiosqlite adapter does."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import aiosqlite
import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine

from hub.store.db import create_engine

meta = MetaData()
items = Table(
    "items",
    meta,
    Column("id", Integer, primary_key=True),
    Column("name", String, unique=True, nullable=False),
    Column("qty", Integer),
)


async def _script(engine: AsyncEngine) -> list[Any]:
    """What a caller sees of a run of statements: rows, counts, keys, ids, errors."""
    seen: list[Any] = []
    async with engine.begin() as conn:
        await conn.run_sync(meta.create_all)
        r = await conn.execute(insert(items).values(name="bolt", qty=1))
        seen.append(("pk", tuple(r.inserted_primary_key or ())))
        r = await conn.execute(
            text(
                "INSERT INTO items (name, qty) VALUES ('nut', 2), ('washer', 3) RETURNING id, name"
            )
        )
        seen.append(("returning", r.fetchall()))
        r = await conn.execute(insert(items), [{"name": f"pin{i}", "qty": i} for i in range(5)])
        seen.append(("many", r.rowcount))
        r = await conn.execute(text("UPDATE items SET qty = qty + 10 WHERE qty >= 3"))
        seen.append(("updated", r.rowcount))
        r = await conn.execute(select(items).where(items.c.qty > 100))
        seen.append(("empty", list(r.keys()), r.fetchall()))
        r = await conn.execute(select(items.c.name, items.c.qty).order_by(items.c.id))
        seen.append(("first two", r.fetchmany(2), "rest", r.fetchall()))
        r = await conn.execute(select(items.c.name).order_by(items.c.name))
        seen.append(("scalars", r.scalars().all()))
        nested = await conn.begin_nested()
        await conn.execute(text("DELETE FROM items"))
        await nested.rollback()
        seen.append(
            ("after savepoint", (await conn.execute(text("SELECT count(*) FROM items"))).scalar())
        )
        try:
            async with conn.begin_nested():
                await conn.execute(insert(items).values(name="bolt"))
        except sa_exc.IntegrityError as exc:
            seen.append(("integrity", type(exc.orig).__name__, "UNIQUE" in str(exc.orig)))
        try:
            await conn.execute(text("SELECT * FROM nowhere"))
        except sa_exc.OperationalError as exc:
            seen.append(("operational", str(exc.orig)))
    async with engine.connect() as conn:
        streamed = [
            row.name async for row in await conn.stream(select(items.c.name).order_by(items.c.id))
        ]
        seen.append(("streamed", streamed))
    return seen


def _stock_engine(path: Path) -> AsyncEngine:
    return create_async_engine(f"sqlite+aiosqlite:///{path}", connect_args={"timeout": 30})


def test_every_statement_answers_as_sqlalchemys_own_adapter(tmp_path: Path) -> None:
    async def both() -> tuple[list[Any], list[Any]]:
        ours = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'ours.db'}")
        stock = _stock_engine(tmp_path / "stock.db")
        try:
            return await _script(ours), await _script(stock)
        finally:
            await ours.dispose()
            await stock.dispose()

    ours, stock = asyncio.run(both())
    assert ours == stock
    # the script did exercise what it claims (not two empty lists)
    assert ("many", 5) in ours and ("updated", 3) in ours
    assert ("integrity", "IntegrityError", True) in ours


@pytest.fixture
def hops(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Names of the functions sent to aiosqlite connections' threads."""
    sent: list[str] = []
    original = aiosqlite.Connection._execute

    async def counting(self: aiosqlite.Connection, fn: Any, *args: Any, **kwargs: Any) -> Any:
        sent.append(getattr(fn, "__name__", repr(fn)))
        return await original(self, fn, *args, **kwargs)

    monkeypatch.setattr(aiosqlite.Connection, "_execute", counting)
    return sent


async def _hops_per_statement(engine: AsyncEngine, hops: list[str]) -> dict[str, int]:
    counts: dict[str, int] = {}
    try:
        async with engine.begin() as conn:
            await conn.run_sync(meta.create_all)
        async with engine.begin() as conn:
            hops.clear()
            await conn.execute(select(items))
            counts["select"] = len(hops)
            hops.clear()
            await conn.execute(insert(items).values(name="bolt", qty=1))
            counts["insert"] = len(hops)
            hops.clear()
            await conn.execute(insert(items), [{"name": f"n{i}"} for i in range(3)])
            counts["executemany"] = len(hops)
    finally:
        await engine.dispose()
    return counts


def test_a_statement_is_one_hop_to_the_connections_thread(tmp_path: Path, hops: list[str]) -> None:
    engine = create_engine(f"sqlite+aiosqlite:///{tmp_path / 'hub.db'}")
    assert asyncio.run(_hops_per_statement(engine, hops)) == {
        "select": 1,
        "insert": 1,
        "executemany": 1,
    }


def test_the_stock_adapter_makes_more_hops_than_ours(tmp_path: Path, hops: list[str]) -> None:
    """The counting fixture sees hops at all: SQLAlchemy's adapter sends cursor, execute,
    fetchall and close (and all but fetchall without rows) one by one."""
    engine = _stock_engine(tmp_path / "stock.db")
    assert asyncio.run(_hops_per_statement(engine, hops)) == {
        "select": 4,
        "insert": 3,
        "executemany": 3,
    }
