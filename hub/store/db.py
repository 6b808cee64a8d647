"""Engine, sessions and migrations of the store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")


class StoreUnavailable(RuntimeError):
    pass


def is_sqlite(engine: AsyncEngine) -> bool:
    return engine.dialect.name == "sqlite"


def create_engine(url: str) -> AsyncEngine:
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        db = parsed.database
        if db and db != ":memory:":
            path = Path(db)
            try:
                path.parent.mkdir(parents=True, exist_ok=True)
            except OSError as exc:
                raise StoreUnavailable(
                    f"database path {path} is not writable: cannot create {path.parent}: {exc}"
                ) from exc
        engine = create_async_engine(url, connect_args={"timeout": 30})
        _sqlite_transactions(engine)
        return engine
    kw: dict[str, Any] = {"pool_pre_ping": True, "pool_size": 10, "max_overflow": 10}
    return create_async_engine(url, **kw)


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy own transactions: BEGIN IMMEDIATE, WAL, savepoints that work.

    pysqlite's implicit transaction handling breaks SAVEPOINT; IMMEDIATE takes the write
    lock up front so that two worker processes queue instead of failing on lock upgrade.
    """

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _begin(conn: Any) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


async def check_reachable(engine: AsyncEngine, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            async with engine.connect() as conn:
                await conn.execute(text("SELECT 1"))
    except Exception as exc:
        url = engine.url.render_as_string(hide_password=True)
        raise StoreUnavailable(
            f"store at {url} is unreachable after {timeout_s:.0f}s: {type(exc).__name__}: {exc}"
        ) from exc


def _upgrade(sync_conn: Any) -> None:
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["connection"] = sync_conn
    if sync_conn.dialect.name == "postgresql":
        # Several workers may start at once: one migrates, the others wait.
        sync_conn.exec_driver_sql("SELECT pg_advisory_xact_lock(724001)")
    # Features add their own branch from 0001; "heads" applies every branch.
    command.upgrade(cfg, "heads")


async def migrate(engine: AsyncEngine) -> None:
    async with engine.begin() as conn:
        await conn.run_sync(_upgrade)
    log.info("store schema at head (%s)", engine.dialect.name)


async def insert_ignoring_conflicts(session: Any, table: Any, rows: list[dict[str, Any]]) -> None:
    """INSERT ... ON CONFLICT DO NOTHING on SQLite and PostgreSQL: one statement, no read."""
    if not rows:
        return
    dialect = session.get_bind().dialect.name
    if dialect == "postgresql":
        from sqlalchemy.dialects.postgresql import insert as dialect_insert
    elif dialect == "sqlite":
        from sqlalchemy.dialects.sqlite import insert as dialect_insert  # type: ignore[assignment]
    else:  # pragma: no cover - only the two supported stores
        raise NotImplementedError(f"store dialect {dialect} is not supported")
    await session.execute(dialect_insert(table).on_conflict_do_nothing(), rows)
