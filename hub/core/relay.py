"""The outbox relay: publishes committed outbox rows and marks them sent.

At-least-once by construction: a crash after publishing and before marking repeats the publish,
and every consumer drops the repeat through its ledger (same message_id). Rows are claimed
with a lease so that several workers can run relays; on PostgreSQL the claim uses
FOR UPDATE SKIP LOCKED.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any, cast

from aiokafka import AIOKafkaProducer
from sqlalchemy import Table, or_, select, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub import metrics
from hub.core import faults
from hub.core.inbound import InboundRecord, headers_from_json
from hub.store.models import OutboxRow

log = logging.getLogger(__name__)

# The table, not the mapped class: the relay reads and updates up to `batch_size` rows a
# round, and ORM instances (identity map, instance state) plus the ORM update's evaluation of
# its WHERE against every instance in the session cost more than the publish itself
# (decision 50). Plain rows carry the same columns.
_OUTBOX: Table = OutboxRow.__table__  # type: ignore[assignment]
_CLAIMED = (_OUTBOX.c.id, _OUTBOX.c.topic, _OUTBOX.c.key, _OUTBOX.c.value, _OUTBOX.c.headers)


def handoff_enabled(setting: bool | None, embedded_broker: bool) -> bool:
    """``EAI_RELAY_HANDOFF``; unset: on with the embedded broker (Tansu answers a fetch only
    when its max wait is over, ~130 ms per hop at the median), off with Apache Kafka, which
    answers as soon as records arrive, so that a hand-off would mostly add smaller batches
    (decision 60: on PostgreSQL under load they cost more than the wait they saved)."""
    return embedded_broker if setting is None else setting


class OutboxRelay:
    def __init__(
        self,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        batch_size: int = 1000,
        interval_ms: int = 200,
        lease_s: float = 30.0,
    ) -> None:
        self.sessions = sessions
        self.producer = producer
        self.batch_size = batch_size
        self.interval = interval_ms / 1000
        self.lease = timedelta(seconds=lease_s)
        self.published = 0
        self.failures = 0
        self.last_error: str | None = None
        self._wake = asyncio.Event()
        self._stopping = asyncio.Event()
        # Told what was just published, with the offsets the broker gave it: the flows of
        # this process that consume those topics take it at once instead of waiting for
        # their next fetch (decision 60). A hint only: they still consume the topic.
        self.on_published: Callable[[list[InboundRecord]], None] | None = None

    def wake(self) -> None:
        self._wake.set()

    def stop(self) -> None:
        self._stopping.set()
        self._wake.set()

    async def run(self) -> None:
        while not self._stopping.is_set():
            # cleared before the round, not after it: a commit that wakes the relay while it
            # publishes (the flows commit all the time) must not wait for the next interval
            self._wake.clear()
            try:
                n = await self.publish_once()
            except Exception as exc:
                self.failures += 1
                self.last_error = f"{type(exc).__name__}: {exc}"
                log.warning("outbox relay: %s", self.last_error)
                n = 0
                await asyncio.sleep(min(5.0, self.interval * 5))
            if n >= self.batch_size:
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), self.interval)

    async def _claim(self) -> list[Any]:  # rows of _CLAIMED
        now = datetime.now(UTC)
        t = _OUTBOX
        async with self.sessions() as s, s.begin():
            q = (
                select(*_CLAIMED)
                .where(t.c.sent_at.is_(None), or_(t.c.lease_until.is_(None), t.c.lease_until < now))
                .order_by(t.c.id)
                .limit(self.batch_size)
            )
            if s.get_bind().dialect.name == "postgresql":
                q = q.with_for_update(skip_locked=True)
            rows = list((await s.execute(q)).all())
            if rows:
                await s.execute(
                    update(t)
                    .where(t.c.id.in_([r.id for r in rows]))
                    .values(lease_until=now + self.lease, attempts=t.c.attempts + 1)
                )
            return rows

    async def publish_once(self) -> int:
        rows = await self._claim()
        if not rows:
            return 0
        futures = [
            await self.producer.send(
                r.topic, value=r.value, key=r.key, headers=headers_from_json(r.headers)
            )
            for r in rows
        ]
        results = await asyncio.gather(*futures, return_exceptions=True)
        sent = [
            r.id for r, res in zip(rows, results, strict=True) if not isinstance(res, BaseException)
        ]
        errors = [res for res in results if isinstance(res, BaseException)]
        faults.reached("after_publish_before_mark")
        now = datetime.now(UTC)
        if errors:
            # A broker that refused part of a batch is not trusted with the rest of it: after a
            # restart the embedded broker (Tansu 0.6) answered produce requests with an error
            # for some partitions and success for others whose records no consumer ever got
            # (tests/chaos/test_broker_restart.py: 55 refused and 55 acknowledged-and-lost in
            # one batch). The whole batch goes out again; consumers' ledgers drop what arrived.
            sent = []
        if self.on_published is not None and not errors:
            # before the mark, not after it (decision 66): the broker has the records, and the
            # mark's transaction may queue for the store (SQLite's write gate) behind the very
            # flows waiting for them. A relay that dies before its mark publishes these again
            # when their lease ends, as it always did; the flows' ledgers drop the copies.
            self.on_published(
                [
                    InboundRecord(
                        md.topic,
                        md.partition,
                        md.offset,
                        r.value,
                        r.key,
                        tuple(headers_from_json(r.headers)),
                        md.timestamp if md.timestamp and md.timestamp > 0 else 0,
                    )
                    for r, md in zip(rows, cast(list[Any], results), strict=True)
                ]
            )
        async with self.sessions() as s, s.begin():
            if sent:
                await s.execute(update(_OUTBOX).where(_OUTBOX.c.id.in_(sent)).values(sent_at=now))
            if errors:
                await s.execute(
                    update(_OUTBOX)
                    .where(_OUTBOX.c.id.in_([r.id for r in rows]))
                    .values(lease_until=None, last_error=str(errors[0])[:1000])
                )
        self.published += len(sent)
        metrics.OUTBOX_PUBLISHED.inc(len(sent))
        if errors:
            self.failures += len(errors)
            self.last_error = str(errors[0])
            raise RuntimeError(f"{len(errors)} outbox rows not published: {errors[0]}")
        return len(rows)

    async def drain(self, timeout_s: float = 10.0) -> None:
        """Return once no outbox row is unsent: publish what is free to claim, and wait for
        rows another relay holds leased (this hub's own relay loop claims concurrently; a
        row it is publishing was not on the broker yet when ``publish_once`` found nothing
        to claim, and a reader then missed it)."""
        async with asyncio.timeout(timeout_s):
            while True:
                if await self.publish_once():
                    continue
                async with self.sessions() as s:
                    unsent = await s.scalar(
                        select(OutboxRow.id).where(OutboxRow.sent_at.is_(None)).limit(1)
                    )
                if unsent is None:
                    return
                await asyncio.sleep(0.05)
