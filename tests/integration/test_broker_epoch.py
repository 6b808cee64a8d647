"""The broker epoch watch (hub/broker/epoch.py) against a real embedded broker that is killed
and started again empty on the same port."""

from __future__ import annotations

import signal
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import func, select

from hub.broker import kafka
from hub.broker.embedded import EmbeddedBroker, free_port
from hub.broker.epoch import BrokerEpochWatch
from hub.settings import Settings
from hub.store.models import OutboxRow

pytestmark = pytest.mark.integration


async def unsent(sessions: object) -> int:
    async with sessions() as s:  # type: ignore[operator]
        n = await s.scalar(
            select(func.count()).select_from(OutboxRow).where(OutboxRow.sent_at.is_(None))
        )
    return int(n or 0)


async def test_a_broker_that_comes_back_empty_gets_the_outbox_again(sessions: object) -> None:
    now = datetime.now(UTC)
    async with sessions() as s, s.begin():  # type: ignore[operator]
        for i, age_h in enumerate([0.1, 0.5, 5.0]):  # the last one is older than the window
            s.add(
                OutboxRow(
                    topic="changes.customer",
                    key=f"k{i}".encode(),
                    value=b"{}",
                    headers=[],
                    created_at=now - timedelta(hours=age_h),
                    sent_at=now - timedelta(hours=age_h),
                )
            )
    port = free_port()
    broker = EmbeddedBroker(port)
    broker.start()
    settings = Settings(kafka_bootstrap=broker.bootstrap, broker_loss_republish_s=3600)
    producer = kafka.make_producer(settings, broker.bootstrap, tansu=True)
    await producer.start()
    rewound: list[str] = []
    first = BrokerEpochWatch(
        settings, broker.bootstrap, sessions, producer, on_loss=lambda: rewound.append("a")
    )
    other = BrokerEpochWatch(settings, broker.bootstrap, sessions, producer)
    try:
        # An empty broker although this store published within the hour: republish that hour.
        assert await first.check() is True
        assert (first.republished, await unsent(sessions)) == (2, 2)
        assert await other.check() is False, "the epoch is stamped now: nothing was lost"
        assert await first.check() is False
        async with sessions() as s, s.begin():  # type: ignore[operator]
            await s.execute(OutboxRow.__table__.update().values(sent_at=now))
        broker.proc.send_signal(signal.SIGKILL)  # type: ignore[union-attr]
        broker.proc.wait()  # type: ignore[union-attr]
        with pytest.raises(Exception):  # noqa: B017 - away is not empty: no verdict
            await first.check()
        broker = EmbeddedBroker(port)
        broker.start()
        assert await first.check() is True
        assert await other.check() is True, "every process notices (and rewinds its consumers)"
        # Exactly one process republishes per lost broker; rows sent at `now` all come back.
        assert (first.republished + other.republished, await unsent(sessions)) == (5, 3)
        assert rewound == ["a", "a"]
    finally:
        await first.close()
        await other.close()
        await producer.stop()
        broker.stop()
