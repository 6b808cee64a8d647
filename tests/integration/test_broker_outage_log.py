"""A broker that goes away is one ERROR line, a reminder every so often and one line when it
is back, not aiokafka's hundreds of ERROR lines a second (decision 57). A hub with its flows
runs against a broker of its own, which is SIGKILLed and later started again on its port."""

from __future__ import annotations

import asyncio
import logging
import signal
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from hub.broker.embedded import EmbeddedBroker, free_port
from hub.runtime import Hub
from hub.settings import Settings
from tests.conftest import TEST_TOKEN
from tests.helpers import wait_until

pytestmark = pytest.mark.integration

OUTAGE = "hub.broker.outage"


class Records(logging.Handler):
    """What reaches the handlers: the log an operator reads."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def since(self, n: int, prefix: str, level: int = logging.WARNING) -> list[str]:
        return [
            r.getMessage()
            for r in self.records[n:]
            if r.name.startswith(prefix) and r.levelno >= level
        ]


@contextmanager
def captured() -> Iterator[Records]:
    handler = Records()
    root = logging.getLogger()
    root.addHandler(handler)
    try:
        yield handler
    finally:
        root.removeHandler(handler)


async def test_a_broker_outage_is_one_line_reminders_and_one_line_when_back(
    tmp_path: Path,
) -> None:
    port = free_port()
    broker = EmbeddedBroker(port)
    broker.start()
    settings = Settings(
        kafka_bootstrap=broker.bootstrap,
        database_url=f"sqlite+aiosqlite:///{tmp_path / 'store.db'}",
        topic_partitions=2,
        admin_token=TEST_TOKEN,
        broker_outage_remind_s=2.0,
    )
    hub = Hub(settings, serve_api=False, run_urge_scheduler=False)
    await hub.start()
    try:
        with captured() as log:
            await asyncio.sleep(1.0)  # the flows' consumers joined their groups
            n = len(log.records)
            assert broker.proc is not None
            broker.proc.send_signal(signal.SIGKILL)
            broker.proc.wait()
            await asyncio.sleep(7.0)
            outage = log.since(n, OUTAGE)
            assert log.since(n, "aiokafka") == []
            [first, *reminders] = outage
            assert first.startswith(f"Kafka broker unreachable at {broker.bootstrap} since ")
            assert 2 <= len(reminders) <= 4, outage
            assert all(r.startswith("Kafka broker still unreachable at ") for r in reminders)
            assert hub.outage is not None and hub.outage.held_total > 100

            broker = EmbeddedBroker(port)
            broker.start()
            n = len(log.records)

            async def back() -> bool:
                return any("reachable again" in m for m in log.since(n, OUTAGE))

            await wait_until(back, 10, "the line that the broker is back")
            await asyncio.sleep(3.0)
            [again] = log.since(n, OUTAGE)
            assert again.startswith(f"Kafka broker reachable again at {broker.bootstrap} after ")
    finally:
        await hub.stop()
        broker.stop()
