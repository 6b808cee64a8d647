"""Notice a broker that lost its data, and republish what the hub had already published to it.

The embedded broker keeps everything in memory: killed and started again it comes back empty,
and it creates topics again on first use (with its own partition count), so "a topic is
missing" is no signal. The hub therefore stamps the broker: the first record of the one-
partition topic ``eai.broker.epoch`` is a random id. Every hub process reads it at start and
every ``broker_check_interval_s``; an empty topic or another id means the broker lost what it
held. Then:

- exactly one process (the one that inserts the ``kv_state`` row named after the new epoch)
  marks the outbox rows sent in the last ``broker_loss_republish_s`` as unsent, so the relay
  publishes them again. Consumers drop what they had already applied through their ledgers
  (same message id): the loss costs repeats, never an effect twice, never a message lost
  that the store had accepted (a webhook's records, a flow's outputs);
- a process that notices the loss while running then stops its hub with ``BrokerLost``: its
  consumers' positions and group membership belong to the lost log, and rewinding them in
  place proved unreliable (a consumer rejoining the new broker's group stalled,
  docs/decisions.md 29a). ``eai-hub run`` starts a fresh hub in the same process; a process
  that exits (exit code 1) is started again by its supervisor (Docker's restart policy,
  systemd). Either way the new hub finds the loss unrecovered (``recovery_pending``), reads
  the new log from its start, marks the window for republishing once more, and marks the loss
  recovered when its flows have committed those start positions (docs/decisions.md 52, 58).

Messages other systems produced straight to the broker are not in the outbox and are lost
with it; on Apache Kafka with replication (docs/operations.md) a broker restart loses nothing
and the epoch never changes.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from sqlalchemy import func, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from hub.broker import kafka
from hub.settings import Settings
from hub.store.models import KeyValue, OutboxRow

log = logging.getLogger(__name__)

EPOCH_TOPIC = "eai.broker.epoch"
_TP = TopicPartition(EPOCH_TOPIC, 0)


class BrokerLost(RuntimeError):
    """The broker lost its data while this process ran; restart the process."""


class BrokerEpochWatch:
    def __init__(
        self,
        settings: Settings,
        bootstrap: str,
        sessions: async_sessionmaker[AsyncSession],
        producer: AIOKafkaProducer,
        *,
        on_loss: Callable[[], Any] | None = None,
    ) -> None:
        self.settings = settings
        self.bootstrap = bootstrap
        self.sessions = sessions
        self.producer = producer
        self.on_loss = on_loss
        self.interval = settings.broker_check_interval_s
        self.window = timedelta(seconds=settings.broker_loss_republish_s)
        self.seen: str | None = None
        self.losses = 0
        self.republished = 0
        self.last_loss_at: datetime | None = None
        self._consumer: AIOKafkaConsumer | None = None
        self._stopping = asyncio.Event()

    def stop(self) -> None:
        self._stopping.set()

    async def read(self) -> str | None:
        """The broker's epoch id, or None when it holds none (new, or lost its data).
        Raises when the broker cannot be reached: unknown is not empty."""
        if self._consumer is None:
            self._consumer = kafka.make_consumer(self.settings, self.bootstrap, group_id=None)
            await self._consumer.start()
        c = self._consumer
        ends = await asyncio.wait_for(c.end_offsets([_TP]), 10)
        if ends.get(_TP, 0) <= 0:
            return None
        c.assign([_TP])
        await c.seek_to_beginning(_TP)
        batch = await c.getmany(_TP, timeout_ms=2000, max_records=1)
        records = batch.get(_TP) or []
        if not records:
            raise TimeoutError("the broker epoch record could not be fetched")
        return bytes(records[0].value).decode()

    async def _stamp(self) -> str:
        await kafka.ensure_topics(self.settings, self.bootstrap, [EPOCH_TOPIC], partitions=1)
        await self.producer.send_and_wait(EPOCH_TOPIC, uuid.uuid4().hex.encode(), partition=0)
        # Two processes may stamp at once: the first record is the epoch for both.
        epoch = await self.read()
        assert epoch is not None
        return epoch

    async def check(self) -> bool:
        """One look at the broker; True when it lost its data since the last look (or, at the
        first look, when it is empty although this store has published through it)."""
        epoch = await self.read()
        fresh = epoch is None
        if epoch is None:
            epoch = await self._stamp()
        first, changed = self.seen is None, self.seen is not None and epoch != self.seen
        self.seen = epoch
        if not (changed or (first and fresh and await self._published_recently())):
            return False
        self.losses += 1
        self.last_loss_at = datetime.now(UTC)
        log.error(
            "the broker at %s lost its data (epoch %s): republishing the outbox of the last %.0f s",
            self.bootstrap,
            epoch,
            self.window.total_seconds(),
        )
        if self.on_loss is not None:
            result = self.on_loss()
            if asyncio.iscoroutine(result):
                await result
        self.republished += await self._republish(epoch)
        return True

    async def _published_recently(self) -> bool:
        since = datetime.now(UTC) - self.window
        async with self.sessions() as s:
            n = await s.scalar(
                select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at >= since)
            )
        return bool(n)

    async def _republish(self, epoch: str) -> int:
        now = datetime.now(UTC)
        try:
            async with self.sessions() as s, s.begin():
                # One process per lost broker republishes: the others fail this insert.
                s.add(
                    KeyValue(
                        name=f"broker.epoch.{epoch}", value={"at": now.isoformat()}, updated_at=now
                    )
                )
                await s.flush()
                n = await self._mark_window_unsent(s, now)
        except IntegrityError:
            return 0
        log.warning("republishing %d outbox rows to the new broker", n)
        return n

    async def _mark_window_unsent(self, s: AsyncSession, now: datetime) -> int:
        res = await s.execute(
            update(OutboxRow)
            .where(OutboxRow.sent_at >= now - self.window)
            .values(sent_at=None, lease_until=None)
        )
        return int(res.rowcount or 0)  # type: ignore[attr-defined]

    def _loss_row(self) -> str:
        assert self.seen is not None, "check() first"
        return f"broker.epoch.{self.seen}"

    async def recovery_pending(self) -> bool:
        """Whether a loss that made this broker's epoch is still being recovered from: a process
        republished the outbox to it (the row ``_republish`` claims) and no hub has yet read the
        new log from its start and committed that (``mark_recovered``). A process started by its
        supervisor after a loss another process (or its own previous life) noticed learns it
        here, since nothing else survives the exit."""
        async with self.sessions() as s:
            row = await s.get(KeyValue, self._loss_row())
        return row is not None and "recovered_at" not in row.value

    def settle_s(self) -> float:
        """How long after a loss hubs of the old log may still run: each notices the loss at its
        next check (interval, plus up to ~12 s for a check against a broker that stalls)."""
        return 3 * self.interval + 15.0

    async def loss_age_s(self) -> float | None:
        async with self.sessions() as s:
            row = await s.get(KeyValue, self._loss_row())
        if row is None:
            return None
        at = datetime.fromisoformat(str(row.value["at"]))
        return (datetime.now(UTC) - at).total_seconds()

    async def mark_recovered(self) -> None:
        """Every flow of this hub read the new log from its start and committed those positions,
        and the hubs of the old log have had time to stop: later starts go back to the committed
        offsets."""
        async with self.sessions() as s, s.begin():
            row = await s.get(KeyValue, self._loss_row())
            if row is None or "recovered_at" in row.value:
                return
            now = datetime.now(UTC)
            row.value = {**row.value, "recovered_at": now.isoformat()}
            row.updated_at = now
        log.warning("recovered from the loss of the broker's data (epoch %s)", self.seen)

    async def republish_again(self) -> int:
        """Mark the outbox rows sent in the last window as unsent once more, without the claim
        of one process per epoch: for a hub started after the loss was noticed (in the same
        process or by a supervisor), once the hub that noticed it (and its relay) stopped."""
        async with self.sessions() as s, s.begin():
            n = await self._mark_window_unsent(s, datetime.now(UTC))
        self.republished += n
        log.warning("republishing %d outbox rows again after the restart", n)
        return n

    async def run(self, wake: Callable[[], None]) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self.interval)
            if self._stopping.is_set():
                break
            try:
                lost = await self.check()
            except Exception as exc:  # the broker is away: look again next round
                log.debug("broker epoch check: %s: %s", type(exc).__name__, exc)
                continue
            if lost:
                wake()
                raise BrokerLost(
                    f"the broker at {self.bootstrap} lost its data; the outbox is marked for "
                    "republishing: restart this process"
                )

    async def close(self) -> None:
        if self._consumer is not None:
            with contextlib.suppress(Exception):
                await self._consumer.stop()
            self._consumer = None
