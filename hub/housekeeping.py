"""Housekeeping: the store's history tables kept to a retention, in small deletes.

Three tables only grow: the outbox (every message the hub published, kept after sending so a
broker that lost its data can be given the last ``broker_loss_republish_s`` again), the
delivery queue (one row per message per target, kept after delivery as history) and the
answers to webhook calls with an Idempotency-Key. Without a
limit they fill the disk of a hub that runs for months. The housekeeper deletes, every
``housekeeping_interval_s``:

- outbox rows sent longer ago than ``outbox_retention_s``, never less than the republish
  window (the rows a lost broker must be given again stay whatever the setting);
- delivered and suppressed delivery rows finished longer ago than
  ``delivery_history_retention_s``, except those of a key that also has a dead delivery of an
  older message: re-driving that dead letter is refused while a newer message of its key was
  delivered (``hub.delivery.queue.redrive``), and it can only know that from these rows.

- webhook idempotency answers stored longer ago than ``webhook_idempotency_retention_s``
  (a retry after that is a new request; hub.ingest.idempotency).

Never deleted here: unsent outbox rows, pending and dead deliveries, the ledger (exactly-once
rests on it), the journal (replay past the broker's retention reads it), lineage and audit.
Deletes go in chunks of ``CHUNK`` rows, each its own transaction, so a sweep never holds
SQLite's write lock for long or PostgreSQL's locks on many rows. A retention of 0 keeps
everything. One process sweeps: the one that serves the admin API.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import delete, select
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.delivery import queue
from hub.ingest import idempotency
from hub.metrics import HOUSEKEEPING_DELETED
from hub.settings import Settings
from hub.store.models import OutboxRow

log = logging.getLogger(__name__)

CHUNK = 5_000


@dataclass(frozen=True)
class Retention:
    outbox_s: float
    deliveries_s: float
    republish_s: float = 0.0
    idempotency_s: float = 0.0

    @classmethod
    def from_settings(cls, s: Settings) -> Retention:
        return cls(
            s.outbox_retention_s,
            s.delivery_history_retention_s,
            s.broker_loss_republish_s,
            s.webhook_idempotency_retention_s,
        )

    def outbox_cutoff(self, now: datetime) -> datetime | None:
        if self.outbox_s <= 0:
            return None
        return now - timedelta(seconds=max(self.outbox_s, self.republish_s))

    def deliveries_cutoff(self, now: datetime) -> datetime | None:
        if self.deliveries_s <= 0:
            return None
        return now - timedelta(seconds=self.deliveries_s)

    def idempotency_cutoff(self, now: datetime) -> datetime | None:
        if self.idempotency_s <= 0:
            return None
        return now - timedelta(seconds=self.idempotency_s)


async def _outbox_chunk(s: AsyncSession, cutoff: datetime) -> int:
    ids = select(OutboxRow.id).where(OutboxRow.sent_at < cutoff).limit(CHUNK)
    res: Any = await s.execute(delete(OutboxRow).where(OutboxRow.id.in_(ids.scalar_subquery())))
    return int(res.rowcount or 0)


async def _deliveries_chunk(s: AsyncSession, cutoff: datetime) -> int:
    return await queue.prune(s, cutoff, limit=CHUNK)


async def _idempotency_chunk(s: AsyncSession, cutoff: datetime) -> int:
    return await idempotency.expired_chunk(s, cutoff, CHUNK)


class Housekeeper:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        retention: Retention,
        *,
        interval_s: float = 300.0,
    ) -> None:
        self.sessions = sessions
        self.retention = retention
        self.interval_s = interval_s
        self.deleted: dict[str, int] = {"outbox": 0, "deliveries": 0, "webhook_idempotency": 0}
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def sweep(self, now: datetime | None = None) -> dict[str, int]:
        """One pass over the tables; returns the rows deleted per table."""
        now = now or datetime.now(UTC)
        done: dict[str, int] = {}
        for table, cutoff, chunk in (
            ("outbox", self.retention.outbox_cutoff(now), _outbox_chunk),
            ("deliveries", self.retention.deliveries_cutoff(now), _deliveries_chunk),
            (
                "webhook_idempotency",
                self.retention.idempotency_cutoff(now),
                _idempotency_chunk,
            ),
        ):
            total = 0
            while cutoff is not None and not self._stopping.is_set():
                async with self.sessions() as s, s.begin():
                    n = await chunk(s, cutoff)
                total += n
                if n < CHUNK:
                    break
                await asyncio.sleep(0)  # let the flows at the store between chunks
            done[table] = total
            if total:
                self.deleted[table] += total
                HOUSEKEEPING_DELETED.labels(table).inc(total)
        if any(done.values()):
            log.info(
                "housekeeping: deleted %s", ", ".join(f"{n} {t} rows" for t, n in done.items())
            )
        return done

    async def run(self) -> None:
        while not self._stopping.is_set():
            try:
                await self.sweep()
            except Exception as exc:  # the store is away: try again next round
                log.warning("housekeeping: %s: %s", type(exc).__name__, exc)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval_s)
