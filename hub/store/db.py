"""Engine, sessions and migrations of the store (SQLite by default, PostgreSQL in production)."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
import time
import weakref
from pathlib import Path
from typing import Any

from sqlalchemy import event, text
from sqlalchemy import exc as sa_exc
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import (
    AsyncEngine,
    AsyncSession,
    async_sessionmaker,
    create_async_engine,
)

from hub.store.sqlite_onehop import onehop_dbapi

log = logging.getLogger(__name__)

MIGRATIONS = Path(__file__).with_name("migrations")

# Execution option of read-only engines/sessions (``read_only``): on SQLite their transactions
# start with a deferred BEGIN, take no write lock and do not queue behind writers.
READ_ONLY = "eai_read_only"
# Seconds a writer waits for the process's write gate, as long as SQLite's busy_timeout: past
# it, the same "database is locked" error as a busy timeout.
GATE_TIMEOUT_S = 30.0


# asyncpg prepares every statement, and PostgreSQL switches a prepared statement to a generic
# plan after five runs. For the hub's batch lookups (`message_id IN (500 ids)` on the ledger,
# key lists on cross-references and identity keys) that plan was made while the table was
# small or not analyzed yet and stays: a 500-id ledger lookup went from 2-5 ms to a median of
# 300 ms (max 540 ms) as the ledger grew to 60,000 rows; planned each time it stays at ~5 ms
# (decision 31, bench/ledger_plans.py).
PG_SERVER_SETTINGS = {"plan_cache_mode": "force_custom_plan"}


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
        # one thread hop per statement instead of three or four (decision 66)
        engine = create_async_engine(url, connect_args={"timeout": 30}, module=onehop_dbapi())
        _sqlite_transactions(engine)
        return engine
    # Twenty kept, none beyond: the same ceiling per process as 10 + 10 overflow, without
    # opening and closing the overflow connections at every burst (a PostgreSQL backend
    # started and an SSL context built per connection, 300 per run of bench/api_latency.py,
    # in the admin API's event loop).
    kw: dict[str, Any] = {"pool_size": 20, "max_overflow": 0}
    if parsed.get_backend_name() == "postgresql" and parsed.get_driver_name() == "asyncpg":
        kw["connect_args"] = {"server_settings": dict(PG_SERVER_SETTINGS)}
    engine = create_async_engine(url, **kw)
    _ping_when_idle(engine)
    return engine


# A connection checked in less than this long ago is not pinged on checkout (decision 47).
PING_IDLE_S = 1.0
_CHECKED_IN = "eai_checked_in"


def _ping_when_idle(engine: AsyncEngine) -> None:
    """Pre-ping on checkout, but only a connection that sat in the pool PING_IDLE_S or more.

    SQLAlchemy's `pool_pre_ping` pings at every checkout, and asyncpg's ping is three round
    trips (BEGIN, an empty query, ROLLBACK): more than a one-record batch's own statements
    cost (decision 47). A connection given back a moment ago is alive as far as a ping could
    tell, unless asyncpg saw the server close it (checked without a round trip); one that sat
    idle (where a PostgreSQL restart or a dropped link shows) is pinged as before. A closed or
    failed connection makes the pool connect afresh, as pre-ping did.
    """
    sync = engine.sync_engine

    @event.listens_for(sync, "checkin")
    def _checkin(_dbapi_conn: Any, record: Any) -> None:
        if record is not None:
            record.info[_CHECKED_IN] = time.monotonic()

    @event.listens_for(sync, "checkout")
    def _checkout(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        since = record.info.pop(_CHECKED_IN, None)
        driver = getattr(record, "driver_connection", None)
        is_closed = getattr(driver, "is_closed", None)
        if is_closed is not None and is_closed():
            # the server closed it (a restart, a terminated backend) and asyncpg saw it: no
            # round trip needed to know, whenever it was last used. A statement sent straight
            # to asyncpg (`pg_driver`) that met the close did not invalidate it in the pool.
            raise sa_exc.InvalidatePoolError("connection closed by the server")
        if since is not None and time.monotonic() - since < PING_IDLE_S:
            return
        if since is None:
            return  # a connection just opened: connecting was the proof
        dialect = sync.dialect
        try:
            dialect.do_ping(dbapi_conn)
        except dialect.loaded_dbapi.Error as exc:
            if not dialect.is_disconnect(exc, dbapi_conn, None):
                raise
            # as pool_pre_ping does: every pooled connection older than now is suspect, and
            # the pool checks out a fresh one instead of this
            raise sa_exc.InvalidatePoolError("idle connection failed its pre-ping") from exc


class _WriteGate:
    """One FIFO gate per engine and event loop in front of BEGIN IMMEDIATE (decision 19b).

    SQLite has one write lock per database file. Tasks of one process that want it at the
    same time used to meet in SQLite's busy handler, which sleeps and polls (up to 100 ms a
    turn): a dozen polling tasks starved each other and a writer could wait seconds while
    the lock was free. The gate makes the writers of a process wait in an asyncio queue
    instead and hands the lock on at once; between processes the busy handler still rules.

    The gate is taken in the ``begin`` event and given back when the transaction ends at the
    driver (the dialect's commit and rollback, which the pool's reset on check-in also goes
    through) or when the connection is checked in, closed, detached or invalidated, so a
    transaction that ends without a commit or rollback *event* cannot keep it (the deadlock
    of the first attempt).
    """

    def __init__(self) -> None:
        self._locks: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, asyncio.Lock] = (
            weakref.WeakKeyDictionary()
        )
        # raw driver connection -> the lock it holds
        self._held: dict[int, asyncio.Lock] = {}

    def acquire(self, key: int) -> None:
        from sqlalchemy.util import await_only

        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # not under an event loop (a sync engine): no gate
            return
        lock = self._locks.get(loop)
        if lock is None:
            lock = self._locks[loop] = asyncio.Lock()
        try:
            await_only(_acquire(lock))
        except TimeoutError:
            # what a busy timeout raises, so callers treat both alike (the webhook's 503)
            raise sa_exc.OperationalError(
                "BEGIN IMMEDIATE", None, sqlite3.OperationalError("database is locked (write gate)")
            ) from None
        self._held[key] = lock

    def release(self, key: int) -> None:
        lock = self._held.pop(key, None)
        if lock is not None and lock.locked():
            lock.release()


async def _acquire(lock: asyncio.Lock) -> None:
    # free and nobody waiting: returns at once, without a task or a loop turn
    async with asyncio.timeout(GATE_TIMEOUT_S):
        await lock.acquire()


def _raw(conn: Any) -> int:
    """The identity of the driver connection under a pool proxy, a record or itself."""
    return id(getattr(conn, "dbapi_connection", None) or conn)


def _sqlite_transactions(engine: AsyncEngine) -> None:
    """Let SQLAlchemy own transactions: BEGIN IMMEDIATE, WAL, savepoints that work.

    pysqlite's implicit transaction handling breaks SAVEPOINT; IMMEDIATE takes the write
    lock up front so that two worker processes queue instead of failing on lock upgrade.
    Writers of one process queue in a FIFO gate before that (``_WriteGate``); read-only
    connections (``READ_ONLY``) begin deferred: they read a WAL snapshot and never wait.
    """
    sync = engine.sync_engine
    gate = _WriteGate()

    @event.listens_for(engine.sync_engine, "connect")
    def _connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync, "begin")
    def _begin(conn: Any) -> None:
        if conn.get_execution_options().get(READ_ONLY):
            conn.exec_driver_sql("BEGIN")
            return
        key = _raw(conn.connection)
        gate.acquire(key)
        try:
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        except BaseException:
            gate.release(key)
            raise

    @event.listens_for(sync, "before_cursor_execute")
    def _read_only(conn: Any, _cur: Any, statement: str, *_: Any) -> None:
        # A deferred transaction that writes can fail on lock upgrade: refuse it up front.
        if conn.get_execution_options().get(READ_ONLY):
            verb = statement.lstrip()[:6].upper()
            if not verb.startswith(("SELECT", "WITH", "PRAGMA", "BEGIN")):
                raise sqlite3.OperationalError(f"read-only session may not write: {statement[:60]}")

    dialect = sync.dialect
    do_commit, do_rollback = dialect.do_commit, dialect.do_rollback

    def commit(dbapi_conn: Any) -> None:
        try:
            do_commit(dbapi_conn)
        finally:
            gate.release(_raw(dbapi_conn))

    def rollback(dbapi_conn: Any) -> None:
        try:
            do_rollback(dbapi_conn)
        finally:
            gate.release(_raw(dbapi_conn))

    dialect.do_commit = commit  # type: ignore[method-assign,assignment]
    dialect.do_rollback = rollback  # type: ignore[method-assign,assignment]

    @event.listens_for(sync, "close")
    def _close(dbapi_conn: Any, _record: Any) -> None:
        gate.release(_raw(dbapi_conn))

    @event.listens_for(sync, "close_detached")
    def _close_detached(dbapi_conn: Any) -> None:
        # a connection given up mid-transaction (a task cancelled while checking it in)
        gate.release(_raw(dbapi_conn))

    @event.listens_for(sync, "invalidate")
    def _invalidate(dbapi_conn: Any, _record: Any, _exc: Any) -> None:
        gate.release(_raw(dbapi_conn))

    @event.listens_for(sync, "checkin")
    def _checkin(dbapi_conn: Any, _record: Any) -> None:
        gate.release(_raw(dbapi_conn))


def sessionmaker(engine: AsyncEngine) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine, expire_on_commit=False)


def read_only(engine: AsyncEngine) -> AsyncEngine:
    """The same engine (same pool) for reads only: on SQLite its transactions begin deferred,
    take no write lock and never queue behind writers; a write through it is refused."""
    return engine.execution_options(**{READ_ONLY: True})


def read_sessionmaker(
    sessions: async_sessionmaker[AsyncSession],
) -> async_sessionmaker[AsyncSession]:
    """Read-only sessions on the engine of ``sessions`` (pollers that only look); ``sessions``
    itself when it is not bound to an engine."""
    bind = sessions.kw.get("bind")
    if not isinstance(bind, AsyncEngine):
        return sessions
    return async_sessionmaker(read_only(bind), expire_on_commit=False)


async def check_reachable(engine: AsyncEngine, timeout_s: float) -> None:
    try:
        async with asyncio.timeout(timeout_s):
            async with read_only(engine).connect() as conn:
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


async def pg_driver(session: AsyncSession) -> Any | None:
    """The asyncpg connection under `session`'s transaction on PostgreSQL, None elsewhere.

    For hot paths that send driver SQL straight to asyncpg (decision 47): SQLAlchemy's
    execution costs more CPU than a one-record batch's statement itself. The session's
    transaction is begun first (SQLAlchemy sends BEGIN only with its first statement), so what
    runs on the returned connection is part of it and is committed or rolled back with it.
    Errors raised there are asyncpg's own (`is_store_contention` knows both kinds).
    """
    bind = session.get_bind()
    if bind.dialect.name != "postgresql" or bind.dialect.driver != "asyncpg":
        return None
    conn = await session.connection()
    raw = await conn.get_raw_connection()
    driver = raw.driver_connection
    if driver is None:  # pragma: no cover - an invalidated connection is never handed out
        return None
    if not driver.is_in_transaction():
        adapted = raw.dbapi_connection
        start = getattr(adapted, "_start_transaction", None)
        if start is not None and getattr(adapted, "_transaction", False) is None:
            # the BEGIN SQLAlchemy's adapter sends before its first statement, sent now and
            # tracked by the adapter, so that its COMMIT / ROLLBACK end it (SQLAlchemy pinned)
            await start()
        else:  # pragma: no cover - another SQLAlchemy: its BEGIN, then a no-op
            await conn.exec_driver_sql("SELECT 1")
    return driver


# PostgreSQL: serialization failure, deadlock, lock timeout; the rest of class 40 / 55P03
_RETRY_SQLSTATES = frozenset({"40001", "40P01", "55P03"})


def is_store_contention(exc: BaseException) -> bool:
    """A unique-key race, a deadlock, a lost connection or a locked SQLite file: worth redoing
    the batch. Knows SQLAlchemy's wrapped errors and asyncpg's raw ones (`pg_driver`)."""
    if isinstance(exc, sa_exc.IntegrityError | sa_exc.OperationalError):
        return True
    if isinstance(exc, sa_exc.DBAPIError):
        orig = exc.orig
        code = getattr(orig, "sqlstate", None) or getattr(orig, "pgcode", None)
        return code in _RETRY_SQLSTATES
    import asyncpg

    if isinstance(exc, asyncpg.PostgresError):
        code = str(getattr(exc, "sqlstate", "") or "")
        # class 23: integrity (a unique key a concurrent writer took first); 08: connection;
        # 57P0x: the server shutting down, crashed or starting (a restart)
        return code in _RETRY_SQLSTATES or code.startswith(("23", "08", "57P0"))
    return isinstance(exc, asyncpg.ConnectionDoesNotExistError | OSError)
