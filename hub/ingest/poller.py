"""Watermark polling of a system's database tables (ERP and PDM expose theirs).

The watermark is stored in the hub store in the same transaction as the envelopes it
produced, so a restart resumes exactly where the last committed poll stopped.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker, create_async_engine

from hub.ingest.store import write
from hub.store.models import KeyValue

log = logging.getLogger(__name__)


def parse_sources(spec: str) -> dict[str, str]:
    """'erp=sqlite+aiosqlite:///var/sim/erp.sqlite,pdm=...' -> {system: url}."""
    out: dict[str, str] = {}
    for part in filter(None, (p.strip() for p in spec.split(","))):
        system, sep, url = part.partition("=")
        if not sep or not url:
            raise ValueError(f"EAI_POLL_SOURCES entry {part!r}: expected system=database-url")
        out[system.strip()] = url.strip()
    return out


async def _get_watermark(s: AsyncSession, name: str) -> Any:
    # FOR UPDATE: two hub processes polling the same table queue here instead of both
    # reading the same window (SQLite's BEGIN IMMEDIATE already serialises them).
    row = await s.scalar(select(KeyValue).where(KeyValue.name == name).with_for_update())
    return row.value.get("watermark") if row else None


async def _set_watermark(s: AsyncSession, name: str, value: Any) -> None:
    now = datetime.now(UTC)
    row = await s.scalar(select(KeyValue).where(KeyValue.name == name).with_for_update())
    if row is None:
        s.add(KeyValue(name=name, value={"watermark": value}, updated_at=now))
    else:
        row.value = {"watermark": value}
        row.updated_at = now


class Poller:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        system: str,
        url: str,
        *,
        interval_s: float = 2.0,
        limit: int = 500,
        on_committed: Any = None,
    ) -> None:
        from connectors.registry import CONNECTORS

        self.sessions = sessions
        self.system = system
        self.connector = CONNECTORS[system]
        self.engine = create_async_engine(url)
        self.interval = interval_s
        self.limit = limit
        self.on_committed = on_committed
        self.entities = [
            n for n in self.connector.inbound_entities if self.connector.binding(n).table
        ]
        self.last_error: str | None = None
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def poll_once(self) -> int:
        from connectors.common.polling import poll_envelopes

        total = 0
        for name in self.entities:
            key = f"poll:{self.system}.{name}"
            async with self.sessions() as s, s.begin():
                last = await _get_watermark(s, key)
                async with self.engine.connect() as conn:
                    results, wm = await poll_envelopes(conn, self.connector, name, last, self.limit)
                if not results:
                    continue
                await write(
                    s,
                    results,
                    origin=f"poll:{self.system}.{name}",
                    flow="ingest",
                    id_parts=("poll", self.system, name, last),
                )
                await _set_watermark(s, key, wm)
            total += len(results)
        if total and self.on_committed:
            self.on_committed()
        return total

    async def run(self) -> None:
        try:
            while not self._stopping.is_set():
                try:
                    n = await self.poll_once()
                    self.last_error = None
                except Exception as exc:  # the source may be down; keep trying
                    self.last_error = f"{type(exc).__name__}: {exc}"
                    log.warning("poller %s: %s", self.system, self.last_error)
                    n = 0
                if n < self.limit:
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._stopping.wait(), self.interval)
        finally:
            await self.engine.dispose()
